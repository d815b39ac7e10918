"""Reading and validating claim files (DESIGN section 2).

Every mapping is strict: an unknown key, a wrong type, an unknown family or statistic is a
`ClaimError` whose one-line message names the file, the key path and, where one is close, the key
that was probably meant. YAML is read with a safe loader that also rejects duplicate keys. A claim's
identity is the hash of its canonical content (`canonical_hash`), which the registry, results and the
evidence store record.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from seqclaims.errors import ClaimError

KEBAB_CASE = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")


class StrictModel(BaseModel):
    """Base for every claim mapping: unknown keys and wrong types are errors, never coerced."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class Criterion(StrictModel):
    statistic: str = Field(description="a statistic that the family produces (see `seqclaims new <family>`)")
    op: Literal[">=", ">", "<=", "<"] = Field(description="comparison of the statistic with the threshold")
    threshold: float = Field(description="pre-registered threshold; a number")

    @field_validator("threshold")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("threshold must be a finite number (not NaN or infinity)")
        return value


class ClaimModel(StrictModel):
    """The top level of a claim file. `model`, `data` and `params` are validated by the family."""

    id: str = Field(description="kebab-case identifier; equals the file stem; unique")
    title: str = Field(description="one-line title")
    statement: str = Field(description="the hypothesis in one or two sentences")
    source: str | None = Field(None, description="provenance: the study, table or figure the claim comes from")
    expect: Literal["supported", "refuted", "inconclusive"] = Field(
        description="the verdict the claim's authors expect; the pytest item passes when the verdict equals it")
    model: Any = Field(description="an embedded model name (organism, organism-6mer, planted, or a kept checkpoint such as organism@step0) or a mapping "
                       "{path: <local HF folder>} / {hf_id: <id>, revision: <sha>}")
    data: Any = Field(description="which dataset, how much, which split")
    check: str = Field(description="the check family: a module in checks/")
    params: dict[str, Any] = Field(default_factory=dict, description="family-specific parameters")
    criteria: list[Criterion] = Field(min_length=1, description="at least one pre-registered criterion")
    decision: Literal["all", "any"] = Field("all", description="all: every criterion must pass; any: one suffices")
    ci_level: float = Field(0.95, gt=0, lt=1, description="confidence level of every interval, in (0, 1)")
    seed: int = Field(0, ge=0, description="every random choice derives from it")
    correction: Literal["bonferroni", "holm", "fdr_bh"] | None = Field(
        None, description="multiple-testing correction over the candidates a family scans; "
        "required when a criterion is on a maximum or selection over many candidates")
    resamples: int = Field(1000, ge=100, le=100000, description="bootstrap resamples for every interval")
    init_seeds: int = Field(1, ge=0, le=20, description="randomly initialised copies of the model for the _init and "
                            "_minus_init statistics (their mean); 0 computes none")

    @field_validator("id")
    @classmethod
    def _kebab(cls, value: str) -> str:
        if not KEBAB_CASE.match(value):
            raise ValueError(f"id {value!r} must be kebab-case (lowercase letters, digits and single hyphens)")
        return value


@dataclass(frozen=True)
class Claim:
    """A validated claim: the schema fields plus the family's validated params, model and data."""

    path: Path
    spec: ClaimModel
    params: Any
    model: Any
    data: Any
    content: dict[str, Any] = field(repr=False)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.spec, name)

    @property
    def study(self) -> str:
        return self.path.parent.name


def shown_path(path: Path) -> Path:
    """The path as a user would type it: relative to the working folder when it lies below it."""
    try:
        return Path(path).resolve().relative_to(Path.cwd().resolve())
    except ValueError:
        return Path(path)


# ---------------------------------------------------------------------------------------------
# YAML


class _StrictSafeLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
    """SafeLoader that rejects duplicate keys (PyYAML silently keeps the last one); libyaml's parser where
    PyYAML has it (three times faster than the pure-Python one: `seqclaims check` reads every claim)."""


def _construct_mapping_without_duplicates(loader: _StrictSafeLoader, node: yaml.MappingNode, deep: bool = False):
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if not isinstance(key, (str, int, float, bool)) and key is not None:
            raise yaml.constructor.ConstructorError(
                None, None, "a mapping key must be a plain scalar (a word or a number)", key_node.start_mark)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_StrictSafeLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
                                  _construct_mapping_without_duplicates)


