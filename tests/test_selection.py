"""The selection protocol (`stats.select_and_score`): choose on the selection part, score on the scoring part,
both resampled within their own part, the choice redone in every resample; one rule for undefined candidates.
Properties of the primitive, then the families' use of it."""

from __future__ import annotations

import importlib
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from test_activation_patching import patching_statistics

from seqclaims.core.families import Context
from seqclaims.methods import attention as att
from seqclaims.methods import interventions as iv
from seqclaims.methods import stats
from seqclaims.paths import cache_dir

# --------------------------------------------------------------------------- strategies and helpers

# Integer values keep every weighted sum exact, so results compare to the bit however resamples are chunked.
VALUE = st.integers(-4, 4).map(float)
MAYBE_UNDEFINED = st.one_of(VALUE, VALUE, VALUE, st.just(np.nan))


@st.composite
def parts(draw, max_candidates: int = 4, undefined: bool = True):
    """Per-unit values of K candidates on a selection part and on a scoring part, seeds, resamples, level."""
    k = draw(st.integers(1, max_candidates))
    elements = MAYBE_UNDEFINED if undefined else VALUE
    selection = draw(hnp.arrays(np.float64, (draw(st.integers(1, 10)), k), elements=elements))
    scoring = draw(hnp.arrays(np.float64, (draw(st.integers(1, 10)), k), elements=MAYBE_UNDEFINED))
    seeds = (draw(st.integers(0, 2**32)), draw(st.integers(0, 2**32)))
    return SimpleNamespace(selection=selection, scoring=scoring, seeds=seeds, n_resamples=draw(st.integers(1, 150)),
                           level=draw(st.sampled_from([0.5, 0.9, 0.95])))


def weighted_means(values: np.ndarray):
    """counts (B, n) | None -> (B, K) weighted mean of each candidate over the units; NaN where a drawn unit
    is NaN (so a candidate can be undefined in some resamples and not in others)."""

    def statistic(counts):
        w = np.ones((1, len(values))) if counts is None else np.asarray(counts, dtype=np.float64)
        means = w @ np.nan_to_num(values) / w.sum(axis=1, keepdims=True)
        return np.where(w @ np.isnan(values) > 0, np.nan, means)

    return statistic


def run(data, scoring: np.ndarray | None = None, select=None, **kwargs) -> stats.Selection:
    scoring = data.scoring if scoring is None else scoring
    return stats.select_and_score(select or weighted_means(data.selection), weighted_means(scoring),
                                  len(data.selection), len(scoring), seeds=data.seeds, n_resamples=data.n_resamples,
                                  level=data.level, **kwargs)


def first_best(row: np.ndarray) -> int:
    """Reference rule: the first candidate with the largest defined value, -1 when none is defined."""
    defined = np.flatnonzero(~np.isnan(row))
    return -1 if defined.size == 0 else int(defined[np.argmax(row[defined])])


# --------------------------------------------------------------------------- properties of the primitive


@settings(max_examples=150, deadline=None)
@given(data=parts(), other=st.data())
def test_the_selection_never_sees_the_scoring_part(data, other):
    """The choice, its frequency and which resamples choose anything are the same whatever the scoring data
    (even its number of units); `select` only ever receives the selection part's own resamples."""
    seen = []

    def recording(counts):
        seen.append(counts)
        return weighted_means(data.selection)(counts)

    first = run(data, select=recording)
    changed = other.draw(hnp.arrays(np.float64, (other.draw(st.integers(1, 10)), data.selection.shape[1]),
                                    elements=MAYBE_UNDEFINED))
    second = run(data, scoring=changed)
    assert first.index == second.index and first.same_choice == second.same_choice
    np.testing.assert_array_equal(first.choice, second.choice)
    np.testing.assert_array_equal(first.frequency, second.frequency)
    drawn = [counts for counts in seen if counts is not None]
    assert len(seen) - len(drawn) == 1  # the whole selection part, once, for the point estimate
    np.testing.assert_array_equal(np.concatenate(drawn),
                                  stats.resample_counts(len(data.selection), data.n_resamples, data.seeds[0]))


