"""neuron: known answers on the planted model (the ATG neuron at layer 1, channel 9), selection over every
channel, the k-mer baseline, determinism, null calibration and one-line user errors."""

from __future__ import annotations

from pathlib import Path

import claim_files
import numpy as np
import pytest
from claim_files import FAMILIES
from claim_files import criterion as statistic
from claim_files import evaluate

from seqclaims.core.families import load_claim
from seqclaims.judging.judge import ERROR, EVALUATED
from seqclaims.errors import ClaimError
from seqclaims.methods.features import TokenTable, score_units
from seqclaims.methods.stats import mc_standard_error

PLANTED_DATA = {"dataset": "motif_sites", "matrix": "MA0108.3", "n": 200}
ATG_TOKENS = {"pattern": "ATG", "base": 0, "align": "anchored"}
STRONG = [{"statistic": "auprc", "op": ">=", "threshold": 0.9}]


def write_claim(folder: Path, claim_id: str, *, params: dict, criteria: list[dict] = STRONG, data: dict | None = None,
                **top) -> Path:
    return claim_files.write_claim(folder, claim_id, check="neuron", data=data or PLANTED_DATA, criteria=criteria,
                                   params={"top_windows": 4, **params}, **top)


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    folder = tmp_path_factory.mktemp("neuron")
    every = [*STRONG, {"statistic": "best_auprc", "op": ">=", "threshold": 0.9},
             {"statistic": "auprc_over_chance", "op": ">=", "threshold": 10},
             {"statistic": "motif_cosine", "op": ">=", "threshold": 0.5}]
    return {
        "atg": evaluate(write_claim(folder, "atg-neuron", params={"layer": 1, "channel": 9, "annotation": ATG_TOKENS},
                                    criteria=every)),
        "control": evaluate(write_claim(folder, "control-neuron",
                                        params={"layer": 1, "channel": 10, "annotation": ATG_TOKENS})),
        "again": evaluate(write_claim(folder, "atg-neuron-again",
                                      params={"layer": 1, "channel": 9, "annotation": ATG_TOKENS}, criteria=every)),
        "all_layers": evaluate(write_claim(folder, "best-channel", params={"layer": "all", "annotation": ATG_TOKENS},
                                           criteria=[{"statistic": "best_auprc", "op": ">=", "threshold": 0.9}])),
        "null": evaluate(write_claim(folder, "permuted-atg", params={"layer": 1, "annotation": {**ATG_TOKENS,
                                                                                              "permuted": True}},
                                     criteria=[{"statistic": "auprc_over_chance", "op": ">=", "threshold": 10}])),
    }


def test_planted_atg_neuron_passes(results):
    atg = results["atg"]
    assert atg.status == EVALUATED and atg.verdict == "supported", atg.reason
    assert statistic(atg, "auprc").ci_low >= 0.99
    assert statistic(atg, "auprc").detail["best_unit"] == "L1.9"
    assert statistic(atg, "motif_cosine").estimate > 0.9
    assert atg.figures and "L1.9" in atg.figures[0].title


def test_named_control_channel_fails(results):
    control = results["control"]
    assert control.status == EVALUATED and control.verdict == "refuted", control.reason
    assert statistic(control, "auprc").ci_high < 0.2


def test_selection_over_every_layer_finds_the_planted_channel(results):
    best = results["all_layers"]
    assert best.verdict == "supported", best.reason
    detail = statistic(best, "best_auprc").detail
    assert detail["best_unit"] == "L1.9" and detail["n_units"] == 3 * 128


def test_permuted_annotation_is_refuted(results):
    null = results["null"]
    assert null.verdict == "refuted", null.reason
    assert statistic(null, "auprc_over_chance").ci_low < 3


def test_same_seed_same_statistics(results):
    first, second = results["atg"], results["again"]
    for name in ("auprc", "auprc_over_chance", "motif_cosine"):
        a, b = statistic(first, name), statistic(second, name)
        assert (a.estimate, a.ci_low, a.ci_high) == (b.estimate, b.ci_low, b.ci_high), name


