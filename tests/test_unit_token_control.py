"""Token-identity control of the unit statistics (seqclaims.methods.features) and the resamples behind the key
unit statistics, on synthetic units with known answers.

The sequences are random DNA read one base per token; the annotation is the A of every ATG. A unit that fires
on every A is a token-identity reader: far above chance by raw AUPRC, at chance once the token's identity is
removed. A detector of ATG (it fires on the A of ATG only) keeps its AUPRC, and a unit independent of the
annotation is at chance with or without the control.
"""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from seqclaims.core.families import MINUS_INIT_SUFFIX, load_families
from seqclaims.methods.features import (IDENTITY_DECIDES, TokenTable, UnitParams, annotation_identity_share,
                                        identity_moments, identity_share, mixed_test_tokens, score_units,
                                        seen_test_tokens, token_controlled, token_identities)
from seqclaims.methods.stats import expand_to_items, percentile_interval, resample_counts
from seqclaims.methods.weighted import auprc_weighted

import claim_files

BASES = "ACGT"
KEY_UNIT_STATISTICS = ("auprc", "best_auprc", "auprc_over_chance", "auprc_over_composition", "auprc_over_pattern",
                       "auprc_token_controlled", "auprc_token_controlled_over_chance")


def atg_tokens(seed: int, n_seq: int = 80, length: int = 60) -> tuple[TokenTable, np.ndarray, np.ndarray]:
    """Random sequences, one token per base (token id: the base's index), the first half of the sequences
    train; label: the A of every ATG. Returns the table, (n_seq, length) token ids and (n,) bases."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, 4, size=(n_seq, length))
    is_atg = np.zeros(ids.shape, dtype=bool)
    is_atg[:, :-2] = (ids[:, :-2] == 0) & (ids[:, 1:-1] == 3) & (ids[:, 2:] == 2)
    row, position = np.nonzero(np.ones(ids.shape, dtype=bool))
    table = TokenTable(row=row, position=position, label=is_atg[row, position], test=row >= n_seq // 2, unit=row,
                       n_rows=n_seq)
    table.identity = token_identities(ids, table, [0])
    return table, ids, ids[row, position]


def known_units(table: TokenTable, bases: np.ndarray, seed: int) -> np.ndarray:
    """(n, 3): an A reader, an ATG detector and a unit independent of the annotation, each with a little noise."""
    rng = np.random.default_rng([seed, 7])
    noise = rng.normal(0.0, 0.05, size=(table.label.size, 2))
    return np.column_stack([(bases == 0) + noise[:, 0], table.label + noise[:, 1], rng.normal(size=table.label.size)])


NAMES = ["A reader", "ATG detector", "independent"]


def scored(table: TokenTable, units: np.ndarray, named: int | None, resamples: int = 300, seed: int = 0):
    return score_units([units], table, NAMES, named=named, level=0.95, resamples=resamples, seed=seed, min_n=5)


def test_a_token_reader_is_at_chance_once_token_identity_is_removed():
    table, _, bases = atg_tokens(seed=0)
    result = scored(table, known_units(table, bases, seed=0), named=0)
    statistics = result.statistics
    assert statistics["token_identity_share"].ci_low > 0.95
    assert statistics["auprc_over_chance"].ci_low > 2.5  # raw: an A reader looks like an ATG detector
    controlled = statistics["auprc_token_controlled_over_chance"]
    assert controlled.ci_low < 1 < controlled.ci_high and 0.6 < controlled.estimate < 1.6
    # scored among the A tokens, where 1 in 16 is the A of ATG: chance is about the share of ATG among them
    assert statistics["auprc_token_controlled"].estimate < 0.15
    assert any("A reader is mostly a token-identity reader" in note for note in result.notes)


def test_an_atg_detector_keeps_its_auprc_after_the_token_control():
    table, _, bases = atg_tokens(seed=1)
    result = scored(table, known_units(table, bases, seed=1), named=1)
    statistics = result.statistics
    assert statistics["auprc_token_controlled"].ci_low > 0.95
    assert statistics["auprc_token_controlled_over_chance"].ci_low > 5
    assert statistics["token_identity_share"].estimate < 0.1
    assert not any("token-identity reader" in note for note in result.notes)


def test_without_a_named_unit_the_control_applies_to_the_unit_chosen_on_train():
    """The ATG detector wins on train; its controlled AUPRC is reported, selected again in every resample."""
    table, _, bases = atg_tokens(seed=2)
    statistics = scored(table, known_units(table, bases, seed=2), named=None).statistics
    assert statistics["auprc"].detail["best_unit"] == "ATG detector"
    assert statistics["auprc_token_controlled"].ci_low > 0.8


def test_a_unit_independent_of_the_annotation_covers_chance_in_most_seeds():
    covered = []
    for seed in range(12):
        table, _, bases = atg_tokens(seed=100 + seed, n_seq=60)
        ratio = scored(table, known_units(table, bases, seed=seed), named=2, resamples=200,
                       seed=seed).statistics["auprc_token_controlled_over_chance"]
        covered.append(ratio.ci_low <= 1 <= ratio.ci_high)
    assert np.mean(covered) >= 0.75, covered


def test_neighbour_offsets_make_the_atg_detector_a_token_reader_too():
    """With the two following tokens in the identity (offsets 0, 1, 2) the identity spells ATG: what the detector
    knows is what the tokens say, and no identity holds both annotated and other tokens, so the token-controlled
    statistics are missing, with the reason in a note."""
    table, ids, bases = atg_tokens(seed=3)
    table.identity = token_identities(ids, table, [0, 1, 2])
    result = scored(table, known_units(table, bases, seed=3), named=1)
    # the unit's variance: the label's (about 1/64) and its noise (0.05 ** 2), of which identity explains the first
    assert result.statistics["token_identity_share"].ci_low > 0.75
    for name in ("auprc_token_controlled", "auprc_token_controlled_over_chance"):
        assert result.statistics[name].is_missing and result.statistics[name].reason == IDENTITY_DECIDES, name
    assert any(IDENTITY_DECIDES in note for note in result.notes)
    assert annotation_identity_share(table) == pytest.approx(1.0)
    assert not mixed_test_tokens(table).any()


def test_token_identities_compare_the_token_and_its_neighbours_with_minus_one_off_the_row():
    ids = np.array([[5, 6, 5, 6], [5, 6, 5, 7]])
    row, position = np.nonzero(np.ones(ids.shape, dtype=bool))
    table = TokenTable(row=row, position=position, label=np.zeros(8, bool), test=np.zeros(8, bool), unit=row,
                       n_rows=2)
    alone = token_identities(ids, table, [0])
    assert [len(set(alone[ids[row, position] == v])) for v in (5, 6, 7)] == [1, 1, 1] and len(set(alone)) == 3
    with_next = token_identities(ids, table, [0, 1])
    pairs = [(5, 6), (6, 5), (5, 6), (6, -1), (5, 6), (6, 5), (5, 7), (7, -1)]
    for i in range(8):
        for j in range(8):
            assert (with_next[i] == with_next[j]) == (pairs[i] == pairs[j]), (i, j)
    before = token_identities(ids, table, [-1, 0])  # (-1, 5) opens both rows
    assert before[0] == before[4] and before[0] != before[2]


def test_identity_moments_and_the_controlled_activation():
    identity = np.array([0, 0, 0, 1, 1, 2, 3, 3, 0, 1, 2, 3])
    values = np.array([1.0, 3.0, 5.0, 10.0, 14.0, 5.0, 7.0, 7.0, 100.0, 100.0, 100.0, 100.0])
    fit = np.arange(12) < 8  # class 2 has one fitted token; class 3 has two of one value
    mean, spread = identity_moments(values, identity, fit)
    np.testing.assert_allclose(mean[8:], [3, 12, np.nan, 7])
    np.testing.assert_allclose(spread[8:], [2, np.sqrt(8), np.nan, 0])
    table = TokenTable(row=np.arange(12), position=np.zeros(12, int), label=np.zeros(12, bool), test=~fit,
                       unit=np.arange(12), n_rows=12, identity=identity)
    np.testing.assert_allclose(token_controlled(values, table)[8:], [97 / 2, 88 / np.sqrt(8), np.nan, 0])
    assert seen_test_tokens(table).tolist() == [True, True, False, True]
    table.label = np.array([1, 0, 0, 1, 1, 0, 1, 0, 0, 0, 0, 0], dtype=bool)  # class 1: all annotated on train
    assert mixed_test_tokens(table).tolist() == [True, False, False, True]


def test_a_token_reader_whose_spread_differs_between_tokens_is_still_at_chance():
    """A unit that reads A and varies with context on A (about 0 elsewhere): centred within identity, the upper
    half of the A tokens would rank first and the A of ATG look detected at about twice chance; standardised
    within identity it is at chance."""
    table, _, bases = atg_tokens(seed=9)
    rng = np.random.default_rng(9)
    reader = np.where(bases == 0, 3 + rng.normal(0, 0.5, bases.size), rng.normal(0, 1e-3, bases.size))
    units = np.column_stack([reader, known_units(table, bases, seed=9)[:, 1:]])
    statistics = scored(table, units, named=0).statistics
    centred = auprc_weighted((reader - identity_moments(reader, table.identity, ~table.test)[0])[table.test],
                             table.label[table.test])[0]
    assert centred > 1.8 * statistics["chance"].estimate
    controlled = statistics["auprc_token_controlled_over_chance"]
    assert controlled.ci_low < 1 < controlled.ci_high


def test_identity_share_is_one_minus_residual_over_total_and_weights_are_copies():
    rng = np.random.default_rng(4)
    values, fitted = rng.normal(size=50), rng.normal(size=50)
    expected = 1 - np.sum((values - fitted) ** 2) / np.sum((values - values.mean()) ** 2)
    assert identity_share(values, fitted)[0] == pytest.approx(expected)
    weights = rng.integers(0, 3, size=(2, 50))
    copies = [identity_share(np.repeat(values, w), np.repeat(fitted, w))[0] for w in weights]
    np.testing.assert_allclose(identity_share(values, fitted, weights), copies)
    assert identity_share(values, values)[0] == 1.0
    assert np.isnan(identity_share(np.ones(10), np.zeros(10))[0])


def test_many_rare_identities_do_not_make_a_noise_unit_a_token_reader():
    """2,000 identity classes over 4,000 train tokens (as with k-mer tokens): an in-sample share of a noise unit
    would be about one half; measured out of sample it is about 0 or below."""
    rng = np.random.default_rng(8)
    n_seq, length = 160, 50
    row, position = np.nonzero(np.ones((n_seq, length), dtype=bool))
    label = rng.random(row.size) < 0.05
    table = TokenTable(row=row, position=position, label=label, test=row >= n_seq // 2, unit=row, n_rows=n_seq,
                       identity=rng.integers(0, 2000, size=row.size))
    units = np.column_stack([label + rng.normal(0, 0.3, row.size), rng.normal(size=row.size)])
    statistics = score_units([units], table, ["detector", "noise"], named=1, level=0.95, resamples=200, seed=0,
                             min_n=5).statistics
    assert statistics["token_identity_share"].ci_high < 0.1
    controlled = statistics["auprc_token_controlled_over_chance"]
    assert controlled.ci_low < 1 < controlled.ci_high
    assert controlled.detail["n_test_tokens_mixed_identity"] < table.test.sum()


@pytest.mark.parametrize("named", [1, None])
def test_key_statistics_carry_their_resamples_drawn_from_the_claims_seed(named):
    """Resample b of a key statistic is its value on the test sequences that resample_counts(seed) draws for
    b: the pairing that _minus_init relies on, for a named unit and for the unit chosen again in every resample."""
    table, _, bases = atg_tokens(seed=5)
    table.baseline = table.label | (bases == 0)
    table.composition = table.label + np.random.default_rng(5).random(table.label.size)
    statistics = scored(table, known_units(table, bases, seed=5), named=named, resamples=120, seed=11).statistics
    for name in KEY_UNIT_STATISTICS:
        estimate = statistics[name]
        assert estimate.samples is not None and estimate.samples.shape == (120,), name
        assert [estimate.ci_low, estimate.ci_high] == pytest.approx(list(percentile_interval(estimate.samples)))
    test = table.test
    unit_ids, unit_of_token = np.unique(table.unit[test], return_inverse=True)
    counts = resample_counts(unit_ids.size, 120, 11)
    detector = known_units(table, bases, seed=5)[test, 1]
    expected = auprc_weighted(detector, table.label[test], expand_to_items(counts[:5], unit_of_token))
    np.testing.assert_allclose(statistics["auprc"].samples[:5], expected)


def test_without_token_ids_the_token_statistics_are_missing_with_the_reason():
    table, _, bases = atg_tokens(seed=6)
    table.identity = None
    statistics = scored(table, known_units(table, bases, seed=6), named=0).statistics
    for name in ("auprc_token_controlled", "auprc_token_controlled_over_chance", "token_identity_share"):
        assert statistics[name].is_missing and "no token identities" in statistics[name].reason, name
    assert not statistics["auprc"].is_missing


def test_token_offsets_must_include_the_token_and_stay_near_it():
    annotation = {"pattern": "ATG"}
    assert UnitParams(annotation=annotation).token_offsets == [0]
    assert UnitParams(annotation=annotation, token_offsets=[-1, 0, 1]).token_offsets == [-1, 0, 1]
    for offsets, message in (([1], "include 0"), ([0, 0], "twice"), ([0, 40], "within")):
        with pytest.raises(ValidationError, match=message):
            UnitParams(annotation=annotation, token_offsets=offsets)


@pytest.mark.parametrize("family", ["neuron", "sae_feature"])
def test_unit_families_mark_their_key_and_control_statistics(family):
    statistics = load_families([claim_files.REPO / "checks"]).families[family].statistics
    assert {name for name, s in statistics.items() if s.init} == set(KEY_UNIT_STATISTICS)
    controls = {name for name, s in statistics.items() if s.control and not name.endswith(MINUS_INIT_SUFFIX)}
    assert controls == {"auprc_over_pattern", "auprc_over_composition", "auprc_token_controlled",
                        "auprc_token_controlled_over_chance", "token_identity_share"}
    assert not statistics["pattern_auprc"].init and not statistics["composition_auprc"].init
    assert all(name + MINUS_INIT_SUFFIX in statistics for name in KEY_UNIT_STATISTICS)
