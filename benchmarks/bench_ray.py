"""Claims on a local Ray cluster: 2 workers against 1, with `-n 2` beside them, in one run.

The suite is the planted study (`claims/planted/`: every claim on the embedded planted models, grouped by
model, dataset and seed into one Ray task per group). A first run on a new, empty cache folder fills it
(genome indexes, datasets, activations, SAEs); every timed run then recomputes every claim's evidence
(`SEQCLAIMS_RECOMPUTE=1`) on that cache, as workers of a cluster would on shared storage. Timed, in turn,
--repeats times each:

- ray-1: `pytest claims/planted --claims-executor ray --claims-ray-workers 1` (the baseline);
- ray-2: the same with 2 workers;

and once, `pytest claims/planted -n 2` (xdist-2), the local run the Ray runs must equal. Every run's
verdicts and statistics (estimates, interval bounds, p-values, to the last bit) must equal the first
run's; the benchmark fails otherwise. Writes benchmarks/results/ray_workers.json.

    python benchmarks/bench_ray.py [--repeats 3] [--study planted]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import write_result  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MODES = {
    "ray-1": ("--claims-executor", "ray", "--claims-ray-workers", "1"),
    "ray-2": ("--claims-executor", "ray", "--claims-ray-workers", "2"),
}
LOCAL = ("-n", "2")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--study", default="planted", help="a folder of claims/ (default: planted)")
    args = parser.parse_args(argv)
    target = f"claims/{args.study}"
    with tempfile.TemporaryDirectory(prefix="ray-bench-") as scratch_name:
        scratch = Path(scratch_name)
        fill = run_claims(target, MODES["ray-2"], scratch / "cache", scratch / "fill", recompute=False)
        runs: dict[str, list[dict]] = {mode: [] for mode in MODES}
        for repeat in range(args.repeats):
            for mode, options in MODES.items():
                runs[mode].append(run_claims(target, options, scratch / "cache", scratch / f"{mode}-{repeat}"))
        local = run_claims(target, LOCAL, scratch / "cache", scratch / "xdist-2")
    for mode, run in [(mode, run) for mode, mode_runs in runs.items() for run in mode_runs] + [("xdist-2", local)]:
        differing = sorted(c for c in fill["outcomes"] if run["outcomes"].get(c) != fill["outcomes"][c])
        if differing:
            raise AssertionError(f"{mode}: verdicts or statistics differ from the first run's: {differing[:5]}")
    medians = {mode: statistics.median(r["seconds"] for r in mode_runs) for mode, mode_runs in runs.items()}
    record = {
        "command": f"pytest {target} -p no:cacheprovider [mode options]",
        "claims": len(fill["outcomes"]),
        "groups": count_groups(ROOT / target),
        "statuses": fill["statuses"],
        "repeats": args.repeats,
        "baseline": "ray-1: one Ray worker",
        "candidate": "ray-2: two Ray workers",
        "fill_s": round(fill["seconds"], 1),
        "seconds_median": {mode: round(value, 1) for mode, value in medians.items()},
        "seconds_runs": {mode: [round(r["seconds"], 1) for r in mode_runs] for mode, mode_runs in runs.items()},
        "xdist2_seconds_once": round(local["seconds"], 1),
        "speedup_ray2_over_ray1": round(medians["ray-1"] / medians["ray-2"], 2),
        "identical_outcomes": True,
    }
    path = write_result("ray_workers", record)
    print(f"{record['claims']} claims in {record['groups']} groups: ray 1 worker {medians['ray-1']:.1f} s, "
          f"2 workers {medians['ray-2']:.1f} s ({record['speedup_ray2_over_ray1']}x; medians of {args.repeats}), "
          f"-n 2 {local['seconds']:.1f} s (once); identical verdicts and statistics -> {path}")
    return 0


def count_groups(folder: Path) -> int:
    """Ray tasks the folder's claims make: one per model, dataset and seed (`executors.group_key`)."""
    from seqclaims.core.families import checks_dirs, load_claim, load_families
    from seqclaims.executors import group_key

    families = load_families(checks_dirs(ROOT))
    return len({group_key(load_claim(path, families)) for path in sorted(folder.glob("[!_]*.yaml"))})


def run_claims(target: str, options: tuple[str, ...], cache: Path, report: Path, *, recompute: bool = True) -> dict:
    env = {**os.environ, "SEQCLAIMS_CACHE": str(cache), "SEQCLAIMS_PROGRESS": "0", "RAY_USAGE_STATS_ENABLED": "0"}
    if recompute:
        env["SEQCLAIMS_RECOMPUTE"] = "1"
    command = [sys.executable, "-m", "pytest", target, "-q", "-p", "no:cacheprovider", "--claims-report", str(report),
               *options]
    started = time.perf_counter()
    completed = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if completed.returncode not in (0, 1):
        raise RuntimeError(f"pytest exited {completed.returncode}:\n{completed.stdout[-3000:]}{completed.stderr[-3000:]}")
    results = json.loads((report / "results.json").read_text())
    claims = results["claims"]
    return {
        "seconds": seconds,
        "outcomes": {c["id"]: (c["status"], c["verdict"], [(k["statistic"], k["estimate"], k["ci_low"], k["ci_high"])
                                                          for k in c["criteria"]]) for c in claims},
        "statuses": results["counts"],
    }


if __name__ == "__main__":
    sys.exit(main())