def test_kmer_baseline_of_annotated_start_codons(tmp_path):
    """Against annotated start codons the ATG neuron knows no more than the ATG baseline (its values among ATG
    tokens carry no start-codon information: auprc_over_pattern is not above 1), and both are far below 0.9
    since most ATGs are not annotated start codons."""
    path = write_claim(tmp_path, "atg-vs-starts", data={"dataset": "promoters", "n": 120, "window": [49, 250]},
                       params={"layer": 1, "channel": 9, "annotation": {"track": "start_codon", "base": 0,
                                                                        "align": "anchored"}},
                       criteria=[*STRONG, {"statistic": "auprc_over_pattern", "op": ">", "threshold": 1},
                                 {"statistic": "pattern_auprc", "op": "<", "threshold": 0.9}])
    result = evaluate(path)
    assert result.status == EVALUATED, result.reason
    assert statistic(result, "auprc").verdict == "fail"
    over_pattern = statistic(result, "auprc_over_pattern")
    assert over_pattern.verdict != "pass" and over_pattern.ci_low < 1 < over_pattern.ci_high
    assert statistic(result, "pattern_auprc").verdict == "pass"


def test_dense_units_null_calibration():
    """Dense channels independent of the labels: the train-selected channel is called above chance no
    more often than the one-sided 2.5 % allows (fast version of scripts/calibrate_sae_feature.py)."""
    supported = []
    for replicate in range(40):
        rng = np.random.default_rng(100 + replicate)
        n_seq, n_tok = 60, 80
        row, position = np.nonzero(np.ones((n_seq, n_tok), dtype=bool))
        labels = rng.random(row.size) < 0.02
        table = TokenTable(row=row, position=position, label=labels, test=row >= 40, unit=row, n_rows=n_seq)
        blocks = [rng.normal(size=(row.size, 32)).astype(np.float16) for _ in range(2)]
        scored = score_units(blocks, table, [f"c{j}" for j in range(64)], named=None, level=0.95, resamples=200,
                             seed=replicate, min_n=5)
        ratio = scored.statistics["auprc_over_chance"]
        if not ratio.is_missing:
            supported.append(ratio.ci_low > 1)
    rate = float(np.mean(supported))
    assert len(supported) >= 30 and rate <= 0.025 + 3 * mc_standard_error(0.025, len(supported)), rate


@pytest.mark.parametrize("params, message", [
    ({"layer": 7, "annotation": ATG_TOKENS}, "not a layer"),
    ({"layer": 1, "channel": 400, "annotation": ATG_TOKENS}, "not a channel"),
    ({"layer": [], "annotation": ATG_TOKENS}, "empty list"),
])
def test_user_errors_are_one_line_results(tmp_path, params, message):
    result = evaluate(write_claim(tmp_path, "bad-neuron", params=params))
    assert result.status == ERROR and message in result.reason and "\n" not in result.reason


def test_channel_needs_a_single_layer(tmp_path):
    path = write_claim(tmp_path, "bad-channel", params={"layer": [0, 1], "channel": 9, "annotation": ATG_TOKENS})
    with pytest.raises(ClaimError, match="single number"):
        load_claim(path, FAMILIES)


def test_composition_neuron_is_far_above_chance_for_tbp_sites_but_not_above_their_composition(tmp_path):
    sites = {"motif": "MA0108.3", "align": "anchored"}
    composition = evaluate(write_claim(tmp_path, "composition-neuron", params={"layer": 1, "channel": 17,
                                                                             "annotation": sites},
                                       criteria=[{"statistic": "auprc_over_chance", "op": ">=", "threshold": 2},
                                                 {"statistic": "auprc_over_composition", "op": ">", "threshold": 1}]))
    verdicts = {c.statistic: c.verdict for c in composition.criteria}
    assert verdicts == {"auprc_over_chance": "pass", "auprc_over_composition": "fail"}, composition.criteria
    atg = evaluate(write_claim(tmp_path, "atg-neuron", params={"layer": 1, "channel": 9,
                                                               "annotation": {"pattern": "ATG", "base": 0,
                                                                              "align": "anchored"}},
                               criteria=[{"statistic": "auprc_over_composition", "op": ">=", "threshold": 2}]))
    assert atg.verdict == "supported"  # ATG vs the other arrangements of A, T and G: about 5x
