"""Motif scan: seqclaims.motifs.scan_strands against Biopython's PSSM.calculate, both strands.

All of TAIR10 chromosome 1 (30.4 Mbp, soft-masked, with N runs) scanned with JASPAR2024
MA0108.2 (TBP, 15 bp). The baseline is Biopython's C scanner on the forward matrix and on its
reverse complement (what ``PSSM.search(both=True)`` runs); the candidate is ``scan_strands``
(encoding included). Both must agree to 1e-4 with NaN at the same windows.

Run: ``python benchmarks/bench_motif_scan.py``
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

import numpy as np
from Bio.motifs.matrix import FrequencyPositionMatrix

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import time_median, write_result  # noqa: E402
from seqclaims import motifs  # noqa: E402
from seqclaims.genome import sequence_array  # noqa: E402

MATRIX_ID = "MA0108.2"
REPEATS = 3
TOLERANCE = 1e-4


def biopython_pssm(motif: motifs.Motif):
    background = dict(zip("ACGT", motif.background))
    counts = FrequencyPositionMatrix("ACGT", {b: list(row) for b, row in zip("ACGT", motif.counts)})
    pseudocounts = {b: motif.pseudocount * background[b] for b in "ACGT"}
    return counts.normalize(pseudocounts=pseudocounts).log_odds(background)


def max_difference(ours: np.ndarray, reference: np.ndarray) -> float:
    if not np.array_equal(np.isnan(ours), np.isnan(reference)):
        raise AssertionError("missing windows differ from Biopython's")
    finite = ~np.isnan(reference)
    return float(np.max(np.abs(ours[finite].astype(np.float64) - reference[finite])))


def main() -> None:
    chromosome = sequence_array("athaliana", "1").tobytes()
    motif = motifs.load_motif(MATRIX_ID)
    forward_pssm = biopython_pssm(motif)
    reverse_pssm = forward_pssm.reverse_complement()

    def baseline():
        return forward_pssm.calculate(chromosome), reverse_pssm.calculate(chromosome)

    def candidate():
        return motifs.scan_strands(chromosome, motif)

    # rounds alternate baseline and candidate so that load from other processes hits both alike
    candidate()
    runs_base, runs_ours = [], []
    for _ in range(REPEATS):
        runs_base += time_median(baseline, repeats=1, warmup=0)[1]
        runs_ours += time_median(candidate, repeats=1, warmup=0)[1]
    t_base, t_ours = statistics.median(runs_base), statistics.median(runs_ours)
    reference, ours = baseline(), candidate()
    max_diff = max(max_difference(o, r) for o, r in zip(ours, reference))
    assert max_diff <= TOLERANCE, f"scores differ from Biopython by {max_diff:.3g}"
    speedup = t_base / t_ours
    n_missing = int(np.isnan(ours[0]).sum())
    print(
        f"motif scan, {MATRIX_ID} ({motif.length} bp), TAIR10 chr1 ({len(chromosome):,} bp), both strands: "
        f"Biopython {t_base:.2f} s, scan_strands {t_ours:.2f} s, {speedup:.1f}x faster, "
        f"max |diff| {max_diff:.2g}, {n_missing:,} missing windows"
    )
    path = write_result(
        "motif_scan",
        {
            "sequence": "TAIR10 chromosome 1 (NC_003070.9), case kept",
            "sequence_length": len(chromosome),
            "matrix_id": MATRIX_ID,
            "motif_length": motif.length,
            "release": motif.release,
            "repeats": REPEATS,
            "baseline": "Bio.motifs PSSM.calculate on the forward and reverse-complement matrices",
            "candidate": "seqclaims.motifs.scan_strands (encoding included)",
            "baseline_seconds_median": t_base,
            "candidate_seconds_median": t_ours,
            "baseline_seconds_runs": runs_base,
            "candidate_seconds_runs": runs_ours,
            "speedup": speedup,
            "max_abs_difference": max_diff,
            "missing_windows": n_missing,
            "tolerance": TOLERANCE,
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
