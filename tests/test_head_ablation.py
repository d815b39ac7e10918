"""head_ablation: association statistics, ablation runs against direct computations, known answers on the
planted model, determinism, null calibration, user errors."""

from __future__ import annotations

import importlib
from types import SimpleNamespace

import numpy as np
import pytest
from claim_files import criterion, evaluate, write_claim
from test_activation_patching import assert_user_errors_are_one_line, single_thread  # noqa: F401

from seqclaims.core.families import Context
from seqclaims.core.verdicts import PASS, interval_verdict
from seqclaims.inputs import models
from seqclaims.inputs.datasets import build
from seqclaims.methods import interventions as iv
from seqclaims.methods.stats import mc_standard_error
from seqclaims.paths import cache_dir

PLANTED_DATA = {"dataset": "motif_sites", "matrix": "MA0108.3", "n": 1000}
TOKEN_LOGIT = {"kind": "token_logit", "token": "TATAAAA"}
HURTS_MORE = [{"statistic": "associated_minus_uninformative", "op": "<", "threshold": 0.0}]
CHECK = importlib.import_module("seqclaims_checks.head_ablation")


def ablation_claim(folder, claim_id, criteria=HURTS_MORE, **params):
    base = {"layers": [0], "max_sequences": 60, "metric": TOKEN_LOGIT}
    return write_claim(folder, claim_id, check="head_ablation", data=PLANTED_DATA, params={**base, **params},
                       criteria=criteria)


@pytest.fixture(scope="module")
def planted():
    return models.load_model("planted")


# ---------------------------------------------------------------------------------------------
# Association and partners


def test_association_statistics_equal_direct_computations():
    rng = np.random.default_rng(0)
    values = rng.uniform(0.01, 1.0, size=(3, 5, 12))  # (heads, sequences, tokens)
    content = np.ones((5, 12), bool)
    content[:, 0] = content[:, -1] = False
    flags = (rng.random((5, 12)) < 0.2) & content
    flags[0, 3] = True
    enrichment = CHECK.association_enrichment(values, flags, content)
    expected = [np.log2(v[flags].mean() / v[content & ~flags].mean()) for v in values]
    np.testing.assert_allclose(enrichment.full, expected)
    r = CHECK.association_r(values, flags, content)
    for k, v in enumerate(np.log(values)):
        x = np.concatenate([row[c] - row[c].mean() for row, c in zip(v, content)])
        y = np.concatenate([f[c] - f[c].mean() for f, c in zip(flags.astype(float), content)])
        assert r.full[k] == pytest.approx(np.corrcoef(x, y)[0, 1])
    # on a resample of the sequences, the same computation on the resampled sequences (repeats included)
    counts = np.array([[2, 0, 1, 1, 1]])
    rows = np.repeat(np.arange(5), counts[0])
    resampled = CHECK.association_enrichment(values[:, rows], flags[rows], content[rows]).full
    np.testing.assert_allclose(enrichment.values(counts.astype(float))[0], resampled)
    np.testing.assert_allclose(r.values(counts.astype(float))[0],
                               CHECK.association_r(values[:, rows], flags[rows], content[rows]).full)


def test_uninformative_partner_is_the_least_associated_other_head_of_the_same_layer():
    heads = [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1)]
    association = np.array([0.3, -0.05, 2.0, 0.01, 1.5])
    assert CHECK.uninformative_partners(association, heads, np.array([2, 4])).tolist() == [1, 3]
    assert CHECK.uninformative_partners(association, heads, np.array([1])).tolist() == [0]
    # two chosen heads of one layer: neither is the other's uninformative partner
    assert CHECK.uninformative_partners(association, heads, np.array([1, 2])).tolist() == [0, 0]


# ---------------------------------------------------------------------------------------------
# Ablation runs


def test_batched_ablation_equals_the_per_head_loop_and_head_means_equal_the_direct_mean(planted):
    dataset = build(PLANTED_DATA, seed=0)
    sequences = dataset.sequences[:5]
    means = iv.head_means(planted, sequences, [0, 2])
    run = models.run_with_cache(planted, planted.tokenize(sequences), ["layer.0.attn.head_out", "layer.2.attn.head_out"])
    content = planted.tokenize(sequences).content_mask
    for k, name in enumerate(["layer.0.attn.head_out", "layer.2.attn.head_out"]):
        np.testing.assert_allclose(means[k], run[name][content].double().mean(dim=0).numpy(), rtol=1e-6, atol=1e-7)
    target = iv.TargetMetric(planted, "token_logit", token_id=planted.tokenizer.get_vocab()["TATAAAA"])
    for replacement in (None, means):
        batched = iv.ablation_effects(planted, target, sequences, [0, 2], means=replacement)
        loop = iv.ablation_effects(planted, target, sequences, [0, 2], means=replacement, batched=False)
        np.testing.assert_allclose(batched.f_ablated, loop.f_ablated, atol=1e-5)
        assert np.abs(batched.f_ablated[0, 2] - batched.f_base).max() > 0.1  # the motif head matters
    zero = iv.ablation_effects(planted, target, sequences, [0], means=None)
    manual = models.run_with_interventions(planted, planted.tokenize(sequences), [models.zero_ablate_head(0, 1)],
                                           [f"layer.{planted.n_layers - 1}.resid_post"], logits=False)
    from seqclaims.organisms.planted import designated_output

    expected = designated_output(planted, manual[f"layer.{planted.n_layers - 1}.resid_post"])
    expected = (expected * content).sum(1) / content.sum(1)
    np.testing.assert_allclose(zero.f_ablated[0, 1], expected.numpy(), atol=1e-4)


# ---------------------------------------------------------------------------------------------
# Known answers on the planted model


