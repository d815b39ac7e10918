"""Tests for seqclaims.methods.stats: weighted statistics against references, resampling, p-values."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from sklearn.metrics import average_precision_score, roc_auc_score
from statsmodels.stats.multitest import multipletests

from seqclaims.methods import stats, weighted

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
    [(weighted.auroc_weighted, roc_auc_score, 1e-12), (weighted.auprc_weighted, average_precision_score, 1e-10)],
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
    [(weighted.auroc_weighted, roc_auc_score), (weighted.auprc_weighted, average_precision_score)],
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
    assert weighted.auroc_weighted(scores, labels)[0] == pytest.approx(0.875)
    # Thresholds 0.8 (P=1, R=1/2) and 0.4 (P=2/3, R=1): AP = 1/2 * 1 + 1/2 * 2/3.
    assert weighted.auprc_weighted(scores, labels)[0] == pytest.approx(0.5 + 1 / 3)


def test_ranking_metrics_nan_without_both_classes():
    scores = np.array([0.2, 0.5, 0.9])
    labels = np.array([True, False, True])
    weights = np.array([[1, 0, 2], [0, 3, 0], [1, 1, 1]])
    for metric in (weighted.auroc_weighted, weighted.auprc_weighted):
        value = metric(scores, labels, weights)
        assert np.isnan(value[:2]).all() and np.isfinite(value[2])


def test_ranking_metrics_reject_nan_scores():
    with pytest.raises(ValueError, match="NaN"):
        weighted.auroc_weighted(np.array([0.1, np.nan]), np.array([True, False]))


def test_auroc_processes_resamples_in_chunks(monkeypatch):
    rng = np.random.default_rng(5)
    scores, labels = rng.normal(size=200), rng.random(200) < 0.5
    weights = stats.resample_counts(200, 37, seed=2)
    whole = weighted.auroc_weighted(scores, labels, weights)
    monkeypatch.setattr(weighted, "_CHUNK_BYTES", 1)  # one resample per chunk
    np.testing.assert_array_equal(weighted.auroc_weighted(scores, labels, weights), whole)


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
    ours = weighted.pearson_weighted(x, y, weights)
    assert ours.shape == (2, 3)
    for b, w in enumerate(weights):
        for k, row in enumerate(x):
            xr, yr = np.repeat(row, w), np.repeat(y, w)
            # degenerate, or too close to it for a fair comparison: the moments are taken after scaling by the
            # spread of all of y, so a resample spanning a tiny share of that spread loses digits to cancellation
            if xr.size < 2 or np.ptp(xr) == 0 or np.ptp(yr) <= max(1e-6 * np.abs(yr).max(), 1e-2 * np.ptp(y), 1e-6):
                continue
            assert ours[b, k] == pytest.approx(np.corrcoef(xr, yr)[0, 1], abs=1e-9)


def test_pearson_weighted_nan_for_zero_variance_and_1d_shape():
    x = np.array([[1.0, 2.0, 3.0, 4.0], [2.0, 2.0, 2.0, 2.0]])
    y = np.array([1.0, 3.0, 2.0, 5.0])
    r = weighted.pearson_weighted(x, y)
    assert r.shape == (1, 2)
    assert r[0, 0] == pytest.approx(np.corrcoef(x[0], y)[0, 1], abs=1e-12)
    assert np.isnan(r[0, 1])
    # Only one item drawn: x is constant within the resample.
    assert np.isnan(weighted.pearson_weighted(x[0], y, np.array([[0, 0, 4, 0]]))[0])
    assert weighted.pearson_weighted(x[0], y, np.ones((3, 4))).shape == (3,)


def test_clustered_bootstrap_weights_equal_concatenating_resampled_units():
    rng = np.random.default_rng(11)
    lengths = rng.integers(3, 9, size=12)
    unit_of_item = np.repeat(np.arange(12), lengths)
    x, y = rng.normal(size=unit_of_item.size), rng.normal(size=unit_of_item.size)
    indices = stats.resample_indices(12, 5, seed=4)
    weights = stats.expand_to_items(stats.indices_to_counts(indices, 12), unit_of_item)
    assert weights.shape == (5, unit_of_item.size)
    r = weighted.pearson_weighted(x, y, weights)
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


@pytest.mark.parametrize("level", [0.5, 0.8, 0.9, 0.95, 0.99])
def test_percentile_interval_is_the_equal_tailed_numpy_quantile_pair(level):
    """On skewed samples (where a shifted or one-sided tail shows), per column: the bounds are numpy's
    quantiles at (1 - level) / 2 and (1 + level) / 2, so `level` of the samples lie inside, half the rest
    on each side."""
    samples = np.random.default_rng(4).exponential(size=(4000, 3)) ** 2
    low, high = stats.percentile_interval(samples, level)
    expected_low, expected_high = np.quantile(samples, [(1 - level) / 2, (1 + level) / 2], axis=0)
    np.testing.assert_array_equal(low, expected_low)
    np.testing.assert_array_equal(high, expected_high)
    np.testing.assert_allclose((samples < low).mean(axis=0), (1 - level) / 2, atol=1e-3)
    np.testing.assert_allclose((samples > high).mean(axis=0), (1 - level) / 2, atol=1e-3)
    assert stats.percentile_interval(samples[:, 0], level) == (expected_low[0], expected_high[0])

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


@pytest.mark.parametrize("level", [0.5, 0.8, 0.99])
def test_bootstrap_interval_is_at_the_requested_level(level):
    values = np.random.default_rng(6).lognormal(size=120)
    result = stats.bootstrap(weighted_mean_statistic(values), 120, n_resamples=400, seed=2, level=level)
    assert result.level == level
    expected = np.quantile(result.samples, [(1 - level) / 2, (1 + level) / 2])
    assert (result.low, result.high) == (expected[0], expected[1])

def test_bootstrap_reports_nan_resamples_and_refuses_an_interval_above_the_limit():
    """AUROC is undefined in resamples without a positive: with 3 positives of 60 that is ~5%."""
    rng = np.random.default_rng(8)
    scores, labels = rng.normal(size=60), np.arange(60) < 3

    def statistic(weights):
        return weighted.auroc_weighted(scores, labels, weights)

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
    for n_select, n_score in ((0, 5), (5, 0)):
        chosen = stats.select_and_score(never_called, never_called, n_select, n_score, seeds=(0, 1), n_resamples=50)
        assert np.isnan([chosen.estimate, chosen.low, chosen.high]).all() and chosen.nan_fraction == 1.0
        assert chosen.index == -1 and chosen.frequency.size == 0 and chosen.samples.shape == (50,)


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
        return weighted.auroc_weighted(scores, labels, weights) - weighted.auroc_weighted(scores.copy(), labels, weights)

    result = stats.bootstrap(contrast, 150, n_resamples=200, seed=0)
    assert result.estimate == 0.0 and result.low == 0.0 and result.high == 0.0


def test_selecting_and_scoring_on_the_same_data_is_the_resampled_maximum():
    """Many equally null candidates, selected and scored on the same units under the same resamples: every
    resample's value is its maximum over candidates (the winner's curse), above the fixed winner's."""
    rng = np.random.default_rng(4)
    n, k = 120, 40
    x, y = rng.normal(size=(k, n)), rng.normal(size=n)

    def statistic(weights):
        return np.atleast_2d(weighted.pearson_weighted(x, y, weights))

    same = stats.select_and_score(statistic, statistic, n, n, seeds=(1, 1), n_resamples=400)
    fixed = stats.bootstrap(lambda w: statistic(w)[:, same.index], n, n_resamples=400, seed=1)
    np.testing.assert_allclose(same.samples, statistic(stats.resample_counts(n, 400, 1)).max(axis=1), rtol=1e-12)
    assert same.estimate == fixed.estimate == np.nanmax(statistic(None))
    assert (same.samples >= fixed.samples).all()
    assert same.samples.mean() > fixed.samples.mean() + 0.02
    assert same.low >= fixed.low and same.high > fixed.high
    assert same.frequency.sum() == pytest.approx(1.0)
    assert same.frequency.max() < 0.9 and (same.frequency > 0).sum() > 3
    assert same.same_choice == same.frequency[same.index] and same.nan_fraction == 0.0


