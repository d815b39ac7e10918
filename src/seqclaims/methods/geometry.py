"""Representation geometry (DNAtlas): similarity of representations by offset, codon periodicity inside
coding sequence, reverse-complement equivariance and debiased linear CKA.

Every statistic is computed from per-sequence sums (or per-sequence values), so that the sequence bootstrap
and a paired comparison of two models on the same sequences stay weighted sums over sequences.

Representations are read per nucleotide: each base gets the representation of the token covering it, so
models with different tokenizers (single bases, k-mers, BPE) are compared on the same positions.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Callable

import numpy as np

from seqclaims.core.evidence import Estimate
from seqclaims.errors import InputError
from seqclaims.inputs.cache import extract
from seqclaims.inputs.genome import reverse_complement
from seqclaims.inputs.models import load_model
from seqclaims.methods.stats import jackknife_bounds, percentile_interval, resample_counts

PERIOD = 3


# ---------------------------------------------------------------------------------------------
# Per-nucleotide representations


def nucleotide_tokens(offsets: np.ndarray, n_nt: int) -> np.ndarray:
    """(n_nt,) index of the token covering each base, -1 where none does. offsets: (n_tok, 2) spans."""
    index = np.full(n_nt, -1, dtype=np.int64)
    for token, (start, end) in enumerate(np.asarray(offsets)):
        if end > start:
            index[start:min(end, n_nt)] = token
    return index


def nucleotide_rows(hidden: np.ndarray, offsets: np.ndarray, n_nt: int) -> np.ndarray:
    """(n_nt, d) float64: each base's token representation; NaN rows where no token covers the base.
    hidden: (n_tok, d) one sequence's token representations."""
    index = nucleotide_tokens(offsets, n_nt)
    rows = np.asarray(hidden, dtype=np.float64)[np.maximum(index, 0)]
    rows[index < 0] = np.nan
    return rows


