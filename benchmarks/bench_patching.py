"""Activation patching: every head of every layer in batched passes, against a per-head loop.

Two set-ups, each timed as the median of 3 repeats, baselines and candidate alternating (so that a change
of load affects all alike), one torch thread (the machine is shared; multi-threaded timings there are mostly
spin-waiting):

- ``planted``: the planted model (3 layers x 4 heads, d_model 64, 7-mer tokens, 16,389-entry vocabulary),
  12 clean/corrupted pairs (TBP site shuffled) of 200 nt (196 tokens), metric = mean TATAAAA logit over
  content tokens (the designated output);
- ``organism``: the organism (4 layers x 4 heads, d_model 128, single-nucleotide tokens), 12 TATA
  promoter pairs of 300 nt (302 tokens), metric = a probe's decision value on mean-pooled
  ``layer.3.resid_post`` (a fixed seeded direction: only the patching is timed).

What is timed, each computing f_clean, f_corrupted and f_patched for every head of every layer:

- ``loop_full_outputs``: a per-head loop as a user of the plain forward would write it (and as this
  library ran before the masked-LM output layer became optional): one ``run_with_interventions`` per head,
  which returns the full masked-LM logits, the metric computed from them (or from the probe's hook);
- ``loop_same_metric``: ``interventions.patching_effects(batched=False)``: a per-head loop that already
  computes only what the metric needs (final hidden states and one vocabulary row, or the forward pass
  stopped after the probe's layer);
- ``batched`` (the candidate): ``interventions.patching_effects`` — all heads of a layer in one pass of
  n_heads stacked copies, the blocks before the patched layer and its attention computed once and
  replayed to the copies.

PM of every head and pair must agree with both loops to 1e-5. Run: ``python benchmarks/bench_patching.py``
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

from benchmarks.common import write_result  # noqa: E402
from seqclaims.inputs import models  # noqa: E402
from seqclaims.inputs.datasets import build  # noqa: E402
from seqclaims.inputs.motifs import load_motif  # noqa: E402
from seqclaims.methods import interventions as iv  # noqa: E402

REPEATS = 3
TOLERANCE = 1e-5


def setups() -> dict[str, tuple]:
    """name -> (model, target metric, pairs)."""
    tbp = load_motif("MA0108.3")
    out = {}
    planted = models.load_model("planted")
    sites = build({"dataset": "motif_sites", "matrix": "MA0108.3", "n": 1000}, seed=0)
    out["planted"] = (planted, iv.TargetMetric(planted, "token_logit", token_id=planted.tokenizer.get_vocab()["TATAAAA"]),
                      test_pairs(sites, tbp, planted, 12))
    organism = models.load_model("organism")
    tata = build({"dataset": "tata", "n": 2000}, seed=0)
    coef = torch.from_numpy(np.random.default_rng(0).normal(size=organism.d_model) / np.sqrt(organism.d_model))
    out["organism"] = (organism, iv.TargetMetric(organism, "probe", probe_layer=3, coef=coef, intercept=0.0),
                       test_pairs(tata, tbp, organism, 12))
    return out


def test_pairs(dataset, motif, model, n: int) -> iv.Pairs:
    rule = iv.site_rule(iv.CorruptionSpec(), dataset, motif)
    rows = np.flatnonzero((dataset.split == "test") & (dataset.labels == 1))
    return iv.make_pairs(dataset, rows, rule, "shuffle", seed=0, max_pairs=n, model=model)


def loop_full_outputs(model, target: iv.TargetMetric, pairs: iv.Pairs, layers: list[int]) -> iv.PatchingRun:
    """One plain run per head; the metric computed afterwards from the full outputs."""
    clean, corrupted = model.tokenize(pairs.clean), model.tokenize(pairs.corrupted)
    content = clean.content_mask.double()
    reads = [f"layer.{target.probe_layer}.resid_post"] if target.kind == "probe" else []

    def metric(outputs: dict) -> np.ndarray:
        if target.kind == "probe":
            pooled = (outputs[reads[0]].double() * content[..., None]).sum(1) / content.sum(1, keepdim=True)
            return (pooled @ target.coef + target.intercept).numpy()
        logit = outputs["logits"][..., target.token_id].double()
        return ((logit * content).sum(1) / content.sum(1)).numpy()

    hooks = [f"layer.{layer}.attn.head_out" for layer in layers]
    clean_run = models.run_with_interventions(model, clean, [], [*hooks, *reads])
    f_patched = np.zeros((len(layers), model.n_heads, len(pairs)))
    for k, layer in enumerate(layers):
        for head in range(model.n_heads):
            patch = models.patch_head(layer, head, clean_run[hooks[k]][:, :, head])
            f_patched[k, head] = metric(models.run_with_interventions(model, corrupted, [patch], reads))
    return iv.PatchingRun(layers, metric(clean_run), metric(models.run_with_interventions(model, corrupted, [], reads)),
                          f_patched)


def pm(run: iv.PatchingRun) -> np.ndarray:
    """(K, n) per-pair PM of every head (every pair kept: the comparison is of the arithmetic)."""
    return iv.restoration(run.f_clean, run.f_corrupted, run.f_patched.reshape(-1, len(run.f_clean)), floor=-np.inf).pm


def measure(model, target, pairs) -> dict:
    layers = list(range(model.n_layers))
    candidates = {
        "loop_full_outputs": lambda: loop_full_outputs(model, target, pairs, layers),
        "loop_same_metric": lambda: iv.patching_effects(model, target, pairs, layers, batched=False),
        "batched": lambda: iv.patching_effects(model, target, pairs, layers),
    }
    runs = {name: [] for name in candidates}
    results = {}
    for _ in range(REPEATS):
        for name, fn in candidates.items():
            start = time.perf_counter()
            results[name] = fn()
            runs[name].append(time.perf_counter() - start)
    reference = pm(results["batched"])
    differences = {name: float(np.abs(pm(results[name]) - reference).max()) for name in ("loop_full_outputs", "loop_same_metric")}
    if max(differences.values()) > TOLERANCE:
        raise AssertionError(f"batched PM differs from a per-head loop by {differences}")
    medians = {name: float(np.median(times)) for name, times in runs.items()}
    return {
        "pairs": len(pairs), "layers": len(layers), "heads_per_layer": model.n_heads, "tokens": int(model.tokenize(pairs.clean[:1]).n_tok),
        "metric": target.describe(), "seconds_median": medians, "seconds_runs": runs,
        "speedup_vs_loop_full_outputs": medians["loop_full_outputs"] / medians["batched"],
        "speedup_vs_loop_same_metric": medians["loop_same_metric"] / medians["batched"],
        "max_abs_pm_difference": differences, "tolerance": TOLERANCE,
    }


def main() -> None:
    torch.set_num_threads(1)
    payload = {"repeats": REPEATS,
               "baselines": {"loop_full_outputs": "per-head loop of plain runs returning the full masked-LM outputs",
                             "loop_same_metric": "per-head loop computing only what the metric reads"},
               "candidate": "interventions.patching_effects: every head of a layer in one pass, shared prefix replayed"}
    for name, (model, target, pairs) in setups().items():
        payload[name] = measure(model, target, pairs)
        figures = payload[name]
        print(f"{name}: {figures['pairs']} pairs x {figures['layers'] * figures['heads_per_layer']} heads; "
              f"batched {figures['seconds_median']['batched']:.2f} s, per-head loop {figures['seconds_median']['loop_same_metric']:.2f} s "
              f"({figures['speedup_vs_loop_same_metric']:.2f}x), with full outputs "
              f"{figures['seconds_median']['loop_full_outputs']:.2f} s ({figures['speedup_vs_loop_full_outputs']:.2f}x); "
              f"max |PM difference| {max(figures['max_abs_pm_difference'].values()):.1e}")
    print(write_result("patching", payload))


if __name__ == "__main__":
    main()
