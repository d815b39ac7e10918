"""JASPAR motifs: log-odds matrices, both-strand scans, thresholds and per-token motif tracks.

Conventions used throughout:

- Bases are encoded A=0, C=1, G=2, T=3 (case-insensitive); any other character (N, IUPAC
  codes, gaps) is -1. A window that touches such a base scores NaN: missing, not zero.
- A motif of length L has ``n - L + 1`` windows in a sequence of length ``n``; window ``s``
  covers bases ``[s, s + L)``.
- Forward score of window ``s``: ``sum_j pssm[x[s + j], j]``. Reverse score of window ``s``:
  the reverse-complement matrix scored on the same forward window, i.e. the score of the
  motif read on the minus strand over bases ``[s, s + L)``. This is exactly what Biopython's
  ``PSSM.search(both=True)`` computes (``pssm.reverse_complement().calculate(seq)``, reported
  at the same start position), and equals ``pssm.calculate(Seq(window).reverse_complement())``
  for each single window.
- Scores are log2-odds (bits), returned as float32 (Biopython returns float32 too).
- Per-token scores are aligned through character offsets ``[start, end)``, so single-nucleotide,
  k-mer and BPE tokenizers align the same way; special tokens (offset ``(0, 0)`` or any negative
  marker) score NaN.
"""

from __future__ import annotations

import difflib
import functools
import math
import warnings
from dataclasses import dataclass

import numpy as np

from seqclaims.errors import InputError

BASES = "ACGT"
DEFAULT_RELEASE = "JASPAR2024"
DEFAULT_PSEUDOCOUNT = 0.8
DEFAULT_THRESHOLD_FRACTION = 0.8
ALIGNMENTS = ("overlap_max", "anchored", "centred")
STRANDS = ("+", "-")

# Scanning looks up blocks of up to _KMER bases at once in precomputed tables of 4**_KMER
# partial scores (256 KiB of float32 each): two lookups per strand instead of 15 for a 15 bp
# matrix. Codes of 8 bases fit exactly in uint16.
_KMER = 8
_CHUNK = 1 << 17  # windows per chunk: temporaries stay in cache (measured best of 2**14..2**19)
_SCORE_STEP = 1e-3  # bits; grid of the exact score distribution behind p-value thresholds

_ENCODE_TABLE = np.full(256, -1, dtype=np.int8)
for _code, _base in enumerate(BASES):
    _ENCODE_TABLE[ord(_base)] = _code
    _ENCODE_TABLE[ord(_base.lower())] = _code


# ---------------------------------------------------------------------------------------------
# Motifs
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Motif:
    """A position weight matrix with its log-odds scores.

    counts: (4, L) float64 counts, rows A, C, G, T.
    pssm: (4, L) float64 log2-odds, rows A, C, G, T (see `motif_from_counts` for the formula).
    background: (pA, pC, pG, pT), summing to 1.
    """

    matrix_id: str
    name: str
    counts: np.ndarray
    pssm: np.ndarray
    release: str
    pseudocount: float
    background: tuple[float, float, float, float]

    @property
    def length(self) -> int:
        return int(self.pssm.shape[1])

    @property
    def min_score(self) -> float:
        return float(self.pssm.min(axis=0).sum())

    @property
    def max_score(self) -> float:
        return float(self.pssm.max(axis=0).sum())

    def __repr__(self) -> str:
        return f"Motif({self.matrix_id} {self.name}, L={self.length}, {self.release})"