def test_selection_smaller_is_better_and_skips_nan_candidates():
    values = np.random.default_rng(6).normal(size=(100, 3)) + [0.0, -3.0, 0.0]
    values[:, 2] = np.nan

    def statistic(weights):
        w = np.ones((1, 100)) if weights is None else weights
        undefined = np.where(np.isnan(values[0]), np.nan, 0.0)
        return (w @ np.nan_to_num(values, nan=0.0)) / w.sum(axis=1)[:, None] + undefined

    chosen = stats.select_and_score(statistic, statistic, 100, 100, seeds=(0, 1), n_resamples=200,
                                    larger_is_better=False)
    assert chosen.index == 1 and chosen.choice.tolist() == [0.0, 1.0, 0.0]
    assert chosen.frequency[2] == 0.0
    assert chosen.low < chosen.estimate < chosen.high < -2.0
    with pytest.raises(ValueError, match="custom choose"):
        stats.select_and_score(statistic, statistic, 100, 100, seeds=(0, 1), choose=stats.choose_best,
                               larger_is_better=False)


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


# --------------------------------------------------------------------------- inputs and edge cases


def test_ranking_metrics_take_one_row_of_weights_and_labels_as_0_1_and_reject_mismatched_shapes():
    rng = np.random.default_rng(3)
    scores, labels, weights = rng.normal(size=30), rng.random(30) < 0.4, rng.integers(0, 3, 30)
    for metric in (weighted.auroc_weighted, weighted.auprc_weighted):
        expected = metric(scores, labels, weights[None, :])
        np.testing.assert_array_equal(metric(scores, labels, weights), expected)
        np.testing.assert_array_equal(metric(scores, labels.astype(int), weights), expected)
        with pytest.raises(ValueError, match=r"^weights must be \(B, 30\), got \(1, 29\)$"):
            metric(scores, labels, weights[None, :29])
        with pytest.raises(ValueError, match=r"^scores and labels must both be \(N,\), got \(30,\) and \(29,\)$"):
            metric(scores, labels[:29])
        with pytest.raises(ValueError, match="^scores contain NaN; drop or impute those items before ranking$"):
            metric(np.where(np.arange(30) == 3, np.nan, scores), labels)


