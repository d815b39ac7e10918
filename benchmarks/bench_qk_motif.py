"""qk_motif over every head of a model on 2,000 sequences: cold (key scores extracted) against cached.

Times the family's `evaluate` on a claim that tests every head of every layer (r of a named head and
max_r with their permutation p-values and the ideal detector's ceiling) on 2,000 TATA promoter windows
(300 nt). Cold: the key-score pass runs (a fresh activation cache, datasets and genomes reused); cached:
the same claim reads the stored key scores. Also compares the permutation engine (sums over Gram matrices
of the tracks) with recomputing the pooled Pearson r for every permutation.

    python benchmarks/bench_qk_motif.py [--model organism] [--n 2000]

Writes benchmarks/results/qk_motif.json.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("SEQCLAIMS_PROGRESS", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import time_median, write_comparison  # noqa: E402
from seqclaims.core.families import checks_dirs, load_claim, load_families  # noqa: E402
from seqclaims.judging.claim_inputs import claim_context  # noqa: E402
from seqclaims.methods import attention as att, key_scores  # noqa: E402
from seqclaims.paths import cache_dir  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def write_claim(folder: Path, model: str, n: int) -> Path:
    content = {"id": "bench-qk-motif", "title": "benchmark", "statement": "every head of every layer",
               "expect": "refuted", "model": model, "data": {"dataset": "tata", "n": n}, "check": "qk_motif",
               "params": {"matrix": "MA0108.3", "layer": 0, "head": 0},
               "criteria": [{"statistic": "r", "op": ">=", "threshold": 0.5},
                            {"statistic": "max_r", "op": ">=", "threshold": 0.5},
                            {"statistic": "max_r_p", "op": "<", "threshold": 0.05}],
               "correction": "holm"}
    path = folder / "claims" / "bench" / "bench-qk-motif.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(content, sort_keys=False))
    return path


def statistics_vector(evidence) -> np.ndarray:
    return np.array([[e.estimate, e.ci_low, e.ci_high] for _, e in sorted(evidence.statistics.items())], dtype=float)


def fresh_activation_cache(shared: Path) -> Path:
    """A cache folder that reuses the built datasets and genomes but holds no activations."""
    folder = Path(tempfile.mkdtemp(prefix="bench-qk-cache-"))
    for name in ("datasets", "genomes"):
        if (shared / name).exists():
            (folder / name).symlink_to(shared / name)
    return folder


def naive_permuted_pearson(tracks: att.PairedTracks, perms: np.ndarray) -> np.ndarray:
    """(M, K) pooled r recomputed from the tokens for every permutation (the baseline)."""
    mask = tracks.mask
    out = np.empty((perms.shape[0], tracks.x.shape[0]))
    for p, pairing in enumerate(perms):
        y = tracks.y[pairing]
        both = mask & mask[pairing]
        for k in range(tracks.x.shape[0]):
            out[p, k] = np.corrcoef(tracks.x[k][both], y[both])[0, 1]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="organism")
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--cold-repeats", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    shared = cache_dir()
    families = load_families(checks_dirs(ROOT))
    work = Path(tempfile.mkdtemp(prefix="bench-qk-claim-"))
    claim = load_claim(write_claim(work, args.model, args.n), families)
    family = families.get("qk_motif", claim.path)

    def evaluate():
        return family.evaluate(claim, claim_context(claim))

    evaluate()  # builds the dataset and loads the model once; not timed
    cold_runs, cold_vectors, folders = [], [], []
    for _ in range(args.cold_repeats):
        folder = fresh_activation_cache(shared)
        folders.append(folder)
        os.environ["SEQCLAIMS_CACHE"] = str(folder)
        started = time.perf_counter()
        evidence = evaluate()
        cold_runs.append(time.perf_counter() - started)
        cold_vectors.append(statistics_vector(evidence))
    cached_median, cached_runs, evidence = time_median(evaluate, repeats=args.repeats, warmup=1)
    cached_vector = statistics_vector(evidence)
    os.environ["SEQCLAIMS_CACHE"] = str(shared)
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)

    from seqclaims.inputs.datasets import build
    from seqclaims.inputs.models import load_model
    from seqclaims.inputs.motifs import load_motif

    model = load_model(args.model)
    dataset = build({"dataset": "tata", "n": args.n}, seed=0)
    table = key_scores.extract_key_scores(model, dataset.sequences, dataset_hash=dataset.content_hash,
                                   key_score="attention_received")
    motif = load_motif("MA0108.3")
    y = att.motif_tracks(att.window_scores(dataset.sequences, motif), table.offsets, motif.length, "anchored")
    tracks = att.paired_tracks(np.concatenate(key_scores.key_score_values(table, "log_probability")), y, centre=True)
    perms = att.sequence_permutations(np.array([len(s) for s in dataset.sequences]), 999, seed=0)
    engine_median, engine_runs, fast = time_median(lambda: att.permuted_pearson(tracks, perms), repeats=args.repeats)
    # recomputing r per permutation costs the same for every permutation: time 20, scale to 999
    few = perms[:20]
    naive_median, naive_runs, slow = time_median(lambda: naive_permuted_pearson(tracks, few), repeats=1, warmup=0)
    naive_all = naive_median * perms.shape[0] / few.shape[0]

    n_layers, n_heads = model.n_layers, model.n_heads
    record = write_comparison(
        "qk_motif",
        baseline=f"qk_motif evaluate, every head, cold: key-score pass over {args.n} sequences + statistics",
        candidate="the same claim with the key scores read from the activation cache",
        baseline_runs=cold_runs, candidate_runs=cached_runs,
        max_abs_difference=float(np.nanmax(np.abs(np.array(cold_vectors) - cached_vector))), tolerance=0.0,
        model=args.model, sequences=args.n, tokens_per_sequence=int(table.shape[-1]), heads=n_layers * n_heads,
        statistics="r (named head), max_r (selected on train, scored on test), max_r_p, ideal_r; "
                   f"{claim.resamples} resamples; max(999, 20 x heads) permutations",
        permutation_engine={"permutations": int(perms.shape[0]), "heads": n_layers * n_heads,
                            "gram_sums_seconds_median": engine_median, "gram_sums_seconds_runs": engine_runs,
                            "recompute_20_permutations_seconds": naive_median,
                            "recompute_seconds_scaled_to_all": naive_all, "speedup": naive_all / engine_median,
                            "max_abs_difference_first_20": float(np.nanmax(np.abs(fast[:20] - slow)))},
    )
    print(f"qk_motif on {args.model}, {n_layers * n_heads} heads, {args.n} sequences: cold "
          f"{np.median(cold_runs):.1f} s, cached {cached_median:.2f} s ({record['speedup']:.1f}x); {perms.shape[0]} "
          f"permutations of all heads: {engine_median:.2f} s vs recomputing r {naive_all:.0f} s (from 20)")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
