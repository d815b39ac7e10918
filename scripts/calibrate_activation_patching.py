"""Null calibration of activation_patching's PM intervals, and what selecting and scoring on the same pairs does.

Null data: synthetic per-pair metrics in which every one of K heads restores the same true (ratio-of-means)
PM p0 = 0.2: f_clean - f_corrupted ~ Gamma(4, 0.5) per pair, f_patched - f_corrupted = p0 (f_clean -
f_corrupted) + N(0, 0.3^2) per head and pair. The family's own statistics code runs on them (everything after
the model's forward passes). A criterion `>= 0.2` is true at its boundary, so a calibrated one-sided 95%
interval passes it at most 2.5% of the time. Reported per K: the pass rate of `best_pm >= 0.2` (selected on a
random half of the pairs, scored on the other half, selection redone in every resample) and of `pm >= 0.2`
for a named head, and of the best head selected and scored on the same pairs (`stats.select_and_score` with
the same pairs and the same resamples as both parts: the interval MINTS's best-head PM would get), with Monte
Carlo standard errors.

    python scripts/calibrate_activation_patching.py [--repetitions 400]

Writes benchmarks/results/calibration_activation_patching.json and docs/figures/calibration_activation_patching.png.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from test_activation_patching import null_patching, patching_statistics  # noqa: E402

from seqclaims.core.verdicts import PASS, interval_verdict  # noqa: E402
from seqclaims.methods import interventions as iv  # noqa: E402
from seqclaims.methods.stats import mc_standard_error, select_and_score  # noqa: E402

RESULT = ROOT / "benchmarks" / "results" / "calibration_activation_patching.json"
FIGURE = ROOT / "docs" / "figures" / "calibration_activation_patching.png"
TRUE_PM = 0.2
HEADS = (4, 16, 64)
N_PAIRS = 60
RESAMPLES = 300


def same_pairs_best(run: iv.PatchingRun, seed: int) -> tuple[float, float]:
    """Interval of the best head's ratio-of-means PM selected and scored on the same pairs: both parts are
    every kept pair, under the same resamples (the winner's curse this calibration measures)."""
    rest = iv.restoration(run.f_clean, run.f_corrupted, run.f_patched.reshape(-1, len(run.f_clean)))

    def pm(weights):
        return iv.aggregate_pm(rest, "ratio_of_means", weights)

    n_kept = int(rest.kept.sum())
    best = select_and_score(pm, pm, n_kept, n_kept, seeds=(seed, seed), n_resamples=RESAMPLES)
    return best.low, best.high


def passes(low: float, high: float) -> bool:
    return interval_verdict(low, high, ">=", TRUE_PM) == PASS


def calibrate(repetitions: int) -> dict:
    rng = np.random.default_rng(0)
    out = {}
    for k in HEADS:
        hits = {"best_pm": [], "pm": [], "same_pairs_best": []}
        for seed in range(repetitions):
            run = null_patching(rng, n_pairs=N_PAIRS, n_heads=k, pm=TRUE_PM)
            stats = patching_statistics(run, seed, resamples=RESAMPLES)
            hits["best_pm"].append(passes(stats["best_pm"].ci_low, stats["best_pm"].ci_high))
            hits["pm"].append(passes(stats["pm"].ci_low, stats["pm"].ci_high))
            hits["same_pairs_best"].append(passes(*same_pairs_best(run, seed)))
        out[str(k)] = {name: {"pass_rate": float(np.mean(v)), "mc_se": float(mc_standard_error(np.mean(v), repetitions))}
                       for name, v in hits.items()}
        print(k, {name: round(v["pass_rate"], 4) for name, v in out[str(k)].items()})
    return out


def figure(results: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.2))
    labels = {"best_pm": "best_pm (select on half, score on the rest)", "pm": "pm (named head)",
              "same_pairs_best": "best head, selected and scored on the same pairs"}
    for offset, (name, label) in zip((-0.25, 0, 0.25), labels.items()):
        rates = [results[str(k)][name]["pass_rate"] for k in HEADS]
        errors = [2 * results[str(k)][name]["mc_se"] for k in HEADS]
        ax.bar(np.arange(len(HEADS)) + offset, rates, width=0.25, yerr=errors, label=label)
    ax.axhline(0.025, color="black", linestyle="--", linewidth=1, label="alpha / 2 (one-sided)")
    ax.set_xticks(range(len(HEADS)), [f"{k} heads" for k in HEADS])
    ax.set_ylabel(f"share passing '>= {TRUE_PM}'")
    ax.set_title(f"activation_patching on null data (every head's true PM = {TRUE_PM})", fontsize=9)
    ax.legend(fontsize=6)
    FIGURE.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(FIGURE, dpi=110, bbox_inches="tight")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repetitions", type=int, default=400)
    args = parser.parse_args()
    results = calibrate(args.repetitions)
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text(json.dumps({"true_pm": TRUE_PM, "pairs": N_PAIRS, "resamples": RESAMPLES,
                                  "repetitions": args.repetitions, "alpha_one_sided": 0.025, "heads": results},
                                 indent=2) + "\n")
    figure(results)
    print(RESULT, FIGURE)


if __name__ == "__main__":
    main()
