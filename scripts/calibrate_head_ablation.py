"""Null calibration of head_ablation's associated-minus-uninformative contrast.

Null data: synthetic per-sequence ablation deltas in which every head's ablation has the same effect
distribution, and the association that selects the heads is unrelated to it: delta = a shared per-sequence
effect N(-0.3, 0.5^2) (the same sequence is hard for every ablation, which is why the contrast is paired)
plus N(0, 0.3^2) per head. The family's own statistics code runs on them. `associated_minus_uninformative
< 0` is false under the null, so a calibrated one-sided 95% interval passes it at most 2.5% of the time.
Reported per layout (layers x heads): the pass rate with its Monte Carlo standard error; and, for power,
the pass rate when the most associated head truly hurts 0.1 more (its deltas shifted by -0.1), next to the
same contrast with an unpaired interval (the two heads' deltas resampled independently), which ignores
the shared per-sequence effect and so loses power.

    python scripts/calibrate_head_ablation.py [--repetitions 400]

Writes benchmarks/results/calibration_head_ablation.json and docs/figures/calibration_head_ablation.png.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from test_head_ablation import ablation_statistics  # noqa: E402

from seqclaims.core.verdicts import PASS, interval_verdict  # noqa: E402
from seqclaims.methods.stats import mc_standard_error, percentile_interval, resample_counts  # noqa: E402

RESULT = ROOT / "benchmarks" / "results" / "calibration_head_ablation.json"
FIGURE = ROOT / "docs" / "figures" / "calibration_head_ablation.png"
LAYOUTS = ((1, 4), (2, 4), (4, 12))
N_SEQUENCES = 60
RESAMPLES = 300
EFFECTS = (0.0, -0.1)


def null_deltas(rng: np.random.Generator, n_heads: int) -> np.ndarray:
    return rng.normal(-0.3, 0.5, size=(1, N_SEQUENCES)) + rng.normal(0, 0.3, size=(n_heads, N_SEQUENCES))


def unpaired_passes(deltas: np.ndarray, a: int, b: int, seed: int) -> bool:
    """The contrast with each head's deltas resampled independently (an unpaired interval)."""
    first, second = (resample_counts(N_SEQUENCES, RESAMPLES, seed + i) for i in (0, 1))
    samples = first @ deltas[a] / N_SEQUENCES - second @ deltas[b] / N_SEQUENCES
    low, high = percentile_interval(samples, 0.95)
    return interval_verdict(low, high, "<", 0.0) == PASS


def calibrate(repetitions: int) -> dict:
    rng = np.random.default_rng(0)
    out = {}
    for n_layers, n_heads in LAYOUTS:
        heads = [(layer, head) for layer in range(n_layers) for head in range(n_heads)]
        for effect in EFFECTS:
            paired, unpaired = [], []
            for seed in range(repetitions):
                deltas, association = null_deltas(rng, len(heads)), rng.normal(size=len(heads))
                chosen = int(np.argmax(association))
                deltas[chosen] += effect
                stat = ablation_statistics(deltas, association, heads, seed, resamples=RESAMPLES)["associated_minus_uninformative"]
                paired.append(interval_verdict(stat.ci_low, stat.ci_high, "<", 0.0) == PASS)
                same_layer = [k for k, h in enumerate(heads) if h[0] == heads[chosen][0] and k != chosen]
                partner = same_layer[int(np.argmin(np.abs(association[same_layer])))]
                unpaired.append(unpaired_passes(deltas, chosen, partner, seed))
            key = f"{n_layers}x{n_heads}, effect {effect}"
            out[key] = {name: {"pass_rate": float(np.mean(v)), "mc_se": float(mc_standard_error(np.mean(v), repetitions))}
                        for name, v in (("paired", paired), ("unpaired", unpaired))}
            print(key, {name: round(v["pass_rate"], 4) for name, v in out[key].items()})
    return out


def figure(results: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3))
    keys = list(results)
    for offset, name in zip((-0.2, 0.2), ("paired", "unpaired")):
        ax.bar(np.arange(len(keys)) + offset, [results[k][name]["pass_rate"] for k in keys], width=0.4,
               yerr=[2 * results[k][name]["mc_se"] for k in keys], label=f"{name} interval")
    ax.axhline(0.025, color="black", linestyle="--", linewidth=1, label="alpha / 2 (one-sided)")
    ax.set_xticks(range(len(keys)), [k.replace(", ", "\n") for k in keys], fontsize=6)
    ax.set_ylabel("share passing '< 0'")
    ax.set_title("head_ablation: associated minus uninformative (layers x heads; effect 0 is the null)", fontsize=8)
    ax.legend(fontsize=7)
    FIGURE.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(FIGURE, dpi=110, bbox_inches="tight")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repetitions", type=int, default=400)
    args = parser.parse_args()
    results = calibrate(args.repetitions)
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text(json.dumps({"sequences": N_SEQUENCES, "resamples": RESAMPLES, "repetitions": args.repetitions,
                                  "alpha_one_sided": 0.025, "effects": list(EFFECTS), "layouts": results}, indent=2) + "\n")
    figure(results)
    print(RESULT, FIGURE)


if __name__ == "__main__":
    main()
