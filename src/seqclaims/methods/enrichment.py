"""Attention enrichment per motif site, on a log scale, with a composition-matched non-site control.

The ratio of summed attentions (`attention.ratio_from_sums`, the family's rho) is dominated by the sites
and sequences with the most attention, and explodes when a sharp head leaves its background with almost
none. Here every site counts once, on a log scale, with a stated floor:

- reference attention of a token (``background_reference``): the mean attention received by the
  matched background tokens of its (sequence, composition class) cell (`attention.matched_tokens`: the
  same matching by distance from a site and by composition as rho); NaN where the cell has none.
- log ratio of a window of tokens (``WindowTotals.log_ratios``): log(max(m_a, f) / max(m_r, f)), with m_a
  the mean attention received by the window's usable tokens (tokens with a reference), m_r the mean of
  their reference attentions and f = floor_fraction / (content tokens of the sequence), i.e. a stated
  fraction of the attention every key would receive under uniform attention. Natural log.
- sites (``site_runs``): runs of consecutive support tokens; a site's log ratio is that of its tokens.
- composition-matched non-sites (``composition_matches``): windows of the same number of consecutive
  tokens in the same sequence, holding no support token (so every motif window inside them scores below the
  support threshold) and at least one usable token, whose base and dinucleotide composition lies within a
  tolerance of the site's (``composition_distance``) and whose motif score (the best both-strand score of
  the motif windows starting in its tokens) is at most a stated quantile of the motif scores of those
  composition-matched windows (the less motif-like arrangements of the site's composition); of these the
  nearest in composition first (ties: nearest in position), non-overlapping, up to a number per site.

Per-sequence sums (sum of per-site values, number of sites) make the mean over sites a ratio of sums, so
bootstrap resamples of sequences and the selection of a head on the train split are matrix products
(`attention.weighted_sums`, `attention.select_head`), as for rho.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from seqclaims.methods import composition as comp
from seqclaims.methods.attention import MatchedTokens, ratio_from_sums

DINUCLEOTIDES = 16


# ---------------------------------------------------------------------------------------------
# Sites and shuffled-matrix similarity


@dataclass(frozen=True)
class Sites:
    """Motif sites as runs of consecutive support tokens: (m,) sequence, first token and token count."""

    sequence: np.ndarray
    start: np.ndarray
    length: np.ndarray

    def __len__(self) -> int:
        return int(self.sequence.size)


def site_runs(support: np.ndarray) -> Sites:
    """The runs of True in each row of (n_seq, n_tok) bool `support`."""
    padded = np.pad(support.astype(np.int8), ((0, 0), (1, 1)))
    steps = np.diff(padded, axis=1)
    seq_start, tok_start = np.nonzero(steps == 1)
    _, tok_end = np.nonzero(steps == -1)  # row-major order pairs each run's start with its end
    return Sites(seq_start.astype(np.int64), tok_start.astype(np.int64), (tok_end - tok_start).astype(np.int64))


def matrix_similarity(motif, others: Sequence) -> np.ndarray:
    """(S,) Pearson correlation of the motif's flattened 4 x L log-odds matrix with each other matrix's
    (the shuffled control's column permutations: near 1 when permuting columns changes little, as for a
    low-complexity matrix, so that the shuffled sites are nearly the motif's own)."""
    reference = np.asarray(motif.pssm, dtype=np.float64).ravel()
    return np.array([np.corrcoef(reference, np.asarray(m.pssm, dtype=np.float64).ravel())[0, 1] for m in others])


# ---------------------------------------------------------------------------------------------
# Reference attention and log ratios of windows


def background_reference(attention: np.ndarray, matched: MatchedTokens, classes: np.ndarray, bins: int) -> np.ndarray:
    """(K, n_seq, n_tok) mean attention received by the matched background of each token's (sequence,
    composition class) cell; NaN where the token has no class or its cell no background.

    attention: (K, n_seq, n_tok) attention each key receives (NaN at special tokens)."""
    n_seq = classes.shape[0]
    cell = np.arange(n_seq)[:, None] * bins + np.maximum(classes, 0)
    background = matched.background > 0
    counts = np.bincount(cell[background], minlength=n_seq * bins)
    has = (counts[cell] > 0) & (classes >= 0)
    out = np.full(attention.shape, np.nan)
    for k, values in enumerate(attention):
        totals = np.bincount(cell[background], weights=np.nan_to_num(values[background]), minlength=n_seq * bins)
        out[k] = np.where(has, totals[cell] / np.maximum(counts[cell], 1), np.nan)
    return out


@dataclass(frozen=True)
class LogRatios:
    """Per-window log ratios: values (K, m), NaN where the window has no usable token; floored (K, m) bool:
    the window's attention mean or reference mean was raised to the floor."""

    values: np.ndarray
    floored: np.ndarray


class WindowTotals:
    """Prefix sums over tokens of attention and reference attention at the usable tokens (both finite), so
    that any window's means cost two look-ups.

    attention, reference: (K, n_seq, n_tok); floor_fraction: the floor as a fraction of uniform attention."""

    def __init__(self, attention: np.ndarray, reference: np.ndarray, content: np.ndarray, floor_fraction: float):
        usable = np.isfinite(reference).all(axis=0) & np.isfinite(attention).all(axis=0)
        self.usable = usable
        pad = ((0, 0), (0, 0), (1, 0))
        self.attention = np.pad(np.cumsum(np.where(usable, attention, 0.0), axis=2), pad)
        self.reference = np.pad(np.cumsum(np.where(usable, reference, 0.0), axis=2), pad)
        self.count = np.pad(np.cumsum(usable, axis=1), ((0, 0), (1, 0)))
        self.floor = floor_fraction / np.maximum(content.sum(axis=1), 1)

    def usable_tokens(self, sequence: np.ndarray, start: np.ndarray, length: np.ndarray) -> np.ndarray:
        """(m,) usable tokens in each window [start, start + length) of its sequence."""
        return self.count[sequence, start + length] - self.count[sequence, start]

    def log_ratios(self, sequence: np.ndarray, start: np.ndarray, length: np.ndarray) -> LogRatios:
        """log(max(mean attention, floor) / max(mean reference, floor)) of each window, every head."""
        n = self.usable_tokens(sequence, start, length)
        end = start + length
        with np.errstate(invalid="ignore", divide="ignore"):
            mean_attention = (self.attention[:, sequence, end] - self.attention[:, sequence, start]) / n
            mean_reference = (self.reference[:, sequence, end] - self.reference[:, sequence, start]) / n
        floor = self.floor[sequence]
        floored = (mean_attention < floor) | (mean_reference < floor)
        values = np.log(np.maximum(mean_attention, floor)) - np.log(np.maximum(mean_reference, floor))
        return LogRatios(np.where(n > 0, values, np.nan), floored & (n > 0))


def per_sequence_sums(values: np.ndarray, sequence: np.ndarray, n_seq: int) -> np.ndarray:
    """(n_seq, K, 2) sum over each sequence's windows of their defined (K, m) values, and their number."""
    defined = np.isfinite(values)
    out = np.zeros((n_seq, values.shape[0], 2))
    for k, (row, ok) in enumerate(zip(values, defined)):
        out[:, k, 0] = np.bincount(sequence[ok], weights=row[ok], minlength=n_seq)
        out[:, k, 1] = np.bincount(sequence[ok], minlength=n_seq)
    return out


def mean_from_sums(sums: np.ndarray) -> np.ndarray:
    """Mean over sites from summed (..., 2) (total, number of sites); NaN without sites."""
    return ratio_from_sums(sums)


# ---------------------------------------------------------------------------------------------
# Composition-matched non-sites


@dataclass(frozen=True)
class CompositionMatches:
    """Non-site windows matched to sites: (p,) site index, first token and token count of each matched
    window (their sequence and length are the site's), its composition distance; sites without a match
    have none."""

    site: np.ndarray
    start: np.ndarray
    length: np.ndarray
    distance: np.ndarray

    def sites_matched(self, n_sites: int) -> np.ndarray:
        """(n_sites,) number of non-sites matched to each site."""
        return np.bincount(self.site, minlength=n_sites)


def composition_vectors(sequence: str, spans: np.ndarray) -> np.ndarray:
    """(m, 20) base fractions A, C, G, T and the 16 dinucleotide fractions of each [start, end) span of
    `sequence` (`composition.composition_features`); NaN rows where a span holds no ACGT base."""
    features = comp.composition_features([sequence], spans[None], "dinucleotides")[:, 0].T  # (m, 19)
    bases = np.concatenate([features[:, :3], 1.0 - features[:, :3].sum(axis=1, keepdims=True)], axis=1)
    return np.concatenate([bases, features[:, 3:]], axis=1)


def composition_distance(site: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """(m,) the larger of the total variation distances between base compositions and between dinucleotide
    compositions (half the sum of absolute differences of the fractions; 0: the same composition, 1:
    nothing in common); NaN where a candidate has no composition."""
    bases = 0.5 * np.abs(candidates[:, :4] - site[:4]).sum(axis=1)
    pairs = 0.5 * np.abs(candidates[:, 4:] - site[4:]).sum(axis=1)
    return np.maximum(bases, pairs)


def composition_matches(sequences: Sequence[str], offsets: np.ndarray, sites: Sites, blocked: np.ndarray,
                        usable: np.ndarray, start_scores: np.ndarray, *, tolerance: float, quantile: float,
                        neighbours: int) -> CompositionMatches:
    """For every site, up to `neighbours` non-overlapping windows of its token count in its sequence (`nearest_windows`)
    among those with no `blocked` token (support, special) and at least one `usable` token whose composition
    distance to the site is at most `tolerance` and whose motif score (`window_motif_scores` of `start_scores`)
    is at most the `quantile` of those windows' motif scores: the less motif-like of the windows of the site's
    composition."""
    rows: list[tuple[int, int, int, float]] = []
    for s in np.unique(sites.sequence):
        in_sequence = np.flatnonzero(sites.sequence == s)
        blocked_prefix = np.concatenate(([0], np.cumsum(blocked[s])))
        usable_prefix = np.concatenate(([0], np.cumsum(usable[s])))
        for length in np.unique(sites.length[in_sequence]):
            starts = np.arange(blocked[s].size - length + 1)
            free = (blocked_prefix[starts + length] == blocked_prefix[starts]) & \
                   (usable_prefix[starts + length] > usable_prefix[starts])
            starts = starts[free]
            if not starts.size:
                continue
            candidates = composition_vectors(sequences[s], token_spans(offsets[s], starts, length))
            scores = window_motif_scores(start_scores[s], length)[starts]
            for i in in_sequence[sites.length[in_sequence] == length]:
                own = composition_vectors(sequences[s], token_spans(offsets[s], sites.start[i:i + 1], length))[0]
                distance = composition_distance(own, candidates)
                low = low_scoring(scores, distance <= tolerance + 1e-12, quantile)
                rows += [(int(i), int(t), int(length), float(d)) for t, d in
                         nearest_windows(starts[low], distance[low], int(sites.start[i]), length, neighbours)]
    if not rows:
        empty = np.zeros(0, dtype=np.int64)
        return CompositionMatches(empty, empty, empty, np.zeros(0))
    site, start, length, distance = (np.array(column) for column in zip(*rows))
    return CompositionMatches(site.astype(np.int64), start.astype(np.int64), length.astype(np.int64),
                              distance.astype(np.float64))


def window_motif_scores(start_scores: np.ndarray, length: int) -> np.ndarray:
    """(n_tok - length + 1,) motif score of each window of `length` tokens: the best both-strand score of the
    motif windows starting in its tokens (`start_scores`: per token, `attention.ideal_logits` under
    overlap_max); NaN where none has a score."""
    if start_scores.size < length:
        return np.zeros(0)
    windows = np.lib.stride_tricks.sliding_window_view(np.where(np.isfinite(start_scores), start_scores, -np.inf),
                                                       length)
    best = windows.max(axis=1)
    return np.where(np.isfinite(best), best, np.nan)


def low_scoring(scores: np.ndarray, matched: np.ndarray, quantile: float) -> np.ndarray:
    """(m,) bool: composition-matched windows whose motif score is at most the `quantile` of their scores."""
    ok = matched & np.isfinite(scores)
    if not ok.any():
        return ok
    return ok & (scores <= np.quantile(scores[ok], quantile))


def token_spans(offsets: np.ndarray, starts: np.ndarray, length: int) -> np.ndarray:
    """(m, 2) character span [first token's start, last token's end) of each window of `length` tokens."""
    return np.stack([offsets[starts, 0], offsets[starts + length - 1, 1]], axis=1).astype(np.int64)


def nearest_windows(starts: np.ndarray, distance: np.ndarray, site_start: int, length: int,
                    neighbours: int) -> list[tuple[int, float]]:
    """(start, distance) of up to `neighbours` non-overlapping windows, nearest in composition first and, among
    equals, nearest to the site."""
    order = np.lexsort((np.abs(starts - site_start), distance))
    chosen: list[tuple[int, float]] = []
    for t, d in zip(starts[order], distance[order]):
        if all(abs(int(t) - c) >= length for c, _ in chosen):
            chosen.append((int(t), float(d)))
            if len(chosen) == neighbours:
                break
    return chosen


# ---------------------------------------------------------------------------------------------
# The two per-site statistics


@dataclass(frozen=True)
class SiteEnrichment:
    """Per-sequence sums of the per-site log ratios and of the composition-controlled differences.

    log_sums: (n_seq, K, 2) sum over a sequence's sites of their log ratio, and the number of sites with a
    usable token; composition_sums: (n_seq, K, 2) sum over its sites with a usable matched non-site of
    (site log ratio minus the mean log ratio of its matched non-sites), and their number; floored_sites,
    floored_nonsites: (K,) sites and non-sites whose attention or reference mean hit the floor;
    n_matched_sites: sites with at least one usable non-site; mean_distance: mean composition distance of
    the matched non-sites; n_nonsites: matched non-sites."""

    log_sums: np.ndarray
    composition_sums: np.ndarray
    floored_sites: np.ndarray
    floored_nonsites: np.ndarray
    n_matched_sites: int
    n_nonsites: int
    mean_distance: float


def site_enrichment(totals: WindowTotals, sites: Sites, matches: CompositionMatches, n_seq: int) -> SiteEnrichment:
    """Per-site log ratios and their composition-controlled differences (see the module docstring)."""
    site = totals.log_ratios(sites.sequence, sites.start, sites.length)
    nonsite = totals.log_ratios(sites.sequence[matches.site], matches.start, matches.length)
    n_sites = len(sites)
    k = site.values.shape[0]
    nonsite_mean = np.full((k, n_sites), np.nan)
    if matches.site.size:
        for h in range(k):
            ok = np.isfinite(nonsite.values[h])
            total = np.bincount(matches.site[ok], weights=nonsite.values[h][ok], minlength=n_sites)
            number = np.bincount(matches.site[ok], minlength=n_sites)
            with np.errstate(invalid="ignore", divide="ignore"):
                nonsite_mean[h] = np.where(number > 0, total / number, np.nan)
    difference = site.values - nonsite_mean
    return SiteEnrichment(
        log_sums=per_sequence_sums(site.values, sites.sequence, n_seq),
        composition_sums=per_sequence_sums(difference, sites.sequence, n_seq),
        floored_sites=site.floored.sum(axis=1), floored_nonsites=nonsite.floored.sum(axis=1),
        n_matched_sites=int(np.isfinite(difference).all(axis=0).sum()) if n_sites else 0,
        n_nonsites=int(matches.site.size),
        mean_distance=float(matches.distance.mean()) if matches.distance.size else float("nan"))
