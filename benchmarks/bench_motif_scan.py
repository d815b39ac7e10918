"""Motif scan: seqclaims.inputs.motifs.scan_strands against Biopython's PSSM.calculate, both strands.

All of TAIR10 chromosome 1 (30.4 Mbp, soft-masked, with N runs) scanned with JASPAR2024
MA0108.2 (TBP, 15 bp). The baseline is Biopython's C scanner on the forward matrix and on its
reverse complement (what ``PSSM.search(both=True)`` runs); the candidate is ``scan_strands``
(encoding included). Both must agree to 1e-4 with NaN at the same windows.

Run: ``python benchmarks/bench_motif_scan.py``
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import biopython_pssm, max_abs_difference, time_median, write_comparison  # noqa: E402
from seqclaims.inputs import motifs  # noqa: E402
from seqclaims.inputs.genome import sequence_array  # noqa: E402

MATRIX_ID = "MA0108.2"
REPEATS = 3
TOLERANCE = 1e-4


def main() -> None:
    chromosome = sequence_array("athaliana", "1").tobytes()
    motif = motifs.load_motif(MATRIX_ID)
    forward_pssm = biopython_pssm(motif)
    reverse_pssm = forward_pssm.reverse_complement()

    def baseline():
        return forward_pssm.calculate(chromosome), reverse_pssm.calculate(chromosome)

    def candidate():
        return motifs.scan_strands(chromosome, motif)

    # rounds alternate baseline and candidate so that load from other processes hits both alike;
    # the scores of the last round are the ones compared
    candidate()
    runs_base, runs_ours = [], []
    for _ in range(REPEATS):
        seconds, reference = time_median(baseline, repeats=1, warmup=0)[1:]
        runs_base += seconds
        seconds, ours = time_median(candidate, repeats=1, warmup=0)[1:]
        runs_ours += seconds
    max_diff = max(max_abs_difference(o, r) for o, r in zip(ours, reference))
    n_missing = int(np.isnan(ours[0]).sum())
    result = write_comparison(
        "motif_scan",
        baseline="Bio.motifs PSSM.calculate on the forward and reverse-complement matrices",
        candidate="seqclaims.inputs.motifs.scan_strands (encoding included)",
        baseline_runs=runs_base,
        candidate_runs=runs_ours,
        max_abs_difference=max_diff,
        tolerance=TOLERANCE,
        sequence="TAIR10 chromosome 1 (NC_003070.9), case kept",
        sequence_length=len(chromosome),
        matrix_id=MATRIX_ID,
        motif_length=motif.length,
        release=motif.release,
        missing_windows=n_missing,
    )
    print(
        f"motif scan, {MATRIX_ID} ({motif.length} bp), TAIR10 chr1 ({len(chromosome):,} bp), both strands: "
        f"Biopython {result['baseline_seconds_median']:.2f} s, scan_strands {result['candidate_seconds_median']:.2f} s, "
        f"{result['speedup']:.1f}x faster, max |diff| {max_diff:.2g}, {n_missing:,} missing windows"
    )
    print(f"wrote {result['path']}")


if __name__ == "__main__":
    main()
