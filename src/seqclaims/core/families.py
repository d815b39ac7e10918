"""Check families: how each is declared, discovered in `checks/`, and how a claim file is validated
against its family (DESIGN sections 1, 2 and 6).

A family module `checks/<name>.py` defines `FAMILY = Family(...)`: its parameter schema, the
statistics it produces, its minimum n and its `evaluate(claim, context) -> Evidence`. The `Context` a
family gets loads the claim's model and dataset through the loader the judge gives it
(`seqclaims.judging.claim_inputs`), so this module, like the rest of `core`, needs none of the layers above.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
import types
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
from pydantic import BaseModel

from seqclaims.core.input_specs import EMBEDDED_MODELS, DataSpec, ModelRef
from seqclaims.core.schema import Claim, ClaimModel, did_you_mean, load_content, shown_path, validate_mapping
from seqclaims.core.values import Evidence
from seqclaims.errors import ClaimError
from seqclaims.import_graph import CHECKS_PACKAGE

CHECKS_PATH_ENV = "SEQCLAIMS_CHECKS_PATH"


@dataclass(frozen=True)
class Statistic:
    """A statistic a family produces. `selection`: a maximum or selection over many candidates, for
    which p-value criteria require a declared multiple-testing correction."""

    doc: str
    kind: str = "estimate"
    selection: bool = False
    # a key statistic of what the model learned: also computed on a randomly initialised copy of the model,
    # giving <name>_init and the paired <name>_minus_init (`judging.init_baseline`)
    init: bool = False
    # a statistic that controls for something besides the model's training (composition, token identity, a
    # baseline, the initialisation); `seqclaims check` warns about a head or unit claim that has none
    control: bool = False


INIT_SUFFIX, MINUS_INIT_SUFFIX = "_init", "_minus_init"


def with_init_statistics(statistics: dict[str, Statistic]) -> dict[str, Statistic]:
    """The family's statistics plus <name>_init and <name>_minus_init of each one marked `init`."""
    derived = {}
    for name, statistic in statistics.items():
        if statistic.init:
            derived[name + INIT_SUFFIX] = Statistic(f"{name} on a randomly initialised copy of the model "
                                                    "(same architecture, data and seeds)", selection=statistic.selection)
            derived[name + MINUS_INIT_SUFFIX] = Statistic(f"{name} minus {name}{INIT_SUFFIX}, paired over the same "
                                                          "resamples", selection=statistic.selection, control=True)
    return {**statistics, **derived}


@dataclass(frozen=True)
class Family:
    name: str
    summary: str
    params: type[BaseModel]
    statistics: dict[str, Statistic]
    evaluate: Callable[[Claim, "Context"], Evidence]
    min_n: int = 1
    data_schema: type[BaseModel] | None = None
    model_schema: type[BaseModel] | None = None
    example: dict[str, Any] = field(default_factory=dict)
    needs_model: bool = True
    alphabets: tuple[str, ...] = ("dna",)  # the sequences it can read: "dna", and "protein" where it applies
    # it resamples rows as independent sequences, so a dataset whose sequences were cut into windows is refused
    whole_sequences: bool = False
    source: Path | None = None  # the module that defines it (set when it is loaded); part of its evidence key

    def __post_init__(self) -> None:
        object.__setattr__(self, "statistics", with_init_statistics(self.statistics))

    @property
    def init_statistics(self) -> tuple[str, ...]:
        """The statistics also computed on a randomly initialised copy of the model."""
        return tuple(name for name, statistic in self.statistics.items() if statistic.init)


# (claim, data_overrides=..., whole_sequences=...) -> the claim's model and dataset (`judging.claim_inputs.ClaimInputs`)
InputLoader = Callable[..., Any]


