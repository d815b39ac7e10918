"""Attention heads against motifs: motif tracks, the ideal
detector, pooled Pearson r with sequence-level resampling and permutation, and matched enrichment.

Key scores of every head come from `key_scores` (one cached pass).

Motif tracks (``motif_tracks``) are ``motifs.token_motif_scores`` of the both-strand window scores
under an alignment (overlap_max, anchored, centred). The ideal detector (``ideal_logits``) has, at
every key, the logit the alignment credits to the motif windows anchored in that key: under
``overlap_max`` the best window starting at any of the token's bases; under ``anchored`` the window
starting at its first base; under ``centred`` the window centred on it. Its key score
(``ideal_key_scores``) is what the claim's key score computes for a head whose logits those are
(softmax over the sequence's keys, attention proportional to ``exp(beta * score_in_bits)``).

Correlation (``PairedTracks``). r is the Pearson correlation of key score and motif track over the
tokens of all sequences pooled, optionally after centring both within each sequence. Everything
resamples sequences: per-sequence moment sums make a bootstrap resample one matrix product, and
permuting motif tracks between sequences needs only sums over the Gram matrices of the tracks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
from threadpoolctl import threadpool_limits

from seqclaims.core.evidence import Estimate
from seqclaims.errors import InputError
from seqclaims.inputs.models import require_part
from seqclaims.inputs.motifs import DEFAULT_RELEASE, load_motif, scan, support_mask, token_motif_scores
from seqclaims.methods.stats import (Selection, correct_pvalues, percentile_interval, permutation_pvalue,
                                     permute_between_units, resample_counts, select_and_score)

from seqclaims.methods.key_scores import KeyScore, Scale


# ---------------------------------------------------------------------------------------------
# Motif tracks and the ideal detector


def window_scores(sequences: Sequence[str], motif) -> list[np.ndarray]:
    """Both-strand score of every motif window of each sequence ((n_i - L + 1,) float32, NaN where a
    window touches a non-ACGT base), from one scan over the sequences joined by N."""

    lengths = np.array([len(s) for s in sequences], dtype=np.int64)
    starts = np.concatenate(([0], np.cumsum(lengths + 1)[:-1]))
    scores = scan("N".join(sequences), motif)
    scores = np.concatenate((scores, np.full(motif.length, np.nan, np.float32)))
    return [scores[s: s + max(n - motif.length + 1, 0)] for s, n in zip(starts, lengths)]


def support_bases(sequences: Sequence[str], motif, *, fraction: float | None = None,
                  pvalue: float | None = None) -> list[np.ndarray]:
    """(n_i,) bool per sequence: bases covered by a motif hit (`motifs.support_mask`, one joined scan)."""

    lengths = np.array([len(s) for s in sequences], dtype=np.int64)
    starts = np.concatenate(([0], np.cumsum(lengths + 1)[:-1]))
    covered = support_mask("N".join(sequences), motif, threshold_fraction=fraction, pvalue=pvalue)
    return [covered[s: s + n] for s, n in zip(starts, lengths)]


def per_token(per_sequence: Callable[[int], np.ndarray], n_seq: int, n_tok: int) -> np.ndarray:
    """(n_seq, n_tok) float64 from a function giving each sequence's (n_tok,) row."""
    out = np.full((n_seq, n_tok), np.nan)
    for i in range(n_seq):
        out[i] = per_sequence(i)
    return out


def motif_tracks(scores: list[np.ndarray], offsets: np.ndarray, motif_length: int, alignment: str) -> np.ndarray:
    """(n_seq, n_tok) per-token motif score (`motifs.token_motif_scores`); NaN at special tokens and padding."""

    n_seq, n_tok = offsets.shape[:2]
    return per_token(lambda i: token_motif_scores(scores[i], offsets[i], motif_length, alignment), n_seq, n_tok)


