"""Every claim, cold against warm, in one run: `pytest claims/ -n 2` as a user runs it.

- cold: a new, empty cache folder ($SEQCLAIMS_CACHE): genome indexes, datasets, activations, probe fits,
  SAEs and evidence are all computed;
- warm: the same command again on the filled cache (median of --repeats runs): every unchanged claim is
  re-judged from its stored evidence;
- start-up: `pytest claims/ -n 2 --collect-only` (median of --repeats): what pytest, xdist and the
  families' imports cost before any claim runs, which a warm run cannot go below;
- threshold edit: one claim copied into a scratch project with its first threshold moved (everything else
  equal), run on the warm cache: re-judged from stored evidence, no computation, figures redrawn.

Verdicts and statistics of the warm runs must equal the cold run's (the benchmark fails otherwise). Also
measured: the size of the report (index.html, results.json, figure files). Writes
benchmarks/results/warm_reruns.json.

    python benchmarks/bench_warm.py [--repeats 3] [--cache DIR]   # --cache: reuse a filled cache (no cold run)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import write_result  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
EDITED_CLAIM = "claims/planted/planted-qk-motif-head-scores-tbp.yaml"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cache", type=Path, default=None, help="a filled cache folder to reuse (skips the cold run)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="warm-bench-") as scratch_name:
        scratch = Path(scratch_name)
        cache = args.cache.resolve() if args.cache else scratch / "cache"
        cold = None if args.cache else run_claims(cache, scratch / "cold")
        warm = [run_claims(cache, scratch / f"warm-{i}") for i in range(args.repeats)]
        startup = [collect_only(cache) for _ in range(args.repeats)]
        edit = threshold_edit(cache, scratch / "edit")
    reference = cold or warm[0]
    for run in warm:
        if run["outcomes"] != reference["outcomes"]:
            raise AssertionError("a warm run's verdicts or statistics differ from the first run's")
    record = {
        "command": "pytest claims/ -n 2 -p no:cacheprovider",
        "claims": len(reference["outcomes"]),
        "statuses": reference["statuses"],
        "cold_s": None if cold is None else round(cold["seconds"], 1),
        "warm_median_s": round(statistics.median(r["seconds"] for r in warm), 2),
        "warm_runs_s": [round(r["seconds"], 2) for r in warm],
        "warm_claims_from_stored_evidence": warm[-1]["stored"],
        "warm_median_claim_ms": round(1000 * statistics.median(warm[-1]["durations"]), 1),
        "startup_median_s": round(statistics.median(startup), 2),
        "startup_runs_s": [round(s, 2) for s in startup],
        "speedup": None if cold is None else round(cold["seconds"] / statistics.median(r["seconds"] for r in warm), 1),
        "threshold_edit": edit,
        "report_bytes": warm[-1]["report_bytes"],
        "identical_outcomes": True,
    }
    path = write_result("warm_reruns", record)
    print(json.dumps({k: v for k, v in record.items() if k != "statuses"}, indent=1))
    print(f"written {path}")
    return 0


def pytest_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "pytest", *args, "-p", "no:cacheprovider", "-q"]


def environment(cache: Path) -> dict[str, str]:
    return {**os.environ, "SEQCLAIMS_CACHE": str(cache), "SEQCLAIMS_PROGRESS": "0"}


def run_claims(cache: Path, report: Path) -> dict:
    started = time.perf_counter()
    completed = subprocess.run(pytest_command("claims/", "-n", "2", "--claims-report", str(report)), cwd=ROOT,
                               env=environment(cache), capture_output=True, text=True)
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
        "stored": sum(c.get("evidence_source") == "stored" for c in claims),
        "durations": [c["duration_s"] for c in claims],
        "report_bytes": report_sizes(report),
    }


def report_sizes(report: Path) -> dict:
    figures = list((report / "figures").glob("*.png"))
    return {"index_html": (report / "index.html").stat().st_size, "results_json": (report / "results.json").stat().st_size,
            "figure_files": len(figures), "figure_bytes": sum(f.stat().st_size for f in figures)}


def collect_only(cache: Path) -> float:
    started = time.perf_counter()
    subprocess.run(pytest_command("claims/", "-n", "2", "--collect-only"), cwd=ROOT, env=environment(cache),
                   capture_output=True, text=True, check=True)
    return time.perf_counter() - started


def threshold_edit(cache: Path, project: Path) -> dict:
    """Run one claim, its first threshold moved, in a scratch project that shares checks/ and fixtures/."""
    sys.path.insert(0, str(ROOT / "src"))
    import yaml

    from seqclaims.core.families import checks_dirs, load_claim, load_families

    claim = load_claim(ROOT / EDITED_CLAIM, load_families(checks_dirs(ROOT)))
    content = json.loads(json.dumps(claim.content))
    old = content["criteria"][0]["threshold"]
    content["criteria"][0]["threshold"] = round(old - 0.05, 6)
    (project / "claims" / "edited").mkdir(parents=True)
    for shared in ("checks", "fixtures"):
        (project / shared).symlink_to(ROOT / shared)
    for copied in ("conftest.py", "pyproject.toml"):
        shutil.copy(ROOT / copied, project / copied)
    target = project / "claims" / "edited" / f"{claim.id}.yaml"
    target.write_text(yaml.safe_dump(content, sort_keys=False))
    started = time.perf_counter()
    subprocess.run(pytest_command(str(target.relative_to(project)), "--claims-report", str(project / "report")),
                   cwd=project, env=environment(cache), capture_output=True, text=True)
    seconds = time.perf_counter() - started
    result = json.loads((project / "report" / "results.json").read_text())["claims"][0]
    return {"claim": claim.id, "threshold": [old, content["criteria"][0]["threshold"]], "seconds": round(seconds, 2),
            "claim_ms": round(1000 * result["duration_s"], 1), "evidence_source": result["evidence_source"],
            "verdict": result["verdict"], "criterion_threshold_in_report": result["criteria"][0]["threshold"]}


if __name__ == "__main__":
    raise SystemExit(main())
