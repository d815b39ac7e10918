"""Resampling statistics: weighted bootstrap, selection on one part scored on another, permutation p-values.

The statistics these drivers resample (AUROC, AUPRC, Pearson r under unit weights) are in
:mod:`seqclaims.methods.weighted`.

A bootstrap resample is represented by integer *counts* per unit, shape
``(n_resamples, n_units)``: how many times each unit (a sequence, a region, a pair)
was drawn. A statistic over items (tokens, windows) resampled by unit then uses per-item
weights equal to its unit's count (:func:`expand_to_items`). Every statistic here takes
such weights, so one implementation serves plain bootstraps (one item per unit), clustered
bootstraps (many items per unit) and paired contrasts (compute A and B under the same
weights and subtract).

Weights may be ``None`` (every item once); the result then still has a leading resample
axis of length 1.

A statistic that chooses among candidates (the best head, layer or unit) goes through one
protocol, :func:`select_and_score`: the choice is made on the selection part of the units and
scored on the scoring part, both resampled within their own part, the choice redone in every
resample. A statistic marks an undefined value with NaN.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

import numpy as np

__all__ = [
    "CORRECTION_METHODS",
    "Interval",
    "MAX_NAN_FRACTION",
    "Selection",
    "bootstrap",
    "choose_best",
    "correct_pvalues",
    "expand_to_items",
    "indices_to_counts",
    "mc_standard_error",
    "nan_fraction",
    "percentile_interval",
    "permutation_pvalue",
    "permute_between_units",
    "resample_counts",
    "resample_indices",
    "select_and_score",
]

CORRECTION_METHODS = ("bonferroni", "holm", "fdr_bh", "none")

# Largest share of NaN resamples a percentile interval tolerates. A resample is NaN when the
# statistic is undefined on it (e.g. one class absent); dropping many such resamples would give
# an interval conditional on the statistic being defined, narrower than the truth.
MAX_NAN_FRACTION = 0.01

# Resamples per call of the statistic in the bootstrap drivers (weights may be expanded
# from units to many items inside the statistic, so this stays modest).
_DEFAULT_DRIVER_CHUNK = 64


# --------------------------------------------------------------------------- resamples


def resample_indices(n_units: int, n_resamples: int, seed: int) -> np.ndarray:
    """Units drawn with replacement, one row per resample.

    Returns ``(n_resamples, n_units)`` int64 unit indices; deterministic for ``seed``.
    """
    _check_positive(n_units=n_units, n_resamples=n_resamples)
    rng = np.random.default_rng(seed)
    return rng.integers(0, n_units, size=(n_resamples, n_units), dtype=np.int64)


def indices_to_counts(indices: np.ndarray, n_units: int) -> np.ndarray:
    """How often each unit occurs in each row of ``indices``.

    ``indices``: ``(n_resamples, n_draws)`` unit indices -> ``(n_resamples, n_units)`` int32.
    """
    indices = np.asarray(indices)
    counts = np.empty((indices.shape[0], n_units), dtype=np.int32)
    for row, drawn in zip(counts, indices):  # row by row stays in cache; faster than one flat bincount
        row[:] = np.bincount(drawn, minlength=n_units)
    return counts


def resample_counts(n_units: int, n_resamples: int, seed: int) -> np.ndarray:
    """Multinomial bootstrap counts: ``(n_resamples, n_units)`` int32, each row summing to n_units.

    Exactly the resample that :func:`resample_indices` draws for the same seed, so an
    index-based baseline can be fed the identical resamples.
    """
    return indices_to_counts(resample_indices(n_units, n_resamples, seed), n_units)


def expand_to_items(unit_counts: np.ndarray, unit_of_item: np.ndarray) -> np.ndarray:
    """Per-item weights from per-unit counts.

    ``unit_counts``: ``(B, n_units)``; ``unit_of_item``: ``(n_items,)`` unit index of each
    item -> ``(B, n_items)`` with each item weighted by its unit's count.
    """
    return np.asarray(unit_counts)[:, np.asarray(unit_of_item, dtype=np.intp)]


def permute_between_units(
    units: Sequence[np.ndarray],
    *,
    n_permutations: int,
    seed: int,
    strata: np.ndarray | None = None,
) -> np.ndarray:
    """Random reassignments of units to units, for nulls that swap per-unit tracks.

    Row ``p`` says that unit ``i`` is paired with the track of unit ``perm[p, i]`` (for
    example the motif track of another sequence). Units only exchange within a stratum;
    by default a stratum is a length (``len(units[i])``), so a swapped track always fits
    its new unit. Pass ``strata=np.zeros(n)`` to permute freely. Units alone in their
    stratum keep their own track. Fixed points are allowed (not a derangement).

    ``units``: ``n_units`` arrays -> ``(n_permutations, n_units)`` int64; deterministic for ``seed``.
    """
    n_units = len(units)
    _check_positive(n_units=n_units, n_permutations=n_permutations)
    keys = np.array([len(u) for u in units]) if strata is None else np.asarray(strata)
    if keys.shape != (n_units,):
        raise ValueError(f"strata must have shape ({n_units},), got {keys.shape}")
    rng = np.random.default_rng(seed)
    perms = np.tile(np.arange(n_units, dtype=np.int64), (n_permutations, 1))
    for key in np.unique(keys):
        members = np.flatnonzero(keys == key)
        if members.size > 1:
            perms[:, members] = rng.permuted(perms[:, members], axis=1)
    return perms


# --------------------------------------------------------------------------- intervals


@dataclass(frozen=True)
class Interval:
    """A bootstrap interval: floats for a scalar statistic, ``(K,)`` arrays for K statistics.

    ``samples``: ``(n_resamples,)`` or ``(n_resamples, K)`` resampled values; ``nan_fraction``:
    share of resamples on which the statistic was NaN (float, or ``(K,)``). Where it exceeds the
    driver's ``max_nan_fraction`` the interval is NaN.
    """

    estimate: float | np.ndarray
    low: float | np.ndarray
    high: float | np.ndarray
    samples: np.ndarray
    level: float = 0.95
    nan_fraction: float | np.ndarray = 0.0


def nan_fraction(samples: np.ndarray) -> float | np.ndarray:
    """Share of NaN resamples: ``(B,)`` -> float; ``(B, K)`` -> ``(K,)``. 1.0 when B is 0."""
    samples = np.asarray(samples, dtype=np.float64)
    if samples.shape[0] == 0:
        return _scalar_if_0d(np.ones(samples.shape[1:]))
    return _scalar_if_0d(np.isnan(samples).mean(axis=0))


def percentile_interval(
    samples: np.ndarray, level: float = 0.95, *, max_nan_fraction: float = MAX_NAN_FRACTION
) -> tuple[float | np.ndarray, float | np.ndarray]:
    """Equal-tailed percentile interval over the resample axis.

    ``samples``: ``(B,)`` -> two floats; ``(B, K)`` -> two ``(K,)`` arrays. A column in which
    more than ``max_nan_fraction`` of the resamples are NaN gets a NaN interval (the share is
    :func:`nan_fraction`); below that, NaN resamples are left out.
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie strictly between 0 and 1, got {level}")
    if not 0.0 <= max_nan_fraction <= 1.0:
        raise ValueError(f"max_nan_fraction must lie in [0, 1], got {max_nan_fraction}")
    samples = np.asarray(samples, dtype=np.float64)
    tail = (1.0 - level) / 2.0
    too_thin = np.asarray(nan_fraction(samples)) > max_nan_fraction
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns
        low, high = np.nanquantile(samples, [tail, 1.0 - tail], axis=0)
    low, high = np.where(too_thin, np.nan, low), np.where(too_thin, np.nan, high)
    return _scalar_if_0d(low), _scalar_if_0d(high)


