"""Composition controls: what a unit or head that reads only base composition would show.

A head whose keys score the GC content of a window, or a channel that fires on AT-rich tokens, looks
like a detector of any motif whose sites share that composition. The controls here separate motif
specificity from composition:

- ``window_spans``: the window a token is credited with, the motif-length window placed as the motif
  track places it (anchored at the token's first base, centred on it, every base an overlapping window
  can reach for overlap_max) or the token's own bases.
- ``composition_features``: per-token base (and dinucleotide) fractions of those windows, the
  covariates that ``partial_moments`` regresses out of a head's correlation with the motif.
- ``partial_moments`` / ``partial_from_sums``: the partial correlation of key score and motif score
  given the composition, from per-sequence sums, so that bootstrap resamples and the selection of a
  head on the train split are matrix products, exactly as for r. ``explained_share_from_sums``: from the
  same sums, the share of the key score's variance the covariates explain (R^2; the token-identity share
  of `token_controls` uses it with token one-hots as covariates).
- ``shuffled_motifs``: the motif with its columns permuted (the same base preferences, hence the same
  expected composition of a high-scoring window, but not the motif); ``shuffled_moments`` /
  ``minus_shuffled_from_sums``: r with the motif minus a high quantile of r with the shuffles.
- ``composition_classes``: GC fraction classes of the windows (the enrichment's background matching).
- ``composition_detector``: the best any detector of a window's base composition can do for a
  per-token annotation (P(annotated | exact base counts of the window), estimated on the train split),
  the baseline of ``auprc_over_composition`` for MLP channels and SAE latents.
"""

from __future__ import annotations

import warnings
from collections import Counter
from dataclasses import replace
from math import factorial, prod
from typing import Literal, Sequence

import numpy as np
from pydantic import Field

from seqclaims.core.schema import StrictModel
from seqclaims.errors import InputError
from seqclaims.inputs.proteins import COMPOSITION_CLASSES
from seqclaims.inputs.tokenizers import AMINO_ACIDS
from seqclaims.methods.attention import pearson_from_sums, ratio_from_sums

Window = Literal["anchored", "centred", "overlap_max", "token"]
Covariates = Literal["gc", "bases", "dinucleotides", "residue_classes"]
WINDOWS = ("anchored", "centred", "overlap_max", "token")
BASES = "ACGT"
_CODE = np.full(256, -1, dtype=np.int64)
for _i, _base in enumerate(BASES):
    _CODE[ord(_base)] = _i
    _CODE[ord(_base.lower())] = _i
_CLASS_CODE = np.full(256, -1, dtype=np.int64)  # amino acids: their class in COMPOSITION_CLASSES, else "other"
_CLASS_CODE[[ord(a) for a in AMINO_ACIDS]] = len(COMPOSITION_CLASSES)
for _i, _letters in enumerate(COMPOSITION_CLASSES.values()):
    _CLASS_CODE[[ord(a) for a in _letters]] = _i


# ---------------------------------------------------------------------------------------------
# Windows and their composition


def window_spans(offsets: np.ndarray, lengths: Sequence[int], width: int, window: Window) -> np.ndarray:
    """(n_seq, n_tok, 2) [start, end) of the window credited to each token; (-1, -1) where there is none
    (special tokens, padding, a window that would leave the sequence under anchored or centred).

    anchored: [a, a + width); centred: the window whose centre a + (b - a)//2 is the token's centre (as
    `motifs.token_motif_scores` centres); overlap_max: every base a width-long window overlapping the
    token can reach, [a - width + 1, b + width - 1) clipped to the sequence; token: [a, b)."""
    if window not in WINDOWS:
        raise InputError(f"unknown composition window {window!r}; use one of {', '.join(WINDOWS)}")
    offsets = np.asarray(offsets, dtype=np.int64)
    start, end = offsets[..., 0], offsets[..., 1]
    n = np.asarray(lengths, dtype=np.int64)[:, None]
    real = (start >= 0) & (end > start)
    if window == "anchored":
        lo, hi = start, start + width
    elif window == "centred":
        lo = start + (end - start) // 2 - width // 2
        hi = lo + width
    elif window == "overlap_max":
        lo, hi = np.maximum(start - width + 1, 0), np.minimum(end + width - 1, n)
    else:
        lo, hi = start, end
    valid = real & (lo >= 0) & (hi <= n) & (hi > lo)
    return np.stack([np.where(valid, lo, -1), np.where(valid, hi, -1)], axis=-1)


def covariate_names(kind: Covariates) -> list[str]:
    if kind == "gc":
        return ["GC"]
    if kind == "residue_classes":
        return list(COMPOSITION_CLASSES)  # the other residues are the rest
    names = list(BASES[:3])  # T is 1 - A - C - G
    if kind == "dinucleotides":
        names += [a + b for a in BASES for b in BASES]
    return names


