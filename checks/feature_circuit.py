"""feature_circuit: does a small set of SAE latents at successive layers carry a behaviour
(PLM_interpretability's sparse feature circuits)?

Evidence: a top-k SAE per circuit layer (`layers`, each on ``layer.{l}.resid_post``; trained on the train
split's content tokens as in `sae_feature`, cached by its inputs), spliced into the model
(`seqclaims.methods.circuits`: the reconstruction plus its error, so the output is unchanged), and the target metric
f of each window (`metric`, as in activation_patching: a probe's decision value, a masked token's
log-probability, or the mean logit of a token).

Definitions (on the windows with label 1, where the behaviour is, unless `windows: all`):
- node score of a latent: the attribution estimate of f(all) - f(latent mean-ablated), summed over a
  window's tokens (`circuits.node_attributions`); the circuit is the `nodes` latents with the largest mean
  node score on the train split, per circuit layer.
- faithfulness (test split): (f(circuit) - f(none)) / (f(all) - f(none)), sums over windows before the ratio,
  where f(circuit) keeps the circuit's latents and replaces every other latent of the circuit layers by its
  mean code over the train tokens, and f(none) replaces them all. Near 1: the circuit alone carries the
  metric. Interval: percentile bootstrap over test windows.
- complement_faithfulness: the same with the circuit's latents mean-ablated and every other latent kept;
  near 0: nothing outside the circuit carries the metric (the circuit is complete).
- random_faithfulness: the mean faithfulness of `random_sets` random sets of latents of the same size per
  layer, drawn among the latents active on the train split (seeded); faithfulness_over_random: the paired
  difference.
- edge_weight: the named `edge` (from [layer, latent] to a later [layer, latent]): the attribution estimate
  of the change of the downstream latent's code, summed over a window, when the upstream latent is
  mean-ablated (`circuits.edge_attributions`), mean over test windows.
- nodes_needed: the smallest number of latents per layer (taken in node-score order) whose faithfulness on
  the test split reaches `target_faithfulness`, up to `max_nodes`; missing when none does (a count).
The report shows the circuit as an interactive graph (nodes: latents with their node scores and top windows;
edges: weights between the circuit's latents of successive layers). Minimum n: 20 test windows.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from seqclaims.core.evidence import Card, Estimate, Evidence, rounded
from seqclaims.core.families import Family, Statistic
from seqclaims.core.schema import StrictModel
from seqclaims.errors import InputError
from seqclaims.lazy import lazy_import
from seqclaims.methods import circuits as cx
from seqclaims.methods import figures
from seqclaims.methods import interventions as iv
from seqclaims.methods.figures import Figure
from seqclaims.methods.geometry import mean_interval
from seqclaims.methods.sae import SaeSpec, load_or_train, sample_tokens
from seqclaims.methods.stats import bootstrap

torch = lazy_import("torch")

MIN_N = 20


class Edge(StrictModel):
    source: list[int] = Field(min_length=2, max_length=2, description="[layer, latent] upstream")
    target: list[int] = Field(min_length=2, max_length=2, description="[layer, latent] downstream (a later circuit layer)")

    @model_validator(mode="after")
    def _non_negative(self) -> "Edge":
        if min(self.source + self.target) < 0:
            raise ValueError("layers and latents are non-negative")
        return self


class CircuitParams(StrictModel):
    layers: list[int] = Field(min_length=1, description="circuit layers (resid_post), in increasing order")
    sae: SaeSpec = Field(default_factory=lambda: SaeSpec(d_sae=256, k=8), description="the SAE of every layer")
    metric: iv.MetricSpec = Field(default_factory=iv.MetricSpec, description="the target metric f")
    nodes: int = Field(4, ge=1, description="latents per layer in the circuit (largest train-split node scores)")
    max_nodes: int = Field(16, ge=1, description="nodes_needed: the largest number of latents per layer tried")
    target_faithfulness: float = Field(0.8, gt=0, le=1, description="nodes_needed: the faithfulness to reach")
    random_sets: int = Field(5, ge=1, le=100, description="random latent sets for random_faithfulness")
    edge: Edge | None = Field(None, description="the edge whose weight edge_weight reports")
    windows: Literal["positives", "all"] = Field(
        "positives", description="windows the metric is taken on: those with label 1 (where the behaviour is, "
        "e.g. the motif windows), or all")

    @model_validator(mode="after")
    def _ordered(self) -> "CircuitParams":
        if self.layers != sorted(set(self.layers)):
            raise ValueError(f"layers must be distinct and increasing, got {self.layers}")
        if self.edge is not None and not (self.edge.source[0] < self.edge.target[0]
                                          and {self.edge.source[0], self.edge.target[0]} <= set(self.layers)):
            raise ValueError("edge: source and target must be circuit layers, the source's before the target's")
        if self.edge is not None and max(self.edge.source[1], self.edge.target[1]) >= self.sae.d_sae:
            raise ValueError(f"edge: a latent is not one of the SAE's {self.sae.d_sae} latents")
        return self


class Circuit:
    """The spliced SAEs of one claim and the metric runs every statistic is made of."""

    def __init__(self, claim, context, inputs):
        params, model, dataset = claim.params, inputs.model, inputs.dataset
        self.claim, self.context, self.model = claim, context, model
        bad = [layer for layer in params.layers if not 0 <= layer < model.n_layers]
        if bad:
            raise InputError(f"params.layers: {bad[0]} is not a layer of model {model.ref.describe()} "
                             f"({model.n_layers} layers)")
        self.hooks = [f"layer.{layer}.resid_post" for layer in params.layers]
        activations = inputs.activations(self.hooks)
        split = np.asarray(dataset.split)
        content = ~np.asarray(activations["tokens.special_mask"])
        train_tokens = content & (split == "train")[:, None]
        self.saes, self.means, self.active = [], [], []
        for hook in self.hooks:
            per_token = np.asarray(activations[hook])
            sample = sample_tokens(int(train_tokens.sum()), params.sae)
            sae = load_or_train(activations.key, hook, params.sae, lambda: per_token[train_tokens][sample])
            codes = sae.codes(per_token[train_tokens])
            self.saes.append(sae)
            self.means.append(torch.from_numpy(np.asarray(codes.mean(axis=0)).ravel().astype(np.float32)))
            self.active.append(np.flatnonzero(codes.getnnz(axis=0) > 0))
        self.target = iv.target_metric(params.metric, inputs, seed=claim.seed)
        behaving = np.ones(len(split), bool) if params.windows == "all" else np.asarray(dataset.labels) == 1
        self.train = np.flatnonzero((split == "train") & behaving)
        self.test = np.flatnonzero((split == "test") & behaving)
        prepared = lambda rows: self.target.prepare([dataset.sequences[i] for i in rows])  # noqa: E731
        self.prepared_train, self.prepared_test = prepared(self.train), prepared(self.test)
        scores = cx.node_attributions(model, self.prepared_train, self.target, self.hooks, self.saes, self.means)
        self.node_scores = [s.mean(axis=0) for s in scores]  # (d_sae,) per layer
        self.ranked = [np.argsort(-score) for score in self.node_scores]
        self.f_all = self.metric(None)
        self.f_none = self.metric([torch.zeros(sae.model.d_sae, dtype=torch.bool) for sae in self.saes])

    def kept(self, latents: list[np.ndarray], complement: bool = False) -> list[torch.Tensor]:
        masks = []
        for sae, chosen in zip(self.saes, latents):
            mask = torch.zeros(sae.model.d_sae, dtype=torch.bool)
            mask[torch.as_tensor(np.asarray(chosen, dtype=np.int64))] = True
            masks.append(~mask if complement else mask)
        return masks

    def metric(self, keep: list[torch.Tensor] | None) -> np.ndarray:
        """(n_test,) f on the test windows with the circuit layers spliced (latents outside `keep` mean-ablated)."""
        edits = cx.splices(self.hooks, self.saes, self.means, keep)
        return cx.spliced_metric(self.model, self.prepared_test, self.target, edits)

    def test_codes(self) -> list[np.ndarray]:
        """Per circuit layer, (n_test, n_tok, d_sae) codes of the test windows in the spliced model (computed once)."""
        if getattr(self, "_test_codes", None) is None:
            from seqclaims.inputs.models import run_with_interventions

            batch = self.prepared_test.batch
            codes = [np.zeros((len(batch), batch.input_ids.shape[1], sae.model.d_sae), np.float32) for sae in self.saes]
            for start in range(0, len(batch), 32):
                rows = batch.select(slice(start, start + 32))
                edits = cx.splices(self.hooks, self.saes, self.means)
                run_with_interventions(self.model, rows, edits, [self.hooks[-1]], logits=False, batch_size=32)
                n, t = rows.input_ids.shape
                for k, edit in enumerate(edits):
                    codes[k][start:start + n, :t] = edit.codes[0].detach().float().reshape(n, t, -1).numpy()
            self._test_codes = codes
        return self._test_codes

    def top(self, m: int) -> list[np.ndarray]:
        return [ranked[:m] for ranked in self.ranked]

    def faithfulness(self, keep: list[torch.Tensor]) -> np.ndarray:
        """(n_test, 2) per-window numerator and denominator."""
        return cx.faithfulness_sums(self.metric(keep), self.f_none, self.f_all)

    def interval(self, sums: np.ndarray, purpose: str):
        def statistic(weights):
            summed = sums.sum(axis=0)[None] if weights is None else weights @ sums
            return cx.ratio_of_sums(summed)

        return bootstrap(statistic, len(sums), n_resamples=self.claim.resamples,
                         seed=self.context.seed_for(purpose), level=self.claim.ci_level)


def evaluate(claim, context) -> Evidence:
    params = claim.params
    inputs = context.inputs()
    try:
        circuit = Circuit(claim, context, inputs)
    except InputError as error:
        raise InputError(f"{claim.path}: {error}") from None
    n_test = len(circuit.test)
    chosen = circuit.top(params.nodes)
    kept = circuit.faithfulness(circuit.kept(chosen))
    complement = circuit.faithfulness(circuit.kept(chosen, complement=True))
    rng = context.rng("random-latents")
    random_sets = [[rng.choice(active, size=min(params.nodes, len(active)), replace=False) for active in circuit.active]
                   for _ in range(params.random_sets)]
    random = np.mean([circuit.faithfulness(circuit.kept(s)) for s in random_sets], axis=0)
    estimate = lambda interval, **detail: _estimate(interval, n_test, **detail)  # noqa: E731
    circuit_detail = {"latents": {f"layer {l}": [int(i) for i in c] for l, c in zip(params.layers, chosen)}}
    statistics = {
        "faithfulness": estimate(circuit.interval(kept, "bootstrap"), **circuit_detail),
        "complement_faithfulness": estimate(circuit.interval(complement, "bootstrap")),
        "random_faithfulness": estimate(circuit.interval(random, "bootstrap"), sets=params.random_sets),
        "faithfulness_over_random": estimate(_paired_difference(circuit, kept, random)),
        "nodes_needed": nodes_needed(circuit, params),
        "n_sequences": Estimate(float(n_test), float(n_test), float(n_test), n_test, kind="count"),
    }
    graph = circuit_graph(circuit, chosen, inputs.dataset)
    statistics["edge_weight"] = edge_weight(circuit, params, inputs)
    evidence = Evidence(statistics=statistics, figures=[graph],
                        cards=[*inputs.cards, Card("feature_circuit", {
                            "metric": circuit.target.describe(), "layers": params.layers,
                            "sae": params.sae.model_dump(), "circuit": circuit_detail["latents"],
                            "f_all_mean": rounded(circuit.f_all.mean()), "f_none_mean": rounded(circuit.f_none.mean())})])
    evidence.versions.update(inputs.versions)
    evidence.versions["sae_keys"] = ",".join(sae.key for sae in circuit.saes)
    return evidence


def _estimate(interval, n: int, **detail) -> Estimate:
    if not np.isfinite(interval.estimate):
        return Estimate.missing("f(all) equals f(none): the circuit layers' latents do not move the metric", n=n)
    return Estimate(float(interval.estimate), float(interval.low), float(interval.high), n, min_n=MIN_N, detail=detail)


def _paired_difference(circuit: Circuit, kept: np.ndarray, random: np.ndarray):
    def statistic(weights):
        a = kept.sum(axis=0)[None] if weights is None else weights @ kept
        b = random.sum(axis=0)[None] if weights is None else weights @ random
        return cx.ratio_of_sums(a) - cx.ratio_of_sums(b)

    return bootstrap(statistic, len(kept), n_resamples=circuit.claim.resamples,
                     seed=circuit.context.seed_for("bootstrap"), level=circuit.claim.ci_level)


def nodes_needed(circuit: Circuit, params) -> Estimate:
    n = len(circuit.test)
    for m in range(1, params.max_nodes + 1):
        sums = circuit.faithfulness(circuit.kept(circuit.top(m)))
        value = float(cx.ratio_of_sums(sums.sum(axis=0)[None])[0])
        if value >= params.target_faithfulness:
            return Estimate(float(m), float(m), float(m), n, kind="count",
                            detail={"faithfulness": round(value, 4), "target": params.target_faithfulness})
    return Estimate.missing(f"no circuit of up to {params.max_nodes} latents per layer reaches faithfulness "
                            f"{params.target_faithfulness}", n=n)


def edge_weight(circuit: Circuit, params, inputs) -> Estimate:
    if params.edge is None:
        return Estimate.missing("the claim names no edge (params.edge)")
    (up_layer, up), (down_layer, down) = params.edge.source, params.edge.target
    a, b = params.layers.index(up_layer), params.layers.index(down_layer)
    weights = cx.edge_attributions(circuit.model, circuit.prepared_test, circuit.target, circuit.hooks, circuit.saes,
                                   circuit.means, a, b, [up], [down])[:, 0, 0]
    interval = mean_interval(weights, resamples=circuit.claim.resamples, seed=circuit.context.seed_for("bootstrap"),
                             level=circuit.claim.ci_level)
    return Estimate(interval.estimate, interval.low, interval.high, interval.n, min_n=MIN_N,
                    detail={"source": list(params.edge.source), "target": list(params.edge.target)})


def circuit_graph(circuit: Circuit, chosen: list[np.ndarray], dataset) -> Figure:
    """The circuit for the interactive viewer: nodes (latents with node scores and top test windows) and the
    edges between the circuit's latents of successive layers."""
    params = circuit.claim.params
    nodes, edges = [], []
    for k, (layer, latents) in enumerate(zip(params.layers, chosen)):
        for latent in latents:
            nodes.append({"id": f"L{layer}.f{latent}", "layer": layer, "latent": int(latent),
                          "score": rounded(circuit.node_scores[k][latent], 5),
                          "windows": top_windows(circuit, k, int(latent), dataset)})
    for k in range(len(params.layers) - 1):
        weights = cx.edge_attributions(circuit.model, circuit.prepared_test, circuit.target, circuit.hooks,
                                       circuit.saes, circuit.means, k, k + 1, chosen[k], chosen[k + 1]).mean(axis=0)
        for i, up in enumerate(chosen[k]):
            for j, down in enumerate(chosen[k + 1]):
                edges.append({"source": f"L{params.layers[k]}.f{up}", "target": f"L{params.layers[k + 1]}.f{down}",
                              "weight": rounded(weights[i, j], 5)})
    caption = (f"Circuit of {params.nodes} latents per layer (layers {params.layers}) for {circuit.target.describe()}; "
               "node size: node score; edge width: |weight| (red negative). Click a node for its top windows.")
    return figures.circuit_graph(f"{circuit.claim.id}: feature circuit", caption, nodes, edges)