def test_planted_head_is_selected_and_hurts_more_than_the_uninformative_head(tmp_path):
    result = evaluate(ablation_claim(tmp_path, "ablation-planted", HURTS_MORE + [
        {"statistic": "delta", "op": "<", "threshold": 0.0}], layer=0, head=2))
    assert result.status == "evaluated", result.reason
    assert result.verdict == "supported", [(c.statistic, c.estimate, c.ci_low, c.ci_high) for c in result.criteria]
    contrast = criterion(result, "associated_minus_uninformative")
    assert contrast.detail["associated"] == ["L0H2"]
    others = [row for row in contrast.detail["per_head"] if (row["layer"], row["head"]) != (0, 2)]
    least = min(others, key=lambda row: abs(row["association"]))
    assert contrast.detail["uninformative"] == [f"L{least['layer']}H{least['head']}"]
    assert criterion(result, "delta").estimate < -0.5  # measured -0.79


def test_control_head_ablation_fails_a_harm_criterion(tmp_path):
    result = evaluate(ablation_claim(tmp_path, "ablation-control", [{"statistic": "delta", "op": "<=", "threshold": -0.1}],
                                     layer=0, head=0, ablation="zero"))
    assert result.verdict == "refuted"
    assert abs(criterion(result, "delta").estimate) < 0.05


def test_same_seed_gives_identical_statistics(tmp_path):
    path = ablation_claim(tmp_path, "ablation-determinism", HURTS_MORE, association="attention_r", max_sequences=30)
    first, second = evaluate(path), evaluate(path)
    assert [c.__dict__ for c in first.criteria] == [c.__dict__ for c in second.criteria]


def test_every_user_error_is_one_line(tmp_path):
    delta = [{"statistic": "delta", "op": "<", "threshold": 0.0}]
    base = {"layers": [0], "max_sequences": 30, "metric": TOKEN_LOGIT}
    cases = {
        "no-head": dict(params=base, criteria=delta, data=PLANTED_DATA),
        "bad-track": dict(params={**base, "annotation": "enhancer"}, criteria=HURTS_MORE, data=PLANTED_DATA),
        "bad-layers": dict(params={**base, "layers": [4]}, criteria=HURTS_MORE, data=PLANTED_DATA),
        "bad-token": dict(params={**base, "metric": {"kind": "token_logit", "token": "ACGU"}}, criteria=HURTS_MORE,
                          data=PLANTED_DATA),
    }
    assert_user_errors_are_one_line(tmp_path, cases, "head_ablation")


# ---------------------------------------------------------------------------------------------
# Null calibration (fast version; scripts/calibrate_head_ablation.py runs the full one)


def ablation_statistics(deltas: np.ndarray, association: np.ndarray, heads, seed: int, resamples: int = 200) -> dict:
    """The family's statistics on synthetic deltas (K, n) (the code path after the model runs)."""
    spec = CHECK.AblationParams(layer=0, head=0)
    claim = SimpleNamespace(params=spec, resamples=resamples, ci_level=0.95, seed=seed, id="null", criteria=[])
    return CHECK.Ablation(claim, Context(claim, cache_dir()), deltas, association, heads, 0).statistics()


def test_null_associated_heads_hurt_more_no_more_often_than_alpha():
    """Every head's ablation has the same effect distribution and the association is unrelated to it:
    `associated_minus_uninformative < 0` passes at most alpha/2 of the time (one-sided)."""
    rng = np.random.default_rng(0)
    heads = [(layer, head) for layer in range(2) for head in range(4)]
    replicates = 80
    passes = []
    for seed in range(replicates):
        shared = rng.normal(-0.3, 0.5, size=(1, 60))  # sequence effects common to all heads (pairing matters)
        deltas = shared + rng.normal(0, 0.3, size=(len(heads), 60))
        stats = ablation_statistics(deltas, rng.normal(size=len(heads)), heads, seed)["associated_minus_uninformative"]
        passes.append(interval_verdict(stats.ci_low, stats.ci_high, "<", 0.0) == PASS)
    rate = float(np.mean(passes))
    assert rate <= 0.05 + 2 * mc_standard_error(0.05, replicates), rate


def test_associated_heads_are_chosen_again_in_every_resample():
    """Heads 0 and 1 are about equally associated on train; ablating head 0 hurts and head 1 does not.
    Chosen once, the contrast looks certain; chosen in every resample, its interval reaches the rival's 0."""
    rng = np.random.default_rng(0)
    heads = [(0, 0), (0, 1), (0, 2)]
    per_sequence = np.stack([rng.normal(1.0, 1.0, 60), rng.normal(0.97, 1.0, 60), rng.normal(0.0, 0.01, 60)], axis=1)
    per_sequence[:, 0] += 0.2 - per_sequence[:, 0].mean() + per_sequence[:, 1].mean()  # head 0 leads on the whole split
    parts = np.stack([per_sequence, np.ones_like(per_sequence)], axis=1)  # (n_train, 2, K): sums and counts
    association = CHECK.Association(parts, lambda sums: sums[:, 0] / sums[:, 1])
    deltas = np.stack([rng.normal(-1.0, 0.1, 40), rng.normal(0.0, 0.1, 40), rng.normal(0.0, 0.1, 40)])
    redone = ablation_statistics(deltas, association, heads, seed=0)["associated_minus_uninformative"]
    fixed = ablation_statistics(deltas, association.full, heads, seed=0)["associated_minus_uninformative"]
    assert redone.detail["associated"] == fixed.detail["associated"] == ["L0H0"]
    assert fixed.ci_high < -0.9 and redone.ci_high > -0.1, (fixed, redone)
    assert 0 < redone.detail["same_heads_chosen_in_resamples"] < 1