def composition_features(sequences: Sequence[str], spans: np.ndarray, kind: Covariates) -> np.ndarray:
    """(q, n_seq, n_tok) fractions of the windows `spans` (`window_spans`): GC; A, C, G (T is the rest);
    or those and the 16 dinucleotides (share of the window's adjacent ACGT pairs). Fractions are of the
    window's ACGT bases (an N is left out, not counted as A or T); NaN where a span is missing or holds
    no ACGT base. For proteins, `residue_classes`: the hydrophobic and charged shares of the window's
    residues (`proteins.COMPOSITION_CLASSES`; the rest are other residues)."""
    names = covariate_names(kind)
    table, n_letters = (_CLASS_CODE, len(COMPOSITION_CLASSES) + 1) if kind == "residue_classes" else (_CODE, 4)
    out = np.full((len(names), *spans.shape[:2]), np.nan)
    for i, sequence in enumerate(sequences):
        lo, hi = spans[i, :, 0], spans[i, :, 1]
        ok = lo >= 0
        if not ok.any():
            continue
        codes = table[np.frombuffer(sequence.encode("ascii"), dtype=np.uint8)]
        indicators = np.eye(n_letters, dtype=np.int64)[np.maximum(codes, 0)] * (codes >= 0)[:, None]
        counts = _window_counts(indicators, lo[ok], hi[ok])
        total = counts.sum(axis=1)
        fractions = counts / np.maximum(total, 1)[:, None]
        if kind == "residue_classes":
            values = fractions[:, : len(COMPOSITION_CLASSES)]
        elif kind == "gc":
            values = fractions[:, [1, 2]].sum(axis=1, keepdims=True)
        else:
            values = fractions[:, :3]
            if kind == "dinucleotides":
                values = np.concatenate([values, _dinucleotide_fractions(codes, lo[ok], hi[ok])], axis=1)
        values[total == 0] = np.nan
        out[:, i, np.flatnonzero(ok)] = values.T
    return out