def test_a_resample_without_one_class_is_nan_without_a_warning():
    scores, labels = np.array([0.1, 0.4, 0.35, 0.8]), np.array([False, False, True, True])
    no_positive = np.array([[1, 2, 0, 0], [0, 0, 1, 3]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for metric in (weighted.auroc_weighted, weighted.auprc_weighted):
            values = metric(scores, labels, no_positive)
            assert np.isnan(values).all()


def test_pearson_weighted_of_a_resample_whose_x_is_constant_is_nan_without_a_warning():
    x, y = np.array([1.0, 1.0, 1.0, 2.0, 5.0]), np.array([0.3, 1.2, 0.1, 4.0, 2.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = weighted.pearson_weighted(np.stack([x, y]), y, np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]))
    assert np.isnan(r[0, 0]) and r[0, 1] == pytest.approx(1.0)
    assert r[1, 0] == pytest.approx(np.corrcoef(x, y)[0, 1])
    fractional = weighted.pearson_weighted(x, y, np.full((1, 5), 0.15))  # weights summing to less than 1
    assert fractional[0] == pytest.approx(np.corrcoef(x, y)[0, 1])
    with pytest.raises(ValueError, match=r"^x must be \(K, N\) or \(N,\) and y \(N,\), got \(1, 5\) and \(4,\)$"):
        weighted.pearson_weighted(x, y[:4])


def test_bootstrap_defaults_and_the_undefined_interval_of_no_units():
    values = np.random.default_rng(0).normal(size=40)
    default = stats.bootstrap(weighted_mean_statistic(values), 40)
    assert default.samples.shape == (1000,) and default.level == 0.95
    np.testing.assert_array_equal(default.samples,
                                  stats.bootstrap(weighted_mean_statistic(values), 40, n_resamples=1000, seed=0).samples)
    nothing = stats.bootstrap(weighted_mean_statistic(values), 0, n_resamples=20, level=0.8)
    assert nothing.level == 0.8 and nothing.samples.dtype == np.float64 and np.isnan(nothing.samples).all()


def test_bootstrap_rejects_a_statistic_whose_full_data_shape_differs_from_its_resamples():
    def inconsistent(weights):
        return np.zeros((1, 3)) if weights is None else np.zeros((weights.shape[0], 2))

    with pytest.raises(ValueError, match=r"^statistic gave \(1, 3\) on the full data but \(2,\) per resample$"):
        stats.bootstrap(inconsistent, 10, n_resamples=5)


def test_permutation_pvalue_counts_exact_ties_as_extreme_and_its_slack_is_relative():
    null = np.array([0.0, 0.0, -1.0, 2.0, 0.5, 0.5 * (1 + 1e-13)])
    assert stats.permutation_pvalue(0.0, null, "greater") == pytest.approx((1 + 5) / 7)  # 0, 0, 2, 0.5, 0.5
    assert stats.permutation_pvalue(0.0, null, "less") == pytest.approx((1 + 3) / 7)  # 0, 0, -1
    assert stats.permutation_pvalue(0.5, null, "less") == pytest.approx((1 + 5) / 7)  # all but 2
    tiny = np.array([-1.0, -2.0, 1e-30])
    assert stats.permutation_pvalue(1e-20, tiny, "greater") == pytest.approx(1 / 4)
    with pytest.raises(ValueError, match="^alternative must be 'greater', 'less' or 'two-sided', got 'both'$"):
        stats.permutation_pvalue(0.0, null, "both")


def test_permute_between_units_swaps_a_stratum_of_two_and_checks_its_arguments():
    units = [np.zeros(3), np.zeros(3), np.zeros(5)]
    perms = stats.permute_between_units(units, n_permutations=50, seed=0)
    assert {tuple(p) for p in perms} == {(0, 1, 2), (1, 0, 2)}
    with pytest.raises(ValueError, match=r"^strata must have shape \(3,\), got \(2,\)$"):
        stats.permute_between_units(units, n_permutations=5, seed=0, strata=np.zeros(2))
    with pytest.raises(ValueError, match="^n_units must be at least 1, got 0$"):
        stats.permute_between_units([], n_permutations=5, seed=0)
    with pytest.raises(ValueError, match="^n_permutations must be at least 1, got 0$"):
        stats.permute_between_units(units, n_permutations=0, seed=0)


def test_ranking_metrics_in_chunks_of_one_resample_when_resamples_outnumber_items(monkeypatch):
    scores, labels = np.array([0.2, 0.9, 0.4, 0.7]), np.array([False, True, False, True])
    weights = stats.resample_counts(4, 10, seed=1)
    whole = weighted.auroc_weighted(scores, labels, weights)
    monkeypatch.setattr(weighted, "_CHUNK_BYTES", 1)
    assert weighted.auroc_weighted(scores, labels, weights).shape == (10,)
    np.testing.assert_array_equal(weighted.auroc_weighted(scores, labels, weights), whole)


def test_interval_and_resample_arguments_are_checked_with_one_clear_line():
    samples = np.linspace(0.0, 1.0, 11)
    for level in (0.0, 1.0, 1.5):
        with pytest.raises(ValueError, match=f"^level must lie strictly between 0 and 1, got {level}$"):
            stats.percentile_interval(samples, level)
    with pytest.raises(ValueError, match=r"^max_nan_fraction must lie in \[0, 1\], got 1.5$"):
        stats.percentile_interval(samples, max_nan_fraction=1.5)
    with pytest.raises(ValueError, match="^n_units must be at least 1, got 0$"):
        stats.resample_indices(0, 5, seed=0)
    with pytest.raises(ValueError, match="^n_resamples must be at least 1, got 0$"):
        stats.resample_indices(5, 0, seed=0)
    assert stats.nan_fraction(np.zeros((0, 3))).tolist() == [1.0, 1.0, 1.0]


def test_select_and_score_with_an_empty_part_is_undefined_at_the_requested_level():
    def never_called(counts):
        raise AssertionError("an empty part: nothing to compute")

    empty = stats.select_and_score(never_called, never_called, 0, 5, seeds=(0, 1), level=0.8, n_resamples=20)
    assert empty.choice.shape == (0,) and np.isnan(empty.same_choice) and empty.level == 0.8


def test_select_and_score_defaults_ignores_unchosen_candidates_and_states_misuse_in_one_line():
    values = np.array([[1.0, 2.0, np.inf]])  # the third candidate is never chosen (NaN on the selection part)

    def select(counts):
        rows = 1 if counts is None else counts.shape[0]
        return np.tile([0.1, 0.3, np.nan], (rows, 1))

    def score(counts):
        return np.repeat(values, 1 if counts is None else counts.shape[0], axis=0)

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        chosen = stats.select_and_score(select, score, 4, 4, seeds=(0, 1))
    assert chosen.samples.shape == (1000,) and chosen.index == 1 and chosen.estimate == 2.0
    with pytest.raises(ValueError, match="^larger_is_better applies to the default choice; a custom choose sets its "
                                         "own direction$"):
        stats.select_and_score(select, score, 4, 4, seeds=(0, 1), choose=stats.choose_best, larger_is_better=False)
    with pytest.raises(ValueError, match=r"^select must give \(B', K\) selection values, got shape \(5,\)$"):
        stats.select_and_score(lambda c: np.zeros(5), score, 4, 4, seeds=(0, 1), n_resamples=5)
    with pytest.raises(ValueError, match=r"^choose gave coefficients of shape \(5,\) for selection values \(5, 3\)$"):
        stats.select_and_score(select, score, 4, 4, seeds=(0, 1), n_resamples=5, choose=lambda v: np.ones(5))
    with pytest.raises(ValueError, match=r"^choose gave a coefficient to a candidate whose selection value is NaN "
                                         r"\(undefined\)$"):
        stats.select_and_score(select, score, 4, 4, seeds=(0, 1), n_resamples=5, choose=np.ones_like)
    with pytest.raises(ValueError, match=r"^score must give \(B', K\) or \(B', K, S\) per-candidate values for "
                                         r"\(5, 3\) choices, got shape \(5, 2\)$"):
        stats.select_and_score(select, lambda c: np.zeros((5, 2)), 4, 4, seeds=(0, 1), n_resamples=5)

    def whole_part_disagrees(counts):
        return np.zeros((2, 3)) if counts is None else select(counts)

    with pytest.raises(ValueError, match=r"^select gave \(2, 3\) on the whole part; \(1, 3\) expected$"):
        stats.select_and_score(whole_part_disagrees, score, 4, 4, seeds=(0, 1), n_resamples=5)
