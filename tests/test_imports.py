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

from seqclaims.import_graph import import_graph, import_statements, package_modules, parsed_import_statements

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "src" / "seqclaims"
# optional extras, and libraries that take a second or more to import; imported where they are used
DEFERRED = {"ray", "Bio", "transformers", "huggingface_hub", "tokenizers", "matplotlib", "sklearn", "scipy",
            "statsmodels", "pyjaspar", "pyfaidx"}


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
    assert len(graph) > 40 and graph["seqclaims.judging.judge"]  # the graph was read, not empty
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


def test_the_fast_import_reader_agrees_with_the_parser_on_every_file_of_the_project():
    files = [p for folder in ("src", "checks", "tests", "docs", "scripts", "benchmarks") for p in (REPO / folder).rglob("*.py")]
    assert len(files) > 100
    for path in files:
        source = path.read_text(encoding="utf-8")
        fast, parsed = ([ast.unparse(node) for node in read(source)] for read in (import_statements,
                                                                                  parsed_import_statements))
        assert sorted(fast) == sorted(parsed), path


@pytest.mark.parametrize("source, imports", [
    ('"""\nfrom seqclaims import cli\n"""\nimport os  # import sys\n', ["import os"]),
    ("x = 'import sys'\nfrom a import (b,\n    c)\n", ["from a import b, c"]),
    ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import a\nelse:\n    import b\n",
     ["from typing import TYPE_CHECKING", "import b"]),
    ("def f():\n    from . import x\n", ["from . import x"]),
    ("from a import (b,  # (see c)\n    c)\n", ["from a import b, c"]),  # a `)` in a comment: parsed whole
])
def test_the_import_reader_skips_strings_comments_and_type_only_imports(source, imports):
    assert [ast.unparse(node) for node in import_statements(source)] == imports
