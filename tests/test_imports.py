"""The package's import graph: acyclic, and every seqclaims import at module level.

Modules import each other at the top, so the order in which the package builds is a property of the code,
not of which function runs first. The only imports left inside functions are third-party libraries that
are optional or slow to import (DEFERRED); importing them all at once would add about 4.5 s to every process
start, `seqclaims check` and every pytest worker included.
"""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "seqclaims"
# optional extras, and libraries that take a second or more to import; imported where they are used
DEFERRED = {"ray", "Bio", "transformers", "huggingface_hub", "tokenizers", "matplotlib", "sklearn", "scipy",
            "statsmodels", "pyjaspar", "pyfaidx"}


def module_name(path: Path, package: Path) -> str:
    parts = path.relative_to(package.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_modules(package: Path) -> dict[str, Path]:
    """Every module of the package except `remote_code/` (model code copied into model folders, never imported)."""
    return {module_name(p, package): p for p in sorted(package.rglob("*.py")) if "remote_code" not in p.parts}


def _type_checking_nodes(tree: ast.Module) -> set[int]:
    return {id(node) for block in tree.body if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
            for node in ast.walk(block)}


def imported_modules(node: ast.Import | ast.ImportFrom, modules: dict[str, Path], here: str) -> set[str]:
    """The package's modules an import statement loads (`from pkg import mod` loads `pkg.mod`)."""
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names if alias.name in modules}
    base = node.module or ""
    if node.level:  # relative: resolved against the importing module's package
        anchor = here.split(".")[: len(here.split(".")) - node.level]
        base = ".".join(anchor + ([node.module] if node.module else []))
    submodules = {f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in modules}
    attributes = [alias for alias in node.names if f"{base}.{alias.name}" not in modules]
    return submodules | ({base} if attributes and base in modules else set())


def import_graph(package: Path) -> dict[str, set[str]]:
    """Module -> the package's modules it imports when it is imported (not those under TYPE_CHECKING)."""
    modules = package_modules(package)
    graph = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        skipped = _type_checking_nodes(tree)
        graph[name] = {target for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))
                       and id(node) not in skipped for target in imported_modules(node, modules, name)} - {name}
    return graph


def function_level_imports(package: Path) -> list[tuple[str, str, str]]:
    """(module, top-level name imported, statement) for every import inside a function."""
    found = []
    for name, path in package_modules(package).items():
        for function in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for node in ast.walk(function):
                    if isinstance(node, ast.Import):
                        found += [(name, alias.name.split(".")[0], ast.unparse(node)) for alias in node.names]
                    elif isinstance(node, ast.ImportFrom):
                        top = "seqclaims" if node.level else (node.module or "").split(".")[0]
                        found.append((name, top, ast.unparse(node)))
    return found


def test_the_package_import_graph_is_acyclic():
    graph = import_graph(PACKAGE)
    assert len(graph) > 40 and graph["seqclaims.core.judge"]  # the graph was read, not empty
    graphlib.TopologicalSorter(graph).prepare()  # raises CycleError naming the cycle


def test_the_acyclicity_check_fails_on_a_cycle(tmp_path):
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    for path in (package / "__init__.py", package / "sub" / "__init__.py"):
        path.write_text("")
    (package / "a.py").write_text("from pkg.sub import b\n")
    (package / "sub" / "b.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import a\n")
    graphlib.TopologicalSorter(import_graph(package)).prepare()  # a type-only import is no cycle
    (package / "sub" / "b.py").write_text("from .. import c\n")
    (package / "c.py").write_text("import pkg.a\n")
    with pytest.raises(graphlib.CycleError):
        graphlib.TopologicalSorter(import_graph(package)).prepare()


def test_no_function_imports_a_seqclaims_module_or_a_cheap_library():
    offending = [f"{module}: {statement}" for module, top, statement in function_level_imports(PACKAGE)
                 if top not in DEFERRED]
    assert offending == []


def test_the_public_face_names_what_a_family_author_needs():
    import seqclaims

    for name in ("Family", "Statistic", "StrictModel", "Estimate", "Evidence", "Card", "Figure", "Unavailable",
                 "InputError", "rounded"):
        assert hasattr(seqclaims, name), name
    assert set(seqclaims.__all__) >= {"Family", "Statistic", "Estimate", "Evidence"}


def test_each_listed_family_key_covers_every_computing_module_its_check_imports():
    """A family's evidence key covers the modules of its code group; a module its check reaches through the
    import graph but the group omits could change its numbers without invalidating its stored evidence."""
    from seqclaims.code_keys import CODE_GROUPS, NON_COMPUTING, modules_of

    graph, modules = import_graph(PACKAGE), package_modules(PACKAGE)
    covered_everywhere = set(modules_of("evidence")) | set(NON_COMPUTING)
    checks = PACKAGE.parents[1] / "checks"
    for group in (g for g in CODE_GROUPS if g.startswith("family:")):
        check = checks / f"{group.removeprefix('family:')}.py"
        tree = ast.parse(check.read_text(encoding="utf-8"))
        reached: set[str] = set()
        frontier = {m for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))
                    for m in imported_modules(node, modules, "checks." + check.stem)}
        while frontier:
            reached |= frontier
            frontier = {m for f in frontier for m in graph.get(f, ())} - reached
        uncovered = reached - covered_everywhere - set(modules_of(group)) - {"seqclaims"}
        assert uncovered == set(), f"{group} omits {sorted(uncovered)}"