@dataclass
class Context:
    """What a family gets besides the claim: its inputs, reproducible randomness and where to cache.

    `loader` gathers the claim's model and dataset; the judge sets it (`judging.claim_inputs.claim_context`
    builds a context with it for code that calls `Family.evaluate` directly)."""

    claim: Claim
    cache_dir: Path
    whole_sequences: bool = False  # the judging family's declaration (`Family.whole_sequences`)
    loader: InputLoader | None = None

    def inputs(self, data_overrides: dict[str, Any] | None = None) -> Any:
        """The claim's model and dataset, under the family's whole-sequence rule."""
        if self.loader is None:
            raise RuntimeError("this Context has no input loader; judge the claim, or build the context with "
                               "seqclaims.judging.claim_inputs.claim_context(claim)")
        return self.loader(self.claim, data_overrides=data_overrides, whole_sequences=self.whole_sequences)

    def seed_for(self, purpose: str) -> int:
        """A 63-bit seed derived from the claim's seed and a purpose label, so that every random
        choice is reproducible yet independent of the others."""
        digest = hashlib.sha256(f"{self.claim.seed}:{purpose}".encode()).digest()
        return int.from_bytes(digest[:8], "little") >> 1

    def rng(self, purpose: str) -> np.random.Generator:
        return np.random.default_rng(self.seed_for(purpose))


def design_warnings(claim: Claim, family: Family) -> list[str]:
    """What a reviewer would question in how the claim decides, though it is a valid claim: deciding on
    p-values alone (a p-value says nothing of the size of an effect), or on statistics of a model without any
    control (a randomly initialised network reaches many of them: DESIGN section 3)."""
    declared = [family.statistics[c.statistic] for c in claim.criteria if c.statistic in family.statistics]
    warnings = []
    if declared and all(s.kind == "pvalue" for s in declared):
        warnings.append("decides on p-values only; add a criterion on an effect size")
    reads_model = any(s.init for s in declared) or any(s.kind == "pvalue" for s in declared)
    if family.init_statistics and reads_model and not any(s.control for s in declared):
        examples = ", ".join(f"{name}{MINUS_INIT_SUFFIX}" for name in family.init_statistics[:2])
        warnings.append(f"no criterion controls for what an untrained network or the sequence alone gives "
                        f"(initialisation, composition, token identity, a baseline); e.g. {examples}")
    if claim.init_seeds < 2 and any(c.statistic.endswith(MINUS_INIT_SUFFIX) for c in claim.criteria):
        warnings.append(f"decides on a {MINUS_INIT_SUFFIX} statistic with init_seeds {claim.init_seeds}: its interval "
                        "leaves out how much random networks differ from one another; set init_seeds: 3")
    return warnings


# ---------------------------------------------------------------------------------------------
# discovery


def checks_dirs(root: Path) -> list[Path]:
    """`<root>/checks` plus any folders listed in $SEQCLAIMS_CHECKS_PATH (os.pathsep-separated)."""
    extra = [Path(p) for p in os.environ.get(CHECKS_PATH_ENV, "").split(os.pathsep) if p]
    return [root / "checks", *extra]


@dataclass
class FamilyTable:
    families: dict[str, Family]
    broken: dict[str, str]

    def get(self, name: str, path: Path) -> Family:
        if name in self.broken:
            raise ClaimError(f"{path}: check: family {name!r} failed to load: {self.broken[name]}")
        if name not in self.families:
            known = sorted(self.families)
            raise ClaimError(f"{path}: check: unknown family {name!r}{did_you_mean(name, known)}; "
                             f"known families: {', '.join(known) or 'none'}")
        return self.families[name]


_LOADED: dict[tuple[Path, ...], FamilyTable] = {}


def load_families(dirs: list[Path]) -> FamilyTable:
    key = tuple(d.resolve() for d in dirs)
    if key not in _LOADED:
        _LOADED[key] = _import_families(key)
    return _LOADED[key]


