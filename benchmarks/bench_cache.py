"""Activation cache: cold extraction against a bare eager forward, and warm reads against cold extraction.

A 4-layer, d_model 128 BERT masked LM (4 heads, d_mlp 512) built from config, 192 random sequences
of 512 nt with single-nucleotide tokens (514 tokens each), hooks ``layer.{0..3}.resid_post``, batches
of 8, one torch thread (the machine is shared; multi-threaded timings there are mostly spin-waiting).
Baseline and cold extraction are timed alternately, so that a change of load affects both alike. The baseline is a bare loop: eager forward passes of the encoder with plain forward hooks that
copy the same block outputs into numpy arrays (inputs tokenized beforehand). The candidate is
``seqclaims.inputs.cache.extract`` on a fresh key (tokenization, hashing, per-token zeroing of padding, writing
and checksumming the entry included), then again on the same key (served from the cache). Also checked:
two processes extracting the same new key at once get identical arrays (one computes, one waits and
reads), and a truncated cache file is detected and recomputed (both on the first 32 sequences).

Bars: cold extraction runs at >= 70% of the baseline's throughput; a warm read is >= 20x faster than a
cold extraction.

Run: ``python benchmarks/bench_cache.py``
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("SEQCLAIMS_PROGRESS", "0")
os.environ.setdefault("OMP_NUM_THREADS", "1")  # also for the child processes

from benchmarks.common import write_result  # noqa: E402
from seqclaims.inputs.cache import CacheEntry, extract  # noqa: E402
from seqclaims.inputs.models import LoadedModel, load_model, save_random_model  # noqa: E402
from seqclaims.inputs.tokenizers import build_nucleotide_tokenizer  # noqa: E402

N_SEQUENCES = 192
LENGTH = 512
BATCH_SIZE = 8
REPEATS = 3
CHECK_SEQUENCES = 32  # the two-process and truncation checks are about correctness, not speed
ARCHITECTURE = dict(n_layers=4, d_model=128, n_heads=4, d_mlp=512)
HOOKS = [f"layer.{layer}.resid_post" for layer in range(ARCHITECTURE["n_layers"])]


def make_sequences(seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    letters = np.array(list("ACGT"))[rng.integers(0, 4, size=(N_SEQUENCES, LENGTH))]
    return ["".join(row) for row in letters]


def bare_forward(model: LoadedModel, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> list[np.ndarray]:
    """Eager forward passes with plain hooks copying each block's output into preallocated arrays."""
    layers = model.model.base_model.encoder.layer
    shape = (*input_ids.shape, model.d_model)
    outputs = [np.empty(shape, dtype=np.float32) for _ in layers]
    current = {}

    def keep(index):
        def hook(module, args, output):
            outputs[index][current["rows"]] = output.numpy()

        return hook

    handles = [layer.register_forward_hook(keep(i)) for i, layer in enumerate(layers)]
    try:
        with torch.inference_mode():
            for start in range(0, len(input_ids), BATCH_SIZE):
                current["rows"] = slice(start, start + BATCH_SIZE)
                model.model.base_model(
                    input_ids=input_ids[current["rows"]], attention_mask=attention_mask[current["rows"]]
                )
    finally:
        for handle in handles:
            handle.remove()
    return outputs


CHILD = textwrap.dedent(
    """
    import hashlib, sys
    from seqclaims.inputs.cache import extract
    from seqclaims.inputs.models import load_model
    folder, dataset_hash, count, length = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    import numpy as np
    rng = np.random.default_rng(0)
    letters = np.array(list("ACGT"))[rng.integers(0, 4, size=(count, length))]
    result = extract(load_model({"path": folder}), ["".join(r) for r in letters], %r, dataset_hash=dataset_hash, batch_size=%d)
    digest = hashlib.sha256()
    for name in sorted(result):
        digest.update(name.encode()); digest.update(np.ascontiguousarray(result[name]).tobytes())
    print(result.source, digest.hexdigest())
    """
    % (HOOKS, BATCH_SIZE)
)


