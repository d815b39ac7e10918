"""Bootstrap AUROC: vectorised weighted AUROC against a loop over scikit-learn.

1,000 resamples of 10,000 examples with tied scores. The baseline calls
``sklearn.metrics.roc_auc_score`` once per resample on the resampled rows; the candidate
turns the same resample indices into counts and calls ``seqclaims.methods.weighted.auroc_weighted``
once. Both must agree to 1e-12.

Run: ``python benchmarks/bench_bootstrap_auroc.py``
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import time_median, write_comparison  # noqa: E402
from seqclaims.methods.stats import indices_to_counts, resample_indices
from seqclaims.methods.weighted import auroc_weighted

N_EXAMPLES = 10_000
N_RESAMPLES = 1_000
REPEATS = 5
TOLERANCE = 1e-12


def make_data(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Scores rounded to 3 decimals (many ties) loosely related to the labels."""
    rng = np.random.default_rng(seed)
    labels = rng.random(N_EXAMPLES) < 0.3
    scores = np.round(rng.normal(size=N_EXAMPLES) + 0.8 * labels, 3)
    return scores, labels


def baseline(scores: np.ndarray, labels: np.ndarray, indices: np.ndarray) -> np.ndarray:
    return np.array([roc_auc_score(labels[row], scores[row]) for row in indices])


def candidate(scores: np.ndarray, labels: np.ndarray, indices: np.ndarray) -> np.ndarray:
    return auroc_weighted(scores, labels, indices_to_counts(indices, N_EXAMPLES))


def main() -> None:
    scores, labels = make_data()
    indices = resample_indices(N_EXAMPLES, N_RESAMPLES, seed=1)
    _, runs_base, ref = time_median(lambda: baseline(scores, labels, indices), repeats=REPEATS)
    _, runs_ours, ours = time_median(lambda: candidate(scores, labels, indices), repeats=REPEATS)
    max_diff = float(np.max(np.abs(ours - ref)))
    n_tied = int(N_EXAMPLES - np.unique(scores).size)
    result = write_comparison(
        "bootstrap_auroc",
        baseline="python loop over sklearn.metrics.roc_auc_score on resampled rows",
        candidate="seqclaims.methods.stats.indices_to_counts + auroc_weighted",
        baseline_runs=runs_base,
        candidate_runs=runs_ours,
        max_abs_difference=max_diff,
        tolerance=TOLERANCE,
        n_examples=N_EXAMPLES,
        n_resamples=N_RESAMPLES,
        n_tied_scores=n_tied,
    )
    print(
        f"bootstrap AUROC, {N_RESAMPLES} resamples x {N_EXAMPLES} examples ({n_tied} tied): "
        f"sklearn loop {result['baseline_seconds_median']:.3f} s, auroc_weighted "
        f"{result['candidate_seconds_median']:.3f} s, {result['speedup']:.1f}x faster, max |diff| {max_diff:.2g}"
    )
    print(f"wrote {result['path']}")


if __name__ == "__main__":
    main()
