"""Unit scoring (seqclaims.methods.features): chance and the resampling unit of the AUPRC statistics.

Each test fails under a plausible slip in that code: chance taken as the prevalence instead of the expected
AUPRC of a random ranking (`random_auprc`), or test tokens resampled one by one instead of by the sequence
they belong to.
"""

from __future__ import annotations

from itertools import combinations
from math import comb

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.metrics import average_precision_score

from seqclaims.methods.features import TokenTable, column_auprc, random_auprc, score_units
from seqclaims.methods.stats import bootstrap
from seqclaims.methods.weighted import auprc_weighted


def exact_random_auprc(positives: int, total: int) -> float:
    """Mean average precision over every placement of the positives in a ranking of `total` items."""
    ranking = -np.arange(total, dtype=float)  # item 0 ranked first; no ties
    values = []
    for placed in combinations(range(total), positives):
        labels = np.zeros(total, dtype=bool)
        labels[list(placed)] = True
        values.append(average_precision_score(labels, ranking))
    assert len(values) == comb(total, positives)
    return float(np.mean(values))


@pytest.mark.parametrize(("positives", "total"), [(1, 5), (2, 6), (3, 9), (5, 12), (1, 12), (11, 12)])
def test_random_auprc_is_the_mean_average_precision_over_every_ranking(positives, total):
    exact = exact_random_auprc(positives, total)
    harmonic = sum(1.0 / k for k in range(1, total + 1))
    closed_form = (positives - 1) / (total - 1) + harmonic * (total - positives) / (total * (total - 1))
    assert exact == pytest.approx(closed_form, abs=1e-12)
    # random_auprc takes H_N as ln N + gamma + 1/2N, off by about 1/(12 N^2) (scaled down further)
    assert float(random_auprc(positives, total)) == pytest.approx(exact, abs=1 / (12 * total**2))
    assert exact > positives / total + 0.01  # above the prevalence at these sizes


def test_random_auprc_tends_to_the_prevalence_from_above():
    totals = np.array([10**2, 10**3, 10**4, 10**5, 10**6], dtype=float)
    excess = random_auprc(0.1 * totals, totals) - 0.1
    assert (excess > 0).all() and (np.diff(excess) < 0).all() and excess[-1] < 2e-5
    np.testing.assert_allclose(excess, 0.9 * np.log(totals) / totals, rtol=0.25)


