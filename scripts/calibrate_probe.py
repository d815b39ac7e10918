"""Null calibration of the probe family: how often is a claim wrongly supported on label-permuted data?

Data: the planted model's pooled activations of TBP-site vs background windows of A. thaliana (the
planted probe claims' dataset, smaller). Each replicate permutes the labels within each split (so the
label carries no signal), fits every probe with the family's defaults (`layer: all`, inner CV over the
default C grid) and judges one-sided criteria whose null value is the threshold, at a 90% interval
(one-sided alpha 0.05): auroc > 0.5, best_layer_auroc > 0.5, auroc_minus_gc > 0, auroc_minus_kmer > 0,
auroc_minus_gc_matched > 0 and gc_shift_auroc > 0.5. A family is calibrated when the share of claims
supported is at most 0.05 plus two Monte Carlo standard errors.

    python scripts/calibrate_probe.py [--replicates 200] [--n 600]

Writes benchmarks/results/calibration_probe.json and docs/figures/calibration_probe.png.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
ALPHA = 0.05
LEVEL = 1 - 2 * ALPHA  # the lower bound of a 90% interval is a one-sided 5% test
CRITERIA = [
    ("auroc", ">", 0.5),
    ("best_layer_auroc", ">", 0.5),
    ("auroc_minus_gc", ">", 0.0),
    ("auroc_minus_kmer", ">", 0.0),
    ("auroc_minus_gc_matched", ">", 0.0),
    ("gc_shift_auroc", ">", 0.5),
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicates", type=int, default=200, help="label permutations (claims per criterion)")
    parser.add_argument("--n", type=int, default=600, help="windows in the dataset (80%% train, 20%% test)")
    parser.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples per interval")
    args = parser.parse_args(argv)

    from seqclaims.core.families import checks_dirs, load_families
    from seqclaims.inputs import datasets
    from seqclaims.inputs.models import load_model
    from seqclaims.methods.stats import mc_standard_error

    load_families(checks_dirs(ROOT))
    probe = sys.modules["seqclaims_checks.probe"]
    spec = {"dataset": "motif_sites", "matrix": "MA0108.3", "n": args.n, "gc_match": False}
    params = probe.ProbeParams(layer="all", random_label_permutations=0)
    probe_data = probe.probe_data_for(load_model("planted"), datasets.build(spec, seed=0), params)

    started = time.perf_counter()
    verdicts = probe.null_verdicts(probe_data, params, CRITERIA, range(args.replicates), ci_level=LEVEL,
                                   resamples=args.resamples)
    seconds = time.perf_counter() - started

    rows = []
    for column, (statistic, op, threshold) in enumerate(CRITERIA):
        column_verdicts = verdicts[:, column]
        rate = float((column_verdicts == "pass").mean())
        rows.append({
            "criterion": f"{statistic} {op} {threshold:g}", "claims": int(len(column_verdicts)),
            "supported": int((column_verdicts == "pass").sum()), "supported_share": round(rate, 4),
            "refuted_share": round(float((column_verdicts == "fail").mean()), 4),
            "inconclusive_share": round(float((column_verdicts == "inconclusive").mean()), 4),
            "bound": round(ALPHA + 2 * float(mc_standard_error(ALPHA, len(column_verdicts))), 4),
        })
    pooled = float((verdicts == "pass").mean())
    bound = ALPHA + 2 * float(mc_standard_error(ALPHA, verdicts.size))
    result = {
        "benchmark": "calibration_probe",
        "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "data": spec, "model": "planted", "params": params.model_dump(mode="json"),
        "null": "labels permuted within each split", "ci_level": LEVEL, "alpha_one_sided": ALPHA,
        "resamples": args.resamples, "replicates": args.replicates,
        "claims": int(verdicts.size), "supported_share": round(pooled, 4), "bound": round(bound, 4),
        "calibrated": bool(pooled <= bound and all(r["supported_share"] <= r["bound"] for r in rows)),
        "by_criterion": rows, "seconds": round(seconds, 1),
    }
    out = ROOT / "benchmarks" / "results" / "calibration_probe.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    draw(rows, pooled, verdicts.size, ROOT / "docs" / "figures" / "calibration_probe.png")
    print(f"{verdicts.size} claims on label-permuted data: {pooled:.3f} supported (bound {bound:.3f}); "
          f"calibrated: {result['calibrated']}; {seconds:.0f} s")
    for row in rows:
        print(f"  {row['criterion']:32s} {row['supported_share']:.3f} supported of {row['claims']} "
              f"(inconclusive {row['inconclusive_share']:.3f}; bound {row['bound']:.3f})")
    return 0


def draw(rows: list[dict], pooled: float, n_claims: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from seqclaims.methods.stats import mc_standard_error

    labels = [r["criterion"] for r in rows] + ["all claims"]
    shares = np.array([r["supported_share"] for r in rows] + [pooled])
    sizes = np.array([r["claims"] for r in rows] + [n_claims])
    errors = 2 * mc_standard_error(np.maximum(shares, 1e-12), sizes)
    fig, ax = plt.subplots(figsize=(7, 3.6))
    positions = np.arange(len(labels))
    ax.bar(positions, shares, color=["C0"] * len(rows) + ["C1"], yerr=errors, capsize=3)
    ax.axhline(ALPHA, color="black", linestyle="--", label=f"alpha = {ALPHA}")
    for x, size in zip(positions, sizes):
        ax.plot([x - 0.4, x + 0.4], [ALPHA + 2 * mc_standard_error(ALPHA, size)] * 2, color="C3")
    ax.plot([], [], color="C3", label="alpha + 2 Monte Carlo SE")
    ax.set_xticks(positions, labels, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("share wrongly supported")
    ax.set_title("probe family on label-permuted data (90% intervals, one-sided alpha 0.05)", fontsize=9)
    ax.legend(fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