def bootstrap(
    statistic: Callable[[np.ndarray | None], np.ndarray],
    n_units: int,
    *,
    n_resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    chunk_size: int = _DEFAULT_DRIVER_CHUNK,
    max_nan_fraction: float = MAX_NAN_FRACTION,
) -> Interval:
    """Percentile bootstrap over units of any weighted statistic.

    ``statistic(weights)`` receives ``(B', n_units)`` unit counts (or None for the full
    data) and returns ``(B',)`` or ``(B', K)``. It is called on the full data for the point
    estimate and on chunks of ``chunk_size`` resamples (lower it when the statistic expands
    counts to many items). Resamples are :func:`resample_counts` for ``seed``. The interval
    is NaN where more than ``max_nan_fraction`` of the resamples are NaN. With no units the
    statistic is not called and the result is a scalar NaN interval with ``nan_fraction`` 1.
    """
    if n_units == 0:
        return Interval(np.nan, np.nan, np.nan, _undefined_samples(n_resamples), level, nan_fraction=1.0)
    estimate, samples = _estimate_and_samples(statistic, n_units, n_resamples, seed, chunk_size)
    low, high = percentile_interval(samples, level, max_nan_fraction=max_nan_fraction)
    return Interval(_scalar_if_0d(estimate), low, high, samples, level, nan_fraction(samples))