def ideal_logits(scores: list[np.ndarray], offsets: np.ndarray, motif_length: int, alignment: str) -> np.ndarray:
    """(n_seq, n_tok) logit (bits) of the ideal detector: the motif windows anchored in each key.

    overlap_max: the best window starting at any base of the token (for single nucleotides, the
    window starting at it); anchored: the window starting at the token's first base; centred: the
    window centred on the token. NaN where no such window exists and at special tokens."""

    if alignment != "overlap_max":
        return motif_tracks(scores, offsets, motif_length, alignment)
    n_seq, n_tok = offsets.shape[:2]

    def starting_within(i: int) -> np.ndarray:
        # per-start scores padded to the sequence length: a 1-base "motif" overlaps exactly its start
        padded = np.concatenate((scores[i], np.full(motif_length - 1, np.nan, np.float32)))
        return token_motif_scores(padded, offsets[i], 1, "overlap_max")

    return per_token(starting_within, n_seq, n_tok)


def ideal_key_scores(logits: np.ndarray, scale: Scale, key_score: KeyScore, beta: float = 1.0) -> np.ndarray:
    """(n_seq, n_tok) key score of a head whose attention logit at key j is beta * logits[:, j] (bits).

    Its logits do not depend on the query, so every query row is the same softmax over the keys with a
    logit (others get no attention); NaN where the logit is NaN."""
    z = beta * logits
    finite = np.isfinite(z)
    top = np.max(np.where(finite, z, -np.inf), axis=1, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    log_norm = top + np.log(np.sum(np.where(finite, np.exp(z - top), 0.0), axis=1, keepdims=True))
    log_p = z - log_norm
    if scale == "probability":
        return np.exp(log_p)
    if scale == "logit" and key_score == "qk_weights":
        return z
    return log_p


# ---------------------------------------------------------------------------------------------
# Pooled Pearson r, resampled by sequence


@dataclass(frozen=True)
class PairedTracks:
    """K key-score tracks and one motif track per sequence, as pooled over tokens for r.

    x: (K, n_seq, n_tok) and y: (n_seq, n_tok) float64, 0 outside `mask` (n_seq, n_tok) bool, the
    tokens pooled (both finite). Each x row is standardised over all pooled tokens (r is unchanged).
    """

    x: np.ndarray
    y: np.ndarray
    mask: np.ndarray

    @property
    def n_tokens(self) -> int:
        return int(self.mask.sum())

    def take(self, rows: np.ndarray) -> "PairedTracks":
        return PairedTracks(self.x[:, rows], self.y[rows], self.mask[rows])


def paired_tracks(key_scores: np.ndarray, motif: np.ndarray, *, centre: bool) -> PairedTracks:
    """Pool (K, n_seq, n_tok) key scores with (n_seq, n_tok) motif scores over tokens where all are finite.

    centre: subtract each sequence's mean over its pooled tokens from both (removes per-sequence
    offsets such as the softmax normaliser and the sequence's composition)."""
    mask = np.isfinite(motif) & np.all(np.isfinite(key_scores), axis=0)
    return PairedTracks(prepared_track(key_scores, mask, centre=centre),
                        prepared_track(motif[None], mask, centre=centre)[0], mask)


def prepared_track(values: np.ndarray, mask: np.ndarray, *, centre: bool) -> np.ndarray:
    """(K, n_seq, n_tok) values pooled over `mask` as `PairedTracks` holds them: 0 outside the mask,
    centred within each sequence when `centre`, standardised over all pooled tokens."""
    x = np.where(mask, values, 0.0)
    magnitude = _root_mean_square(x, mask)
    if centre:
        counts = np.maximum(mask.sum(axis=1), 1)
        x = np.where(mask, x - (x.sum(axis=2) / counts)[..., None], 0.0)
    return _standardised(x, mask, magnitude)


RESOLUTION = 1e-5  # relative spread below which float32 key scores are taken as constant


def _root_mean_square(x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(K,) root mean square of each row of (K, n_seq, n_tok) over the masked tokens."""
    return np.sqrt((x**2).sum(axis=(1, 2)) / max(int(mask.sum()), 1))


def _standardised(x: np.ndarray, mask: np.ndarray, magnitude: np.ndarray) -> np.ndarray:
    """Each row of (K, n_seq, n_tok) shifted and scaled by its mean and SD over the masked tokens.

    A row whose SD is below RESOLUTION times its magnitude before centring (rounding noise around a
    constant) becomes 0, so that its r is undefined rather than a correlation of rounding errors."""
    n = max(int(mask.sum()), 1)
    mean = x.sum(axis=(1, 2)) / n
    centred = np.where(mask, x - mean[:, None, None], 0.0)
    sd = np.sqrt((centred**2).sum(axis=(1, 2)) / n)
    constant = sd <= RESOLUTION * magnitude
    return np.where(constant[:, None, None], 0.0, centred / np.where(sd > 0, sd, 1.0)[:, None, None])


MOMENTS = ("n", "sx", "sy", "sxx", "syy", "sxy")


def sequence_moments(tracks: PairedTracks) -> np.ndarray:
    """(n_seq, K, 6) per-sequence sums n, sum x, sum y, sum x^2, sum y^2, sum xy over pooled tokens."""
    m = tracks.mask.astype(np.float64)
    x, y = tracks.x, tracks.y
    k = x.shape[0]
    shared = [np.broadcast_to(v, (k, m.shape[0])) for v in (m.sum(1), y.sum(1), (y * y).sum(1))]
    own = [x.sum(2), (x * x).sum(2), (x * y).sum(2)]
    return np.stack([shared[0], own[0], shared[1], own[1], shared[2], own[2]], axis=-1).transpose(1, 0, 2)


def pearson_from_sums(sums: np.ndarray) -> np.ndarray:
    """Pearson r from pooled sums (..., 6) in the order of MOMENTS; NaN where a variance is 0."""
    n, sx, sy, sxx, syy, sxy = np.moveaxis(sums, -1, 0)
    cov = n * sxy - sx * sy
    var_x, var_y = n * sxx - sx**2, n * syy - sy**2
    with np.errstate(invalid="ignore", divide="ignore"):
        r = cov / np.sqrt(var_x * var_y)
    degenerate = (var_x <= 1e-12 * np.maximum(n * sxx, 1e-300)) | (var_y <= 1e-12 * np.maximum(n * syy, 1e-300))
    return np.where(degenerate | (n < 3), np.nan, np.clip(r, -1.0, 1.0))


def weighted_sums(per_sequence: np.ndarray, counts: np.ndarray | None) -> np.ndarray:
    """Sums over sequences of (n_seq, ...) weighted by (B, n_seq) counts -> (B, ...); None: (1, ...)."""
    if counts is None:
        return per_sequence.sum(axis=0)[None]
    return np.tensordot(counts.astype(np.float64), per_sequence, axes=(1, 0))


def permuted_pearson(tracks: PairedTracks, perms: np.ndarray) -> np.ndarray:
    """(M, K) pooled r when sequence i is paired with the motif track of sequence perms[m, i].

    Sums under a pairing are sums of diagonals-after-permutation of Gram matrices between tracks, so
    each permutation costs n_seq look-ups per moment. When every sequence pools the same token
    positions, only the cross moment changes."""

    with threadpool_limits(limits=1, user_api="blas"):  # small products: threads only contend
        return _permuted_pearson(tracks, perms)


def _permuted_pearson(tracks: PairedTracks, perms: np.ndarray) -> np.ndarray:
    x, y = tracks.x, tracks.y
    m = tracks.mask.astype(np.float64)
    n_seq = y.shape[0]
    flat_index = np.arange(n_seq)[None, :] * n_seq + perms  # (M, n_seq) entries [i, perms[m, i]]
    k = x.shape[0]
    uniform = bool(np.all(tracks.mask == tracks.mask[:1]))

    def paired_sum(left: np.ndarray, right: np.ndarray) -> np.ndarray:
        return np.take((left @ right.T).ravel(), flat_index).sum(axis=1)  # (M,)

    if uniform:
        fixed = sequence_moments(tracks).sum(axis=0)  # (K, 6); every moment but sxy is permutation-invariant
        base = np.broadcast_to(fixed, (perms.shape[0], k, 6)).copy()
    else:
        base = np.empty((perms.shape[0], k, 6))
        base[:, :, 0] = paired_sum(m, m)[:, None]
        base[:, :, 2] = paired_sum(m, y)[:, None]
        base[:, :, 4] = paired_sum(m, y * y)[:, None]
    for head in range(k):
        if not uniform:
            base[:, head, 1] = paired_sum(x[head], m)
            base[:, head, 3] = paired_sum(x[head] ** 2, m)
        base[:, head, 5] = paired_sum(x[head], y)
    return pearson_from_sums(base)


def sequence_permutations(lengths: np.ndarray, n_permutations: int, seed: int) -> np.ndarray:
    """(M, n_seq) reassignments of motif tracks between sequences of equal length (in characters)."""

    lengths = np.asarray(lengths)
    return permute_between_units(list(lengths), n_permutations=n_permutations, seed=seed, strata=lengths)


# ---------------------------------------------------------------------------------------------
# Intervals and selections over sequences


def split_counts(n_units: int, n_resamples: int, seed: int) -> np.ndarray:
    """(B, n_units) bootstrap counts (`stats.resample_counts`)."""

    return resample_counts(n_units, n_resamples, seed)


def select_on_train_score_on_test(
    per_sequence: np.ndarray,
    finish: Callable[[np.ndarray], np.ndarray],
    train: np.ndarray,
    test: np.ndarray,
    *,
    n_resamples: int,
    seeds: tuple[int, int],
    level: float,
) -> Selection:
    """`stats.select_and_score` of a statistic finished from per-sequence sums: the candidate with the largest
    statistic on the (resampled) train sequences, scored on the (resampled) test sequences.

    per_sequence: (n_seq, K, m) per-sequence sums; finish: (..., K, m) summed -> (..., K) statistic;
    train, test: sequence indices; seeds: bootstrap seeds of the train and test resamples."""

    def on(rows: np.ndarray) -> Callable[[np.ndarray | None], np.ndarray]:
        sums = per_sequence[rows]
        return lambda counts: finish(weighted_sums(sums, counts))

    return select_and_score(on(train), on(test), len(train), len(test), seeds=seeds, n_resamples=n_resamples,
                            level=level)


def select_head(per_sequence: np.ndarray, finish: Callable[[np.ndarray], np.ndarray], train: np.ndarray,
                test: np.ndarray, claim, context, *, units: str = "sequences", statistic: str = "r") -> Selection | str:
    """`select_on_train_score_on_test` with the claim's resamples, level and seeds, or the reason (a missing
    estimate's) why no head can be selected."""
    if len(train) == 0 or len(test) == 0:
        return f"selection needs {units} in both the train and the test split"
    seeds = (context.seed_for("bootstrap-train"), context.seed_for("bootstrap-test"))
    chosen = select_on_train_score_on_test(per_sequence, finish, train, test, n_resamples=claim.resamples,
                                           seeds=seeds, level=claim.ci_level)
    return chosen if chosen.index >= 0 else f"no head has a defined {statistic} on the train split"


def selection_detail(heads: Sequence[tuple[int, int]], chosen: Selection, n_train: int, n_test: int,
                     by: str | None = None) -> dict:
    """Which head was selected, on what, and how often each head was selected across resamples."""
    return {"layer": heads[chosen.index][0], "head": heads[chosen.index][1],
            "selected_on": f"train ({n_train} sequences{f', by {by}' if by else ''})",
            "scored_on": f"test ({n_test} sequences)",
            "selection_frequency": {head_label(h): round(float(f), 4)
                                    for h, f in zip(heads, chosen.frequency) if f > 0}}


def selects_named(chosen: Selection, named: int | None, claim, n_train: int, min_n: int) -> Estimate:
    """Share of resamples whose selection is the named head, with its Wilson interval."""
    if named is None:
        return Estimate.missing("the claim names no head (params.layer, params.head)")
    share = float(chosen.frequency[named])
    low, high = wilson_interval(share, claim.resamples, claim.ci_level)
    return Estimate(share, low, high, n_train, min_n=min_n, detail={"resamples": claim.resamples})


class HeadCorrelation:
    """Pooled r of every tested head's key-score track with one track per sequence (a motif score, an
    annotation): point estimates with sequence-bootstrap intervals, one-sided permutation p-values
    (tracks swapped between sequences of equal length) corrected over the heads, and the train/test split
    a selection uses. tracks: PairedTracks of the K heads; lengths: (n_seq,) characters; split: (n_seq,).
    samples: (B, K) r of each bootstrap resample (the `Estimate.samples` of a key statistic)."""

    def __init__(self, claim, context, tracks: PairedTracks, lengths, split, heads, named):
        self.claim, self.context, self.tracks = claim, context, tracks
        self.lengths, self.heads, self.named = lengths, heads, named
        self.moments = sequence_moments(tracks)
        self.used = tracks.mask.any(axis=1)
        self.n_sequences = int(self.used.sum())
        self.train = np.flatnonzero(self.used & (split == "train"))
        self.test = np.flatnonzero(self.used & (split == "test"))
        self.correction = claim.correction or "holm"
        self.n_permutations = claim.params.permutations or max(999, 20 * len(heads))
        self.smallest_p = min(1.0, len(heads) / (self.n_permutations + 1))
        self.counts = split_counts(len(lengths), claim.resamples, context.seed_for("bootstrap"))
        self.r, self.low, self.high, self.samples = self.resampled(self.moments, self.counts)
        self.p_raw = self.pvalues(np.arange(len(lengths)), "permutation")
        self.p = correct_pvalues(self.p_raw, self.correction)

    def interval(self, moments, counts, finish=pearson_from_sums):
        """Point estimate and percentile interval, (K,) each, over the given bootstrap counts."""

        return self.resampled(moments, counts, finish)[:3]

    def resampled(self, moments, counts, finish=pearson_from_sums):
        """Point estimate, percentile interval ((K,) each) and the (B, K) resampled values behind the interval
        (resample b is the same sequences in every run that draws `counts` from the same seed)."""

        point = finish(weighted_sums(moments, None))[0]
        samples = finish(weighted_sums(moments, counts))
        low, high = percentile_interval(samples, self.claim.ci_level)
        return point, np.atleast_1d(low), np.atleast_1d(high), samples

    def null(self, rows, purpose: str) -> tuple[np.ndarray, np.ndarray]:
        """(K,) observed r on the sequences `rows` and (M, K) r with tracks permuted between them."""
        tracks = self.tracks.take(rows)
        observed = pearson_from_sums(sequence_moments(tracks).sum(axis=0))
        perms = sequence_permutations(self.lengths[rows], self.n_permutations, self.context.seed_for(purpose))
        return observed, permuted_pearson(tracks, perms)

    def pvalues(self, rows, purpose: str) -> np.ndarray:
        """(K,) one-sided permutation p-values of the heads on the sequences `rows`."""

        return np.atleast_1d(permutation_pvalue(*self.null(rows, purpose), "greater"))


def wilson_interval(share: float, n: int, level: float) -> tuple[float, float]:
    """Wilson score interval of a proportion observed as `share` of n draws."""
    from scipy.stats import norm

    if n <= 0:
        return float("nan"), float("nan")
    z = norm.ppf(0.5 + level / 2)
    centre = (share + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(share * (1 - share) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


# ---------------------------------------------------------------------------------------------
# Matched attention enrichment


@dataclass(frozen=True)
class MatchedTokens:
    """Motif-support tokens and their matched background, as per-token weights.

    support: (n_seq, n_tok) weight 1 on support tokens whose (sequence, composition class) cell has
    background, else 0; background: (n_seq, n_tok) weight n_support(cell) / n_background(cell) on the
    cell's background tokens, so that both sides weigh the cells alike; n_sites: (n_seq,) motif sites
    (runs of support tokens); n_unmatched: support tokens of cells without background."""

    support: np.ndarray
    background: np.ndarray
    n_sites: np.ndarray
    n_unmatched: int


def token_support(covered: list[np.ndarray], offsets: np.ndarray) -> np.ndarray:
    """(n_seq, n_tok) bool: tokens whose character span holds at least one covered base."""
    return distance_to_support(covered, offsets) == 0


def distance_to_support(covered: list[np.ndarray], offsets: np.ndarray) -> np.ndarray:
    """(n_seq, n_tok) distance in nt from each token's span to the nearest covered base (0 inside;
    inf where the sequence has none; NaN at special tokens and padding)."""
    out = np.full(offsets.shape[:2], np.nan)
    for i, bases in enumerate(covered):
        start, end = offsets[i, :, 0].astype(np.int64), offsets[i, :, 1].astype(np.int64)
        content = end > start
        bases = np.asarray(bases, dtype=bool)
        nearest = _distance_to_flag(bases)
        # the nearest covered base of a span lies inside it, or is nearest to one of its ends
        prefix = np.concatenate(([0], np.cumsum(bases, dtype=np.int64)))
        inside = prefix[end[content]] > prefix[start[content]]
        out[i, content] = np.where(inside, 0.0, np.minimum(nearest[start[content]], nearest[end[content] - 1]))
    return out


def _distance_to_flag(flags: np.ndarray) -> np.ndarray:
    """(n,) distance of each position to the nearest True position (inf if none)."""
    positions = np.arange(flags.size)
    if not flags.any():
        return np.full(flags.size, np.inf)
    last = np.maximum.accumulate(np.where(flags, positions, -(10**12)))
    following = np.minimum.accumulate(np.where(flags, positions, 10**12)[::-1])[::-1]
    return np.minimum(positions - last, following - positions).astype(np.float64)


def matched_tokens(support: np.ndarray, distance: np.ndarray, classes: np.ndarray, *, flank: int,
                   bins: int) -> MatchedTokens:
    """Weights of support tokens and of their matched background.

    Background: content tokens that are not support and lie within `flank` nt of a site (either side),
    in the same sequence and the same composition class as the support tokens they stand for."""
    content = classes >= 0
    background = content & ~support & (distance <= flank)
    support = support & content
    n_seq = support.shape[0]
    cell = np.arange(n_seq)[:, None] * bins + np.maximum(classes, 0)
    n_support = np.bincount(cell[support], minlength=n_seq * bins)
    n_background = np.bincount(cell[background], minlength=n_seq * bins)
    matched = (n_background > 0)[cell] & support
    w_background = np.where(background, n_support[cell] / np.maximum(n_background[cell], 1), 0.0)
    starts = support & ~np.concatenate((np.zeros((n_seq, 1), bool), support[:, :-1]), axis=1)
    return MatchedTokens(matched.astype(np.float64), w_background, starts.sum(axis=1),
                         int((support & ~matched).sum()))


def enrichment_sums(attention: np.ndarray, matched: MatchedTokens) -> np.ndarray:
    """(n_seq, K, 2) per-sequence attention to support tokens and to their matched background.

    attention: (K, n_seq, n_tok) attention each key receives (NaN at special tokens)."""
    values = np.nan_to_num(attention)
    to_support = np.einsum("kst,st->sk", values, matched.support)
    to_background = np.einsum("kst,st->sk", values, matched.background)
    return np.stack([to_support, to_background], axis=-1)


def ratio_from_sums(sums: np.ndarray) -> np.ndarray:
    """rho from summed (..., 2) attention to support and matched background; NaN when the latter is 0."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(sums[..., 1] > 0, sums[..., 0] / sums[..., 1], np.nan)


# ---------------------------------------------------------------------------------------------
# What both attention families read from a claim


def claim_motif(claim, dataset):
    """The JASPAR matrix of `params.matrix` (else the dataset's own matrix), with `params.release` and
    `params.pseudocount`; InputError when neither names one."""

    params = claim.params
    recorded = (dataset.card.get("motif") or {}) if dataset is not None else {}
    matrix = params.matrix or recorded.get("matrix")
    if not matrix:
        raise InputError(f"{claim.path}: params.matrix: name the JASPAR matrix to score (e.g. MA0108.3); "
                         f"dataset {dataset.name if dataset is not None else ''} has none")
    release = params.release or recorded.get("release") or DEFAULT_RELEASE
    return load_motif(matrix, release=release, pseudocount=params.pseudocount)


def candidate_heads(claim, n_layers: int, n_heads: int) -> list[tuple[int, int]]:
    """(layer, head) of every head of `params.layers` (default every layer), layer-major."""
    layers = claim.params.layers if claim.params.layers is not None else list(range(n_layers))
    bad = [layer for layer in layers if not 0 <= layer < n_layers]
    if bad or not layers:
        raise InputError(f"{claim.path}: params.layers: {bad or 'an empty list'} is not a list of layers of "
                         f"a {n_layers}-layer model; use layers 0..{n_layers - 1} or leave `layers` out")
    return [(layer, head) for layer in sorted(set(layers)) for head in range(n_heads)]


def named_head(claim, heads: list[tuple[int, int]], n_heads: int) -> int | None:
    """Index in `heads` of the head named by params.layer / params.head (None when no head is named)."""
    params = claim.params
    if params.layer is None and params.head is None:
        return None
    if params.layer is None or params.head is None:
        raise InputError(f"{claim.path}: params: name a head with both `layer` and `head`")
    if (params.layer, params.head) not in heads:
        raise InputError(f"{claim.path}: params: layer {params.layer} head {params.head} is not among the heads "
                         f"tested ({len(heads)} heads, {n_heads} per layer); fix `layer`/`head` or `layers`")
    return heads.index((params.layer, params.head))


def head_grid(values: Sequence[float], heads: Sequence[tuple[int, int]], model) -> np.ndarray:
    """(n_layers, n_heads) grid of one value per tested head; NaN for heads not tested."""
    grid = np.full((model.n_layers, model.n_heads), np.nan)
    for value, (layer, head) in zip(values, heads):
        grid[layer, head] = value
    return grid


def claim_heads(claim, model) -> tuple[list[tuple[int, int]], int | None]:
    """The heads a claim tests (`candidate_heads`) and the index among them of the one it names (or None)."""

    require_part(model, "attn", f"{claim.path}: family {claim.check}")
    heads = candidate_heads(claim, model.n_layers, model.n_heads)
    return heads, named_head(claim, heads, model.n_heads)


def require_named_head(claim, statistics: Sequence[str]) -> None:
    """InputError when a criterion uses a named-head statistic but the claim names no head."""
    used = sorted({c.statistic for c in claim.criteria} & set(statistics))
    if used and (claim.params.layer is None or claim.params.head is None):
        raise InputError(f"{claim.path}: params: statistic {used[0]!r} is about a named head; set `layer` and "
                         "`head`, or use the max_ statistics")


def head_label(head: tuple[int, int]) -> str:
    return f"L{head[0]}H{head[1]}"


def surrogate_offsets(sequences: Sequence[str], kind: str, *, k: int = 1, min_length: int = 1,
                      max_length: int = 8, rng: np.random.Generator | None = None) -> np.ndarray:
    """(n_seq, n_tok, 2) character spans of a tokenization made without a tokenizer; (0, 0) pads.

    single: one base per token; kmer_overlapping: [i, i + k) for every start i; kmer_nonoverlapping:
    consecutive k-mers, a shorter last token; random_lengths: consecutive tokens of uniformly random
    length in [min_length, max_length] (BPE-like; `rng` required)."""
    rows = []
    for sequence in sequences:
        n = len(sequence)
        if kind == "single":
            starts, ends = np.arange(n), np.arange(n) + 1
        elif kind == "kmer_overlapping":
            starts = np.arange(max(n - k + 1, 0))
            ends = starts + k
        elif kind == "kmer_nonoverlapping":
            starts = np.arange(0, n, k)
            ends = np.minimum(starts + k, n)
        elif kind == "random_lengths":
            lengths = rng.integers(min_length, max_length + 1, size=n)
            ends = np.cumsum(lengths)
            ends = np.append(ends[ends < n], n)
            starts = np.concatenate(([0], ends[:-1]))
        else:
            raise InputError(f"unknown surrogate tokenization {kind!r}; use single, kmer_overlapping, "
                             "kmer_nonoverlapping or random_lengths")
        rows.append(np.stack([starts, ends], axis=1))
    width = max((len(r) for r in rows), default=0)
    out = np.zeros((len(rows), width, 2), dtype=np.int64)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return out
