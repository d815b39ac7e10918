"""Tests for seqclaims.methods.stats: weighted statistics against references, resampling, p-values."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from sklearn.metrics import average_precision_score, roc_auc_score
from statsmodels.stats.multitest import multipletests

from seqclaims.methods import stats

# --------------------------------------------------------------------------- strategies


@st.composite
def scored_labels_and_weights(draw, max_items: int = 40, max_resamples: int = 4):
    """Scores with many ties, boolean labels and integer weights (zeros included)."""
    n = draw(st.integers(2, max_items))
    scores = draw(hnp.arrays(np.float64, n, elements=st.integers(-3, 3).map(float)))
    labels = draw(hnp.arrays(np.bool_, n))
    n_resamples = draw(st.integers(1, max_resamples))
    weights = draw(hnp.arrays(np.int64, (n_resamples, n), elements=st.integers(0, 4)))
    return scores, labels, weights


def has_both_classes(labels: np.ndarray, w: np.ndarray) -> bool:
    return w[labels].sum() > 0 and w[~labels].sum() > 0


def sklearn_rows(metric, scores, labels, weights) -> np.ndarray:
    """The scikit-learn metric per weight row; NaN where it is undefined."""
    return np.array(
        [
            metric(labels, scores, sample_weight=w) if has_both_classes(labels, w) else np.nan
            for w in weights
        ]
    )


# --------------------------------------------------------------------------- AUROC / AUPRC


@pytest.mark.parametrize(
    ("ours", "reference", "tolerance"),
    [(stats.auroc_weighted, roc_auc_score, 1e-12), (stats.auprc_weighted, average_precision_score, 1e-10)],
)
@settings(max_examples=150, deadline=None)
@given(case=scored_labels_and_weights())
def test_weighted_ranking_metrics_equal_sklearn(ours, reference, tolerance, case):
    scores, labels, weights = case
    value = ours(scores, labels, weights)
    expected = sklearn_rows(reference, scores, labels, weights)
    np.testing.assert_array_equal(np.isnan(value), np.isnan(expected))
    np.testing.assert_allclose(value, expected, rtol=0, atol=tolerance)


@pytest.mark.parametrize(
    ("ours", "reference"),
    [(stats.auroc_weighted, roc_auc_score), (stats.auprc_weighted, average_precision_score)],
)
def test_ranking_metrics_without_weights_equal_unweighted_sklearn(ours, reference):
    rng = np.random.default_rng(3)
    scores = np.round(rng.normal(size=500), 1)
    labels = rng.random(500) < 0.2
    value = ours(scores, labels)
    assert value.shape == (1,)
    assert value[0] == pytest.approx(reference(labels, scores), abs=1e-12)


def test_ranking_metrics_known_values():
    scores = np.array([0.1, 0.4, 0.4, 0.8])
    labels = np.array([False, False, True, True])
    # Positive 0.8 beats both negatives; positive 0.4 beats one and ties one: (2 + 1.5) / 4.
    assert stats.auroc_weighted(scores, labels)[0] == pytest.approx(0.875)
    # Thresholds 0.8 (P=1, R=1/2) and 0.4 (P=2/3, R=1): AP = 1/2 * 1 + 1/2 * 2/3.
    assert stats.auprc_weighted(scores, labels)[0] == pytest.approx(0.5 + 1 / 3)


def test_ranking_metrics_nan_without_both_classes():
    scores = np.array([0.2, 0.5, 0.9])
    labels = np.array([True, False, True])
    weights = np.array([[1, 0, 2], [0, 3, 0], [1, 1, 1]])
    for metric in (stats.auroc_weighted, stats.auprc_weighted):
        value = metric(scores, labels, weights)
        assert np.isnan(value[:2]).all() and np.isfinite(value[2])


def test_ranking_metrics_reject_nan_scores():
    with pytest.raises(ValueError, match="NaN"):
        stats.auroc_weighted(np.array([0.1, np.nan]), np.array([True, False]))


def test_auroc_processes_resamples_in_chunks(monkeypatch):
    rng = np.random.default_rng(5)
    scores, labels = rng.normal(size=200), rng.random(200) < 0.5
    weights = stats.resample_counts(200, 37, seed=2)
    whole = stats.auroc_weighted(scores, labels, weights)
    monkeypatch.setattr(stats, "_CHUNK_BYTES", 1)  # one resample per chunk
    np.testing.assert_array_equal(stats.auroc_weighted(scores, labels, weights), whole)


# --------------------------------------------------------------------------- Pearson


@settings(max_examples=100, deadline=None)
@given(
    st.integers(3, 30).flatmap(
        lambda n: st.tuples(
            hnp.arrays(np.float64, (3, n), elements=st.integers(-5, 5).map(float)),
            hnp.arrays(np.float64, n, elements=st.floats(-10, 10, allow_nan=False, allow_infinity=False)),
            hnp.arrays(np.int64, (2, n), elements=st.integers(0, 3)),
        )
    )
)
def test_pearson_weighted_equals_numpy_on_repeated_data(case):
    x, y, weights = case
    ours = stats.pearson_weighted(x, y, weights)
    assert ours.shape == (2, 3)
    for b, w in enumerate(weights):
        for k, row in enumerate(x):
            xr, yr = np.repeat(row, w), np.repeat(y, w)
            if xr.size < 2 or np.ptp(xr) == 0 or np.ptp(yr) <= 1e-6 * max(1.0, np.abs(yr).max()):
                continue  # degenerate or too close to degenerate for a fair comparison
            assert ours[b, k] == pytest.approx(np.corrcoef(xr, yr)[0, 1], abs=1e-9)


def test_pearson_weighted_nan_for_zero_variance_and_1d_shape():
    x = np.array([[1.0, 2.0, 3.0, 4.0], [2.0, 2.0, 2.0, 2.0]])
    y = np.array([1.0, 3.0, 2.0, 5.0])
    r = stats.pearson_weighted(x, y)
    assert r.shape == (1, 2)
    assert r[0, 0] == pytest.approx(np.corrcoef(x[0], y)[0, 1], abs=1e-12)
    assert np.isnan(r[0, 1])
    # Only one item drawn: x is constant within the resample.
    assert np.isnan(stats.pearson_weighted(x[0], y, np.array([[0, 0, 4, 0]]))[0])
    assert stats.pearson_weighted(x[0], y, np.ones((3, 4))).shape == (3,)


def test_clustered_bootstrap_weights_equal_concatenating_resampled_units():
    rng = np.random.default_rng(11)
    lengths = rng.integers(3, 9, size=12)
    unit_of_item = np.repeat(np.arange(12), lengths)
    x, y = rng.normal(size=unit_of_item.size), rng.normal(size=unit_of_item.size)
    indices = stats.resample_indices(12, 5, seed=4)
    weights = stats.expand_to_items(stats.indices_to_counts(indices, 12), unit_of_item)
    assert weights.shape == (5, unit_of_item.size)
    r = stats.pearson_weighted(x, y, weights)
    for b, drawn in enumerate(indices):
        items = np.concatenate([np.flatnonzero(unit_of_item == u) for u in drawn])
        assert r[b] == pytest.approx(np.corrcoef(x[items], y[items])[0, 1], abs=1e-12)


# --------------------------------------------------------------------------- resamples


def test_resamples_are_deterministic_and_consistent():
    counts = stats.resample_counts(50, 20, seed=7)
    assert counts.shape == (20, 50) and counts.dtype == np.int32
    np.testing.assert_array_equal(counts, stats.resample_counts(50, 20, seed=7))
    assert not np.array_equal(counts, stats.resample_counts(50, 20, seed=8))
    assert (counts.sum(axis=1) == 50).all()
    indices = stats.resample_indices(50, 20, seed=7)
    np.testing.assert_array_equal(stats.indices_to_counts(indices, 50), counts)


def test_expand_to_items_uses_unit_counts():
    counts = np.array([[2, 0, 1], [0, 3, 0]])
    np.testing.assert_array_equal(
        stats.expand_to_items(counts, np.array([0, 0, 1, 2, 2])),
        [[2, 2, 0, 1, 1], [0, 0, 3, 0, 0]],
    )


def test_permute_between_units_respects_lengths_and_seed():
    units = [np.zeros(n) for n in (4, 5, 4, 4, 5, 7)]
    perms = stats.permute_between_units(units, n_permutations=200, seed=1)
    assert perms.shape == (200, 6)
    np.testing.assert_array_equal(perms, stats.permute_between_units(units, n_permutations=200, seed=1))
    assert (np.sort(perms, axis=1) == np.arange(6)).all()
    lengths = np.array([len(u) for u in units])
    assert (lengths[perms] == lengths).all()
    assert (perms[:, 5] == 5).all()  # alone in its length
    assert len({tuple(p) for p in perms}) > 1
    free = stats.permute_between_units(units, n_permutations=200, seed=1, strata=np.zeros(6))
    assert (lengths[free] != lengths).any()


# --------------------------------------------------------------------------- intervals


def test_percentile_interval_symmetric_contains_centre_and_handles_nan():
    samples = np.linspace(-1.0, 1.0, 1001)
    low, high = stats.percentile_interval(samples, 0.9)
    assert low == pytest.approx(-0.9) and high == pytest.approx(0.9)
    few_nan = np.where(np.arange(1001) % 200 == 0, np.nan, samples)  # 6 of 1001, under 1%
    columns = np.column_stack([samples, few_nan, np.full(1001, np.nan)])
    low, high = stats.percentile_interval(columns, 0.95)
    assert low.shape == (3,)
    assert low[1] < 0 < high[1]
    assert np.isnan(low[2]) and np.isnan(high[2])
    with pytest.raises(ValueError):
        stats.percentile_interval(samples, 1.5)
    with pytest.raises(ValueError):
        stats.percentile_interval(samples, max_nan_fraction=-0.1)


@pytest.mark.parametrize(("n_nan", "defined"), [(0, True), (10, True), (11, False), (300, False), (600, False)])
def test_percentile_interval_is_nan_above_one_percent_nan_resamples(n_nan, defined):
    """Dropping NaN resamples conditions the interval on the statistic being defined: not above 1%."""
    samples = np.random.default_rng(0).normal(size=1000)
    samples[:n_nan] = np.nan
    assert stats.nan_fraction(samples) == pytest.approx(n_nan / 1000)
    low, high = stats.percentile_interval(samples)
    assert (np.isfinite(low) and np.isfinite(high)) == defined
    assert stats.MAX_NAN_FRACTION == 0.01
    assert np.isfinite(stats.percentile_interval(samples, max_nan_fraction=0.7)[0])


def test_nan_fraction_per_column_and_of_no_resamples():
    columns = np.array([[1.0, np.nan], [2.0, np.nan], [np.nan, 1.0], [3.0, np.nan]])
    np.testing.assert_allclose(stats.nan_fraction(columns), [0.25, 0.75])
    assert stats.nan_fraction(np.zeros(0)) == 1.0


def weighted_mean_statistic(values: np.ndarray):
    """Mean of ``values`` (n,) or of each column of (n, K), as a bootstrap statistic."""

    def statistic(weights):
        w = np.ones((1, values.shape[0])) if weights is None else weights
        return (w @ values) / w.sum(axis=1).reshape((-1,) + (1,) * (values.ndim - 1))

    return statistic


def test_bootstrap_mean_interval_contains_estimate_and_is_deterministic():
    values = np.random.default_rng(0).normal(loc=2.0, size=300)
    result = stats.bootstrap(weighted_mean_statistic(values), 300, n_resamples=500, seed=3)
    assert isinstance(result.estimate, float)
    assert result.estimate == pytest.approx(values.mean())
    assert result.low < result.estimate < result.high
    se = values.std(ddof=1) / np.sqrt(300)
    assert result.high - result.low == pytest.approx(2 * 1.96 * se, rel=0.2)
    again = stats.bootstrap(weighted_mean_statistic(values), 300, n_resamples=500, seed=3)
    np.testing.assert_array_equal(again.samples, result.samples)
    # Other chunking: the same resamples (matrix-product rounding may differ in the last bit).
    rechunked = stats.bootstrap(weighted_mean_statistic(values), 300, n_resamples=500, seed=3, chunk_size=7)
    np.testing.assert_allclose(rechunked.samples, result.samples, rtol=1e-13)


def test_bootstrap_reports_nan_resamples_and_refuses_an_interval_above_the_limit():
    """AUROC is undefined in resamples without a positive: with 3 positives of 60 that is ~5%."""
    rng = np.random.default_rng(8)
    scores, labels = rng.normal(size=60), np.arange(60) < 3

    def statistic(weights):
        return stats.auroc_weighted(scores, labels, weights)

    result = stats.bootstrap(statistic, 60, n_resamples=1000, seed=0)
    expected = np.isnan(result.samples).mean()
    assert 0.02 < expected < 0.09 and result.nan_fraction == pytest.approx(expected)
    assert np.isfinite(result.estimate) and np.isnan(result.low) and np.isnan(result.high)
    lenient = stats.bootstrap(statistic, 60, n_resamples=1000, seed=0, max_nan_fraction=0.5)
    assert lenient.low < lenient.high and lenient.nan_fraction == result.nan_fraction
    clean = stats.bootstrap(weighted_mean_statistic(scores), 60, n_resamples=200, seed=0)
    assert clean.nan_fraction == 0.0


def test_bootstrap_of_no_units_is_a_nan_interval():
    def never_called(weights):
        raise AssertionError("no units: nothing to compute")

    plain = stats.bootstrap(never_called, 0, n_resamples=50)
    assert np.isnan([plain.estimate, plain.low, plain.high]).all() and plain.nan_fraction == 1.0
    assert plain.samples.shape == (50,)
    best = stats.bootstrap_best(never_called, 0, n_resamples=50)
    assert np.isnan([best.estimate, best.low, best.high]).all() and best.nan_fraction == 1.0
    assert best.index == -1 and best.selection_frequency.size == 0


def test_bootstrap_vector_statistic_gives_arrays():
    values = np.random.default_rng(1).normal(size=(200, 3)) + [0.0, 1.0, 5.0]
    result = stats.bootstrap(weighted_mean_statistic(values), 200, n_resamples=300, seed=0)
    assert result.estimate.shape == result.low.shape == result.high.shape == (3,)
    assert result.samples.shape == (300, 3)
    assert (result.low < result.estimate).all() and (result.estimate < result.high).all()


def test_paired_contrast_under_shared_weights_has_zero_width_for_identical_scores():
    rng = np.random.default_rng(2)
    scores, labels = rng.normal(size=150), rng.random(150) < 0.4

    def contrast(weights):
        return stats.auroc_weighted(scores, labels, weights) - stats.auroc_weighted(scores.copy(), labels, weights)

    result = stats.bootstrap(contrast, 150, n_resamples=200, seed=0)
    assert result.estimate == 0.0 and result.low == 0.0 and result.high == 0.0


def test_bootstrap_best_redoes_selection_and_shifts_interval_up():
    """Many equally null candidates: the full-data winner is a lucky draw, and re-selecting in
    every resample reflects the selection, unlike bootstrapping the fixed winner."""
    rng = np.random.default_rng(4)
    n, k = 120, 40
    x, y = rng.normal(size=(k, n)), rng.normal(size=n)

    def statistic(weights):
        return stats.pearson_weighted(x, y, weights)

    best = stats.bootstrap_best(statistic, n, n_resamples=400, seed=1)
    fixed = stats.bootstrap(lambda w: statistic(w)[:, best.index], n, n_resamples=400, seed=1)
    assert best.estimate == pytest.approx(fixed.estimate)
    assert best.estimate == pytest.approx(np.nanmax(statistic(None)))
    assert (best.samples >= fixed.samples).all()
    assert best.samples.mean() > fixed.samples.mean() + 0.02
    assert best.low >= fixed.low and best.high > fixed.high
    assert best.selection_frequency.sum() == pytest.approx(1.0)
    assert best.selection_frequency.max() < 0.9
    assert (best.selection_frequency > 0).sum() > 3
    assert best.nan_fraction == 0.0


def test_bootstrap_best_smaller_is_better_and_skips_nan_candidates():
    values = np.random.default_rng(6).normal(size=(100, 3)) + [0.0, -3.0, 0.0]
    values[:, 2] = np.nan

    def statistic(weights):
        w = np.ones((1, 100)) if weights is None else weights
        with np.errstate(invalid="ignore"):
            return (w @ np.nan_to_num(values, nan=0.0)) / w.sum(axis=1)[:, None] + np.where(
                np.isnan(values[0]), np.nan, 0.0
            )

    best = stats.bootstrap_best(statistic, 100, n_resamples=200, seed=0, larger_is_better=False)
    assert best.index == 1
    assert best.selection_frequency[2] == 0.0
    assert best.low < best.estimate < best.high < -2.0


# --------------------------------------------------------------------------- p-values


def test_permutation_pvalue_counts_and_alternatives():
    null = np.arange(99, dtype=float)  # 0 .. 98
    assert stats.permutation_pvalue(1000.0, null) == pytest.approx(1 / 100)
    assert stats.permutation_pvalue(98.0, null) == pytest.approx(2 / 100)  # ties count
    assert stats.permutation_pvalue(-1.0, null, "less") == pytest.approx(1 / 100)
    assert stats.permutation_pvalue(49.0, null, "two-sided") == pytest.approx(1.0)
    assert stats.permutation_pvalue(98.0, null, "two-sided") == pytest.approx(4 / 100)
    per_candidate = stats.permutation_pvalue(np.array([1000.0, 49.0]), np.column_stack([null, null]))
    np.testing.assert_allclose(per_candidate, [0.01, 0.51])
    shared_null = stats.permutation_pvalue(np.array([1000.0, 49.0, np.nan]), null)
    np.testing.assert_allclose(shared_null, [0.01, 0.51, np.nan])
    with_nan = np.r_[null, np.nan]
    assert stats.permutation_pvalue(1000.0, with_nan) == pytest.approx(1 / 100)
    with pytest.raises(ValueError):
        stats.permutation_pvalue(1.0, null, "bigger")


def test_permutation_pvalue_is_uniform_under_the_null():
    """Mean difference between two groups of exchangeable data, 300 replicates x 199 permutations."""
    rng = np.random.default_rng(12)
    n_reps, n, n_perm = 300, 24, 199
    data = rng.normal(size=(n_reps, n))
    group = np.arange(n) < n // 2

    def mean_difference(values, in_group):
        return values[..., in_group].mean(axis=-1) - values[..., ~in_group].mean(axis=-1)

    observed = mean_difference(data, group)
    null = np.stack([mean_difference(data, rng.permutation(group)) for _ in range(n_perm)])
    p = stats.permutation_pvalue(observed, null)  # (n_reps,) against (n_perm, n_reps)
    rejected = float(np.mean(p < 0.05))
    assert abs(rejected - 0.05) <= 3 * stats.mc_standard_error(0.05, n_reps)
    assert 0.4 < float(np.mean(p)) < 0.6


@pytest.mark.parametrize("method", ["bonferroni", "holm", "fdr_bh"])
def test_correct_pvalues_matches_statsmodels(method):
    p = np.random.default_rng(0).uniform(size=25) ** 2
    np.testing.assert_allclose(stats.correct_pvalues(p, method), multipletests(p, method=method)[1])


def test_correct_pvalues_none_nan_and_unknown():
    p = np.array([0.01, np.nan, 0.04])
    np.testing.assert_array_equal(stats.correct_pvalues(p, "none"), p)
    corrected = stats.correct_pvalues(p, "bonferroni")
    np.testing.assert_allclose(corrected, [0.02, np.nan, 0.08])
    with pytest.raises(ValueError, match="bonferroni, holm, fdr_bh, none"):
        stats.correct_pvalues(p, "sidak-ish")


def test_mc_standard_error():
    assert stats.mc_standard_error(0.05, 400) == pytest.approx(np.sqrt(0.05 * 0.95 / 400))
    np.testing.assert_allclose(stats.mc_standard_error(np.array([0.0, 0.5]), 100), [0.0, 0.05])
