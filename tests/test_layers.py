"""The package's layers run one way: each module imports only from its own layer and the layers below.

The order is declared once, as each layer and the layers right below it (`BELOW`); what a layer may import
is that relation's closure. From the bottom: the base modules (errors, paths, the file helpers, lazy
imports, the import graph, the code keys); `core`, the claim schema, the value types a family hands back, verdicts and the
family declarations; `inputs`; `methods`; then `organisms`, `record` and `judging`, each above `methods`
and blind to the other two (judging a claim never reaches the registry, the ledger or the report); and at
the top the pytest plugin, the command line and the executors. The graph is the one `code_keys` reads
(`seqclaims.import_graph`), imports inside functions included.
"""

from __future__ import annotations

import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

from seqclaims.import_graph import import_graph

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "seqclaims"

BELOW = {
    "base": (),
    "core": ("base",),
    "inputs": ("core",),
    "methods": ("inputs",),
    "organisms": ("methods",),
    "record": ("methods",),
    "judging": ("methods",),
    "top": ("organisms", "record", "judging"),
}
TOP_MODULES = ("", "__main__", "plugin", "cli", "executors")  # "": the package itself, the public face


def layer_of(module: str) -> str:
    """A subpackage's modules are its layer; a module beside the subpackages is `top` or `base`."""
    parts = module.split(".")[1:]
    if len(parts) > 1 and parts[0] not in BELOW:
        raise KeyError(f"{module}: subpackage {parts[0]!r} has no layer; add it to BELOW")
    if parts and parts[0] in BELOW:  # a subpackage, or one of its modules
        return parts[0]
    return "top" if ".".join(parts) in TOP_MODULES else "base"


@cache
def reachable(layer: str) -> frozenset[str]:
    """The layer and every layer below it."""
    return frozenset({layer}).union(*(reachable(lower) for lower in BELOW[layer]))


def violations(graph: dict[str, set[str]]) -> list[str]:
    return [f"{module} ({layer_of(module)}) imports {target} ({layer_of(target)})"
            for module, targets in sorted(graph.items()) for target in sorted(targets)
            if layer_of(target) not in reachable(layer_of(module))]


def test_every_import_goes_down_the_layers():
    graph = import_graph(PACKAGE)
    assert {layer_of(module) for module in graph} == set(BELOW)  # every layer has modules, none is unknown
    assert violations(graph) == []


def test_the_declared_order_is_the_documented_one():
    assert reachable("judging") >= {"methods", "inputs", "core", "base"} and "record" not in reachable("judging")
    assert "judging" not in reachable("record") and "organisms" not in reachable("judging")
    assert reachable("top") == set(BELOW)
    assert layer_of("seqclaims") == layer_of("seqclaims.plugin") == "top"
    assert layer_of("seqclaims.fsutil") == "base" and layer_of("seqclaims.core.values") == "core"


def test_the_value_types_import_nothing_else_from_the_package():
    assert import_graph(PACKAGE)["seqclaims.core.values"] == set()


def _package(root: Path, files: dict[str, str]) -> Path:
    package = root / "seqclaims"
    for name, text in files.items():
        path = package / name
        path.parent.mkdir(parents=True, exist_ok=True)
        for folder in (package, *[p for p in path.parents if package in p.parents]):
            (folder / "__init__.py").touch()
        path.write_text(text)
    return package


def test_a_planted_upward_import_is_caught(tmp_path):
    package = _package(tmp_path, {
        "core/values.py": "",
        "methods/stats.py": "from seqclaims.core import values\n",
        "judging/judge.py": "from seqclaims.methods import stats\n",
        "record/report.py": "from seqclaims.core.values import Estimate\n",
        "cli.py": "from seqclaims.judging.judge import judge\nfrom seqclaims.record import report\n",
    })
    assert violations(import_graph(package)) == []
    (package / "core" / "verdicts.py").write_text("def f():\n    from seqclaims.methods.stats import bootstrap\n")
    (package / "judging" / "judge.py").write_text("from seqclaims.record.report import result_table\n")
    assert violations(import_graph(package)) == [
        "seqclaims.core.verdicts (core) imports seqclaims.methods.stats (methods)",
        "seqclaims.judging.judge (judging) imports seqclaims.record.report (record)"]


def test_a_subpackage_without_a_layer_is_refused():
    with pytest.raises(KeyError, match="has no layer"):
        layer_of("seqclaims.plugins.extra")


HEAVY = ("torch", "transformers", "sklearn", "scipy.stats", "matplotlib")  # each takes a second or more to import


def _loaded_after(code: str) -> list[str]:
    """The heavy libraries a fresh interpreter has loaded after running `code`."""
    probe = f"{code}\nimport sys\nprint('loaded:', *(m for m in {HEAVY!r} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=PACKAGE.parent)
    last = done.stdout.splitlines()[-1].split()
    assert last[0] == "loaded:", done.stdout
    return last[1:]


def test_importing_the_package_and_its_entry_points_loads_no_heavy_library():
    """Family authors import `seqclaims`; the plugin, the command line and the executors load torch only
    once a claim's evidence is computed."""
    assert _loaded_after("import seqclaims") == []
    assert _loaded_after("import seqclaims.plugin, seqclaims.cli, seqclaims.executors") == []


def test_checking_every_claim_loads_no_heavy_library():
    """`seqclaims check` loads every family (so every module its checks import) and validates every claim."""
    root = PACKAGE.parents[1]
    code = (f"from seqclaims.cli import main\n"
            f"assert main(['--root', {str(root)!r}, 'check', '-q', {str(root / 'claims')!r}]) in (0, 1)")
    assert _loaded_after(code) == []