def unit_table(n_seq: int, copies: int, seed: int) -> tuple[TokenTable, np.ndarray]:
    """`n_seq` sequences, the first half train, each of `copies` identical tokens (label and activations),
    and two units: one that detects the label noisily and one that is noise."""
    rng = np.random.default_rng(seed)
    label = rng.random(n_seq) < 0.25
    label[[0, n_seq // 2]] = True  # a positive in each split
    values = np.column_stack([label + rng.normal(0.0, 0.8, n_seq), rng.normal(size=n_seq)])
    row = np.repeat(np.arange(n_seq), copies)
    table = TokenTable(row=row, position=np.tile(np.arange(copies), n_seq), label=label[row],
                       test=row >= n_seq // 2, unit=row, n_rows=n_seq)
    return table, values[row]


def scored(table: TokenTable, units: np.ndarray, seed: int = 0) -> dict:
    return score_units([units], table, ["detector", "noise"], named=None, level=0.95, resamples=400, seed=seed,
                       min_n=5).statistics


def test_chance_is_the_random_ranking_auprc_of_the_test_tokens_not_the_prevalence():
    """40 test tokens, 6 of them annotated: a random ranking's expected AUPRC is 0.22, the prevalence 0.15."""
    table, units = unit_table(80, 1, seed=3)
    test_labels = table.label[table.test]
    positives, total = int(test_labels.sum()), int(test_labels.size)
    expected = float(random_auprc(positives, total))
    assert expected > positives / total + 0.04
    statistics = scored(table, units)
    chance, ratio = statistics["chance"], statistics["auprc_over_chance"]
    assert statistics["prevalence"].estimate == pytest.approx(positives / total)
    assert chance.estimate == pytest.approx(expected)
    assert ratio.estimate == pytest.approx(statistics["auprc"].estimate / expected)
    assert ratio.ceiling.estimate == pytest.approx(1 / expected)


def test_tokens_of_one_sequence_are_resampled_together():
    """Every token copied 16 times within its sequence: resampling whole sequences, the copies add nothing,
    so every AUPRC interval is that of one token per sequence; a token-level bootstrap would be about
    sqrt(16) = 4 times narrower, as if the copies were independent evidence."""
    copies = 16
    single, single_units = unit_table(120, 1, seed=0)
    copied, copied_units = unit_table(120, copies, seed=0)
    one, many = scored(single, single_units), scored(copied, copied_units)
    for name in ("auprc", "best_auprc", "prevalence", "motif_cosine"):
        assert [many[name].estimate, many[name].ci_low, many[name].ci_high] == pytest.approx(
            [one[name].estimate, one[name].ci_low, one[name].ci_high], rel=1e-9), name
    assert many["auprc"].n == one["auprc"].n == 60  # test sequences, not tokens
    test = copied.test
    scores, labels = copied_units[test, 0], copied.label[test]
    token_level = bootstrap(lambda w: auprc_weighted(scores, labels, w), int(test.sum()), n_resamples=400)
    width = many["auprc"].ci_high - many["auprc"].ci_low
    assert width > 2.5 * (token_level.high - token_level.low)


# ---------------------------------------------------------------------------------------------
# The AUPRC engine and when the evidence is too thin to score


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_column_auprc_is_sklearns_average_precision_for_dense_sparse_and_row_subsets(seed):
    """130 columns (more than two blocks), tied values, sparse codes with absent (zero) entries, labels as 0/1."""
    rng = np.random.default_rng(seed)
    labels = (rng.random(90) < 0.3).astype(int)
    dense = np.round(rng.normal(size=(90, 130)), 1)
    codes = np.where(rng.random((90, 130)) < 0.6, 0.0, np.abs(dense))
    rows = np.flatnonzero(rng.random(90) < 0.7)

    def expected(units, y):
        return [average_precision_score(y, units[:, j]) for j in range(units.shape[1])]

    np.testing.assert_allclose(column_auprc(dense, labels), expected(dense, labels), atol=1e-12)
    np.testing.assert_allclose(column_auprc(sp.csr_matrix(codes), labels), expected(codes, labels), atol=1e-12)
    np.testing.assert_allclose(column_auprc(dense, labels[rows], rows=rows), expected(dense[rows], labels[rows]),
                               atol=1e-12)
    np.testing.assert_allclose(column_auprc(sp.csr_matrix(codes), labels[rows], rows=rows),
                               expected(codes[rows], labels[rows]), atol=1e-12)


def test_column_auprc_with_one_positive_and_undefined_without_both_classes():
    units = np.array([[0.9, 0.0], [0.1, 0.0], [0.5, 0.3], [0.2, 0.0]])
    one = np.array([0, 0, 1, 0])
    np.testing.assert_allclose(column_auprc(units, one), [0.5, 1.0])
    np.testing.assert_allclose(column_auprc(sp.csr_matrix(units), one), [0.5, 1.0])
    for labels in (np.zeros(4, int), np.ones(4, int)):
        assert np.isnan(column_auprc(units, labels)).all()
        assert np.isnan(column_auprc(sp.csr_matrix(units), labels)).all()
    rows = np.array([2])  # the scored rows hold one class only
    assert np.isnan(column_auprc(units, one[rows], rows=rows)).all()
    assert np.isnan(column_auprc(sp.csr_matrix(units), one[rows], rows=rows)).all()


def split_table(train_labels: list[int], test_labels: list[int]) -> TokenTable:
    """One token per sequence, train sequences first."""
    label = np.array(train_labels + test_labels, dtype=bool)
    row = np.arange(label.size)
    return TokenTable(row=row, position=np.zeros_like(row), label=label, test=row >= len(train_labels), unit=row,
                      n_rows=label.size)


@pytest.mark.parametrize(("train", "test", "reason"), [
    ([0, 1], [], "no scored token in the test split"),
    ([], [1] * 5 + [0], "no scored token in the train split"),
    ([0, 0], [1] * 5 + [0], "no annotated token in the train split"),
    ([1, 1], [1] * 5 + [0], "every scored token of the train split is annotated"),
    ([0, 1], [1] * 4 + [0] * 9, "4 annotated tokens in the test split (fewer than 5)"),
    ([0, 1], [1] * 6, "every scored token of the test split is annotated"),
])
def test_thin_evidence_leaves_every_statistic_missing_with_the_reason(train, test, reason):
    table = split_table(train, test)
    units = np.arange(table.label.size, dtype=float)[:, None]
    statistics = score_units([units], table, ["u"], named=None, level=0.95, resamples=50, seed=0, min_n=1).statistics
    assert {estimate.reason for estimate in statistics.values()} == {reason}
    assert all(estimate.is_missing for estimate in statistics.values())


def test_one_annotated_train_token_and_five_annotated_test_tokens_are_enough():
    table = split_table([1, 0, 0], [1] * 5 + [0] * 5)
    units = table.label.astype(float)[:, None]
    statistics = score_units([units], table, ["u"], named=None, level=0.95, resamples=50, seed=0, min_n=1).statistics
    assert statistics["auprc"].estimate == 1.0 and statistics["auprc"].n == 10


# ---------------------------------------------------------------------------------------------
# Every unit statistic against its definition


def referenced_table(seed: int = 5) -> tuple[TokenTable, np.ndarray]:
    """100 sequences of 4 tokens (the last 50 sequences test), a detector and a noise unit, a k-mer baseline
    that fires on every annotated token and on others, and a composition score that leans towards them."""
    rng = np.random.default_rng(seed)
    row = np.repeat(np.arange(100), 4)
    label = rng.random(row.size) < 0.2
    table = TokenTable(row=row, position=np.tile(np.arange(4), 100), label=label, test=row >= 50, unit=row,
                       n_rows=100, baseline=(label | (rng.random(row.size) < 0.3)).astype(float),
                       composition=0.5 * label + rng.random(row.size))
    return table, np.column_stack([label + rng.normal(0.0, 0.7, row.size), rng.normal(size=row.size)])


def statistics_of(table: TokenTable, units: np.ndarray, named: int | None, level: float = 0.95, resamples: int = 300,
                  seed: int = 0) -> dict:
    return score_units([units], table, ["detector", "noise"], named=named, level=level, resamples=resamples,
                       seed=seed, min_n=5).statistics


def test_unit_statistics_are_their_definitions_on_the_test_split():
    table, units = referenced_table()
    test = table.test
    y = table.label[test]
    statistics = statistics_of(table, units, named=1)
    ap = {name: average_precision_score(y, scores) for name, scores in
          (("named", units[test, 1]), ("best", units[test, 0]), ("pattern", table.baseline[test]),
           ("composition", table.composition[test]))}
    chance = float(random_auprc(y.sum(), y.size))
    expected = {"auprc": ap["named"], "best_auprc": ap["best"], "chance": chance, "prevalence": y.mean(),
                "auprc_over_chance": ap["named"] / chance, "pattern_auprc": ap["pattern"],
                "auprc_over_pattern": ap["named"] / ap["pattern"], "composition_auprc": ap["composition"],
                "auprc_over_composition": ap["named"] / ap["composition"]}
    for name, value in expected.items():
        estimate = statistics[name]
        assert estimate.estimate == pytest.approx(value), name
        assert estimate.ci_low < estimate.estimate < estimate.ci_high, name
        assert estimate.n == 50 and estimate.min_n == 5, name
        assert estimate.detail["n_test_tokens"] == y.size and estimate.detail["n_test_annotated"] == y.sum(), name
    assert statistics["best_auprc"].detail["best_unit"] == "detector"
    for ratio in ("auprc_over_chance", "auprc_over_pattern", "auprc_over_composition"):
        assert statistics[ratio].effect_size == statistics[ratio].estimate
    ceiling = statistics["auprc_over_chance"].ceiling
    assert ceiling.estimate == pytest.approx(1 / chance)
    assert ceiling.ci_low == pytest.approx(1 / statistics["chance"].ci_high, rel=0.02)
    assert ceiling.ci_high == pytest.approx(1 / statistics["chance"].ci_low, rel=0.02)


def test_unit_intervals_follow_the_level_and_the_chosen_unit_is_reported_without_a_named_one():
    table, units = referenced_table()
    wide, narrow = statistics_of(table, units, named=1), statistics_of(table, units, named=1, level=0.8)
    for name in ("auprc", "best_auprc", "chance", "auprc_over_chance", "pattern_auprc", "composition_auprc"):
        assert wide[name].ci_low < narrow[name].ci_low and narrow[name].ci_high < wide[name].ci_high, name
    chosen = statistics_of(table, units, named=None)
    for name in ("auprc", "auprc_over_chance", "auprc_over_pattern", "auprc_over_composition"):
        assert chosen[name].estimate != wide[name].estimate, name
    assert [chosen["auprc"].estimate, chosen["auprc"].ci_low, chosen["auprc"].ci_high] == \
        [chosen["best_auprc"].estimate, chosen["best_auprc"].ci_low, chosen["best_auprc"].ci_high]
    assert chosen["auprc_over_chance"].estimate == pytest.approx(chosen["auprc"].estimate / chosen["chance"].estimate)


def test_without_a_baseline_or_a_composition_detector_their_statistics_are_missing_with_the_reason():
    table, units = referenced_table()
    table.baseline = table.composition = None
    statistics = statistics_of(table, units, named=None)
    no_kmer = "no k-mer baseline: only start_codon, stop_codon, donor and acceptor annotations have a consensus"
    no_window = "no composition detector (the annotation has no window)"
    for name, reason in (("pattern_auprc", no_kmer), ("auprc_over_pattern", no_kmer),
                         ("composition_auprc", no_window), ("auprc_over_composition", no_window)):
        assert statistics[name].is_missing and statistics[name].reason == reason and statistics[name].n == 50, name
    assert not statistics["auprc_over_chance"].is_missing


def test_a_perfect_unit_is_at_its_ceiling_in_every_resample():
    """A unit that ranks every annotated token first has AUPRC 1 in every resample, so its ratio to chance is
    1 / chance resample by resample: the ratio's interval is the ceiling's, named or chosen."""
    table, units = referenced_table()
    units[:, 0] = table.label + 0.01 * units[:, 1]
    for named in (0, None):
        statistics = statistics_of(table, units, named=named)
        assert [statistics["auprc"].ci_low, statistics["auprc"].ci_high] == [1.0, 1.0]
        ratio = statistics["auprc_over_chance"]
        assert [ratio.estimate, ratio.ci_low, ratio.ci_high] == pytest.approx(
            [ratio.ceiling.estimate, ratio.ceiling.ci_low, ratio.ceiling.ci_high])


def test_the_unit_is_chosen_on_the_train_split_and_its_intervals_follow_resamples_and_seed():
    """Unit "train" detects the annotation on train sequences only, unit "test" on test sequences only: the
    choice is "train", whose test AUPRC is near chance."""
    table, units = referenced_table()
    noise = np.random.default_rng(9).normal(size=table.label.size)
    detector = table.label + 0.3 * noise
    split_units = np.column_stack([np.where(table.test, noise, detector), np.where(table.test, detector, noise)])
    statistics = score_units([split_units], table, ["train", "test"], named=None, level=0.95, resamples=300, seed=0,
                             min_n=5).statistics
    test = table.test
    assert statistics["best_auprc"].detail["best_unit"] == "train"
    assert statistics["best_auprc"].estimate == pytest.approx(average_precision_score(table.label[test], noise[test]))
    runs = {(resamples, seed): statistics_of(table, units, named=1, resamples=resamples, seed=seed)
            for resamples, seed in ((300, 0), (301, 0), (300, 7))}
    for name in ("auprc", "best_auprc"):  # the named unit's resamples, and the selection's
        first, more, other_seed = ((run[name].ci_low, run[name].ci_high) for run in runs.values())
        assert first != more and first != other_seed, name
