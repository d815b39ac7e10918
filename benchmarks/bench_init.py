"""What the randomization control costs: a claim judged without initialised copies, and with 1 and 3 of them.

The planted model's qk_motif, attention_enrichment and neuron templates on 400 TBP site windows, judged from
freshly computed evidence (the evidence store off) with warm caches (the datasets, the model's and the
copies' key scores and activations cached by the untimed warm-up run): the baseline has `init_seeds: 0`, the
candidates 1 and 3. Every statistic the baseline computes must be identical in the candidates (the copies
only add statistics). Medians of 3 runs.

    python benchmarks/bench_init.py [--repeats 3]

Writes benchmarks/results/init_copies.json.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("SEQCLAIMS_PROGRESS", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import time_median, write_comparison  # noqa: E402
from seqclaims.core.families import checks_dirs, load_claim, load_families  # noqa: E402
from seqclaims.judging.judge import judge  # noqa: E402
from seqclaims.organisms.random_networks import template_claim  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FAMILIES = ("qk_motif", "attention_enrichment", "neuron")
DATA = {"dataset": "motif_sites", "matrix": "MA0108.3", "n": 400}


def judged(families, folder: Path, copies: int):
    results = []
    for name in FAMILIES:
        family = families.families[name]
        path = template_claim(family, folder / f"{name}-{copies}", "planted", 0, data=DATA,
                              init_seeds=copies)
        results.append(judge(load_claim(path, families), family, use_store=False))
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    families = load_families(checks_dirs(ROOT))
    folder = Path(tempfile.mkdtemp(prefix="bench-init-"))
    runs, results = {}, {}
    for copies in (0, 1, 3):
        _, runs[copies], results[copies] = time_median(lambda: judged(families, folder, copies), repeats=args.repeats)
    difference = 0.0
    for base, *others in zip(*(results[c] for c in (0, 1, 3))):
        assert base.status == "evaluated", base.reason
        for other in others:
            for a, b in zip(base.criteria, other.criteria):
                if a.statistic == b.statistic and not a.statistic.endswith(("_init", "_minus_init")):
                    difference = max(difference, abs((a.estimate or 0) - (b.estimate or 0)))
    for copies in (1, 3):
        record = write_comparison(f"init_copies_{copies}", baseline="templates judged with init_seeds: 0",
                                  candidate=f"the same with init_seeds: {copies}", baseline_runs=runs[0],
                                  candidate_runs=runs[copies], max_abs_difference=difference, tolerance=0.0,
                                  families=list(FAMILIES), data=DATA, model="planted")
        print(f"init_seeds {copies}: {record['candidate_seconds_median']:.2f} s against {record['baseline_seconds_median']:.2f} s "
              f"({record['candidate_seconds_median'] / record['baseline_seconds_median']:.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