def read_yaml_mapping(path: Path) -> dict[str, Any]:
    """Parse one YAML file into a mapping, or raise a one-line ClaimError naming the file."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ClaimError(f"{path}: cannot read the file ({exc.strerror})") from None
    except UnicodeDecodeError as exc:
        raise ClaimError(f"{path}: not UTF-8 text (byte {exc.start}); save the claim as UTF-8") from None
    try:
        data = yaml.load(text, Loader=_StrictSafeLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.constructor.ConstructorError as exc:
        mark = exc.problem_mark
        where = f" (line {mark.line + 1})" if mark else ""
        problem = exc.problem or "unsupported YAML construct"
        if "could not determine a constructor" in problem:
            problem = f"unsafe or unknown YAML tag: {problem.split('tag')[-1].strip()}; only plain YAML is allowed"
        raise ClaimError(f"{path}{where}: {problem}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ClaimError(f"{path}{where}: YAML syntax error: {problem}") from None
    if data is None:
        raise ClaimError(f"{path}: the file is empty; a claim is a YAML mapping (run `seqclaims new <family> <id>`)")
    if not isinstance(data, dict):
        raise ClaimError(f"{path}: a claim must be a YAML mapping of keys to values, not a {type(data).__name__}")
    return data


# ---------------------------------------------------------------------------------------------
# include: (lm-evaluation-harness style templates)


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Mappings merge key by key; any other value (lists included) in `override` replaces the base's."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def resolve_includes(data: dict[str, Any], path: Path, _chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Expand `include:` (a path or list of paths relative to the including file), depth first.

    Later includes override earlier ones; the including file overrides them all.
    """
    chain = (*_chain, path.resolve())
    includes = data.get("include")
    if includes is None:
        return data
    if isinstance(includes, str):
        includes = [includes]
    if not isinstance(includes, list) or not all(isinstance(item, str) for item in includes):
        raise ClaimError(f"{chain[0]}: include: must be a file path or a list of file paths")
    merged: dict[str, Any] = {}
    for item in includes:
        target = (path.parent / item).resolve()
        if target in chain:
            cycle = " -> ".join(p.name for p in (*chain, target))
            raise ClaimError(f"{chain[0]}: include: cycle detected ({cycle}); remove one of these includes")
        if not target.is_file():
            raise ClaimError(f"{chain[0]}: include: file {item!r} not found next to {path.name}")
        merged = deep_merge(merged, resolve_includes(read_yaml_mapping(target), target, chain))
    own = {key: value for key, value in data.items() if key != "include"}
    return deep_merge(merged, own)


def load_content(path: Path) -> dict[str, Any]:
    """The claim's canonical content: the parsed file with its includes resolved."""
    return resolve_includes(read_yaml_mapping(path), path)


# ---------------------------------------------------------------------------------------------
# the claim's identity (what pre-registration and results record)


def canonical_json(content: Any) -> str:
    return json.dumps(canonical_content(content), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def canonical_hash(content: dict[str, Any]) -> str:
    """sha256 of the key-sorted parsed content: key order, quoting, comments and 1 vs 1.0 do not count."""
    return hashlib.sha256(canonical_json(content).encode("utf-8")).hexdigest()


def canonical_content(value: Any) -> Any:
    """The parsed content with whole floats as integers, as it is hashed and logged."""
    if isinstance(value, dict):
        return {str(k): canonical_content(v) for k, v in value.items()}
    if isinstance(value, list):
        return [canonical_content(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# ---------------------------------------------------------------------------------------------
# validation errors -> one line


def format_key_path(loc: tuple[Any, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    found: list[type[BaseModel]] = []
    if get_origin(annotation) in (Union, list, dict, tuple) or get_args(annotation):
        for arg in get_args(annotation):
            found += _models_in(arg)
    return found


def known_keys_at(model_cls: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The field names accepted at `loc` (the location of an unknown key) inside `model_cls`."""
    current: list[type[BaseModel]] = [model_cls]
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        nxt: list[type[BaseModel]] = []
        for cls in current:
            field_info = cls.model_fields.get(part)
            if field_info is not None:
                nxt += _models_in(field_info.annotation)
        current = nxt
    return sorted({name for cls in current for name in cls.model_fields})


def did_you_mean(word: str, candidates: list[str] | tuple[str, ...]) -> str:
    close = difflib.get_close_matches(str(word), list(candidates), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def describe_validation_error(error: dict[str, Any], model_cls: type[BaseModel], prefix: tuple = ()) -> str:
    loc = tuple(error["loc"])
    key_path = format_key_path(prefix + loc)
    if error["type"] == "extra_forbidden":
        known = known_keys_at(model_cls, loc)
        hint = did_you_mean(loc[-1], known) if known else ""
        return f"{key_path}: unknown key{hint}"
    if error["type"] == "missing":
        return f"{key_path}: required key is missing"
    message = error["msg"]
    if message.startswith("Value error, "):
        message = message[len("Value error, "):]
    given = error.get("input")
    shown = f" (got {given!r})" if not isinstance(given, (dict, list)) and given is not None else ""
    return f"{key_path}: {message}{shown}"


def validate_mapping(model_cls: type[BaseModel], data: Any, path: Path, prefix: tuple = ()) -> BaseModel:
    """Validate `data` with a strict pydantic model; raise one ClaimError line listing every problem."""
    if not isinstance(data, dict):
        where = format_key_path(prefix)
        raise ClaimError(f"{path}: {where}: must be a mapping of keys to values, not {type(data).__name__}")
    try:
        return model_cls.model_validate(data)
    except ValidationError as exc:
        problems = [describe_validation_error(err, model_cls, prefix) for err in exc.errors()]
        raise ClaimError(f"{path}: " + "; ".join(problems)) from None