def _window_counts(indicators: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """(m, c) sums of (n, c) per-position indicators over [lo, hi) windows, by prefix sums."""
    prefix = np.concatenate([np.zeros((1, indicators.shape[1]), np.int64), np.cumsum(indicators, axis=0)])
    return prefix[hi] - prefix[lo]


def _dinucleotide_fractions(codes: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """(m, 16) share of each dinucleotide among the adjacent ACGT pairs inside each window (0 without any)."""
    pair = np.where((codes[:-1] >= 0) & (codes[1:] >= 0), 4 * codes[:-1] + codes[1:], -1)
    indicators = np.eye(16, dtype=np.int64)[np.maximum(pair, 0)] * (pair >= 0)[:, None]
    counts = _window_counts(np.vstack([indicators, np.zeros((1, 16), np.int64)]), lo, np.maximum(hi - 1, lo))
    return counts / np.maximum(counts.sum(axis=1), 1)[:, None]


def composition_classes(sequences: Sequence[str], spans: np.ndarray, bins: int) -> np.ndarray:
    """(n_seq, n_tok) int: GC fraction of each token's window in `bins` equal classes; -1 where the token
    has no window (special tokens, padding, a window off the sequence or over a non-ACGT base)."""
    gc = composition_features(sequences, spans, "gc")[0]
    classes = np.minimum((np.nan_to_num(gc) * bins).astype(np.int64), bins - 1)
    return np.where(np.isfinite(gc), classes, -1)


# ---------------------------------------------------------------------------------------------
# Partial correlation given composition, from per-sequence sums


def prepared_covariates(z: np.ndarray, mask: np.ndarray, *, centre: bool) -> np.ndarray:
    """(q, n_seq, n_tok) covariates restricted to the pooled tokens `mask`, centred within each sequence
    when the key and motif tracks are (so that the partial correlation is within sequences too), and
    scaled to unit root mean square (conditioning only; the partial r does not change)."""
    z = np.where(mask, np.nan_to_num(z), 0.0)
    if centre:
        counts = np.maximum(mask.sum(axis=1), 1)
        z = np.where(mask, z - (z.sum(axis=2) / counts)[..., None], 0.0)
    scale = np.sqrt((z**2).sum(axis=(1, 2)) / max(int(mask.sum()), 1))
    return z / np.where(scale > 0, scale, 1.0)[:, None, None]


def partial_moments(x: np.ndarray, y: np.ndarray, z: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(n_seq, K, 1 + p + p*p) per-sequence sums n, sum v and sum v v^T of v = (x_k, y, z_1..z_q), p = q + 2.

    x: (K, n_seq, n_tok), y: (n_seq, n_tok), z: (q, n_seq, n_tok), all 0 outside `mask`."""
    k, q = x.shape[0], z.shape[0]
    p = q + 2
    n_seq = y.shape[0]
    m = mask.astype(np.float64)
    shared = np.concatenate([y[None], z])  # (q + 1, n_seq, n_tok), the same for every head
    shared_cross = np.einsum("ast,bst->sab", shared, shared)
    out = np.empty((n_seq, k, 1 + p + p * p))
    cross = np.empty((n_seq, k, p, p))
    cross[:, :, 1:, 1:] = shared_cross[:, None]
    x_shared = np.einsum("kst,bst->skb", x, shared)
    cross[:, :, 0, 1:] = x_shared
    cross[:, :, 1:, 0] = x_shared
    cross[:, :, 0, 0] = np.einsum("kst,kst->sk", x, x)
    out[:, :, 0] = m.sum(axis=1)[:, None]
    out[:, :, 1] = x.sum(axis=2).T
    out[:, :, 2:p + 1] = shared.sum(axis=2).T[:, None]
    out[:, :, p + 1:] = cross.reshape(n_seq, k, p * p)
    return out


def partial_from_sums(sums: np.ndarray) -> np.ndarray:
    """Partial correlation of v_0 and v_1 given v_2.. from summed (..., 1 + p + p*p) moments.

    A key score (v_0) that composition explains entirely (residual variance below 1e-9 of its variance:
    float32 rounding) carries nothing beyond composition: its partial r is 0. NaN where the motif
    score's residual vanishes (composition fixes the motif score) or there are too few tokens."""
    size = sums.shape[-1]
    p = int((np.sqrt(4 * size - 3) - 1) / 2)
    n = sums[..., 0]
    mean = sums[..., 1:p + 1] / n[..., None]
    cov = sums[..., p + 1:].reshape(*sums.shape[:-1], p, p) / n[..., None, None] - mean[..., :, None] * mean[..., None, :]
    head, cross, rest = cov[..., :2, :2], cov[..., :2, 2:], cov[..., 2:, 2:]
    residual = head - cross @ covariate_pinv(rest) @ np.swapaxes(cross, -1, -2)
    var_x, var_y, cov_xy = residual[..., 0, 0], residual[..., 1, 1], residual[..., 0, 1]
    floor = 1e-9 * np.maximum(head[..., 0, 0], 1e-300), 1e-9 * np.maximum(head[..., 1, 1], 1e-300)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = cov_xy / np.sqrt(var_x * var_y)
    r = np.where(var_x <= floor[0], 0.0, np.clip(r, -1.0, 1.0))
    return np.where((var_y <= floor[1]) | (n < p + 2) | (head[..., 0, 0] <= 0), np.nan, r)


def covariate_pinv(rest: np.ndarray) -> np.ndarray:
    """Pseudo-inverse of (..., q, q) covariance blocks of the covariates. When the blocks of all candidates
    (axis -3: the heads or units of `partial_moments`, which share their covariates) agree, it is computed
    once and shared, which makes a resample's cost that of one inversion instead of one per candidate."""
    if rest.ndim >= 3 and rest.shape[-3] > 1:
        first = rest[..., :1, :, :]
        scale = float(np.nanmax(np.abs(first))) if first.size else 0.0
        if np.allclose(rest, first, rtol=1e-10, atol=1e-12 * scale):
            return np.broadcast_to(np.linalg.pinv(first, hermitian=True), rest.shape)
    return np.linalg.pinv(rest, hermitian=True)


def explained_share_from_sums(sums: np.ndarray) -> np.ndarray:
    """R^2 of the least-squares regression of v_0 on v_2.. (v_1 left out) from summed (..., 1 + p + p*p)
    moments in the layout of `partial_moments`: 1 - residual variance of v_0 / its variance, in [0, 1].
    NaN where v_0 does not vary or there are too few tokens."""
    size = sums.shape[-1]
    p = int((np.sqrt(4 * size - 3) - 1) / 2)
    n = sums[..., 0]
    mean = sums[..., 1:p + 1] / n[..., None]
    cov = sums[..., p + 1:].reshape(*sums.shape[:-1], p, p) / n[..., None, None] - mean[..., :, None] * mean[..., None, :]
    var_x, cross, rest = cov[..., 0, 0], cov[..., 0, 2:], cov[..., 2:, 2:]
    explained = np.einsum("...i,...ij,...j->...", cross, covariate_pinv(rest), cross)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.clip(explained / var_x, 0.0, 1.0)
    second_moment = sums[..., p + 1] / n
    return np.where((var_x <= 1e-12 * np.maximum(second_moment, 1e-300)) | (n < p + 1), np.nan, share)


# ---------------------------------------------------------------------------------------------
# Shuffled motifs


class ShuffledMotifParams(StrictModel):
    """The shuffled-matrix control's settings, shared by the families that use it."""

    shuffles: int = Field(20, ge=1, le=200, description="column-permuted copies of the matrix (the shuffled control)")
    shuffled_quantile: float = Field(0.95, ge=0.5, le=1.0, description="quantile of the shuffled matrices' "
                                     "statistic that the motif's is compared with")


def shuffled_motifs(motif, count: int, seed: int) -> list:
    """`count` copies of `motif` with their columns permuted (distinct permutations other than the
    identity, seeded): the same base preferences, hence the same composition of high-scoring windows,
    arranged so as not to be the motif."""

    length = motif.length
    repeats = Counter(tuple(column) for column in motif.pssm.T.round(12)).values()  # identical columns
    available = factorial(length) // prod(factorial(r) for r in repeats) - 1 if length < 13 else count
    if available < count:
        raise InputError(f"motif {motif.matrix_id} has {length} columns: only {available} distinct column "
                         f"arrangements other than the motif exist; set `shuffles` to at most {available}")
    rng = np.random.default_rng(seed)
    seen, out = {motif.pssm.tobytes()}, []  # distinct matrices: identical columns make permutations coincide
    while len(out) < count:
        columns = [int(i) for i in rng.permutation(length)]
        if motif.pssm[:, columns].tobytes() in seen:
            continue
        seen.add(motif.pssm[:, columns].tobytes())
        out.append(replace(motif, name=f"{motif.name} (columns shuffled {len(out) + 1})",
                           counts=motif.counts[:, columns], pssm=motif.pssm[:, columns]))
    return out


def minus_shuffled_from_sums(sums: np.ndarray, quantile: float) -> np.ndarray:
    """r with the motif minus the `quantile` of r with the shuffled motifs, from summed
    (..., (S + 1) * 6) Pearson moments (motif first, then the S shuffles)."""

    r = pearson_from_sums(sums.reshape(*sums.shape[:-1], -1, 6))
    return r[..., 0] - _shuffled_quantile(r[..., 1:], quantile)


def over_shuffled_from_sums(sums: np.ndarray, quantile: float) -> np.ndarray:
    """rho of the motif's sites over the `quantile` of rho of the shuffled motifs' sites, from summed
    (..., (S + 1) * 2) attention to support and matched background (motif first)."""

    rho = ratio_from_sums(sums.reshape(*sums.shape[:-1], -1, 2))
    shuffled = _shuffled_quantile(rho[..., 1:], quantile)
    with np.errstate(invalid="ignore", divide="ignore"):  # a ratio over nothing is undefined, not infinite
        return np.where(shuffled > 0, rho[..., 0] / shuffled, np.nan)


def _shuffled_quantile(values: np.ndarray, quantile: float) -> np.ndarray:
    """The quantile over the last axis of the shuffles' values that are defined (NaN where none is)."""

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a resample where no shuffle is defined
        return np.nanquantile(values, quantile, axis=-1)


# ---------------------------------------------------------------------------------------------
# The composition detector of a per-token annotation


def composition_detector(fractions: np.ndarray, labels: np.ndarray, train: np.ndarray,
                         prior_weight: float = 1.0) -> np.ndarray:
    """(n,) score of every token: the train-split share of annotated tokens among the tokens whose window
    has the same base composition, shrunk towards the train prevalence by `prior_weight` tokens.

    fractions: (n, 3) A, C, G fractions of each token's window (`composition_features` "bases"; NaN rows:
    no window, scored at the prevalence); labels: (n,) bool; train: (n,) bool. A unit that reads only
    the composition of that window can at best rank tokens as this score does."""
    has = np.isfinite(fractions).all(axis=1)
    prevalence = float(labels[train].mean()) if train.any() else 0.0
    keys = np.where(has[:, None], np.round(np.nan_to_num(fractions), 6), -1.0)
    _, cls = np.unique(keys, axis=0, return_inverse=True)
    cls = cls.ravel()
    fit = train & has
    positives = np.bincount(cls[fit], weights=labels[fit].astype(np.float64), minlength=cls.max() + 1)
    totals = np.bincount(cls[fit], minlength=cls.max() + 1).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):  # a class seen only outside train, without a prior
        share = (positives + prior_weight * prevalence) / (totals + prior_weight)
    return np.where(has & np.isfinite(share[cls]), share[cls], prevalence)