def _undefined_samples(n_resamples: int) -> np.ndarray:
    """``(n_resamples,)`` NaN: the resamples of a statistic over no units."""
    _check_positive(n_resamples=n_resamples)
    return np.full(n_resamples, np.nan)


def _estimate_and_samples(
    statistic: Callable[[np.ndarray | None], np.ndarray],
    n_units: int,
    n_resamples: int,
    seed: int,
    chunk_size: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Full-data value (shape of one resample's output) and ``(n_resamples, ...)`` resampled values."""
    _check_positive(chunk_size=chunk_size)
    counts = resample_counts(n_units, n_resamples, seed)
    samples = np.concatenate(
        [
            np.asarray(statistic(counts[i : i + chunk_size]), dtype=np.float64)
            for i in range(0, n_resamples, chunk_size)
        ]
    )
    estimate = np.asarray(statistic(None), dtype=np.float64)
    per_resample = samples.shape[1:]
    if estimate.shape == (1, *per_resample):
        estimate = estimate[0]
    if estimate.shape != per_resample:
        raise ValueError(
            f"statistic gave {estimate.shape} on the full data but {per_resample} per resample"
        )
    return estimate, samples


# --------------------------------------------------------------------------- selection


@dataclass(frozen=True)
class Selection:
    """A choice among K candidates made on the selection part of the units, scored on the scoring part.

    ``index``: the candidate chosen on the whole selection part (of a choice of several, the one with
    the largest coefficient), -1 when no candidate is defined there; ``choice``: ``(K,)`` coefficients
    of that choice; ``estimate``: its statistic on the whole scoring part (NaN when nothing was
    chosen); ``low``/``high``: percentile interval of ``samples``, the scoring-part statistic of the
    choice redone in each resample; ``frequency``: ``(K,)`` share of the resamples that chose
    something in which each candidate was chosen (a positive coefficient); ``same_choice``: share of
    those whose choice equals ``choice``; ``nan_fraction``: share of NaN samples, i.e. of resamples
    with no candidate defined on the selection part or the chosen one undefined on the scoring part.
    Statistics are floats for one column, ``(S,)`` arrays (``samples`` ``(B, S)``) for S columns.
    """

    index: int
    estimate: float | np.ndarray
    low: float | np.ndarray
    high: float | np.ndarray
    choice: np.ndarray
    frequency: np.ndarray
    same_choice: float
    samples: np.ndarray
    level: float = 0.95
    nan_fraction: float | np.ndarray = 0.0


def jackknife_bounds(estimate: float, leave_one_out: np.ndarray, level: float) -> tuple[float, float]:
    """Normal interval around ``estimate`` with the delete-one jackknife standard error of the ``(n,)``
    leave-one-out values; NaN with fewer than 2 values or any undefined one."""
    from scipy.stats import norm

    values = np.asarray(leave_one_out, dtype=np.float64)
    n = len(values)
    if n < 2 or not np.isfinite(values).all() or not np.isfinite(estimate):
        return float("nan"), float("nan")
    se = float(np.sqrt((n - 1) / n * ((values - values.mean()) ** 2).sum()))
    half = norm.ppf(0.5 + level / 2) * se
    return float(estimate - half), float(estimate + half)


def column_samples(result: "Interval | Selection", column: int | None = None) -> np.ndarray:
    """``(B,)`` resamples of one statistic of an Interval or a Selection: ``column`` of one that holds several."""
    samples = np.asarray(result.samples, dtype=np.float64)
    if samples.ndim == 1:
        return samples
    if column is None:
        raise ValueError(f"resamples of {samples.shape[1]} statistics: say which column")
    return samples[:, column]


def choose_best(values: np.ndarray, larger_is_better: bool = True) -> np.ndarray:
    """One-hot ``(B, K)`` coefficients of each row's best defined candidate among ``(B, K)`` selection
    values (the first on ties). NaN is undefined and never chosen; a row with no defined candidate
    chooses nothing (a row of zeros)."""
    values = np.asarray(values, dtype=np.float64)
    defined = ~np.isnan(values)
    rows = np.arange(values.shape[0])
    index = np.argmax(np.where(defined, values if larger_is_better else -values, -np.inf), axis=1)
    stuck = ~defined[rows, index]  # every defined candidate is -inf: argmax may land on an undefined one
    index[stuck] = np.argmax(defined[stuck], axis=1)
    chosen = np.zeros(values.shape)
    chosen[rows, index] = 1.0
    chosen[~defined.any(axis=1)] = 0.0
    return chosen


def select_and_score(
    select: Callable[[np.ndarray | None], np.ndarray],
    score: Callable[[np.ndarray | None], np.ndarray],
    n_select_units: int,
    n_score_units: int,
    *,
    seeds: tuple[int, int],
    n_resamples: int = 1000,
    level: float = 0.95,
    larger_is_better: bool = True,
    choose: Callable[[np.ndarray], np.ndarray] | None = None,
    chunk_size: int = _DEFAULT_DRIVER_CHUNK,
    max_nan_fraction: float = MAX_NAN_FRACTION,
) -> Selection:
    """Choose among K candidates on the selection part, score the choice on the scoring part, and get
    its interval with the choice redone in every resample.

    ``select(counts)`` gives ``(B', K)`` selection values under ``(B', n_select_units)`` unit counts
    of the selection part; ``score(counts)`` gives ``(B', K)`` (or ``(B', K, S)``, S statistics)
    per-candidate values under counts of the scoring part; None stands for the whole part (one row).
    Each part is resampled within itself (:func:`resample_counts`, ``seeds[0]`` for the selection
    part, ``seeds[1]`` for the scoring part), so ``select`` never sees the scoring part. In every
    resample ``choose((B', K) selection values)`` gives ``(B', K)`` coefficients, and the resample's
    value is the sum over candidates of coefficient times score (for the default one-hot rule, the
    chosen candidate's score). The point estimate is the choice on the whole selection part scored
    on the whole scoring part. ``choose`` defaults to :func:`choose_best` (largest value, or smallest
    with ``larger_is_better=False``); a family that chooses several candidates (a contrast of sets)
    passes its own rule.

    Undefined candidates, one rule: a NaN selection value is undefined and never chosen (a ``choose``
    that gives it a coefficient is an error); a resample in which nothing is chosen gives a NaN
    sample, counted in ``nan_fraction`` (the interval is NaN above ``max_nan_fraction``); with
    nothing chosen on the whole selection part, ``index`` is -1 and the estimate NaN. With no units in
    either part neither callable is called and the result is undefined.

    Selecting and scoring on the same units with the same seed gives the best of K on the same data:
    that interval is biased upward (the winner's curse; among null candidates its lower bound can
    exceed the null value). Use it only to measure that bias.
    """
    if choose is None:
        choose = partial(choose_best, larger_is_better=larger_is_better)
    elif not larger_is_better:
        raise ValueError("larger_is_better applies to the default choice; a custom choose sets its own direction")
    if n_select_units == 0 or n_score_units == 0:
        nan = float("nan")
        return Selection(-1, nan, nan, nan, np.zeros(0), np.zeros(0), nan, _undefined_samples(n_resamples), level, 1.0)
    _check_positive(chunk_size=chunk_size)
    select_counts = resample_counts(n_select_units, n_resamples, seeds[0])
    score_counts = resample_counts(n_score_units, n_resamples, seeds[1])
    choices, samples = [], []
    for start in range(0, n_resamples, chunk_size):
        rows = slice(start, start + chunk_size)
        choices.append(_choice(choose, select(select_counts[rows])))
        samples.append(_value_of_choice(choices[-1], score(score_counts[rows])))
    choices, samples = np.concatenate(choices), np.concatenate(samples)
    point = _choice(choose, select(None))
    if point.shape != (1, choices.shape[1]):
        raise ValueError(f"select gave {point.shape} on the whole part; (1, {choices.shape[1]}) expected")
    estimate = _value_of_choice(point, score(None))[0]
    made = choices.any(axis=1)
    frequency = (choices[made] > 0).sum(axis=0) / max(1, int(made.sum()))
    same_choice = float((choices[made] == point).all(axis=1).sum() / max(1, int(made.sum())))
    index = int(np.argmax(point[0])) if point.any() else -1
    low, high = percentile_interval(samples, level, max_nan_fraction=max_nan_fraction)
    return Selection(index, _scalar_if_0d(estimate), low, high, point[0], frequency, same_choice, samples, level,
                     nan_fraction(samples))


def _choice(choose: Callable[[np.ndarray], np.ndarray], values: np.ndarray) -> np.ndarray:
    """``(B', K)`` coefficients for ``(B', K)`` selection values, holding ``choose`` to the NaN rule."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2:
        raise ValueError(f"select must give (B', K) selection values, got shape {values.shape}")
    chosen = np.asarray(choose(values), dtype=np.float64)
    if chosen.shape != values.shape:
        raise ValueError(f"choose gave coefficients of shape {chosen.shape} for selection values {values.shape}")
    if (chosen[np.isnan(values)] != 0).any():
        raise ValueError("choose gave a coefficient to a candidate whose selection value is NaN (undefined)")
    return chosen


def _value_of_choice(coefficients: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Sum of coefficient x value over the chosen candidates: ``(B', K)`` coefficients and ``(B', K, ...)``
    values -> ``(B', ...)``; NaN where nothing is chosen. Unchosen candidates' values (NaN included) do
    not enter."""
    values = np.asarray(values, dtype=np.float64)
    if values.shape[:2] != coefficients.shape:
        raise ValueError(f"score must give (B', K) or (B', K, S) per-candidate values for {coefficients.shape} "
                         f"choices, got shape {values.shape}")
    c = coefficients.reshape(coefficients.shape + (1,) * (values.ndim - 2))
    with np.errstate(invalid="ignore"):
        value = np.where(c != 0, c * values, 0.0).sum(axis=1)
    value[~coefficients.any(axis=1)] = np.nan
    return value


# --------------------------------------------------------------------------- p-values


def permutation_pvalue(
    observed: float | np.ndarray,
    null: np.ndarray,
    alternative: str = "greater",
) -> float | np.ndarray:
    """Monte-Carlo permutation p-value, ``(1 + #as-extreme) / (M + 1)``.

    ``observed``: scalar or ``(K,)``; ``null``: ``(M,)`` or ``(M, K)``. A ``(M,)`` null with
    ``(K,)`` observed compares every candidate with the same null, e.g. the null of the
    maximum over candidates (a family-wise adjusted p). NaN null draws are dropped per
    column; a NaN observed value gives NaN. ``alternative``: "greater", "less" or
    "two-sided" (twice the smaller one-sided p, capped at 1). Values within a relative
    1e-12 of the observed value count as extreme, so float noise cannot flip a tie.
    """
    observed = np.asarray(observed, dtype=np.float64)
    null = np.asarray(null, dtype=np.float64)
    if null.ndim == 1 and observed.ndim == 1:
        null = null[:, None]
    slack = 1e-12 * np.abs(observed)
    finite = ~np.isnan(null)
    n_draws = finite.sum(axis=0)

    def one_sided(extreme: np.ndarray) -> np.ndarray:
        return (1.0 + (extreme & finite).sum(axis=0)) / (n_draws + 1.0)

    p_greater = one_sided(null >= observed - slack)
    p_less = one_sided(null <= observed + slack)
    if alternative == "greater":
        p = p_greater
    elif alternative == "less":
        p = p_less
    elif alternative == "two-sided":
        p = np.minimum(1.0, 2.0 * np.minimum(p_greater, p_less))
    else:
        raise ValueError(f"alternative must be 'greater', 'less' or 'two-sided', got {alternative!r}")
    p = np.where(np.isnan(observed), np.nan, p)
    return _scalar_if_0d(p)


def correct_pvalues(p: np.ndarray, method: str) -> np.ndarray:
    """Multiple-testing correction over a family of candidates (``statsmodels`` multipletests).

    ``p``: ``(K,)`` -> ``(K,)`` adjusted p-values. ``method``: one of ``CORRECTION_METHODS``.
    NaN entries (candidates that could not be tested) stay NaN and do not count as tests.
    """
    if method not in CORRECTION_METHODS:
        raise ValueError(f"unknown correction {method!r}; use one of {', '.join(CORRECTION_METHODS)}")
    p = np.asarray(p, dtype=np.float64)
    adjusted = p.copy()
    tested = ~np.isnan(p)
    if method != "none" and tested.any():
        from statsmodels.stats.multitest import multipletests

        adjusted[tested] = multipletests(p[tested], method=method)[1]
    return adjusted


def mc_standard_error(rate: float | np.ndarray, n: int | np.ndarray) -> float | np.ndarray:
    """Binomial standard error of a rate estimated from ``n`` Monte-Carlo replicates."""
    rate = np.asarray(rate, dtype=np.float64)
    return _scalar_if_0d(np.sqrt(rate * (1.0 - rate) / np.asarray(n, dtype=np.float64)))


# --------------------------------------------------------------------------- helpers


def _scalar_if_0d(a: np.ndarray) -> float | np.ndarray:
    a = np.asarray(a)
    return float(a) if a.ndim == 0 else a


def _check_positive(**values: int) -> None:
    for name, value in values.items():
        if int(value) < 1:
            raise ValueError(f"{name} must be at least 1, got {value}")
