"""Shared helpers for benchmarks: time a callable, write a result as JSON.

A benchmark compares a candidate with a baseline in the same run, takes the median of
several repeats of each, prints one line and writes ``benchmarks/results/<name>.json``.
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