@settings(max_examples=150, deadline=None)
@given(data=parts())
def test_every_resample_scores_the_candidate_its_own_selection_part_chose(data):
    """Against a reference written out: per resample, the first best defined candidate on the resampled
    selection part, its value on the resampled scoring part; the point estimate likewise on the whole parts."""
    selection, scoring = weighted_means(data.selection), weighted_means(data.scoring)
    chosen = run(data)
    picks = [first_best(row) for row in selection(stats.resample_counts(len(data.selection), data.n_resamples,
                                                                        data.seeds[0]))]
    scored = scoring(stats.resample_counts(len(data.scoring), data.n_resamples, data.seeds[1]))
    expected = [np.nan if k < 0 else scored[b, k] for b, k in enumerate(picks)]
    np.testing.assert_array_equal(chosen.samples, expected)
    index = first_best(selection(None)[0])
    assert chosen.index == index
    np.testing.assert_array_equal(chosen.estimate, np.nan if index < 0 else scoring(None)[0, index])
    made = [k for k in picks if k >= 0]
    counted = np.bincount(made, minlength=data.selection.shape[1])
    np.testing.assert_allclose(chosen.frequency, counted / max(1, len(made)))


@settings(max_examples=150, deadline=None)
@given(data=parts(max_candidates=1, undefined=False))
def test_one_candidate_is_plain_scoring(data):
    """With one candidate, always defined on the selection part, the result is `stats.bootstrap` of the score
    on the scoring part with the scoring seed: the same estimate, samples and interval, to the bit."""
    score = weighted_means(data.scoring)
    chosen = run(data)
    plain = stats.bootstrap(lambda counts: score(counts)[:, 0], len(data.scoring), n_resamples=data.n_resamples,
                            seed=data.seeds[1], level=data.level)
    assert chosen.index == 0 and chosen.frequency.tolist() == [1.0] and chosen.same_choice == 1.0
    for field in ("estimate", "low", "high", "samples", "nan_fraction", "level"):
        np.testing.assert_array_equal(getattr(chosen, field), getattr(plain, field), err_msg=field)


@settings(max_examples=150, deadline=None)
@given(data=parts(), max_nan=st.sampled_from([0.0, 0.01, 0.3, 1.0]))
def test_undefined_candidates_follow_one_rule(data, max_nan):
    """A NaN selection value is never chosen; a resample with no defined candidate is a NaN sample, counted in
    nan_fraction (the interval is NaN past max_nan_fraction); no defined candidate on the whole part: -1, NaN."""
    chosen = run(data, max_nan_fraction=max_nan)
    values = weighted_means(data.selection)(stats.resample_counts(len(data.selection), data.n_resamples,
                                                                  data.seeds[0]))
    assert np.isnan(chosen.samples[np.isnan(values).all(axis=1)]).all()
    assert chosen.nan_fraction == np.isnan(chosen.samples).mean()
    assert np.isnan(chosen.low) == np.isnan(chosen.high) == (chosen.nan_fraction > max_nan or
                                                           np.isnan(chosen.samples).all())
    assert (chosen.frequency[np.isnan(values).all(axis=0)] == 0).all()
    whole = weighted_means(data.selection)(None)[0]
    if np.isnan(whole).all():
        assert chosen.index == -1 and np.isnan(chosen.estimate) and not chosen.choice.any()
    else:
        assert whole[chosen.index] == np.nanmax(whole) and chosen.choice.sum() == 1.0