def motif_from_counts(
    counts,
    matrix_id: str = "custom",
    name: str = "custom",
    release: str = "custom",
    pseudocount: float = DEFAULT_PSEUDOCOUNT,
    background="uniform",
) -> Motif:
    """Build a `Motif` from a (4, L) count matrix (rows A, C, G, T).

    With background b and pseudocount c, for base x at column j:
        p[x, j]    = (counts[x, j] + c * b[x]) / (sum_y counts[y, j] + c)
        pssm[x, j] = log2(p[x, j] / b[x])
    i.e. the pseudocount is split between bases in proportion to the background. This equals
    Biopython's ``counts.normalize(pseudocounts={x: c * b[x]}).log_odds(b)``. A zero probability
    (only possible with c = 0) gives -inf.
    """
    counts = np.array(counts, dtype=np.float64)
    if counts.ndim != 2 or counts.shape[0] != 4 or counts.shape[1] == 0:
        raise InputError(f"motif {matrix_id}: counts must have shape (4, L), got {counts.shape}")
    if not np.all(np.isfinite(counts)) or np.any(counts < 0):
        raise InputError(f"motif {matrix_id}: counts must be finite and non-negative")
    if not (math.isfinite(pseudocount) and pseudocount >= 0):
        raise InputError(f"motif {matrix_id}: pseudocount must be >= 0, got {pseudocount}")
    bg = _normalise_background(background)
    b = np.array(bg)[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        probs = (counts + pseudocount * b) / (counts.sum(axis=0, keepdims=True) + pseudocount)
        pssm = np.log2(probs / b)
    if np.isnan(pssm).any():
        raise InputError(f"motif {matrix_id}: a column has no counts; use a pseudocount > 0")
    counts.setflags(write=False)
    pssm.setflags(write=False)
    return Motif(matrix_id, name, counts, pssm, release, float(pseudocount), bg)


def load_motif(
    matrix_id: str,
    release: str = DEFAULT_RELEASE,
    pseudocount: float = DEFAULT_PSEUDOCOUNT,
    background="uniform",
) -> Motif:
    """Load a JASPAR matrix from the SQLite databases shipped with pyjaspar (offline).

    matrix_id: "MA0108.2", or a base ID such as "MA0108" for the release's latest version.
    background: "uniform" or (pA, pC, pG, pT) (normalised to sum 1; e.g. `genome_gc_background`).
    PSSM (rows A, C, G, T), as in `motif_from_counts`, with pseudocount c and background b:
        pssm[x, j] = log2( (counts[x, j] + c * b[x]) / (sum_y counts[y, j] + c) / b[x] )
    Loaded motifs are cached in memory.
    """
    return _load_motif_cached(
        str(matrix_id).strip(), str(release), float(pseudocount), _normalise_background(background)
    )


@functools.lru_cache(maxsize=256)
def _load_motif_cached(matrix_id: str, release: str, pseudocount: float, background) -> Motif:
    jaspar = _open_jaspar(release)
    try:
        record = _fetch_record(jaspar, matrix_id, release)
    finally:
        jaspar.conn.close()
    counts = np.array([record.counts[base] for base in BASES], dtype=np.float64)
    return motif_from_counts(
        counts, record.matrix_id, record.name, release, pseudocount, background
    )


def _open_jaspar(release: str):
    from pyjaspar import jaspar_releases, jaspardb

    if release not in jaspar_releases:
        known = ", ".join(sorted(jaspar_releases, reverse=True))
        raise InputError(f"unknown JASPAR release {release!r}; available releases: {known}")
    return jaspardb(release=release)


def _fetch_record(jaspar, matrix_id: str, release: str):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Biopython warns, then returns None, for unknown IDs
        record = jaspar.fetch_motif_by_id(matrix_id) if matrix_id else None
    if record is None:
        raise InputError(
            f"JASPAR matrix {matrix_id!r} is not in {release}; {_suggest_ids(jaspar, matrix_id)}"
        )
    return record


def _suggest_ids(jaspar, matrix_id: str) -> str:
    rows = jaspar.conn.execute("SELECT BASE_ID, VERSION, NAME FROM MATRIX").fetchall()
    names = {f"{base}.{version}": name for base, version, name in rows}
    close = difflib.get_close_matches(matrix_id.upper(), list(names), n=3, cutoff=0.6)
    by_name = [i for i, name in names.items() if name.upper() == matrix_id.upper()]
    candidates = sorted(set(by_name))[:5] + [c for c in close if c not in by_name]
    if not candidates:
        return "use a JASPAR matrix ID such as 'MA0108.2', or a base ID such as 'MA0108'"
    return "did you mean " + ", ".join(f"{c} ({names[c]})" for c in candidates) + "?"


def _normalise_background(background) -> tuple[float, float, float, float]:
    if isinstance(background, str):
        if background != "uniform":
            raise InputError(
                f"background {background!r} is not known; use 'uniform' or (pA, pC, pG, pT)"
            )
        return (0.25, 0.25, 0.25, 0.25)
    try:
        probs = np.asarray(background, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise InputError(f"background {background!r} must be 'uniform' or (pA, pC, pG, pT)") from None
    if probs.size != 4 or not np.all(np.isfinite(probs)) or np.any(probs <= 0):
        raise InputError(
            f"background {background!r} must be four positive frequencies (pA, pC, pG, pT)"
        )
    probs = probs / probs.sum()
    return tuple(float(p) for p in probs)


def genome_gc_background(sequence) -> tuple[float, float, float, float]:
    """Strand-symmetric base frequencies (pA, pC, pG, pT) of a sequence, ignoring non-ACGT.

    pC = pG = GC/2 and pA = pT = (1 - GC)/2, where GC is the G+C fraction of the ACGT bases:
    a genome is scanned on both strands, so its background is symmetric under complement.
    """
    codes = _as_codes(sequence)
    counts = np.bincount(codes[codes >= 0], minlength=4).astype(np.float64)
    total = counts.sum()
    if total == 0:
        raise InputError("sequence has no A, C, G or T bases; cannot estimate a background")
    gc = (counts[1] + counts[2]) / total
    at, cg = float((1 - gc) / 2), float(gc / 2)
    return (at, cg, cg, at)


# ---------------------------------------------------------------------------------------------
# Scanning
# ---------------------------------------------------------------------------------------------


def encode(sequence) -> np.ndarray:
    """Encode a sequence as (n,) int8: A=0, C=1, G=2, T=3 in either case, anything else -1.

    sequence: str, bytes, an (n,) uint8 array of ASCII codes (e.g. a memory-mapped chromosome),
    or anything whose str() is the sequence (e.g. a pyfaidx record).
    """
    if isinstance(sequence, np.ndarray) and sequence.dtype == np.uint8:
        return _ENCODE_TABLE[sequence.reshape(-1)]
    if isinstance(sequence, (bytes, bytearray, memoryview)):
        raw = bytes(sequence)
    else:
        raw = str(sequence).encode("ascii", errors="replace")
    return _ENCODE_TABLE[np.frombuffer(raw, dtype=np.uint8)]


def _as_codes(sequence) -> np.ndarray:
    """(n,) int8 codes: an int8 array is taken as codes from `encode`; anything else is encoded."""
    if isinstance(sequence, np.ndarray) and sequence.dtype == np.int8:
        if sequence.ndim != 1:
            raise InputError(f"encoded sequence must be 1-D, got shape {sequence.shape}")
        return sequence
    return encode(sequence)


def _reverse_complement_pssm(pssm: np.ndarray) -> np.ndarray:
    """(4, L) -> (4, L): rows A,C,G,T become T,G,C,A (complement) and columns run backwards."""
    return pssm[::-1, ::-1]


def _block_offsets(length: int, k: int) -> list[int]:
    """Start columns of k-wide blocks covering [0, length); the last block may overlap."""
    return sorted({min(start, length - k) for start in range(0, length, k)})


def _lookup_tables(pssm: np.ndarray, k: int) -> np.ndarray:
    """(4, L) -> (n_blocks, 4**k) float32 partial scores of every k-mer at every block.

    Each column is counted in exactly one block; the columns of an overlapping last block that
    an earlier block already counted contribute 0.
    """
    length = pssm.shape[1]
    shifts = 2 * np.arange(k - 1, -1, -1)
    digits = (np.arange(4**k)[:, None] >> shifts[None, :]) & 3  # (4**k, k), first base first
    counted = np.zeros(length, dtype=bool)
    tables = []
    for start in _block_offsets(length, k):
        table = np.zeros(4**k, dtype=np.float64)
        for i in range(k):
            if not counted[start + i]:
                table += pssm[digits[:, i], start + i]
                counted[start + i] = True
        tables.append(table)
    return np.array(tables, dtype=np.float32)


def _kmer_codes(bits: np.ndarray, k: int, count: int) -> np.ndarray:
    """(count + k - 1,) uint8 bases 0-3 -> (count,) uint16 codes of the k-mers starting at each."""
    codes = bits[:count].astype(np.uint16)
    for i in range(1, k):
        codes <<= 2
        codes |= bits[i : i + count]
    return codes


def _window_any(flags: np.ndarray, width: int) -> np.ndarray:
    """(n,) bool -> (n - width + 1,) bool: whether any of flags[i : i + width] is set."""
    counts = np.concatenate(([0], np.cumsum(flags, dtype=np.int64)))
    return counts[width:] > counts[:-width]


def _scan_chunk(codes: np.ndarray, strands: list[tuple[np.ndarray, np.ndarray]], offsets, k: int) -> None:
    """Score the windows of one chunk on every strand, NaN where a window touches a non-ACGT base.

    codes: (m + L - 1,) int8 codes of the chunk's bases; strands: [(tables, out (m,) float32)].
    The k-mer codes are computed once and looked up in each strand's tables.
    """
    n_windows = strands[0][1].size
    length = codes.size - n_windows + 1
    kmers = _kmer_codes(codes.view(np.uint8) & 3, k, n_windows + length - k)
    invalid = codes < 0
    missing = _window_any(invalid, length) if invalid.any() else None
    for tables, out in strands:
        np.take(tables[0], kmers[offsets[0] : offsets[0] + n_windows], out=out)
        for table, start in zip(tables[1:], offsets[1:]):
            out += np.take(table, kmers[start : start + n_windows])
        if missing is not None:
            out[missing] = np.nan


def scan_strands(sequence, motif: Motif) -> tuple[np.ndarray, np.ndarray]:
    """Log-odds score of every window on both strands.

    sequence: length n, anything `encode` takes, or (n,) int8 codes from `encode` (encode once to
        scan many motifs).
    Returns (forward, reverse), each (n - L + 1,) float32 (empty when n < L); windows touching a
    non-ACGT base are NaN. reverse[s] is the reverse-complement matrix on bases [s, s + L)
    (Biopython: ``pssm.reverse_complement().calculate(sequence)``).
    """
    codes = _as_codes(sequence)
    length = motif.length
    n_windows = max(codes.size - length + 1, 0)
    forward = np.empty(n_windows, dtype=np.float32)
    reverse = np.empty(n_windows, dtype=np.float32)
    if n_windows == 0:
        return forward, reverse
    k = min(_KMER, length)
    offsets = _block_offsets(length, k)
    forward_tables = _lookup_tables(motif.pssm, k)
    reverse_tables = _lookup_tables(_reverse_complement_pssm(motif.pssm), k)
    for start in range(0, n_windows, _CHUNK):
        stop = min(start + _CHUNK, n_windows)
        strands = [(forward_tables, forward[start:stop]), (reverse_tables, reverse[start:stop])]
        _scan_chunk(codes[start : stop + length - 1], strands, offsets, k)
    return forward, reverse


def scan(sequence, motif: Motif) -> np.ndarray:
    """(n - L + 1,) float32 best score of each window over both strands (NaN if missing)."""
    forward, reverse = scan_strands(sequence, motif)
    return np.fmax(forward, reverse)


# ---------------------------------------------------------------------------------------------
# Thresholds, support and hits
# ---------------------------------------------------------------------------------------------


def _score_distribution(motif: Motif, step: float = _SCORE_STEP) -> tuple[int, np.ndarray]:
    """Exact distribution of the window score under the motif's background, on a grid.

    Each column's scores are rounded to multiples of `step`; the distribution of their sum is
    built column by column (dynamic programming), as Biopython's ScoreDistribution does.
    Returns (first, probs): probs[i] = P(score ~= (first + i) * step). Mass at -inf is dropped.
    """
    background = np.array(motif.background)
    probs = np.ones(1)
    first = 0
    for column in motif.pssm.T:
        finite = np.isfinite(column)
        steps = np.rint(column[finite] / step).astype(np.int64)
        low = int(steps.min())
        new = np.zeros(probs.size + int(steps.max()) - low)
        for shift, p in zip(steps - low, background[finite]):
            new[shift : shift + probs.size] += p * probs
        probs, first = new, first + low
    return first, probs


def _score_tail(motif: Motif) -> tuple[int, np.ndarray]:
    """(first, tail): tail[i] = P(score >= (first + i) * step) on the grid; (n_grid + 1,), ends in 0."""
    first, probs = _score_distribution(motif)
    return first, np.concatenate((np.cumsum(probs[::-1])[::-1], [0.0]))


def score_pvalue(motif: Motif, score: float) -> float:
    """P(window score >= score) for one window on one strand, under the motif's background.

    Exact up to the score grid (step 1e-3 bits; scores are rounded per column, so within
    L * 5e-4 bits).
    """
    first, tail = _score_tail(motif)
    index = math.ceil(score / _SCORE_STEP - 1e-9) - first
    return float(tail[min(max(index, 0), tail.size - 1)])


def score_threshold(motif: Motif, fraction: float | None = None, pvalue: float | None = None) -> float:
    """Absolute score threshold from a fraction of the score range or from a p-value.

    fraction f in [0, 1]: min_score + f * (max_score - min_score).
    pvalue p in (0, 1]: the smallest grid score t with P(window score >= t) <= p for one window
    on one strand under the motif's background (see `score_pvalue`); above max_score when not
    even the best window is that rare. Taking the better of two strands (`scan`) about doubles
    the per-window false-positive rate.
    """
    if (fraction is None) == (pvalue is None):
        raise InputError("score_threshold: give exactly one of fraction= or pvalue=")
    if fraction is not None:
        if not 0 <= fraction <= 1:
            raise InputError(f"threshold fraction {fraction} must lie in [0, 1]")
        if not math.isfinite(motif.min_score):
            raise InputError(
                f"motif {motif.matrix_id} has an unbounded score range (pseudocount 0); use a "
                "p-value threshold or load it with a pseudocount > 0"
            )
        return motif.min_score + fraction * (motif.max_score - motif.min_score)
    if not 0 < pvalue <= 1:
        raise InputError(f"threshold p-value {pvalue} must lie in (0, 1]")
    first, tail = _score_tail(motif)
    index = int(np.argmax(tail <= pvalue * (1 + 1e-9)))
    return (first + index) * _SCORE_STEP


def _resolve_threshold(motif: Motif, fraction: float | None, pvalue: float | None) -> float:
    if fraction is None and pvalue is None:
        fraction = DEFAULT_THRESHOLD_FRACTION
    return score_threshold(motif, fraction=fraction, pvalue=pvalue)


def support_mask(
    sequence, motif: Motif, threshold_fraction: float | None = None, pvalue: float | None = None
) -> np.ndarray:
    """(n,) bool: bases covered by any window (either strand) scoring at or above the threshold.

    Threshold from `score_threshold` (default fraction 0.8 of the score range).
    """
    codes = _as_codes(sequence)
    threshold = _resolve_threshold(motif, threshold_fraction, pvalue)
    hits = scan(codes, motif) >= threshold
    if hits.size == 0:
        return np.zeros(codes.size, dtype=bool)
    pad = np.zeros(motif.length - 1, dtype=bool)
    # base p is covered by windows starting in [p - L + 1, p]
    return _window_any(np.concatenate((pad, hits, pad)), motif.length)


def best_hits(sequence, motif: Motif, top: int) -> list[tuple[int, str, float]]:
    """The `top` best non-overlapping windows over both strands, best first.

    Greedy: take the best remaining window (ties: lower start, then '+'), drop every window that
    overlaps it on either strand, repeat. Returns [(start, strand '+'/'-', score)]; fewer when
    the sequence has fewer non-overlapping scored windows.
    """
    if isinstance(top, bool) or not isinstance(top, (int, np.integer)) or top < 1:
        raise InputError(f"best_hits: top must be a positive integer, got {top!r}")
    forward, reverse = scan_strands(sequence, motif)
    scores = np.concatenate((forward, reverse))
    valid = np.flatnonzero(~np.isnan(scores))
    if valid.size == 0:
        return []
    # a hit blocks at most 2 * (2L - 1) windows, so the greedy never looks past this many
    pool = min(valid.size, int(top) * (4 * motif.length - 1))
    cutoff = np.partition(scores[valid], valid.size - pool)[valid.size - pool]
    candidates = valid[scores[valid] >= cutoff]
    starts = candidates % forward.size
    order = np.lexsort((candidates // forward.size, starts, -scores[candidates]))
    kept = candidates[order][non_overlapping(starts[order], motif.length, limit=int(top))]
    return [(int(i % forward.size), STRANDS[int(i // forward.size)], float(scores[i])) for i in kept]


def non_overlapping(starts, width: int, limit: int | None = None) -> np.ndarray:
    """Greedy choice of intervals ``[starts[i], starts[i] + width)`` that share no position.

    starts: (n,) int, best first. Each interval is kept unless it overlaps one kept before it;
    the choice stops after ``limit`` kept intervals. Returns (n_kept,) int64 indices into
    ``starts``, ascending (the order in which they were kept).
    """
    starts = np.asarray(starts, dtype=np.int64)
    if starts.size == 0:
        return np.zeros(0, dtype=np.int64)
    origin = int(starts.min())
    taken = np.zeros(int(starts.max()) - origin + width, dtype=bool)  # positions under kept intervals
    kept = []
    for i, start in enumerate((starts - origin).tolist()):
        if taken[start : start + width].any():
            continue
        taken[start : start + width] = True
        kept.append(i)
        if len(kept) == limit:
            break
    return np.array(kept, dtype=np.int64)


# ---------------------------------------------------------------------------------------------
# Per-token alignment
# ---------------------------------------------------------------------------------------------


def _as_offsets(offsets) -> np.ndarray:
    spans = np.asarray(offsets)
    if spans.size == 0:
        return np.zeros((0, 2), dtype=np.int64)
    if spans.ndim != 2 or spans.shape[1] != 2 or not np.issubdtype(spans.dtype, np.integer):
        raise InputError(
            f"token offsets must be an integer array of shape (T, 2), got {spans.dtype} {spans.shape}"
        )
    return spans.astype(np.int64)


def _range_max(values: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """max(values[lo[t] : hi[t]]) for every t (hi > lo), by a sparse table up to the longest range.

    values: (n,); lo, hi: (T,) -> (T,).
    """
    result = np.full(lo.size, -np.inf, dtype=values.dtype)
    if lo.size == 0:
        return result
    widths = hi - lo
    levels = np.floor(np.log2(widths)).astype(np.int64)
    table = values
    for level in range(int(levels.max()) + 1):
        if level:
            half = 1 << (level - 1)
            table = np.maximum(table[:-half], table[half:])  # max over 2**level values
        at = np.flatnonzero(levels == level)
        width = 1 << level
        result[at] = np.maximum(table[lo[at]], table[hi[at] - width])
    return result


def _count_in_ranges(flags: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Number of set flags in flags[lo[t] : hi[t]] for every t; (n,), (T,), (T,) -> (T,)."""
    counts = np.concatenate(([0], np.cumsum(flags, dtype=np.int64)))
    return counts[hi] - counts[lo]


def token_motif_scores(
    window_scores, offsets, motif_length: int, alignment: str = "overlap_max"
) -> np.ndarray:
    """Per-token motif score from per-window scores and token character spans.

    window_scores: (n - L + 1,) scores per window start (e.g. from `scan`), NaN = missing.
    offsets: (T, 2) int [start, end) character spans; (0, 0), empty spans and negative markers
        are special tokens and score NaN.
    alignment:
      - "overlap_max" (default): max over windows [s, s + L) that overlap the span [a, b), i.e.
        s in [a - L + 1, b - 1] clipped to valid starts; NaN if all of them are NaN.
      - "anchored": the window starting at the token's first base, s = a (NaN past the last
        window).
      - "centred": the window whose centre s + L//2 equals the token's centre a + (b - a)//2,
        s = a + (b - a)//2 - L//2; NaN where that window does not exist (a token too near either
        end of the sequence), as for "anchored": a neighbouring window is not centred on it.
    Returns (T,) float (the dtype of window_scores when floating, else float64).
    """
    if alignment not in ALIGNMENTS:
        close = difflib.get_close_matches(str(alignment), ALIGNMENTS, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise InputError(f"unknown motif alignment {alignment!r}; {hint}use one of {', '.join(ALIGNMENTS)}")
    scores = np.asarray(window_scores)
    if not np.issubdtype(scores.dtype, np.floating):
        scores = scores.astype(np.float64)
    spans = _as_offsets(offsets)
    length = int(motif_length)
    n_windows = scores.size
    result = np.full(spans.shape[0], np.nan, dtype=scores.dtype)
    start, end = spans[:, 0], spans[:, 1]
    real = (start >= 0) & (end > start)
    if n_windows == 0 or not real.any():
        return result
    n_bases = n_windows + length - 1
    if end[real].max() > n_bases:
        raise InputError(
            f"token offsets reach base {int(end[real].max())} but the scored sequence has "
            f"{n_bases} bases; pass the offsets of the same sequence"
        )
    start, end = start[real], end[real]
    if alignment == "overlap_max":
        result[real] = _overlap_max(scores, start, end, length)
        return result
    if alignment == "anchored":
        window = start
    else:
        window = start + (end - start) // 2 - length // 2
    inside = (window >= 0) & (window < n_windows)
    picked = np.full(window.size, np.nan, dtype=scores.dtype)
    picked[inside] = scores[window[inside]]
    result[real] = picked
    return result


def _overlap_max(scores: np.ndarray, start: np.ndarray, end: np.ndarray, length: int) -> np.ndarray:
    """Max over windows overlapping each span [start, end); (n - L + 1,), (T,), (T,) -> (T,)."""
    from scipy.ndimage import maximum_filter1d  # imported here: scipy.ndimage costs ~0.4 s to import

    n_windows = scores.size
    missing = np.isnan(scores)
    pad = np.full(length - 1, -np.inf, dtype=scores.dtype)
    padded = np.concatenate((pad, np.where(missing, -np.inf, scores), pad))  # (n + L - 1,)
    # cover[p] = max(padded[p : p + L]): the best window covering base p (starts p - L + 1 .. p)
    cover = maximum_filter1d(padded, size=length, mode="nearest", origin=-(length // 2))
    peak = _range_max(cover[: n_windows + length - 1], start, end)
    lo = np.maximum(start - length + 1, 0)
    hi = np.minimum(end, n_windows)
    peak[_count_in_ranges(~missing, lo, hi) == 0] = np.nan
    return peak


def motif_track(sequence, motif: Motif, offsets, alignment: str = "overlap_max") -> np.ndarray:
    """(T,) per-token motif score of a sequence: `scan` (both strands) + `token_motif_scores`."""
    return token_motif_scores(scan(sequence, motif), offsets, motif.length, alignment)
