"""Benchmark: top-k SAE training on 200,000 tokens of width 128 into 1,024 latents with k = 16.

Candidate: `seqclaims.methods.sae.train_sae` as the families run it (the k active decoder rows summed with
`embedding_bag`). Baseline, in the same run: the same training with the textbook dense decoder (the
code scattered into a (batch, d_sae) matrix and multiplied by the whole decoder). Both train one epoch
per timed run (median of repeats); the full default training (SaeSpec().epochs epochs) is timed once
for the candidate and reported with its fraction of variance unexplained and its CPU time (wall times
depend on what else the machine runs; the load average is recorded).

Data: synthetic activations with a known sparse structure, x = z D + noise, with 8 of 2,048 unit-norm
dictionary directions active per token (exponential magnitudes), so that the SAE has features to find.

Run: python benchmarks/bench_sae.py  (writes benchmarks/results/sae_training.json)
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import time_median, write_comparison  # noqa: E402
from seqclaims.methods.sae import SaeSpec, train_sae  # noqa: E402

N_TOKENS, WIDTH, D_SAE, K = 200_000, 128, 1024, 16
TRUE_FEATURES, TRUE_ACTIVE = 2048, 8


def synthetic_activations(seed: int = 0) -> np.ndarray:
    """(N_TOKENS, WIDTH) float32: sparse combinations of random unit directions plus small noise."""
    rng = np.random.default_rng(seed)
    dictionary = rng.normal(size=(TRUE_FEATURES, WIDTH))
    dictionary /= np.linalg.norm(dictionary, axis=1, keepdims=True)
    active = rng.integers(0, TRUE_FEATURES, size=(N_TOKENS, TRUE_ACTIVE))
    magnitude = rng.exponential(1.0, size=(N_TOKENS, TRUE_ACTIVE))
    x = np.einsum("nk,nkd->nd", magnitude, dictionary[active])
    return (x + 0.05 * rng.normal(size=x.shape)).astype(np.float32)


def main() -> None:
    x = synthetic_activations()
    spec = SaeSpec(d_sae=D_SAE, k=K, tokens=N_TOKENS)
    one_epoch = spec.model_copy(update={"epochs": 1})
    baseline_s, baseline_runs, baseline = time_median(lambda: train_sae(x, one_epoch, dense=True),
                                                      repeats=3, warmup=0)
    candidate_s, candidate_runs, candidate = time_median(lambda: train_sae(x, one_epoch), repeats=3, warmup=0)
    started, cpu_started = time.perf_counter(), time.process_time()
    full = train_sae(x, spec)
    full_seconds, full_cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    difference = abs(candidate.report["fvu_train"] - baseline.report["fvu_train"])
    record = write_comparison(
        "sae_training",
        baseline="one epoch of top-k SAE training with a dense decoder (code scattered to (batch, d_sae) @ W_dec)",
        candidate="one epoch of seqclaims.methods.sae.train_sae (k active decoder rows summed with embedding_bag)",
        baseline_runs=baseline_runs, candidate_runs=candidate_runs,
        max_abs_difference=difference, tolerance=0.02,
        n_tokens=N_TOKENS, width=WIDTH, d_sae=D_SAE, k=K, batch_size=spec.batch_size, lr=spec.lr,
        threads="1 (training runs single-threaded)",
        load_average_1_5_15_min=[round(v, 2) for v in os.getloadavg()],  # other work on the machine meanwhile
        fvu_after_one_epoch={"baseline": baseline.report["fvu_train"], "candidate": candidate.report["fvu_train"]},
        full_training={"epochs": spec.epochs, "seconds": round(full_seconds, 2),
                       "cpu_seconds": round(full_cpu_seconds, 2),  # the process's own CPU time: robust to load
                       "fvu": full.report["fvu_train"],
                       "mean_l0": full.report["mean_l0_train"], "dead_fraction": full.report["dead_fraction_train"]},
    )
    print(f"sae training, {N_TOKENS} x {WIDTH} -> {D_SAE} (k={K}): one epoch {candidate_s:.2f} s "
          f"(dense decoder {baseline_s:.2f} s, {record['speedup']:.2f}x); {spec.epochs} epochs {full_seconds:.1f} s "
          f"({full_cpu_seconds:.1f} s CPU), "
          f"fvu {full.report['fvu_train']:.3f}, dead {full.report['dead_fraction_train']:.3f}")


if __name__ == "__main__":
    main()
