"""Run time of the probe claims, cold against cached, in the same run.

Figures: wall seconds and CPU seconds (user + system) per run. Cold: no activation and no probe-fit cache entries (a fresh cache folder that shares only the genome
indexes, the built datasets and the file hashes, which every family uses). Cached: the same claims again
on the now-filled cache, the median of `--repeats` runs. Each run is `pytest <claims> -p no:cacheprovider`
in a subprocess, as CI runs them (serially: one process); the per-claim durations come from the report.

    python benchmarks/bench_probe_claims.py [--claims GLOB ...] [--repeats 3]

Prints one line per group and writes benchmarks/results/probe_claims.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import write_result  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED = ("genomes", "datasets", "file_hashes", "user_fasta")
DEFAULT_GROUPS = {
    "planted": ["claims/planted/planted-probe-*.yaml"],
    "organism": ["claims/organism/organism-*-probe-*.yaml", "claims/organism/organism-vs-6mer-*-probe.yaml"],
    "mints": ["claims/mints/mints-dnabert2-*-layer11-probe.yaml"],
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--group", action="append", choices=sorted(DEFAULT_GROUPS), help="claim groups (default: all)")
    parser.add_argument("--repeats", type=int, default=3, help="cached runs (median)")
    args = parser.parse_args(argv)
    groups = args.group or sorted(DEFAULT_GROUPS)
    results = {}
    for group in groups:
        paths = sorted({str(p.relative_to(ROOT)) for pattern in DEFAULT_GROUPS[group] for p in ROOT.glob(pattern)})
        if not paths:
            continue
        with tempfile.TemporaryDirectory(prefix="probe-bench-") as scratch:
            cache = cold_cache(Path(scratch))
            cold = run_claims(paths, cache, Path(scratch) / "cold")
            cached = [run_claims(paths, cache, Path(scratch) / f"cached-{i}") for i in range(args.repeats)]
        median = statistics.median(run["seconds"] for run in cached)
        median_cpu = statistics.median(run["cpu_seconds"] for run in cached)
        results[group] = {
            "claims": len(paths), "cold_s": round(cold["seconds"], 1), "cached_median_s": round(median, 1),
            "cold_cpu_s": round(cold["cpu_seconds"], 1), "cached_median_cpu_s": round(median_cpu, 1),
            "cached_runs_s": [round(run["seconds"], 1) for run in cached], "speedup": round(cold["seconds"] / median, 1),
            "statuses": cold["statuses"], "cold_per_claim_s": cold["per_claim"],
            "cached_per_claim_s": cached[-1]["per_claim"],
        }
        print(f"{group}: {len(paths)} claims, cold {cold['seconds']:.0f} s wall / {cold['cpu_seconds']:.0f} s CPU, "
              f"cached {median:.0f} s wall / {median_cpu:.0f} s CPU (median of {args.repeats}); {cold['statuses']}")
    write_result("probe_claims", {
        "what": "pytest run time of the probe claims: cold (no activation or probe-fit cache) vs cached",
        "baseline": "cold run", "candidate": "cached runs (median)", "groups": results,
    })
    return 0


def cold_cache(scratch: Path) -> Path:
    """A cache folder without activations or probe fits; genome indexes and datasets are shared."""
    from seqclaims.paths import cache_dir

    real, cache = cache_dir(), scratch / "cache"
    cache.mkdir()
    for name in SHARED:
        if (real / name).exists():
            (cache / name).symlink_to(real / name)
    return cache


def run_claims(paths: list[str], cache: Path, report: Path) -> dict:
    """Wall and CPU seconds (user + system of the pytest process) of one run; CPU time is what a shared
    machine's other load changes least."""
    env = {**os.environ, "SEQCLAIMS_CACHE": str(cache), "SEQCLAIMS_PROGRESS": "0", "HF_HUB_OFFLINE": "1"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "pytest", *paths, "-p", "no:cacheprovider", "-q", "--claims-report",
                    str(report)], cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    claims = json.loads((report / "results.json").read_text())["claims"]
    statuses: dict[str, int] = {}
    for claim in claims:
        key = claim["status"] if claim["status"] != "evaluated" else f"evaluated ({claim['verdict']})"
        statuses[key] = statuses.get(key, 0) + 1
    per_claim = {claim["id"]: claim.get("duration_s") for claim in claims}
    return {"seconds": seconds, "cpu_seconds": cpu, "statuses": statuses, "per_claim": per_claim}


if __name__ == "__main__":
    sys.exit(main())
