"""What the composition controls cost: qk_motif's statistics on every head of a model, with and without them.

On 2,000 TATA promoter windows (300 nt, single-nucleotide tokens) and every head of the organism model, from
cached key scores: the baseline computes r, its permutation p-values, max_r with selection inside every
resample and the ideal detector's ceiling; the candidate adds r_partial_composition and r_minus_shuffled (20
column-shuffled matrices) for the named head and as selected max_ statistics, with their ceilings. The
statistics both compute must agree exactly.

    python benchmarks/bench_composition.py [--model organism] [--n 2000] [--repeats 3]

Writes benchmarks/results/composition_controls.json.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("SEQCLAIMS_PROGRESS", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import time_median, write_comparison  # noqa: E402
from seqclaims.core.families import Context, checks_dirs, load_claim, load_families  # noqa: E402
from seqclaims.inputs.datasets import build  # noqa: E402
from seqclaims.inputs.models import load_model  # noqa: E402
from seqclaims.methods import attention as att, key_scores  # noqa: E402
from seqclaims.paths import cache_dir  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="organism")
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    families = load_families(checks_dirs(ROOT))
    qk = sys.modules[families.get("qk_motif", ROOT).evaluate.__module__]
    claim_path = ROOT / ".cache" / "bench" / "claims" / "bench" / "bench-composition.yaml"
    claim_path.parent.mkdir(parents=True, exist_ok=True)
    claim_path.write_text(f"""id: bench-composition
title: benchmark
statement: benchmark
expect: refuted
model: {args.model}
data: {{dataset: tata, n: {args.n}}}
check: qk_motif
params: {{matrix: MA0108.3, layer: 0, head: 0}}
criteria:
  - {{statistic: r, op: ">=", threshold: 0.5}}
""")
    claim = load_claim(claim_path, families)
    context = Context(claim, cache_dir())
    dataset = build(claim.data.model_dump(exclude_none=True), seed=claim.seed)
    model = load_model(args.model)
    motif = att.claim_motif(claim, dataset)
    table = key_scores.extract_key_scores(model, dataset.sequences, dataset_hash=dataset.content_hash,
                                   key_score="attention_received")
    heads, named = att.claim_heads(claim, model)
    params = claim.params
    scores = att.window_scores(dataset.sequences, motif)
    motif_score = att.motif_tracks(scores, table.offsets, motif.length, params.alignment)
    tracks = att.paired_tracks(qk.head_scores(table, heads, params.scale, params), motif_score, centre=params.centre)
    ideal = qk.ideal_tracks(scores, table.offsets, motif, motif_score, params)
    lengths = np.array([len(s) for s in dataset.sequences])

    def statistics(with_controls: bool) -> dict:
        controls = qk.composition_controls(dataset.sequences, table.offsets, motif, tracks, ideal, params,
                                           context.seed_for("shuffled-motifs")) if with_controls else {}
        return qk.Analysis(claim, context, tracks, ideal, lengths, dataset.split, heads, named, controls).statistics()

    baseline_s, baseline_runs, plain = time_median(lambda: statistics(False), repeats=args.repeats)
    candidate_s, candidate_runs, controlled = time_median(lambda: statistics(True), repeats=args.repeats)
    shared = [name for name in plain if not plain[name].is_missing]
    difference = max(abs(plain[name].estimate - controlled[name].estimate) for name in shared)
    record = write_comparison(
        "composition_controls", baseline="r, r_p, max_r (selection in every resample), ideal_r",
        candidate="the same plus r_partial_composition, r_minus_shuffled (20 shuffles) and their max_ statistics",
        baseline_runs=baseline_runs, candidate_runs=candidate_runs, max_abs_difference=difference, tolerance=0.0,
        model=args.model, n_sequences=len(dataset.sequences), n_heads=len(heads), n_tokens=int(tracks.n_tokens),
        resamples=claim.resamples)
    print(f"composition controls on {len(heads)} heads x {len(dataset.sequences)} sequences: {baseline_s:.2f} s "
          f"without, {candidate_s:.2f} s with (x{candidate_s / baseline_s:.2f}); shared statistics identical")
    return 0 if record else 1


if __name__ == "__main__":
    raise SystemExit(main())