def test_nothing_defined_on_the_selection_part_is_undefined_never_candidate_zero():
    selection = np.full((8, 3), np.nan)
    scoring = np.arange(24, dtype=float).reshape(8, 3)  # every candidate is defined on the scoring part
    chosen = stats.select_and_score(weighted_means(selection), weighted_means(scoring), 8, 8, seeds=(0, 1),
                                    n_resamples=40)
    assert chosen.index == -1 and np.isnan([chosen.estimate, chosen.low, chosen.high]).all()
    assert np.isnan(chosen.samples).all() and chosen.nan_fraction == 1.0
    assert chosen.frequency.tolist() == [0.0, 0.0, 0.0] and not chosen.choice.any()


def test_the_best_candidate_is_the_first_best_defined_one():
    values = np.array([[np.nan, -np.inf], [np.nan, np.nan], [2.0, 5.0], [5.0, 5.0], [np.inf, np.nan]])
    np.testing.assert_array_equal(stats.choose_best(values), [[0, 1], [0, 0], [0, 1], [1, 0], [1, 0]])
    np.testing.assert_array_equal(stats.choose_best(values, larger_is_better=False),
                                  [[0, 1], [0, 0], [1, 0], [1, 0], [1, 0]])


def test_a_choice_that_takes_an_undefined_candidate_is_refused():
    selection = np.array([[np.nan, 1.0], [np.nan, 2.0]])

    def always_first(values):
        out = np.zeros(values.shape)
        out[:, 0] = 1.0
        return out

    with pytest.raises(ValueError, match="NaN"):
        stats.select_and_score(weighted_means(selection), weighted_means(selection), 2, 2, seeds=(0, 1),
                               n_resamples=5, choose=always_first)


def test_a_contrast_of_sets_and_several_statistics_go_through_the_same_path():
    """A custom choice (the two best candidates against the worst) is the weighted sum of their scores; a
    score with several columns gives one sample per column."""
    rng = np.random.default_rng(3)
    selection, scoring = rng.normal(size=(30, 4)), rng.normal(size=(25, 4))

    def two_best_minus_worst(values):
        out = np.zeros(values.shape)
        order = np.argsort(-values, axis=1)
        rows = np.arange(len(values))
        out[rows, order[:, 0]] = out[rows, order[:, 1]] = 0.5
        out[rows, order[:, -1]] = -1.0
        return out

    def both(counts):  # (B, K, 2): the mean and the mean plus one
        means = weighted_means(scoring)(counts)
        return np.stack([means, means + 1.0], axis=2)

    chosen = stats.select_and_score(weighted_means(selection), both, 30, 25, seeds=(5, 6), n_resamples=60,
                                    choose=two_best_minus_worst)
    coefficients = two_best_minus_worst(weighted_means(selection)(stats.resample_counts(30, 60, 5)))
    means = weighted_means(scoring)(stats.resample_counts(25, 60, 6))
    expected = (coefficients * means).sum(axis=1)
    np.testing.assert_allclose(chosen.samples[:, 0], expected, rtol=1e-12)
    np.testing.assert_allclose(chosen.samples[:, 1], expected, rtol=1e-12)  # the +1 cancels: coefficients sum to 0
    assert chosen.estimate.shape == chosen.low.shape == (2,)
    np.testing.assert_array_equal(chosen.choice, two_best_minus_worst(weighted_means(selection)(None))[0])
    assert chosen.frequency.sum() == pytest.approx(2.0)  # two candidates chosen (positive) per resample


# --------------------------------------------------------------------------- the families' selections


def test_attention_selects_the_head_on_train_in_the_point_estimate_and_in_every_resample():
    """Head 0 leads on the train sequences, head 1 on the test sequences: head 0 is selected on the whole train
    split and in every resample, and scored on the test sequences, where it is near 0."""
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.normal([1.0, 0.5], 0.05, size=(30, 2)), rng.normal([0.0, 2.0], 0.05, size=(30, 2))])
    per_sequence = np.stack([values, np.ones_like(values)], axis=2)  # (n_seq, K, 2): sum and count

    def mean(sums):
        return sums[..., 0] / sums[..., 1]

    train, test = np.arange(30), np.arange(30, 60)
    chosen = att.select_on_train_score_on_test(per_sequence, mean, train, test, n_resamples=200, seeds=(1, 2),
                                               level=0.95)
    assert chosen.index == 0 and chosen.frequency.tolist() == [1.0, 0.0]
    assert chosen.estimate == pytest.approx(values[test, 0].mean())
    np.testing.assert_allclose(chosen.samples, att.split_counts(30, 200, 2) @ values[test, 0] / 30)
    assert chosen.high < 0.1


