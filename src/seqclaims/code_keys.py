"""The code behind each cache key and each family's evidence key, read from the import graph.

A cache entry is valid only while the code that computed it is unchanged. A key therefore holds a digest of
the source of the module that computes the entry and of every module of the package it reaches through its
imports (`import_graph.reached_modules`, the graph `tests/test_imports.py` holds acyclic):

- a cache keys on the module that defines it: datasets on `inputs.datasets`, activations on `inputs.cache`,
  key scores on `methods.key_scores`, probe fits on `methods.probing`, SAEs on `methods.sae`, each with what
  it reaches (`code_digest(__name__)`);
- a family's evidence keys on its module in `checks/` (or in a folder on $SEQCLAIMS_CHECKS_PATH, with the
  modules beside it that it imports) and every module of the package that module reaches, the caches it
  reads among them, plus the input loader the judge hands it (`INJECTED`) and what that reaches
  (`family_digest`).

So editing `methods/geometry.py` recomputes the evidence of gram, cka, rc_consistency and feature_circuit and
of nothing else, and editing a caption in `checks/sae_feature.py` recomputes the SAE claims' evidence but
retrains no SAE.

Nothing is listed by hand but what the graph cannot see (`INJECTED`) and the modules that never change a
number (`UNKEYED`). Nor can the graph see an import by a computed name (`importlib.import_module`), which
the package does not use; model code, which lives in the model's folder and is keyed by the folder's hash
(`judging.evidence_store`); or the numerical libraries, keyed by their versions. The verdict rules
(`core.verdicts`) are applied again at every judgement and need no key; they are reached (figures mark the
passing heads with them) and keyed all the same.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

from seqclaims.fsutil import file_sha256
from seqclaims.import_graph import package_modules, reached_modules

# the package's root folder, wherever in it this module sits
PACKAGE = Path(__file__).resolve().parents[__name__.count(".") - 1]

# code a family's evidence depends on without its check importing it: the judge gives every family's
# `Context` the first module's loader of the claim's model and dataset (`Context.inputs()`), and adds the
# second module's statistics on randomly initialised copies of the model to every family's evidence
INJECTED = ("seqclaims.judging.claim_inputs", "seqclaims.judging.init_baseline")

# modules whose own source no key covers (what they import is followed as usual): editing them changes no number
UNKEYED = {
    "seqclaims.errors": "messages of the errors a user can cause",
    "seqclaims.paths": "where the project and its caches are",
    "seqclaims.fsutil": "atomic writes, locks and file hashes",
    "seqclaims.version": "the release number",
    "seqclaims.lazy": "imports a library on its first use",
    "seqclaims.import_graph": "reads the graph the keys are made from",
    "seqclaims.code_keys": "makes the keys",
}


def code_digest(module: str, package: Path = PACKAGE) -> str:
    """sha256 (16 hex digits) of a package module's source and of every module it reaches (the key of the
    cache it defines: `code_digest(__name__)`)."""
    return _digest(_module_file(module, package), code_modules(module, package))


def family_digest(module_path: Path | None, package: Path = PACKAGE) -> str:
    """sha256 (16 hex digits) of a family's module and of `family_modules`; a family that was not loaded
    from a file (made in code) is keyed on every module of the package."""
    if module_path is None or not Path(module_path).is_file():
        return _digest(None, _keyed(package_modules(package)))
    path = Path(module_path)
    if package == PACKAGE:
        return _installed_family_digest(path, file_sha256(path))
    return _digest(path, family_modules(path, package))


@lru_cache(maxsize=None)
def _installed_family_digest(module_path: Path, own_sha256: str) -> str:
    """`family_digest` over the installed package, once per process and version of the family's own file
    (every claim of a family asks for it; the package does not change while a run reads it)."""
    return _digest(module_path, family_modules(module_path, PACKAGE))


def code_modules(module: str, package: Path = PACKAGE) -> dict[str, Path]:
    """The modules (name -> file) whose source the key of a package module covers besides its own."""
    return _keyed(reached_modules(_module_file(module, package), package))


def family_modules(module_path: Path, package: Path = PACKAGE) -> dict[str, Path]:
    """The modules (name -> file) whose source a family's evidence key covers besides its own module:
    those its module reaches, and the `INJECTED` modules with what they reach."""
    covered = reached_modules(module_path, package)
    for name in INJECTED:
        covered |= {name: _module_file(name, package), **reached_modules(_module_file(name, package), package)}
    return _keyed(dict(sorted(covered.items())))


def _module_file(module: str, package: Path) -> Path:
    modules = package_modules(package)
    if module not in modules:
        raise ValueError(f"{module} is not a module of {package}")
    return modules[module]


def _keyed(modules: dict[str, Path]) -> dict[str, Path]:
    return {name: path for name, path in modules.items() if name not in UNKEYED}


def _digest(source: Path | None, modules: dict[str, Path]) -> str:
    digest = hashlib.sha256()
    for name, path in [*([("", source)] if source else []), *modules.items()]:
        digest.update(f"{name}\0{file_sha256(path)}\0".encode())
    return digest.hexdigest()[:16]