def two_processes(folder: Path, cache: Path) -> dict:
    """Two processes extract the same new key at once; both must end with identical arrays."""
    env = {**os.environ, "SEQCLAIMS_CACHE": str(cache)}
    command = [sys.executable, "-c", CHILD, str(folder), "bench-two-processes", str(CHECK_SEQUENCES), str(LENGTH)]
    children = [subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    replies = [child.communicate(timeout=600) for child in children]
    if any(child.returncode for child in children):
        raise RuntimeError(replies[0][1][-2000:] + replies[1][1][-2000:])
    lines = [out.strip().splitlines()[-1].split() for out, _ in replies]
    return {
        "sources": sorted(source for source, _ in lines),
        "identical_arrays": lines[0][1] == lines[1][1],
    }


def truncated_file_is_recomputed(model: LoadedModel, sequences: list[str]) -> dict:
    reference = extract(model, sequences, HOOKS, dataset_hash="bench-truncation", batch_size=BATCH_SIZE)
    entry = CacheEntry(reference.key)
    victim = entry.folder / f"{HOOKS[-1]}.npy"
    size = victim.stat().st_size
    with open(victim, "r+b") as handle:
        handle.truncate(size // 2)
    again = extract(model, sequences, HOOKS, dataset_hash="bench-truncation", batch_size=BATCH_SIZE)
    return {
        "truncated_file": victim.name,
        "bytes_before": size,
        "bytes_after_truncation": size // 2,
        "source_after_truncation": again.source,
        "recomputed_arrays_equal": all(np.array_equal(again[k], reference[k]) for k in reference),
    }


def timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def main() -> None:
    torch.set_num_threads(1)
    workdir = Path(tempfile.mkdtemp(prefix="bench-cache-"))
    os.environ["SEQCLAIMS_CACHE"] = str(workdir / "cache")
    try:
        folder = save_random_model(
            workdir / "model", "bert", tokenizer=build_nucleotide_tokenizer("single", model_max_length=1024), **ARCHITECTURE
        )
        model = load_model({"path": str(folder)})
        sequences = make_sequences()
        batch = model.tokenize(sequences)
        n_tokens = int(batch.attention_mask.sum())
        bare_forward(model, batch.input_ids[:BATCH_SIZE], batch.attention_mask[:BATCH_SIZE])  # warm-up

        runs_bare, runs_cold = [], []
        for repeat in range(REPEATS):
            seconds, bare = timed(lambda: bare_forward(model, batch.input_ids, batch.attention_mask))
            runs_bare.append(seconds)
            seconds, cold = timed(
                lambda: extract(model, sequences, HOOKS, dataset_hash=f"bench-cold-{repeat}", batch_size=BATCH_SIZE)
            )
            runs_cold.append(seconds)
            assert cold.source == "computed"
        runs_warm = []
        for _ in range(REPEATS):  # the last cold entry, read back
            seconds, warm = timed(
                lambda: extract(model, sequences, HOOKS, dataset_hash=f"bench-cold-{REPEATS - 1}", batch_size=BATCH_SIZE)
            )
            runs_warm.append(seconds)
            assert warm.source == "cache"
        t_bare, t_cold, t_warm = (statistics.median(runs) for runs in (runs_bare, runs_cold, runs_warm))
        max_difference = max(float(np.abs(cold[name] - bare[i]).max()) for i, name in enumerate(HOOKS))
        entry_bytes = sum(p.stat().st_size for p in CacheEntry(warm.key).folder.iterdir())

        processes = two_processes(folder, workdir / "cache")
        truncation = truncated_file_is_recomputed(model, sequences[:CHECK_SEQUENCES])
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    cold_throughput_ratio = t_bare / t_cold
    warm_speedup = t_cold / t_warm
    payload = {
        "model": {"architecture": "BertForMaskedLM", **ARCHITECTURE, "attn_implementation": "eager"},
        "n_sequences": N_SEQUENCES,
        "sequence_length_nt": LENGTH,
        "n_tokens": n_tokens,
        "hooks": HOOKS,
        "batch_size": BATCH_SIZE,
        "repeats": REPEATS,
        "torch_threads": torch.get_num_threads(),
        "entry_megabytes": round(entry_bytes / 1e6, 1),
        "baseline": "bare eager encoder forward with forward hooks copying the same block outputs to numpy",
        "candidate": "seqclaims.inputs.cache.extract, cold (new key) and warm (same key)",
        "bare_seconds_median": t_bare,
        "cold_seconds_median": t_cold,
        "warm_seconds_median": t_warm,
        "bare_seconds_runs": runs_bare,
        "cold_seconds_runs": runs_cold,
        "warm_seconds_runs": runs_warm,
        "bare_tokens_per_second": n_tokens / t_bare,
        "cold_tokens_per_second": n_tokens / t_cold,
        "cold_throughput_vs_bare": cold_throughput_ratio,
        "warm_speedup_vs_cold": warm_speedup,
        "max_abs_difference_cold_vs_bare": max_difference,
        "two_processes": processes,
        "truncation": truncation,
        "bars": {
            "cold_at_least_70_percent_of_bare": cold_throughput_ratio >= 0.70,
            "warm_at_least_20x_faster_than_cold": warm_speedup >= 20,
            "two_processes_identical": processes["identical_arrays"] and processes["sources"] == ["cache", "computed"],
            "truncated_file_recomputed": truncation["source_after_truncation"] == "computed"
            and truncation["recomputed_arrays_equal"],
        },
    }
    path = write_result("cache", payload)
    print(
        f"cache: bare {t_bare:.2f}s, cold {t_cold:.2f}s ({cold_throughput_ratio:.0%} of bare throughput), "
        f"warm {t_warm:.3f}s ({warm_speedup:.0f}x faster than cold); two processes {processes['sources']} "
        f"identical={processes['identical_arrays']}; truncated file -> {truncation['source_after_truncation']}; "
        f"max |cold - bare| = {max_difference:.1e} -> {path}"
    )


if __name__ == "__main__":
    main()
