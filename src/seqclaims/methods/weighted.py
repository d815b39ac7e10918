"""Statistics of items under resampling weights: AUROC, AUPRC and Pearson r.

Each takes ``weights``: ``(B, n)`` per-item counts of B bootstrap resamples (a unit's count repeated over
its items, `stats.expand_to_items`), or None for every item once, and returns ``(B,)`` (length 1 for None).
One sort of the scores serves every resample, so a 1,000-resample interval costs about one pass
(`benchmarks/bench_bootstrap_auroc.py`). A value undefined on a resample (one class absent, a constant
track) is NaN.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

__all__ = ["auprc_weighted", "auroc_weighted", "pearson_weighted"]

# Upper bound on the float64 working arrays one chunk of resamples may allocate.
_CHUNK_BYTES = 200 * 2**20


def auroc_weighted(
    scores: np.ndarray, labels: np.ndarray, weights: np.ndarray | None = None
) -> np.ndarray:
    """Weighted area under the ROC curve, ties counted one half (Mann-Whitney).

    ``scores``: ``(N,)``; ``labels``: ``(N,)`` bool; ``weights``: ``(B, N)`` non-negative or
    None -> ``(B,)`` (``(1,)`` for None). NaN where a resample has no positive or no
    negative weight. Equals ``sklearn.metrics.roc_auc_score(labels, scores, sample_weight=w)``.
    """
    ranks = _ClassRanks.of(scores, labels)

    def per_chunk(w: np.ndarray) -> np.ndarray:
        c = ranks.cumulative(w)
        # Each positive beats the negatives below it and ties with those at its score.
        wins = np.einsum("bi,bi->b", c.pos_weight, c.neg_below + c.neg_at_or_below)
        return _ratio(0.5 * wins, c.pos_total * c.neg_total, c)

    return _map_chunks(per_chunk, _as_weights(weights, ranks.n), bytes_per_row=ranks.bytes_per_row)


def auprc_weighted(
    scores: np.ndarray, labels: np.ndarray, weights: np.ndarray | None = None
) -> np.ndarray:
    """Weighted average precision, as ``sklearn.metrics.average_precision_score`` defines it.

    AP = sum over thresholds (descending; tied scores form one threshold) of the recall
    step times the precision at that threshold; equivalently the weighted mean, over
    positives, of the precision at the positive's own score.
    ``scores``: ``(N,)``; ``labels``: ``(N,)`` bool; ``weights``: ``(B, N)`` or None -> ``(B,)``.
    NaN where a resample has no positive or no negative weight.
    """
    ranks = _ClassRanks.of(scores, labels)

    def per_chunk(w: np.ndarray) -> np.ndarray:
        c = ranks.cumulative(w)
        true_pos = c.pos_total[:, None] - c.pos_below  # positives scoring >= this positive
        false_pos = c.neg_total[:, None] - c.neg_below
        precision = true_pos / np.maximum(true_pos + false_pos, np.finfo(np.float64).tiny)
        return _ratio(np.einsum("bi,bi->b", c.pos_weight, precision), c.pos_total, c)

    return _map_chunks(per_chunk, _as_weights(weights, ranks.n), bytes_per_row=ranks.bytes_per_row)


@dataclass(frozen=True)
class _Cumulative:
    """Per-positive cumulative class weights for a chunk of b resamples (each ``(b, n_pos)``)."""

    pos_weight: np.ndarray
    pos_below: np.ndarray  # positive weight with a strictly lower score
    neg_below: np.ndarray  # negative weight with a strictly lower score
    neg_at_or_below: np.ndarray
    pos_total: np.ndarray  # (b,)
    neg_total: np.ndarray  # (b,)


@dataclass(frozen=True)
class _ClassRanks:
    """Where each positive falls among the sorted positives and negatives (ties resolved).

    Sorting happens once; every chunk of resamples then needs only gathers and cumsums.
    """

    n: int
    pos_sorted: np.ndarray  # item indices of positives, ascending score
    neg_sorted: np.ndarray
    pos_lo: np.ndarray  # per sorted positive: number of positives with a lower score
    neg_lo: np.ndarray  # ... negatives with a lower score
    neg_hi: np.ndarray  # ... negatives with a lower or equal score

    @classmethod
    def of(cls, scores: np.ndarray, labels: np.ndarray) -> _ClassRanks:
        scores = np.asarray(scores, dtype=np.float64)
        labels = np.asarray(labels, dtype=bool)
        if scores.ndim != 1 or labels.shape != scores.shape:
            raise ValueError(f"scores and labels must both be (N,), got {scores.shape} and {labels.shape}")
        if np.isnan(scores).any():
            raise ValueError("scores contain NaN; drop or impute those items before ranking")
        order = np.argsort(scores, kind="stable")
        pos_sorted, neg_sorted = order[labels[order]], order[~labels[order]]
        pos_scores, neg_scores = scores[pos_sorted], scores[neg_sorted]
        return cls(
            n=scores.shape[0],
            pos_sorted=pos_sorted,
            neg_sorted=neg_sorted,
            pos_lo=np.searchsorted(pos_scores, pos_scores, side="left"),
            neg_lo=np.searchsorted(neg_scores, pos_scores, side="left"),
            neg_hi=np.searchsorted(neg_scores, pos_scores, side="right"),
        )

    @property
    def bytes_per_row(self) -> int:
        return 8 * (self.n + 6 * self.pos_sorted.size)

    def cumulative(self, weights: np.ndarray) -> _Cumulative:
        """Cumulative class weights at each positive for ``(b, N)`` weights."""
        pos_weight = weights[:, self.pos_sorted].astype(np.float64)
        pos_cum = _cumsum_from_zero(pos_weight)
        neg_cum = _cumsum_from_zero(weights[:, self.neg_sorted].astype(np.float64))
        return _Cumulative(
            pos_weight=pos_weight,
            pos_below=pos_cum[:, self.pos_lo],
            neg_below=neg_cum[:, self.neg_lo],
            neg_at_or_below=neg_cum[:, self.neg_hi],
            pos_total=pos_cum[:, -1],
            neg_total=neg_cum[:, -1],
        )


def _cumsum_from_zero(a: np.ndarray) -> np.ndarray:
    """``(b, n) -> (b, n + 1)`` running sums along axis 1, starting at 0."""
    out = np.zeros((a.shape[0], a.shape[1] + 1), dtype=a.dtype)
    np.cumsum(a, axis=1, out=out[:, 1:])
    return out


def _ratio(numerator: np.ndarray, denominator: np.ndarray, c: _Cumulative) -> np.ndarray:
    """``numerator / denominator``, NaN where a resample lacks positive or negative weight."""
    defined = (c.pos_total > 0) & (c.neg_total > 0)
    return np.divide(numerator, denominator, out=np.full(numerator.shape, np.nan), where=defined)


def pearson_weighted(
    x: np.ndarray, y: np.ndarray, weights: np.ndarray | None = None
) -> np.ndarray:
    """Weighted Pearson r of each candidate row of ``x`` with ``y``.

    ``x``: ``(K, N)`` (or ``(N,)``); ``y``: ``(N,)``; ``weights``: ``(B, N)`` or None ->
    ``(B, K)`` (``(B,)`` for 1-D ``x``). Weighted moments come from matrix products; NaN
    where either variable has (numerically) zero weighted variance or the weights sum to 0.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    one_candidate = x.ndim == 1
    x = np.atleast_2d(x)
    if x.ndim != 2 or y.shape != (x.shape[1],):
        raise ValueError(f"x must be (K, N) or (N,) and y (N,), got {x.shape} and {y.shape}")
    weights = _as_weights(weights, y.shape[0])
    # Standardising first keeps the one-pass moment formulas well conditioned.
    x = _standardise_rows(x)
    y = _standardise_rows(y[None, :])[0]
    x_sq_t = (x * x).T
    x_t = x.T

    def per_chunk(w: np.ndarray) -> np.ndarray:
        w = w.astype(np.float64, copy=False)
        total = w.sum(axis=1)[:, None]
        wy = w * y
        sum_x, sum_xx, sum_xy = w @ x_t, w @ x_sq_t, wy @ x_t
        sum_y, sum_yy = wy.sum(axis=1)[:, None], (wy * y).sum(axis=1)[:, None]
        cov = total * sum_xy - sum_x * sum_y
        var_x = total * sum_xx - sum_x**2
        var_y = total * sum_yy - sum_y**2
        degenerate = (var_x <= 1e-12 * total * sum_xx) | (var_y <= 1e-12 * total * sum_yy)
        with np.errstate(invalid="ignore", divide="ignore"):
            r = np.clip(cov / np.sqrt(var_x * var_y), -1.0, 1.0)
        r[degenerate | (total <= 0)] = np.nan
        return r

    bytes_per_row = 8 * (3 * y.shape[0] + 4 * x.shape[0])
    r = _map_chunks(per_chunk, weights, bytes_per_row=bytes_per_row)
    return r[:, 0] if one_candidate else r


def _standardise_rows(a: np.ndarray) -> np.ndarray:
    """Centre and scale each row of ``(K, N)`` by its unweighted mean and spread."""
    centred = a - a.mean(axis=1, keepdims=True)
    scale = np.abs(centred).max(axis=1, keepdims=True)
    return centred / np.where(scale > 0, scale, 1.0)


def _as_weights(weights: np.ndarray | None, n: int) -> np.ndarray:
    """``(B, n)`` weights, or a single row of ones for None."""
    if weights is None:
        return np.ones((1, n), dtype=np.float64)
    weights = np.asarray(weights)
    if weights.ndim == 1:
        weights = weights[None, :]
    if weights.ndim != 2 or weights.shape[1] != n:
        raise ValueError(f"weights must be (B, {n}), got {weights.shape}")
    return weights


def _map_chunks(
    fn: Callable[[np.ndarray], np.ndarray], weights: np.ndarray, *, bytes_per_row: int
) -> np.ndarray:
    """Apply ``fn`` to row blocks of ``weights`` small enough for the memory bound; concatenate."""
    rows = max(1, _CHUNK_BYTES // max(1, bytes_per_row))
    return np.concatenate([fn(weights[i : i + rows]) for i in range(0, weights.shape[0], rows)])
