"""Attribution patching against exact activation patching: agreement and cost.

On the pairs and target metric of the registered patching claims (planted: TBP windows, mean TATAAAA logit,
layers 0-2; organism: TATA promoters, a probe on the final layer, all 16 heads, at most `--max-pairs` pairs),
every head is patched exactly (all heads of a layer in one batched pass) and estimated by attribution
patching (one forward and one backward pass). Reported: Spearman correlation over heads of the two PMs
(ratio of means over all pairs), their largest absolute difference, whether both rank the same head first,
and the time of each (median of `--repeats`).

    python benchmarks/bench_attribution.py [--repeats 3] [--max-pairs 60]

Writes benchmarks/results/attribution_patching.json.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

os.environ.setdefault("SEQCLAIMS_PROGRESS", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402
from scipy.stats import spearmanr  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import time_median, write_result  # noqa: E402
from seqclaims.judging.claim_inputs import gather_inputs  # noqa: E402
from seqclaims.core.families import Context, checks_dirs, load_claim, load_families  # noqa: E402
from seqclaims.methods import interventions as iv  # noqa: E402
from seqclaims.paths import cache_dir  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED = {"planted": "claims/planted/_patching-planted.yaml", "organism": "claims/organism/_patching-tata.yaml"}


def setting(name: str, families, max_pairs: int):
    base = yaml.safe_load((ROOT / SHARED[name]).read_text())
    base.pop("source", None)
    params = base.pop("params")
    params["corruption"] = {**params.get("corruption", {}), "max_pairs": max_pairs}
    folder = cache_dir() / "bench" / "claims" / "bench"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"bench-attribution-{name}.yaml"
    path.write_text(yaml.safe_dump({"id": path.stem, "title": "benchmark", "statement": "benchmark",
                                    "expect": "supported", **base, "params": params,
                                    "criteria": [{"statistic": "heads_mean_pm", "op": ">", "threshold": 0.0}]}))
    claim = load_claim(path, families)
    family = sys.modules[families.get("activation_patching", path).evaluate.__module__]
    inputs = gather_inputs(claim, whole_sequences=True)
    pairs = family.claim_pairs(claim, inputs, Context(claim, cache_dir()))
    target = iv.target_metric(claim.params.metric, inputs, seed=claim.seed)
    layers = claim.params.layers if claim.params.layers is not None else list(range(inputs.model.n_layers))
    return inputs.model, target, pairs, layers


def pm(run: iv.PatchingRun) -> np.ndarray:
    return ((run.f_patched - run.f_corrupted).sum(-1) / (run.f_clean - run.f_corrupted).sum()).ravel()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-pairs", type=int, default=60)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    families = load_families(checks_dirs(ROOT))
    rows = {}
    for name in SHARED:
        model, target, pairs, layers = setting(name, families, args.max_pairs)
        exact_s, exact_runs, exact = time_median(lambda: iv.patching_effects(model, target, pairs, layers),
                                                 repeats=args.repeats, warmup=0)
        atp_s, atp_runs, atp = time_median(
            lambda: iv.patching_effects(model, target, pairs, layers, method="attribution"),
            repeats=args.repeats, warmup=0)
        exact_pm, atp_pm = pm(exact), pm(atp)
        rows[name] = {"pairs": len(pairs), "heads": int(exact_pm.size), "exact_seconds_median": exact_s,
                      "exact_seconds_runs": exact_runs, "attribution_seconds_median": atp_s,
                      "attribution_seconds_runs": atp_runs, "speedup": exact_s / atp_s,
                      "spearman": float(spearmanr(exact_pm, atp_pm)[0]),
                      "max_abs_error": float(np.abs(exact_pm - atp_pm).max()),
                      "same_top_head": bool(np.argmax(exact_pm) == np.argmax(atp_pm)),
                      "top_head_exact_pm": float(exact_pm.max()), "top_head_attribution_pm": float(atp_pm[np.argmax(exact_pm)])}
        print(f"{name}: {len(pairs)} pairs x {exact_pm.size} heads; exact {exact_s:.1f} s, attribution {atp_s:.1f} s "
              f"(x{exact_s / atp_s:.1f}); Spearman {rows[name]['spearman']:.3f}, max |error| "
              f"{rows[name]['max_abs_error']:.3f}, same top head {rows[name]['same_top_head']}", flush=True)
    write_result("attribution_patching", {"baseline": "exact patching of every head (batched per layer)",
                                          "candidate": "attribution patching (one forward and one backward pass)",
                                          "repeats": args.repeats, "one_torch_thread": True, "settings": rows,
                                          "median_speedup": statistics.median(r["speedup"] for r in rows.values())})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