def top_windows(circuit: Circuit, k: int, latent: int, dataset, n: int = 3) -> list[dict]:
    """The test windows where the latent's code peaks highest (the token in its sequence context)."""
    batch = circuit.prepared_test.batch
    content = batch.content_mask.numpy()
    codes = np.where(content, circuit.test_codes()[k][..., latent], -np.inf)  # (n_test, n_tok), content tokens only
    out = []
    for row in np.argsort(-codes.max(axis=1))[:n]:
        token = int(codes[row].argmax())
        start, end = (int(v) for v in batch.offsets[row, token])
        sequence = dataset.sequences[circuit.test[row]]
        out.append({"window": int(circuit.test[row]), "code": rounded(codes[row, token], 4),
                    "context": sequence[max(0, start - 12):start] + "[" + sequence[start:end] + "]" + sequence[end:end + 12]})
    return out


FAMILY = Family(
    name="feature_circuit",
    whole_sequences=True,
    summary="faithfulness of a circuit of SAE latents at successive layers for a target metric, against random "
            "latent sets; edges by attribution",
    params=CircuitParams,
    statistics={
        "faithfulness": Statistic("(f(circuit) - f(none)) / (f(all) - f(none)) on test windows"),
        "complement_faithfulness": Statistic("the same with the circuit mean-ablated and the rest kept (0: complete)"),
        "random_faithfulness": Statistic("mean faithfulness of random latent sets of the same size"),
        "faithfulness_over_random": Statistic("faithfulness minus random_faithfulness, paired over windows"),
        "edge_weight": Statistic("attribution of the named edge: change of the target latent when the source "
                                 "latent is mean-ablated"),
        "nodes_needed": Statistic("fewest latents per layer reaching target_faithfulness", kind="count"),
        "n_sequences": Statistic("test windows", kind="count"),
    },
    evaluate=evaluate,
    min_n=MIN_N,
    example={
        "model": "planted",
        "data": {"dataset": "motif_sites", "matrix": "MA0108.3", "n": 400},
        "params": {"layers": [0, 1], "metric": {"kind": "token_logit", "token": "TATAAAA"}, "nodes": 4},
        "criteria": [{"statistic": "faithfulness", "op": ">=", "threshold": 0.8},
                     {"statistic": "faithfulness_over_random", "op": ">", "threshold": 0.3}],
    },
)
