"""Null calibration of ov_alignment's comparison with random directions, and what the unfloored cosine reports.

Null data: random OV circuits of random rank (1 to d_head = 16) in widths 64 and 128, and probe directions
that are random unit vectors (unrelated to the circuit). The family's computation runs on them: the max |cos|
of the direction with the write singular vectors above the floor (1e-3 of the largest), ranked against
1,000 other random unit directions. `cos_percentile_vs_random >= 99` should pass about 1% of the time.
Also reported, on the same null: the share of directions whose max |cos| reaches 0.3 with the floored
statistic and with MINTS's unfloored one (over all singular vectors, including those of singular value
~1e-15): the unfloored statistic of a low-rank circuit is at least 1/sqrt(d_model) for every direction, and
an absolute threshold on it says more about the width than about the circuit.

    python scripts/calibrate_ov_alignment.py [--repetitions 2000]

Writes benchmarks/results/calibration_ov_alignment.json and docs/figures/calibration_ov_alignment.png.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from seqclaims.methods import ov
from seqclaims.methods.stats import mc_standard_error

ROOT = Path(__file__).resolve().parents[1]
RESULT = ROOT / "benchmarks" / "results" / "calibration_ov_alignment.json"
FIGURE = ROOT / "docs" / "figures" / "calibration_ov_alignment.png"
WIDTHS = (64, 128)
ABSOLUTE = 0.3


def one_null(rng: np.random.Generator, width: int) -> dict:
    rank = int(rng.integers(1, 17))
    spectrum = ov.ov_spectrum(rng.normal(size=(width, rank)) @ rng.normal(size=(rank, width)))
    direction = ov.random_unit_directions(1, width, rng)
    null = ov.alignment(spectrum, ov.random_unit_directions(1000, width, rng))["write_cos"]
    floored = ov.alignment(spectrum, direction)["write_cos"][0]
    unfloored = ov.alignment(spectrum, direction, floored=False)["write_cos"][0]
    return {"rank": rank, "percentile": float(ov.percentile_vs_random(np.array([floored]), null)[0]),
            "floored": float(floored), "unfloored": float(unfloored)}


def calibrate(repetitions: int) -> dict:
    rng = np.random.default_rng(0)
    out = {}
    with threadpool_limits(limits=1):
        for width in WIDTHS:
            draws = [one_null(rng, width) for _ in range(repetitions)]
            rates = {"percentile_at_least_99": np.mean([d["percentile"] >= 99 for d in draws]),
                     f"floored_cos_at_least_{ABSOLUTE}": np.mean([d["floored"] >= ABSOLUTE for d in draws]),
                     f"unfloored_cos_at_least_{ABSOLUTE}": np.mean([d["unfloored"] >= ABSOLUTE for d in draws])}
            out[str(width)] = {"rates": {k: {"rate": float(v), "mc_se": float(mc_standard_error(v, repetitions))}
                                         for k, v in rates.items()},
                               "min_unfloored": float(min(d["unfloored"] for d in draws)),
                               "draws": draws}
            print(width, {k: round(float(v), 4) for k, v in rates.items()}, "min unfloored", round(out[str(width)]["min_unfloored"], 4))
    return out


def figure(results: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(WIDTHS), figsize=(9, 3), sharey=True)
    for ax, width in zip(axes, WIDTHS):
        draws = results[str(width)]["draws"]
        bins = np.linspace(0, 1, 41)
        ax.hist([d["floored"] for d in draws], bins=bins, alpha=0.6, label="floored (this family)")
        ax.hist([d["unfloored"] for d in draws], bins=bins, alpha=0.6, label="unfloored (MINTS)")
        ax.axvline(1 / np.sqrt(width), color="black", linestyle=":", label="1 / sqrt(d_model)")
        rate = results[str(width)]["rates"]["percentile_at_least_99"]["rate"]
        ax.set_title(f"width {width}: percentile >= 99 in {rate:.1%} of null draws", fontsize=8)
        ax.set_xlabel("max |cos| with the write singular vectors")
    axes[0].set_ylabel("null draws")
    axes[0].legend(fontsize=6)
    FIGURE.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(FIGURE, dpi=110, bbox_inches="tight")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repetitions", type=int, default=2000)
    args = parser.parse_args()
    results = calibrate(args.repetitions)
    figure(results)
    summary = {width: {k: v for k, v in r.items() if k != "draws"} for width, r in results.items()}
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text(json.dumps({"repetitions": args.repetitions, "floor": ov.DEFAULT_FLOOR, "random_directions": 1000,
                                  "ranks": "uniform 1..16", "widths": summary}, indent=2) + "\n")
    print(RESULT, FIGURE)


if __name__ == "__main__":
    main()
