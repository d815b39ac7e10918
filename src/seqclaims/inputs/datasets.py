"""The dataset a claim's `data:` mapping describes, built once and cached.

`build` dispatches to the embedded builders (`data`) or the user's files (`userdata`), gives every dataset
the same hygiene (`data.finish`) and caches the result under `cache_dir()/datasets/`, keyed by the resolved
parameters, the inputs' stamps or digests, the builders' source (`CODE_HASH`) and the pyjaspar version.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np

from seqclaims.code_keys import code_digest
from seqclaims.fsutil import file_sha256, package_version, pickled
from seqclaims.inputs import data, genome
from seqclaims.inputs.data import Dataset, DataSpec, parse_spec
from seqclaims.inputs.userdata import build_user, user_files
from seqclaims.paths import cache_dir

CODE_HASH = code_digest(__name__)


def cache_key(spec: DataSpec, seed: int, base_dir: Path | None = None) -> str:
    """Key of a built dataset: resolved parameters, code version, and the inputs' stamps/digests."""
    params = data.resolved_parameters(spec, seed)
    if spec.dataset == "user":
        inputs = [file_sha256(p) if p.is_file() else "missing" for p in user_files(spec, base_dir)]
    else:
        files = genome.species_files(spec.species)
        inputs = [genome.file_stamp(genome.data_dir() / f) for f in (files.fasta, files.gff) if f]
    code = {"data": CODE_HASH, "pyjaspar": package_version("pyjaspar")}
    payload = json.dumps({"params": params, "inputs": inputs, "code": code}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()


def build(spec: dict | DataSpec, *, seed: int, base_dir: Path | str | None = None, use_cache: bool = True) -> Dataset:
    """Build (or load from the cache) the dataset a claim's `data:` mapping describes.

    base_dir: folder that relative `path`/`fasta` are resolved against (the claim's folder).
    Same spec and seed -> identical Dataset.
    """
    spec = parse_spec(spec)
    base = Path(base_dir) if base_dir is not None else None
    if not use_cache:
        return build_uncached(spec, seed, base)
    path = cache_dir() / "datasets" / f"{cache_key(spec, seed, base)}.pkl"
    return pickled(path, lambda: build_uncached(spec, seed, base), valid=_has_every_field)


def _has_every_field(dataset: object) -> bool:
    """A dataset pickled by an older version may lack a field: rebuild it."""
    return isinstance(dataset, Dataset) and all(f.name in vars(dataset) for f in dataclasses.fields(Dataset))


def build_uncached(spec: DataSpec, seed: int, base_dir: Path | None) -> Dataset:
    params = data.resolved_parameters(spec, seed)
    rng = np.random.default_rng([int(seed), data.DATA_VERSION])
    if spec.dataset == "user":
        dataset = build_user(spec, params, rng, base_dir)
    else:
        dataset = data.build_embedded(spec, params, rng)
    return data.finish(dataset, spec, params)
