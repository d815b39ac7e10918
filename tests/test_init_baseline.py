"""The randomization control (DESIGN section 3): randomly initialised copies of a model, and the _init and
_minus_init statistics the judge adds to every family's key statistics."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import claim_files
from seqclaims.core.families import MINUS_INIT_SUFFIX, Statistic, design_warnings, load_claim, with_init_statistics
from seqclaims.core.values import Estimate
from seqclaims.inputs.init_models import init_copy
from seqclaims.inputs.models import folder_hash, load_model, resolve_folder
from seqclaims.judging.init_baseline import mean_of_copies, paired_difference, widened_by_copy_spread


def test_a_copy_has_the_architecture_and_tokenizer_but_fresh_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("SEQCLAIMS_CACHE", str(tmp_path))
    original_hash = folder_hash(resolve_folder("planted"))
    copy = load_model(init_copy("planted", 7))
    planted = load_model("planted")
    assert (copy.n_layers, copy.n_heads, copy.d_model, copy.d_mlp) == \
        (planted.n_layers, planted.n_heads, planted.d_model, planted.d_mlp)
    assert copy.tokenizer.get_vocab() == planted.tokenizer.get_vocab()
    weights, planted_weights = dict(copy.model.named_parameters()), dict(planted.model.named_parameters())
    assert weights.keys() == planted_weights.keys()
    changed = [name for name in weights if not bool((weights[name] == planted_weights[name]).all())]
    assert any("query" in name for name in changed) and any("dense" in name for name in changed)
    assert folder_hash(resolve_folder("planted")) == original_hash, "the model's own folder is never written"


def test_copies_are_reproducible_by_seed_and_differ_between_seeds(tmp_path, monkeypatch):
    monkeypatch.setenv("SEQCLAIMS_CACHE", str(tmp_path / "a"))
    first = folder_hash(resolve_folder(init_copy("planted", 1)))
    other_seed = folder_hash(resolve_folder(init_copy("planted", 2)))
    monkeypatch.setenv("SEQCLAIMS_CACHE", str(tmp_path / "b"))
    again = folder_hash(resolve_folder(init_copy("planted", 1)))
    assert first == again != other_seed


def _estimate(value: float, samples: np.ndarray, kind: str = "bootstrap") -> Estimate:
    return Estimate(value, float(np.nanpercentile(samples, 2.5)), float(np.nanpercentile(samples, 97.5)),
                    len(samples), samples=samples, samples_kind=kind)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1), st.floats(-1, 1), st.floats(0.01, 1))
def test_the_difference_is_paired_over_resamples(seed, shift, noise):
    """A model whose every resample is its copy's plus a constant: the paired interval is that constant
    alone, however wide each of the two intervals is."""
    rng = np.random.default_rng(seed)
    init_samples = rng.normal(0, noise, 500)
    difference = paired_difference(_estimate(0.3 + shift, init_samples + shift), _estimate(0.3, init_samples), 0.95)
    assert difference.estimate == pytest.approx(shift)
    assert difference.ci_low == pytest.approx(shift) and difference.ci_high == pytest.approx(shift)
    assert difference.detail["interval"] == "paired resamples"


def test_without_resamples_the_difference_is_the_wider_unpaired_interval():
    a = Estimate(0.5, 0.4, 0.6, 50)
    b = Estimate(0.2, 0.1, 0.3, 50)
    difference = paired_difference(a, b, 0.95)
    assert difference.estimate == pytest.approx(0.3)
    assert difference.ci_high - difference.ci_low == pytest.approx(2 * math.sqrt(2) * 0.1, rel=1e-6)
    assert difference.detail["interval"] == "normal approximation, unpaired"


def test_jackknife_values_are_paired_by_the_jackknife():
    rng = np.random.default_rng(0)
    leave_one_out = rng.normal(0.5, 0.01, 40)
    difference = paired_difference(_estimate(0.6, leave_one_out + 0.1, "jackknife"),
                                   _estimate(0.5, leave_one_out, "jackknife"), 0.95)
    assert (difference.ci_low, difference.ci_high) == pytest.approx((0.1, 0.1))
    assert difference.samples_kind == "jackknife"


def test_an_undefined_side_leaves_the_difference_missing_with_its_reason():
    missing = Estimate.missing("no head has a defined r")
    assert paired_difference(missing, Estimate(0.1, 0.0, 0.2, 30), 0.95).reason == "no head has a defined r"


def test_several_copies_average_resample_by_resample():
    rng = np.random.default_rng(1)
    copies = [_estimate(v, rng.normal(v, 0.05, 300)) for v in (0.1, 0.2, 0.3)]
    mean = mean_of_copies(copies, 0.95)
    assert mean.estimate == pytest.approx(0.2)
    assert mean.ci_high - mean.ci_low < copies[0].ci_high - copies[0].ci_low  # averaging narrows
    assert mean.detail["copies"] == [0.1, 0.2, 0.3]


def test_marked_statistics_derive_their_init_statistics():
    derived = with_init_statistics({"r": Statistic("r", init=True), "n": Statistic("n", kind="count")})
    assert set(derived) == {"r", "n", "r_init", "r_minus_init"}
    assert derived["r_minus_init"].control and not derived["r_init"].control
    assert with_init_statistics(derived) == derived


def _gram_claim(tmp_path, **top):
    return claim_files.write_claim(tmp_path, "gram-init", check="gram", model="planted",
                                   data={"dataset": "coding", "n": 60}, params={"layer": 1},
                                   criteria=[{"statistic": "codon_periodicity_minus_init", "op": ">", "threshold": 0}],
                                   **top)


def test_the_judge_adds_init_statistics_and_they_are_reproducible(tmp_path, monkeypatch):
    monkeypatch.setenv("SEQCLAIMS_CACHE", str(tmp_path / "cache"))
    path = _gram_claim(tmp_path)
    first, second = claim_files.evaluate(path), claim_files.evaluate(path)
    found = claim_files.criterion(first, "codon_periodicity_minus_init")
    assert found.estimate is not None and math.isfinite(found.estimate)
    assert (found.estimate, found.ci_low, found.ci_high) == \
        tuple(getattr(claim_files.criterion(second, "codon_periodicity_minus_init"), k)
              for k in ("estimate", "ci_low", "ci_high"))
    assert found.detail["model"] - found.detail["init"] == pytest.approx(found.estimate)


def test_no_copies_when_the_claim_asks_for_none(tmp_path, monkeypatch):
    monkeypatch.setenv("SEQCLAIMS_CACHE", str(tmp_path / "cache"))
    result = claim_files.evaluate(_gram_claim(tmp_path, init_seeds=0))
    assert result.status == "error" and "did not produce codon_periodicity_minus_init" in result.reason


ATG = {"pattern": "ATG", "base": 0, "align": "anchored"}


def test_check_warns_about_p_value_only_and_uncontrolled_claims(tmp_path):
    families = claim_files.FAMILIES
    p_only = claim_files.write_claim(tmp_path, "p-only", check="qk_motif", data=claim_files.SMALL,
                                     criteria=[{"statistic": "max_r_p", "op": "<", "threshold": 0.05}],
                                     correction="holm")
    uncontrolled = claim_files.write_claim(tmp_path, "uncontrolled", check="neuron", data=claim_files.SMALL,
                                           params={"layer": 1, "annotation": ATG},
                                           criteria=[{"statistic": "auprc", "op": ">=", "threshold": 0.5}])
    controlled = claim_files.write_claim(tmp_path, "controlled", check="neuron", data=claim_files.SMALL,
                                         params={"layer": 1, "annotation": ATG},
                                         criteria=[{"statistic": "auprc" + MINUS_INIT_SUFFIX, "op": ">=",
                                                    "threshold": 0.2}], init_seeds=3)
    one_copy = claim_files.write_claim(tmp_path, "one-copy", check="neuron", data=claim_files.SMALL,
                                       params={"layer": 1, "annotation": ATG},
                                       criteria=[{"statistic": "auprc" + MINUS_INIT_SUFFIX, "op": ">=",
                                                  "threshold": 0.2}])
    warnings = {path.stem: design_warnings(load_claim(path, families), families.get(load_claim(path, families).check,
                                                                                     path))
                for path in (p_only, uncontrolled, controlled, one_copy)}
    assert any("p-values only" in w for w in warnings["p-only"])
    assert any("no criterion controls" in w for w in warnings["uncontrolled"])
    assert warnings["controlled"] == []
    assert any("init_seeds: 3" in w for w in warnings["one-copy"])


def test_the_spread_between_networks_keeps_a_null_model_within_the_level():
    """Networks whose statistic varies from one initialisation to the next far more than resampling sequences
    shows: a model that is just another such network is excluded from 0 at about the interval's level once
    the copies' spread widens the paired interval, and far more often without it."""
    rng = np.random.default_rng(3)
    level, k, trials = 0.95, 3, 2000
    missed_widened = missed_paired = 0
    for _ in range(trials):
        networks = rng.normal(0, 1, k + 1)  # the model and its k copies: draws of one distribution
        sequence_noise = rng.normal(0, 0.05, (k + 1, 400))
        model = _estimate(networks[0], networks[0] + sequence_noise[0])
        copies = [_estimate(v, v + noise) for v, noise in zip(networks[1:], sequence_noise[1:])]
        paired = paired_difference(model, mean_of_copies(copies, level), level)
        widened = widened_by_copy_spread(paired, copies, level)
        missed_paired += not paired.ci_low <= 0 <= paired.ci_high
        missed_widened += not widened.ci_low <= 0 <= widened.ci_high
    assert missed_widened / trials <= (1 - level) + 2 * math.sqrt(0.05 * 0.95 / trials)
    assert missed_paired / trials > 0.5


def test_one_copy_says_the_spread_is_not_in_the_interval():
    difference = paired_difference(Estimate(0.5, 0.4, 0.6, 30), Estimate(0.2, 0.1, 0.3, 30), 0.95)
    kept = widened_by_copy_spread(difference, [Estimate(0.2, 0.1, 0.3, 30)], 0.95)
    assert (kept.ci_low, kept.ci_high) == (difference.ci_low, difference.ci_high)
    assert "not in the interval" in kept.detail["between_copies"]