def unit_rows(rows: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Rows centred on the mean of the valid rows and scaled to unit length (DNAtlas's normalisation; it
    removes the offset all positions share). Rows not valid, or of zero length after centring, are NaN."""
    valid = valid & np.all(np.isfinite(rows), axis=1)
    out = np.full(rows.shape, np.nan)
    if not valid.any():
        return out
    centred = rows[valid] - rows[valid].mean(axis=0)
    norms = np.linalg.norm(centred, axis=1)
    keep = norms > 1e-12 * max(float(norms.max()), 1e-300)
    out[np.flatnonzero(valid)[keep]] = centred[keep] / norms[keep, None]
    return out


# ---------------------------------------------------------------------------------------------
# Similarity by offset and codon periodicity


def similarity_by_offset(units: np.ndarray, max_offset: int) -> tuple[np.ndarray, np.ndarray]:
    """Sums and counts of cos(x_i, x_{i+d}) for d = 1..max_offset over pairs of defined rows.
    units: (n, d) from `unit_rows`. Returns two (max_offset,) arrays."""
    defined = np.all(np.isfinite(units), axis=1)
    filled = np.where(defined[:, None], units, 0.0)
    sums, counts = np.zeros(max_offset), np.zeros(max_offset)
    for d in range(1, min(max_offset, len(units) - 1) + 1):
        both = defined[:-d] & defined[d:]
        sums[d - 1] = float(np.einsum("ij,ij->", filled[:-d][both], filled[d:][both]))
        counts[d - 1] = both.sum()
    return sums, counts


def period_share(profile: np.ndarray, period: int = PERIOD) -> float:
    """Share of the power of `profile` (similarity at offsets 1..D, D a multiple of `period`), linear trend
    removed, at the frequency 1/period: about 1 for a pure period-3 profile (0.99: the detrending leaks a
    little), about 2/D for white noise. NaN when
    the profile is undefined or flat."""
    profile = np.asarray(profile, dtype=np.float64)
    if not np.all(np.isfinite(profile)) or len(profile) % period:
        return float("nan")
    offsets = np.arange(1, len(profile) + 1)
    slope, intercept = np.polyfit(offsets, profile, 1)
    power = np.abs(np.fft.rfft(profile - (slope * offsets + intercept))) ** 2
    total = power[1:].sum()
    if total <= 1e-24 * max(float((profile**2).sum()), 1e-300):
        return float("nan")
    return float(power[len(profile) // period] / total)


def offset_decay(profile: np.ndarray) -> float:
    """Similarity at offset 1 minus the mean similarity over the far half of the offsets (D/2..D)."""
    profile = np.asarray(profile, dtype=np.float64)
    return float(profile[0] - profile[len(profile) // 2:].mean())


def coding_run(phase: np.ndarray) -> np.ndarray:
    """(n,) bool: the longest uninterrupted reading frame of a window: consecutive CDS bases whose codon
    phase advances by one (an intron, a frame change or a non-coding base ends a run).
    phase: (n,) codon phase per base, -1 outside a CDS."""
    phase = np.asarray(phase)
    run = np.zeros(len(phase), dtype=bool)
    coding = phase >= 0
    if not coding.any():
        return run
    continues = coding[1:] & coding[:-1] & (phase[1:] == (phase[:-1] + 1) % PERIOD)
    breaks = np.flatnonzero(~np.concatenate([[False], continues]))  # run starts (and non-coding bases)
    ends = np.concatenate([breaks[1:], [len(phase)]])
    lengths = np.where(coding[breaks], ends - breaks, 0)
    best = int(np.argmax(lengths))
    run[breaks[best]:ends[best]] = True
    return run


def shuffle_within_codons(sequence: str, phase: np.ndarray, run: np.ndarray, rng: np.random.Generator) -> str:
    """The sequence with the three bases of every whole codon inside `run` permuted at random (the frame and
    each codon's composition kept, the position of each base inside its codon lost)."""
    bases = np.frombuffer(sequence.encode(), dtype=np.uint8).copy()
    starts = np.flatnonzero(run[:-2] & (np.asarray(phase[:-2]) == 0) & run[1:-1] & run[2:]) \
        if len(sequence) >= PERIOD else np.zeros(0, dtype=np.int64)
    for start in starts:
        bases[start:start + PERIOD] = bases[start + rng.permutation(PERIOD)]
    return bases.tobytes().decode()


@dataclass(frozen=True)
class OffsetProfiles:
    """Per-sequence similarity profiles: sums, counts (n_seq, D); share (n_seq,) period-3 share; decay (n_seq,)."""

    sums: np.ndarray
    counts: np.ndarray

    @property
    def profiles(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.counts > 0, self.sums / np.maximum(self.counts, 1), np.nan)

    @property
    def share(self) -> np.ndarray:
        return np.array([period_share(p) for p in self.profiles])

    @property
    def decay(self) -> np.ndarray:
        return np.array([offset_decay(p) if np.all(np.isfinite(p)) else np.nan for p in self.profiles])


def offset_profiles(rows: list[np.ndarray], masks: list[np.ndarray], max_offset: int) -> OffsetProfiles:
    """Similarity-by-offset profiles of each sequence over its masked bases. rows: n (n_nt, d)."""
    sums, counts = zip(*(similarity_by_offset(unit_rows(r, m), max_offset) for r, m in zip(rows, masks)))
    return OffsetProfiles(np.array(sums), np.array(counts))


# ---------------------------------------------------------------------------------------------
# Intervals over sequences: a mean of per-sequence values, and paired differences


@dataclass(frozen=True)
class Interval:
    """An estimate with its interval; samples: the bootstrap resamples, or with method "jackknife" the
    leave-one-window-out values (the same windows left out in every paired Interval)."""

    estimate: float
    low: float
    high: float
    n: int
    samples: np.ndarray
    method: str = "bootstrap"


def mean_interval(values: np.ndarray, *, resamples: int, seed: int, level: float) -> Interval:
    """Mean of per-sequence values (NaN left out) with a percentile bootstrap interval over sequences."""
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if len(values) == 0:
        return Interval(float("nan"), float("nan"), float("nan"), 0, np.full(resamples, np.nan))
    counts = resample_counts(len(values), resamples, seed)
    samples = counts @ values / counts.sum(axis=1)
    low, high = percentile_interval(samples, level)
    return Interval(float(values.mean()), float(low), float(high), len(values), samples)


def ratio_interval(sums: np.ndarray, finish: Callable[[np.ndarray], np.ndarray], *, resamples: int, seed: int,
                   level: float) -> Interval:
    """A statistic of summed per-sequence quantities: sums (n_seq, ...) -> finish((B, ...)) -> (B,)."""
    counts = resample_counts(len(sums), resamples, seed).astype(np.float64)
    estimate = float(finish(sums.sum(axis=0)[None])[0])
    samples = finish(np.tensordot(counts, sums, axes=(1, 0)))
    low, high = percentile_interval(samples, level)
    return Interval(estimate, float(low), float(high), len(sums), samples)


def difference_of(a: Interval, b: Interval, level: float) -> Interval:
    """a - b from two intervals drawn with the same resamples (paired over the same sequences)."""
    samples = a.samples - b.samples
    if a.method == b.method == "jackknife":
        return jackknife_interval(a.estimate - b.estimate, samples, level)
    low, high = percentile_interval(samples, level)
    return Interval(a.estimate - b.estimate, float(low), float(high), min(a.n, b.n), samples)


def jackknife_interval(estimate: float, leave_one_out: np.ndarray, level: float) -> Interval:
    """Normal interval with the delete-one jackknife standard error over windows."""
    values = np.asarray(leave_one_out, dtype=np.float64)
    low, high = jackknife_bounds(estimate, values, level)
    return Interval(float(estimate), low, high, len(values), values, "jackknife")


# ---------------------------------------------------------------------------------------------
# Reverse-complement equivariance


RC_MOMENTS = ("sse", "syy", "n")  # per sequence: squared error, sum of squares, rows; plus the sum of y


def aligned_rc_pairs(forward: np.ndarray, reverse: np.ndarray, permutation: np.ndarray | None = None
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Rows of base i of x and base L-1-i of rc(x) (the same base pair), both defined.
    forward, reverse: (L, d) per-nucleotide rows of x and rc(x). permutation: (L,) a shuffled alignment
    instead (the control). Returns (n, d) x rows and (n, d) rc rows."""
    partner = reverse[::-1] if permutation is None else reverse[permutation]
    both = np.all(np.isfinite(forward), axis=1) & np.all(np.isfinite(partner), axis=1)
    return forward[both], partner[both]


def fit_linear_map(x: np.ndarray, y: np.ndarray, ridge: float = 1e-6) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Least-squares map y ~ (x - mx) W + my with a small ridge (relative to x's mean variance).
    Returns (W (d_x, d_y), mx, my)."""
    mx, my = x.mean(axis=0), y.mean(axis=0)
    xc, yc = x - mx, y - my
    gram = xc.T @ xc
    gram[np.diag_indices_from(gram)] += ridge * max(float(np.trace(gram)) / len(gram), 1e-300)
    return np.linalg.solve(gram, xc.T @ yc), mx, my


def rc_sums(pairs: list[tuple[np.ndarray, np.ndarray]], fitted) -> np.ndarray:
    """(n_seq, d_y + 3) per-sequence [sum of y, sse, sum of |y|^2, n] of the fitted map on each sequence."""
    w, mx, my = fitted
    rows = []
    for x, y in pairs:
        error = y - ((x - mx) @ w + my)
        rows.append(np.concatenate([y.sum(axis=0), [(error**2).sum(), (y**2).sum(), len(y)]]))
    return np.array(rows)


def r_squared_from_sums(sums: np.ndarray) -> np.ndarray:
    """(B, d_y + 3) summed rc_sums -> (B,) 1 - SSE / total sum of squares about the mean."""
    sy, sse, syy, n = sums[:, :-3], sums[:, -3], sums[:, -2], sums[:, -1]
    with np.errstate(invalid="ignore", divide="ignore"):
        total = syy - (sy**2).sum(axis=1) / n
        return np.where((n > 1) & (total > 0), 1.0 - sse / total, np.nan)


def reverse_complements(sequences: list[str]) -> list[str]:
    return [reverse_complement(s) for s in sequences]


# ---------------------------------------------------------------------------------------------
# Debiased linear CKA from per-sequence sums


def cka_sums(a: np.ndarray, b: np.ndarray) -> dict[str, np.ndarray]:
    """Per-sequence sufficient statistics of the unbiased HSIC estimator (Song et al. 2012) with linear
    kernels K = A A^T, L = B B^T over the rows (bases) of one sequence. a: (n, p), b: (n, q)."""
    na, nb = (a**2).sum(axis=1), (b**2).sum(axis=1)
    return {"ab": a.T @ b, "aa": a.T @ a, "bb": b.T @ b, "sa": a.sum(0), "sb": b.sum(0),
            "na": na.sum(), "nb": nb.sum(), "na2": (na**2).sum(), "nb2": (nb**2).sum(), "nab": (na * nb).sum(),
            "ra": (nb[:, None] * a).sum(0), "rb": (na[:, None] * b).sum(0),
            "raa": (na[:, None] * a).sum(0), "rbb": (nb[:, None] * b).sum(0), "n": np.float64(len(a))}


def _hsic(cross, s1, s2, n1, n2, n12, r1, r2, n) -> np.ndarray:
    """Unbiased HSIC of two linear kernels from summed statistics (leading axis B): cross (B, p, q) = sum x y^T;
    s1, s2 sums of rows; n1, n2 sums of squared norms; n12 sum of their products; r1 = sum |y|^2 x,
    r2 = sum |x|^2 y; n rows."""
    trace = np.einsum("bpq,bpq->b", cross, cross) - n12
    k_sum = np.einsum("bp,bp->b", s1, s1) - n1
    l_sum = np.einsum("bq,bq->b", s2, s2) - n2
    kl_sum = (np.einsum("bp,bpq,bq->b", s1, cross, s2) - np.einsum("bp,bp->b", s1, r1)
              - np.einsum("bq,bq->b", s2, r2) + n12)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (trace + k_sum * l_sum / ((n - 1) * (n - 2)) - 2.0 / (n - 2) * kl_sum) / (n * (n - 3))


def cka_from_sums(s: dict[str, np.ndarray]) -> np.ndarray:
    """Debiased linear CKA (B,) from summed `cka_sums` (each with a leading axis B)."""
    kl = _hsic(s["ab"], s["sa"], s["sb"], s["na"], s["nb"], s["nab"], s["ra"], s["rb"], s["n"])
    kk = _hsic(s["aa"], s["sa"], s["sa"], s["na"], s["na"], s["na2"], s["raa"], s["raa"], s["n"])
    ll = _hsic(s["bb"], s["sb"], s["sb"], s["nb"], s["nb"], s["nb2"], s["rbb"], s["rbb"], s["n"])
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((kk > 0) & (ll > 0), kl / np.sqrt(np.maximum(kk, 0) * np.maximum(ll, 0)), np.nan)


def cka_interval(per_sequence: list[dict[str, np.ndarray]], *, level: float, **ignored) -> Interval:
    """Debiased linear CKA over the rows of all sequences, with a delete-one-window jackknife interval.

    Not a bootstrap: a resample that repeats a window makes its rows pair with their own copies, which the
    unbiased estimator cannot tell from new examples, and the resampled CKA of two independent
    representations then sits above the estimate (an interval [0.003, 0.018] around -0.004 was seen).
    Leaving one window out keeps every pair distinct; every sum is additive, so a leave-one-out value is the
    total minus that window's sums."""
    stacked = {key: np.stack([s[key] for s in per_sequence]) for key in per_sequence[0]}
    total = {k: v.sum(axis=0) for k, v in stacked.items()}
    estimate = float(cka_from_sums({k: v[None] for k, v in total.items()})[0])
    leave_one_out = cka_from_sums({k: total[k][None] - v for k, v in stacked.items()})
    return jackknife_interval(estimate, leave_one_out, level)


# ---------------------------------------------------------------------------------------------
# What the geometry families read: one representation per base, from the shared activation cache


SITES = ("resid_post", "mlp.post", "mixer.out")


def representation_hook(claim, model, layer: int, site: str) -> str:
    """The hook `layer.{layer}.{site}`, or one InputError line naming the claim and what the model offers."""

    if not 0 <= layer < model.n_layers:
        raise InputError(f"{claim.path}: params.layer: {layer} is not a layer of model {model.ref.describe()} "
                         f"({model.n_layers} layers); use 0..{model.n_layers - 1}")
    name = f"layer.{layer}.{site}"
    if name not in model.hook_names():
        raise InputError(f"{claim.path}: params.site: model {model.ref.describe()} offers no {name}; its layers "
                         f"offer {', '.join(sorted({n.split('.', 2)[-1] for n in model.hook_names() if n.startswith('layer.')}))}")
    return name


def nucleotide_representations(model, sequences: list[str], hook: str, dataset_hash: str) -> list[np.ndarray]:
    """Per sequence, (n_nt, d) float64 rows: each base's token representation at `hook` (cached pass)."""

    arrays = extract(model, sequences, [hook], dataset_hash=dataset_hash)
    hidden, offsets = arrays[hook], arrays["tokens.offsets"]
    return [nucleotide_rows(hidden[i], offsets[i], len(s)) for i, s in enumerate(sequences)]


def derived_hash(dataset_hash: str, *what: object) -> str:
    """The activation-cache identity of sequences derived from a dataset (reverse complements, shuffles)."""

    return hashlib.sha256("\0".join([dataset_hash, *map(str, what)]).encode()).hexdigest()


def compared_model(claim):
    """The model a claim compares with (`params.compare_to`), loaded; None when it names none."""

    return None if claim.params.compare_to is None else load_model(claim.params.compare_to)


def as_estimate(interval: Interval, min_n: int, reason: str | None = None, **detail) -> "Estimate":
    """An Interval as the Estimate a family returns (missing, with `reason`, when it is undefined)."""

    if not np.isfinite(interval.estimate):
        return Estimate.missing(reason or "undefined on this data", interval.n)
    return Estimate(interval.estimate, interval.low, interval.high, interval.n, min_n=min_n, detail=detail,
                    samples=interval.samples, samples_kind=interval.method)


def kmer_one_hot(sequence: str, k: int = 1) -> np.ndarray:
    """(n_nt, 4^k) one-hot of the k-mer starting at each base: the representation that knows only the
    sequence (a baseline for every geometry statistic); NaN rows where the k-mer runs off the end or holds a
    base other than ACGT."""
    codes = np.frombuffer(sequence.encode(), dtype=np.uint8)
    lookup = np.full(256, -1, dtype=np.int64)
    lookup[np.frombuffer(b"ACGT", dtype=np.uint8)] = np.arange(4)
    base = lookup[codes]
    n = len(sequence)
    index = np.zeros(n, dtype=np.int64)
    defined = np.ones(n, dtype=bool)
    for j in range(k):
        shifted = np.full(n, -1, dtype=np.int64)
        shifted[: n - j] = base[j:]
        defined &= shifted >= 0
        index = index * 4 + np.maximum(shifted, 0)
    rows = np.zeros((n, 4**k))
    rows[np.arange(n), index] = 1.0
    rows[~defined] = np.nan
    return rows


def centred_kmer_one_hot(sequence: str, k: int) -> np.ndarray:
    """(n_nt, 4^k) one-hot of the k-mer centred on each base (k odd); NaN rows near the ends."""
    rows = kmer_one_hot(sequence, k)
    shift = k // 2
    out = np.full_like(rows, np.nan)
    out[shift:] = rows[: len(rows) - shift]
    return out


def residual_sums(pairs: list[tuple[np.ndarray, np.ndarray, np.ndarray]], with_x, sequence_only) -> np.ndarray:
    """(n_seq, 2) per-sequence squared errors of two fitted maps: from [x, s] and from s alone.
    pairs: (x rows, rc rows, sequence features) per sequence."""
    def sse(fitted, inputs, y):
        w, mx, my = fitted
        return float((((inputs - mx) @ w + my - y) ** 2).sum())

    return np.array([[sse(with_x, np.hstack([x, s]), y), sse(sequence_only, s, y)] for x, y, s in pairs])


def explained_beyond(sums: np.ndarray) -> np.ndarray:
    """(B, 2) summed residual_sums -> (B,) share of the sequence-only map's error the other map removes."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(sums[:, 1] > 0, 1.0 - sums[:, 0] / sums[:, 1], np.nan)
