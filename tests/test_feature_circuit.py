"""feature_circuit: the SAE splice leaves the model unchanged, the planted circuit is recovered and random
latents are not, edges and node counts are reported, user errors are one line."""

from __future__ import annotations

import sys

import claim_files
import numpy as np
import pytest
import torch

from seqclaims.judging.claim_inputs import gather_inputs
from seqclaims.core.families import Context, load_claim
from seqclaims.judging.judge import ERROR, EVALUATED
from seqclaims.methods import circuits as cx
from seqclaims.paths import cache_dir

SETTINGS = {"layers": [0, 1], "sae": {"d_sae": 16, "k": 2, "epochs": 40, "lr": 0.005, "batch_size": 1024},
            "metric": {"kind": "token_logit", "token": "T"}, "nodes": 4}
DATA = {"dataset": "motif_sites", "matrix": "MA0108.3", "n": 400}


def circuit_claim(tmp_path, name, criteria, **params):
    return claim_files.write_claim(tmp_path, name, check="feature_circuit", model="planted-circuit", data=DATA,
                                   params={**SETTINGS, **params}, criteria=criteria)


@pytest.fixture(scope="module")
def circuit(tmp_path_factory):
    path = circuit_claim(tmp_path_factory.mktemp("circuit"), "circuit",
                         [{"statistic": "faithfulness", "op": ">=", "threshold": 0.5}])
    claim = load_claim(path, claim_files.FAMILIES)
    family = sys.modules[claim_files.FAMILIES.get("feature_circuit", path).evaluate.__module__]
    return family.Circuit(claim, Context(claim, cache_dir()), gather_inputs(claim, whole_sequences=True))


def test_the_splice_keeps_the_models_output_and_mean_ablation_removes_the_behaviour(circuit):
    from seqclaims.methods.interventions import _metric_run

    plain = _metric_run(circuit.model, circuit.prepared_test, circuit.target, [], [], 16)["metric"].numpy()
    np.testing.assert_allclose(circuit.f_all, plain, atol=1e-5)
    assert circuit.f_all.mean() > circuit.f_none.mean() + 0.3  # a TATA nearby raises the T logit
    assert np.ptp(circuit.f_none) < 1e-6  # with every latent at its mean, no window differs


def test_node_attribution_sums_estimate_the_effect_of_ablating_everything(circuit):
    scores = cx.node_attributions(circuit.model, circuit.prepared_test, circuit.target, circuit.hooks,
                                  circuit.saes, circuit.means)
    assert all(s.shape == (len(circuit.test), sae.model.d_sae) for s, sae in zip(scores, circuit.saes))
    assert np.isfinite(scores[0]).all() and scores[0].sum() > 0


def test_the_planted_circuit_is_recovered_and_random_latents_are_not(tmp_path):
    criteria = [{"statistic": "faithfulness", "op": ">=", "threshold": 0.7},
                {"statistic": "random_faithfulness", "op": "<", "threshold": 0.5},
                {"statistic": "faithfulness_over_random", "op": ">", "threshold": 0.3}]
    result = claim_files.evaluate(circuit_claim(tmp_path, "recovered", criteria))
    assert result.status == EVALUATED and result.verdict == "supported", [(c.statistic, c.estimate, c.ci_low, c.ci_high)
                                                                          for c in result.criteria]
    graph = next(f for f in result.figures if f.graph)
    assert len(graph.graph["nodes"]) == 8 and len(graph.graph["edges"]) == 16
    assert all(node["windows"] for node in graph.graph["nodes"])


def test_a_named_edge_and_the_nodes_needed_are_reported(tmp_path, circuit):
    up, down = int(circuit.ranked[0][0]), int(circuit.ranked[1][0])
    result = claim_files.evaluate(circuit_claim(
        tmp_path, "edge", [{"statistic": "edge_weight", "op": ">", "threshold": 0.0},
                           {"statistic": "nodes_needed", "op": "<=", "threshold": 16}],
        edge={"source": [0, up], "target": [1, down]}))
    assert result.status == EVALUATED, result.reason
    edge, needed = result.criteria
    assert np.isfinite(edge.estimate) and edge.detail["source"] == [0, up]
    assert needed.estimate == int(needed.estimate) and 1 <= needed.estimate <= 16


@pytest.mark.parametrize("params, message", [
    ({"layers": [1, 0]}, "params: layers must be distinct and increasing"),
    ({"edge": {"source": [1, 0], "target": [0, 1]}}, "the source's before the target's"),
])
def test_schema_errors_are_one_line_naming_the_file(tmp_path, params, message):
    from seqclaims.errors import ClaimError

    path = circuit_claim(tmp_path, "bad", [{"statistic": "faithfulness", "op": ">", "threshold": 0}], **params)
    with pytest.raises(ClaimError) as error:
        load_claim(path, claim_files.FAMILIES)
    assert message in str(error.value) and str(path) in str(error.value) and "\n" not in str(error.value)


def test_a_layer_the_model_lacks_is_an_error_result_of_one_line(tmp_path):
    result = claim_files.evaluate(circuit_claim(tmp_path, "bad-layer", [{"statistic": "faithfulness", "op": ">",
                                                                         "threshold": 0}], layers=[0, 5]))
    assert result.status == ERROR and result.traceback is None and "\n" not in result.reason
    assert "params.layers: 5 is not a layer of model planted-circuit" in result.reason, result.reason


def test_the_splice_passes_values_and_gradients_through_unchanged():
    from seqclaims.methods.sae import SaeSpec, TopKSAE, TrainedSae

    torch.manual_seed(0)
    sae = TrainedSae(TopKSAE(8, 16, 4), np.zeros(8, np.float32), 1.0, SaeSpec(d_sae=16, k=4))
    splice = cx.SaeSplice("layer.0.resid_post", sae, torch.zeros(16))
    x = torch.randn(1, 1, 8)
    jacobian = torch.autograd.functional.jacobian(lambda v: splice.edit(v, None), x).reshape(8, 8)
    assert torch.allclose(splice.edit(x, None), x, atol=1e-5) and torch.allclose(jacobian, torch.eye(8), atol=1e-5)
