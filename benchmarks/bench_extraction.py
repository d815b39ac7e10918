"""Extraction throughput by device and precision: tokens per second of the hooks a head claim reads.

On an NT-v2-like fixture (ESM with rotary positions, SwiGLU, 6-mer tokens; `--layers`, `--d-model`) and
`--n` CTCF site windows (the dataset's default width), one pass of `run_with_cache` for every layer's residual stream and attention
pattern (the kernel recomputation under sdpa). Baseline: the CPU in float32. Candidates: the CPU in bfloat16
and, where CUDA is available, every CUDA device in float32 and bfloat16. The residual streams of each
candidate must agree with the baseline (relative tolerance: 1e-4 in float32, 5e-2 in reduced precision).

    python benchmarks/bench_extraction.py [--n 64] [--layers 6] [--d-model 256] [--repeats 3]

Writes benchmarks/results/extraction.json (which devices were present is part of the record).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("SEQCLAIMS_PROGRESS", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import time_median, write_result  # noqa: E402
from seqclaims.inputs import models  # noqa: E402
from seqclaims.inputs.architectures import build_nt_v2_like  # noqa: E402
from seqclaims.inputs.datasets import build  # noqa: E402

TOLERANCE = {"float32": 1e-4, "bfloat16": 5e-2, "float16": 5e-2}


def settings() -> list[tuple[str, str]]:
    cuda = [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    return [("cpu", "float32"), ("cpu", "bfloat16")] + [(d, p) for d in cuda for p in ("float32", "bfloat16")]


def extraction(folder: Path, sequences: list[str], device: str, dtype: str, repeats: int):
    os.environ["SEQCLAIMS_DEVICE"], os.environ["SEQCLAIMS_DTYPE"] = device, dtype
    model = models.load_model({"path": str(folder), "trust_remote_code": True,
                               "tokenization": {"kind": "kmer_nonoverlapping", "k": 6}})
    hooks = [f"layer.{l}.{part}" for l in range(model.n_layers) for part in ("resid_post", "attn.pattern")]
    batch = model.tokenize(sequences)
    seconds, runs, out = time_median(lambda: models.run_with_cache(model, batch, hooks), repeats=repeats)
    tokens = int(batch.attention_mask.sum())
    last = out[f"layer.{model.n_layers - 1}.resid_post"]
    return {"device": device, "dtype": dtype, "seconds_median": seconds, "seconds_runs": runs,
            "tokens_per_second": tokens / seconds}, last


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--d-model", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    sequences = build({"dataset": "motif_sites", "matrix": "MA0139.1", "n": args.n}, seed=0).sequences
    with tempfile.TemporaryDirectory() as tmp:
        folder = build_nt_v2_like(Path(tmp) / "nt-v2-like", n_layers=args.layers, d_model=args.d_model,
                                  n_heads=8, d_mlp=4 * args.d_model)
        rows, reference = [], None
        for device, dtype in settings():
            row, last = extraction(folder, sequences, device, dtype, args.repeats)
            if reference is None:
                reference = last
            scale = float(reference.abs().max())
            row["max_rel_difference_to_baseline"] = float((last - reference).abs().max()) / scale
            if not row["max_rel_difference_to_baseline"] <= TOLERANCE[dtype]:
                raise AssertionError(f"{device} {dtype} differs from the CPU float32 baseline by "
                                     f"{row['max_rel_difference_to_baseline']:.3g}")
            rows.append(row)
    baseline = rows[0]["tokens_per_second"]
    for row in rows:
        row["speedup_over_cpu_float32"] = row["tokens_per_second"] / baseline
        print(f"{row['device']:>7} {row['dtype']:>8}: {row['tokens_per_second']:10.0f} tokens/s "
              f"(x{row['speedup_over_cpu_float32']:.2f})")
    write_result("extraction", {
        "model": f"NT-v2-like, {args.layers} layers, d_model {args.d_model}, 8 heads",
        "sequences": args.n, "hooks": "every layer's resid_post and attn.pattern", "repeats": args.repeats,
        "cuda_devices": torch.cuda.device_count(), "rows": rows,
        "median_speedup": statistics.median(r["speedup_over_cpu_float32"] for r in rows[1:]) if len(rows) > 1 else 1.0,
    })
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