def test_best_pm_head_is_chosen_on_the_selection_pairs_and_scored_on_the_others():
    """Head 0 restores PM 1.0 on the selection pairs and 0.2 on the scoring pairs, head 1 0.5 and 0.9: best_pm
    reports head 0 with its scoring-pair PM near 0.2, chosen on the selection pairs in every resample."""
    module = importlib.import_module("seqclaims_checks.activation_patching")
    seed, n = 3, 60
    selection, scoring = module.selection_split(Context(SimpleNamespace(seed=seed), cache_dir()), n, 0.5)
    pm = np.empty((2, n))
    pm[:, selection] = [[1.0], [0.5]]
    pm[:, scoring] = [[0.2], [0.9]]
    pm += np.random.default_rng(0).normal(0.0, 0.05, size=pm.shape)
    run_ = iv.PatchingRun([0], np.ones(n), np.zeros(n), pm[None])  # f_clean 1, f_corrupted 0: PM = f_patched
    best = patching_statistics(run_, seed)["best_pm"]
    assert (best.detail["layer"], best.detail["head"]) == (0, 0)
    assert best.detail["selection_frequency"] == {"L0H0": 1.0}
    assert best.estimate == pytest.approx(pm[0, scoring].mean())
    assert 0.1 < best.ci_low and best.ci_high < 0.3


def test_probe_best_layer_is_missing_when_no_layer_is_defined_on_train_never_layer_zero():
    module = importlib.import_module("seqclaims_checks.probe")
    rng = np.random.default_rng(0)
    suite = SimpleNamespace(hooks=["embed", "layer.0.resid_post"], oof_train=rng.normal(size=(2, 40)),
                            test_decision=rng.normal(size=(2, 50)))
    claim = SimpleNamespace(params=SimpleNamespace(layer="all"), resamples=50, ci_level=0.95, seed=0)
    context = Context(claim, cache_dir())
    one_class = np.ones(40, dtype=bool)  # every train AUROC is undefined
    out = module._best_layer_estimates(suite, one_class, module.Resampled.of(np.arange(40)), rng.random(50) < 0.5,
                                       module.Resampled.of(np.arange(50)), claim, context)
    assert out["best_layer"].is_missing and out["best_layer_auroc"].is_missing
    assert "no layer has a defined" in out["best_layer"].reason


def test_head_ablation_never_chooses_or_pairs_a_head_with_an_undefined_association():
    module = importlib.import_module("seqclaims_checks.head_ablation")
    heads = [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1)]
    association = np.array([np.nan, 0.4, 2.0, np.nan, 1.0])
    assert module.uninformative_partners(association, heads, np.array([2])).tolist() == [1]
    assert module.uninformative_partners(association, heads, np.array([4])).tolist() == []  # L1H0 is undefined
    claim = SimpleNamespace(params=module.AblationParams(layer=0, head=0, n_associated=2), resamples=50,
                            ci_level=0.95, seed=0, id="nan", criteria=[])
    ablation = module.Ablation(claim, Context(claim, cache_dir()), np.zeros((5, 30)), association, heads, 0)
    assert ablation.selection(association)[0].tolist() == [2, 4]
    choice = ablation.choose(np.array([association, [np.nan, np.nan, 1.0, np.nan, np.nan]]))
    # the first row's L1H1 has no partner with a defined association; the second row has one defined head
    np.testing.assert_array_equal(choice, np.zeros((2, 5)))
    statistic = ablation.contrast()
    assert statistic.is_missing and "no uninformative head" in statistic.reason