def _import_families(dirs: tuple[Path, ...]) -> FamilyTable:
    families: dict[str, Family] = {}
    broken: dict[str, str] = {}
    origin: dict[str, Path] = {}
    for folder in dirs:
        for module_path in sorted(folder.glob("*.py")) if folder.is_dir() else []:
            if module_path.name.startswith("_"):
                continue
            name = module_path.stem
            if name in origin:
                broken[name] = f"defined twice: {origin[name]} and {module_path}; rename one"
                families.pop(name, None)
                continue
            origin[name] = module_path
            try:
                module = _import_module(module_path)
                family = getattr(module, "FAMILY")
                if family.name != name:
                    raise ValueError(f"FAMILY.name {family.name!r} differs from the module name {name!r}")
                families[name] = replace(family, source=module_path)
            except Exception as exc:  # a broken family must not stop the others
                broken[name] = f"{type(exc).__name__}: {exc}".splitlines()[0]
    return FamilyTable(families, broken)


def _import_module(module_path: Path):
    if CHECKS_PACKAGE not in sys.modules:  # a parent package, so that family objects can be pickled
        sys.modules[CHECKS_PACKAGE] = types.ModuleType(CHECKS_PACKAGE)
    module_name = f"{CHECKS_PACKAGE}.{module_path.stem}"
    spec = importlib.util.spec_from_file_location(module_name, module_path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------------------------------------
# a whole claim file


def load_claim(path: Path, families: FamilyTable) -> Claim:
    """Read, resolve includes, and validate a claim file against the schema and its family."""
    path = shown_path(path)
    content = load_content(path)
    spec = validate_mapping(ClaimModel, content, path)
    if spec.id != path.stem:
        raise ClaimError(f"{path}: id: {spec.id!r} must equal the file stem {path.stem!r}; rename one of them")
    family = families.get(spec.check, path)
    params = validate_mapping(family.params, spec.params, path, ("params",))
    model = _validate_model(spec.model, family, path)
    data = validate_mapping(family.data_schema or DataSpec, spec.data, path, ("data",))
    _check_alphabet(data, family, path)
    _check_criteria(spec, family, path)
    return Claim(path=path, spec=spec, params=params, model=model, data=data, content=content)


def _check_alphabet(data: Any, family: Family, path: Path) -> None:
    if getattr(data, "dataset", None) == "proteins" and "protein" not in family.alphabets:
        raise ClaimError(f"{path}: data.dataset: family {family.name!r} reads DNA only (its statistics use "
                         "nucleotides); for proteins use sae_feature, neuron or attention_association")


def _check_criteria(spec: ClaimModel, family: Family, path: Path) -> None:
    known = sorted(family.statistics)
    for index, criterion in enumerate(spec.criteria):
        statistic = family.statistics.get(criterion.statistic)
        if statistic is None:
            raise ClaimError(
                f"{path}: criteria[{index}].statistic: family {family.name!r} does not produce "
                f"{criterion.statistic!r}{did_you_mean(criterion.statistic, known)}; it produces {', '.join(known)}")
        if statistic.kind == "pvalue" and statistic.selection and spec.correction is None:  # noqa: SIM102
            raise ClaimError(
                f"{path}: correction: criteria[{index}] tests {criterion.statistic!r}, a selection over many "
                "candidates; declare `correction: bonferroni | holm | fdr_bh`")
        if statistic.kind == "pvalue" and not 0 < criterion.threshold <= 1:
            raise ClaimError(f"{path}: criteria[{index}].threshold: a p-value threshold must be in (0, 1]")


def _validate_model(value: Any, family: Family, path: Path) -> Any:
    if isinstance(value, str):
        if family.needs_model and value not in EMBEDDED_MODELS:
            raise ClaimError(f"{path}: model: unknown embedded model {value!r}{did_you_mean(value, EMBEDDED_MODELS)}; "
                             f"embedded models: {', '.join(EMBEDDED_MODELS)}, or give {{path: <folder>}} / "
                             "{hf_id: <id>, revision: <sha>}")
        return value
    return validate_mapping(family.model_schema or ModelRef, value, path, ("model",))
