"""Content-addressed activation cache: claims that need the same activations share one forward pass.

An entry is keyed by the sha256 of (model hash, dataset hash, the sequences' own hash, hook names,
options: tokenization, the model's module map and attention implementation, reduction and dtype; the
torch and transformers versions; and CODE_VERSION, a hash of the source of the modules that extract
activations). It lives in
``cache_dir()/activations/<key[:2]>/<key>/`` as one ``.npy`` file per array plus ``manifest.json``
holding each file's size and sha256; the manifest is written last, so an entry without one is
incomplete. Files are written atomically and processes computing the same key serialise on a lock file
(`seqclaims.fsutil`): one computes, the others wait and then read. An entry whose files are missing, truncated or fail their checksum is recomputed.

Layout of the arrays (padded, not ragged: attention patterns are ragged in two axes, and the datasets
are fixed-length windows, where padding costs nothing). With n_seq sequences padded to n_tok tokens:

- per hook, without reduction: the hook's shape (``models`` module docstring), e.g.
  ``layer.{l}.resid_post`` (n_seq, n_tok, d_model); zero at padding positions;
- per hook, with ``reduce``: the token axis pooled over content tokens (not special, not padding):
  ``mean`` or ``max``, or ``cls`` (the first token); e.g. (n_seq, d_model). Not for ``attn.pattern``;
- ``tokens.input_ids`` (n_seq, n_tok) int32, ``tokens.offsets`` (n_seq, n_tok, 2) int32 character spans
  ((0, 0) for special tokens and padding), ``tokens.special_mask`` (n_seq, n_tok) bool (True for special
  tokens and padding), ``tokens.lengths`` (n_seq,) int32 tokens per sequence, special tokens included.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import io
import json
import logging
import math
import os
import sys
from pathlib import Path
from typing import Iterator, Literal, Mapping, Sequence

import numpy as np
from tqdm.auto import tqdm

from seqclaims.code_keys import code_digest
from seqclaims.errors import InputError
from seqclaims.fsutil import atomic_write_bytes, atomic_write_json, file_lock
from seqclaims.inputs.models import LoadedModel, hook_shape, iter_run, load_model, parse_hook
from seqclaims.inputs.tokenizers import Batch, Tokenization
from seqclaims.lazy import lazy_import
from seqclaims.paths import cache_dir

torch = lazy_import("torch")


# Any change to the code that extracts and stores activations gives new keys.
CODE_VERSION = code_digest(__name__)
# Numerics (kernels, attention paths) may change between releases of these libraries.
RUNTIME_VERSIONS = {name: importlib.metadata.version(name) for name in ("torch", "transformers")}
PROGRESS_ENV = "SEQCLAIMS_PROGRESS"  # 0 / false / no / off hides progress bars (they show on a terminal only)

Reduce = Literal["mean", "max", "cls"]
DType = Literal["float32", "float16"]

log = logging.getLogger(__name__)


class Activations(dict):
    """The arrays of one cache entry (name -> np.ndarray), with its key and whether it was computed now."""

    def __init__(self, arrays: Mapping[str, np.ndarray], key: str, source: Literal["computed", "cache"]):
        super().__init__(arrays)
        self.key = key
        self.source = source


def activations_root() -> Path:
    return cache_dir() / "activations"


def cache_key(model_hash: str, dataset_hash: str, hooks: Sequence[str], options: Mapping) -> str:
    """sha256 over everything that determines an entry's content; hook order does not matter."""
    payload = {
        "model": model_hash,
        "dataset": dataset_hash,
        "hooks": sorted(set(hooks)),
        "options": dict(options),
        "code_version": CODE_VERSION,
        "runtime": RUNTIME_VERSIONS,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def sequences_hash(sequences: Sequence[str]) -> str:
    digest = hashlib.sha256()
    for sequence in sequences:
        digest.update(str(sequence).encode())
        digest.update(b"\n")
    return digest.hexdigest()


def extract(
    model: LoadedModel | object,
    sequences: Sequence[str],
    hooks: Sequence[str],
    *,
    dataset_hash: str,
    tokenization: Tokenization | Mapping | None = None,
    batch_size: int = 16,
    reduce: Reduce | None = None,
    dtype: DType = "float32",
) -> Activations:
    """Activations of `hooks` on `sequences`, from the cache or computed once and stored.

    model: a LoadedModel (or anything `load_model` takes). dataset_hash: the dataset's content hash, as
    its builder reports it. tokenization: a declared scheme, default the model's. reduce: pool the
    token axis before storing (see the module docstring). dtype: storage precision.
    """
    model = model if isinstance(model, LoadedModel) else load_model(model)
    hooks = list(dict.fromkeys(hooks))
    _check_request(model, hooks, reduce, dtype)
    scheme = Tokenization.model_validate(tokenization) if tokenization else model.tokenization
    options = {
        "sequences": sequences_hash(sequences),
        "tokenization": scheme.model_dump() if scheme else "folder",
        "module_map": model.module_map.model_dump(),
        "attn_implementation": attention_implementation(model),
        "reduce": reduce,
        "dtype": dtype,
        **forward_precision(model),
    }
    key = cache_key(model.model_hash, dataset_hash, hooks, options)
    entry = CacheEntry(key)
    arrays, _ = entry.read()
    if arrays is not None:
        return Activations(arrays, key, "cache")
    with file_lock(entry.folder):
        arrays, problem = entry.read()
        if arrays is not None:
            return Activations(arrays, key, "cache")
        if problem:
            log.warning("activation cache entry %s is %s; recomputing it", key[:12], problem)
        batch = model.tokenize(sequences, scheme)
        arrays = _compute(model, batch, hooks, batch_size=batch_size, reduce=reduce, dtype=np.dtype(dtype))
        inputs = {"model_hash": model.model_hash, "dataset_hash": dataset_hash, "hooks": hooks, **options}
        entry.write(arrays, inputs)
    return Activations(arrays, key, "computed")


def forward_precision(model: LoadedModel) -> dict:
    """The forward passes' precision as a cache-key entry (absent for float32, the keys made before it)."""
    return {} if model.dtype == "float32" else {"forward_dtype": model.dtype}


def attention_implementation(model: LoadedModel) -> str:
    """The attention implementation the model runs with (eager, sdpa, ...), as loaded."""
    return str(getattr(model.model.config, "_attn_implementation", None) or model.ref.attn_implementation)


def _check_request(model: LoadedModel, hooks: list[str], reduce: str | None, dtype: str) -> None:
    points = [parse_hook(model, name) for name in hooks]
    if reduce not in (None, "mean", "max", "cls"):
        raise InputError(f"reduce must be one of mean, max, cls or none, not '{reduce}'")
    if dtype not in ("float32", "float16"):
        raise InputError(f"dtype must be float32 or float16, not '{dtype}'")
    if reduce and any(p.site == "attn.pattern" for p in points):
        raise InputError("reduce pools the token axis of per-token hooks; ask for attn.pattern without reduce")


# ---------------------------------------------------------------------------------------------
# Computing


def _compute(
    model: LoadedModel, batch: Batch, hooks: list[str], *, batch_size: int, reduce: str | None, dtype: np.dtype
) -> dict[str, np.ndarray]:
    n_seq, n_tok = len(batch), batch.n_tok
    if reduce == "cls" and not bool(batch.special_mask[:, 0].all()):
        raise InputError("reduce: cls needs a special first token, and this tokenizer adds none; use mean or max")
    arrays = {name: np.empty(_stored_shape(model, name, n_seq, n_tok, reduce), dtype=dtype) for name in hooks}
    content = batch.content_mask
    parts = iter_run(model, batch, hooks, batch_size=batch_size)
    for seq_index, outputs in _progress(parts, math.ceil(n_seq / batch_size)):
        rows = slice(int(seq_index[0]), int(seq_index[-1]) + 1)
        for name, value in outputs.items():
            arrays[name][rows] = reduce_tokens(value, content[rows], reduce).numpy()
    arrays.update(_token_arrays(batch))
    return arrays


def _stored_shape(model: LoadedModel, name: str, n_seq: int, n_tok: int, reduce: str | None) -> tuple[int, ...]:
    shape = hook_shape(model, name, n_seq, n_tok)
    return (shape[0], *shape[2:]) if reduce else shape


def reduce_tokens(value: torch.Tensor, content: torch.Tensor, reduce: str | None) -> torch.Tensor:
    """Pool (n_seq, n_tok, ...) over the token axis; content (n_seq, n_tok) bool marks the tokens pooled.

    mean/max: over content tokens (neither special nor padding); cls: the first token; None: unchanged.
    """
    if reduce is None:
        return value
    if reduce == "cls":
        return value[:, 0]
    mask = content.reshape(*content.shape, *[1] * (value.ndim - 2))
    if reduce == "mean":
        return (value * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1)
    return value.masked_fill(~mask, float("-inf")).amax(dim=1)


def _token_arrays(batch: Batch) -> dict[str, np.ndarray]:
    return {
        "tokens.input_ids": batch.input_ids.numpy().astype(np.int32),
        "tokens.offsets": batch.offsets.numpy().astype(np.int32),
        "tokens.special_mask": batch.special_mask.numpy(),
        "tokens.lengths": batch.lengths.numpy().astype(np.int32),
    }


def _progress(parts: Iterator, total: int) -> Iterator:
    hidden = os.environ.get(PROGRESS_ENV, "").lower() in ("0", "false", "no", "off") or not sys.stderr.isatty()
    return tqdm(parts, total=total, desc="activations", unit="batch", disable=hidden)


# ---------------------------------------------------------------------------------------------
# Storing


class CacheEntry:
    """One key's folder: `<name>.npy` per array and `manifest.json` with their sizes and checksums."""

    def __init__(self, key: str, root: Path | None = None):
        self.key = key
        shard = (root or activations_root()) / key[:2]
        self.folder = shard / key
        self.manifest_path = self.folder / "manifest.json"

    def read(self) -> tuple[dict[str, np.ndarray] | None, str | None]:
        """(arrays, None) for a complete, intact entry; (None, what is wrong) otherwise ('' if absent)."""
        if not self.manifest_path.is_file():
            return None, ""
        try:
            manifest = json.loads(self.manifest_path.read_text())
            return {name: self._read_array(name, record) for name, record in manifest["arrays"].items()}, None
        except (OSError, ValueError, KeyError, TypeError) as problem:
            return None, f"unreadable ({problem})"

    def _read_array(self, name: str, record: Mapping) -> np.ndarray:
        path = self.folder / record["file"]
        size = path.stat().st_size
        if size != record["bytes"]:
            raise ValueError(f"{path.name} has {size} bytes, expected {record['bytes']}")
        buffer = bytearray(size)
        with open(path, "rb") as handle:
            if handle.readinto(buffer) != size:
                raise ValueError(f"{path.name} is shorter than its size")
        if hashlib.sha256(buffer).hexdigest() != record["sha256"]:
            raise ValueError(f"{path.name} fails its checksum")
        return _array_from_npy(buffer)

    def write(self, arrays: Mapping[str, np.ndarray], inputs: Mapping) -> None:
        """Write every array, then the manifest; callers hold `file_lock(self.folder)`."""
        self.folder.mkdir(parents=True, exist_ok=True)
        self.manifest_path.unlink(missing_ok=True)
        records = {name: self._write_array(name, array) for name, array in arrays.items()}
        manifest = {
            "key": self.key,
            "code_version": CODE_VERSION,
            "runtime": RUNTIME_VERSIONS,
            "inputs": dict(inputs),
            "arrays": records,
        }
        atomic_write_json(self.manifest_path, manifest)

    def _write_array(self, name: str, array: np.ndarray) -> dict:
        stream = io.BytesIO()
        np.save(stream, np.ascontiguousarray(array), allow_pickle=False)
        payload = stream.getbuffer()
        filename = f"{name}.npy"
        atomic_write_bytes(self.folder / filename, payload)
        return {
            "file": filename,
            "bytes": len(payload),
            "sha256": hashlib.sha256(payload).hexdigest(),
            "shape": list(array.shape),
            "dtype": str(array.dtype),
        }


def _array_from_npy(buffer: bytearray) -> np.ndarray:
    """A writable array over the bytes of an .npy file (format 1.0 or 2.0), without copying them."""
    view = memoryview(buffer)
    length_size = 2 if view[6] == 1 else 4  # byte 6 is the format's major version
    data_offset = 8 + length_size + int.from_bytes(view[8 : 8 + length_size], "little")
    stream = io.BytesIO(bytes(view[:data_offset]))
    version = np.lib.format.read_magic(stream)
    read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, fortran_order, dtype = read_header(stream)
    array = np.frombuffer(buffer, dtype=dtype, count=math.prod(shape), offset=data_offset)
    return array.reshape(shape, order="F" if fortran_order else "C")
