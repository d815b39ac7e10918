"""Shared helpers for benchmarks (and the tests that use the same references).

A benchmark compares a candidate with a baseline in the same run, takes the median of
several repeats of each, prints one line and writes ``benchmarks/results/<name>.json``
(:func:`write_comparison`). Also here: Biopython's PSSM for a motif, the reference that both
the motif-scan benchmark and the motif tests compare against.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def time_median(fn: Callable[[], Any], *, repeats: int = 3, warmup: int = 1) -> tuple[float, list[float], Any]:
    """Median wall time of ``fn()`` over ``repeats`` runs after ``warmup`` untimed runs.

    Returns (median seconds, every timed run in seconds, the last return value).
    """
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    result = None
    for _ in range(warmup):
        result = fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times, result


def environment() -> dict[str, Any]:
    """What the figures were measured on."""
    import numpy

    info: dict[str, Any] = {
        "python": sys.version.split()[0],
        "numpy": numpy.__version__,
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
    }
    try:
        import sklearn

        info["scikit-learn"] = sklearn.__version__
    except ImportError:
        pass
    return info


def write_result(name: str, payload: dict[str, Any]) -> Path:
    """Write ``payload`` plus time and environment to ``benchmarks/results/<name>.json``."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    record = {
        "benchmark": name,
        "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **payload,
        "environment": environment(),
    }
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps(record, indent=2, sort_keys=False) + "\n")
    return path


def write_comparison(
    name: str,
    *,
    baseline: str,
    candidate: str,
    baseline_runs: list[float],
    candidate_runs: list[float],
    max_abs_difference: float,
    tolerance: float,
    **details: Any,
) -> dict[str, Any]:
    """Check agreement, then write a baseline-vs-candidate result with medians and speedup.

    ``baseline``/``candidate``: what was timed, in words; ``*_runs``: seconds per timed run;
    ``details``: what was measured on (sizes, IDs), written first. Raises AssertionError,
    writing nothing, when the two disagree by more than ``tolerance``. Returns the record
    written (without time and environment) with ``path`` added.
    """
    if not max_abs_difference <= tolerance:
        raise AssertionError(f"{name}: candidate and baseline differ by {max_abs_difference:.3g} > {tolerance:.3g}")
    baseline_median, candidate_median = statistics.median(baseline_runs), statistics.median(candidate_runs)
    payload = {
        **details,
        "repeats": len(candidate_runs),
        "baseline": baseline,
        "candidate": candidate,
        "baseline_seconds_median": baseline_median,
        "candidate_seconds_median": candidate_median,
        "baseline_seconds_runs": list(baseline_runs),
        "candidate_seconds_runs": list(candidate_runs),
        "speedup": baseline_median / candidate_median,
        "max_abs_difference": max_abs_difference,
        "tolerance": tolerance,
    }
    return {**payload, "path": write_result(name, payload)}


# --------------------------------------------------------------------------- references


def biopython_pssm(motif):
    """Biopython's PSSM for a ``seqclaims.inputs.motifs.Motif``: its counts, pseudocount and background.

    The pseudocount is split between bases in proportion to the background, the formula
    ``motif_from_counts`` documents.
    """
    from Bio.motifs.matrix import FrequencyPositionMatrix

    background = dict(zip("ACGT", motif.background))
    counts = FrequencyPositionMatrix("ACGT", {b: list(row) for b, row in zip("ACGT", motif.counts)})
    pseudocounts = {b: motif.pseudocount * background[b] for b in "ACGT"}
    return counts.normalize(pseudocounts=pseudocounts).log_odds(background)


def max_abs_difference(ours: np.ndarray, reference: np.ndarray) -> float:
    """Largest |ours - reference| over windows both score; AssertionError if shapes or NaN windows differ.

    ``ours``, ``reference``: ``(n,)`` scores, NaN for missing windows. 0.0 when none is scored.
    """
    if ours.shape != reference.shape:
        raise AssertionError(f"shapes differ: {ours.shape} and {reference.shape}")
    missing = np.isnan(reference)
    if not np.array_equal(np.isnan(ours), missing):
        raise AssertionError(f"missing windows differ at {np.flatnonzero(np.isnan(ours) != missing)[:5].tolist()} ...")
    if missing.all():
        return 0.0
    return float(np.nanmax(np.abs(ours - reference)))
