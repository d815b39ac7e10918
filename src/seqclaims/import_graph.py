"""The package's import graph, read from the source: which modules each module or check file loads.

Nothing here imports the package, so the tests that hold the package to one import order and the cache
keys (`code_keys`) read the same graph. An import counts wherever it stands in a file, inside functions too,
except in the body of a module-level `if TYPE_CHECKING:` (never executed). A package's `__init__` counts
where it is imported by name (`from seqclaims import bootstrap`), not for being the parent of an imported
module: Python runs it first, but what it defines is used only through an import of it.

The statements are found with regular expressions (strings and comments skipped) and each one parsed
alone: parsing whole files takes about half a second for the package, this a few hundredths, and the
cache keys read the graph at every start. `tests/test_imports.py` holds the two readings equal on every
file of the project. Not read: an import after `;` or after `:` on one line (`if x: import y`), and
dynamic imports (`importlib.import_module(name)`), which no graph read from the source can see.
"""

from __future__ import annotations

import ast
import bisect
import os
import re
from collections.abc import Container
from functools import lru_cache
from pathlib import Path

CHECKS_PACKAGE = "seqclaims_checks"  # the package check modules are imported under (`core.families`)

_STRING_OR_COMMENT = re.compile(
    r'"""(?:\\.|[^\\])*?"""|\'\'\'(?:\\.|[^\\])*?\'\'\'|"(?:\\.|[^\\"\n])*"|\'(?:\\.|[^\\\'\n])*\'|\#[^\n]*', re.S)
_IMPORT = re.compile(r"^[ \t]*(from[ \t]+[.\w]+[ \t]+import[ \t]*(?:\([^)]*\)|(?:[^\n\\;]|\\\n)*)"
                     r"|import[ \t]+(?:[^\n\\;]|\\\n)*)", re.M)
_TOP_LEVEL = re.compile(r"^(?:(?P<guard>if[ \t]+(?:typing\.)?TYPE_CHECKING\b)|[^\s#])", re.M)


def module_name(path: Path, package: Path) -> str:
    parts = path.relative_to(package.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_modules(package: Path) -> dict[str, Path]:
    """Every module of the package except `remote_code/` (model code copied into model folders, never imported)."""
    found = {}
    for folder, subfolders, files in os.walk(package):
        subfolders[:] = [name for name in subfolders if name not in ("remote_code", "__pycache__")]
        found.update(_folder_modules(str(package), folder, tuple(sorted(files))))
    return dict(sorted(found.items()))


@lru_cache(maxsize=1024)
def _folder_modules(package: str, folder: str, files: tuple[str, ...]) -> dict[str, Path]:
    inside = os.path.relpath(folder, package)
    parts = [os.path.basename(package), *([] if inside == "." else inside.split(os.sep))]
    return {".".join(parts if file == "__init__.py" else [*parts, file[:-3]]): Path(folder, file)
            for file in files if file.endswith(".py")}


@lru_cache(maxsize=1024)  # keyed by the source itself: reading a file is cheap, finding its imports is not
def import_statements(source: str) -> tuple[ast.Import | ast.ImportFrom, ...]:
    """Every import statement of a module's source, except those under a module-level `if TYPE_CHECKING:`."""
    skipped = _Spans([(m.start(), m.end()) for m in _STRING_OR_COMMENT.finditer(source)])
    guarded = _Spans(_type_checking_blocks(source, skipped))
    try:
        return tuple(ast.parse(m.group(1).strip()).body[0] for m in _IMPORT.finditer(source)
                     if not skipped.inside(m.start()) and not guarded.inside(m.start()))
    except SyntaxError:  # a statement the expressions cut short (a `)` in a comment inside its parentheses)
        return parsed_import_statements(source)


def parsed_import_statements(source: str) -> tuple[ast.Import | ast.ImportFrom, ...]:
    """`import_statements` read from the whole parsed module: exact, and ten times slower."""
    tree = ast.parse(source)
    guarded = {id(node) for block in tree.body if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
               for statement in block.body for node in ast.walk(statement)}
    return tuple(node for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))
                 and id(node) not in guarded)


class _Spans:
    """Sorted, disjoint (start, end) character ranges."""

    def __init__(self, spans: list[tuple[int, int]]):
        self.spans, self.starts = spans, [start for start, _ in spans]

    def inside(self, position: int) -> bool:
        index = bisect.bisect_right(self.starts, position) - 1
        return index >= 0 and self.spans[index][0] < position < self.spans[index][1]


def _type_checking_blocks(source: str, skipped: _Spans) -> list[tuple[int, int]]:
    """From each module-level `if TYPE_CHECKING` to the next line of code at column 0."""
    blocks, opened = [], None
    for match in _TOP_LEVEL.finditer(source):
        if skipped.inside(match.start()):
            continue
        if opened is not None:
            blocks.append((opened, match.start()))
        opened = match.start() if match.group("guard") else None
    return blocks + ([(opened, len(source))] if opened is not None else [])


def imported_modules(node: ast.Import | ast.ImportFrom, modules: Container[str], here: str) -> set[str]:
    """The modules among `modules` an import statement loads (`from pkg import mod` loads `pkg.mod`)."""
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names if alias.name in modules}
    base = node.module or ""
    if node.level:  # relative: resolved against the importing module's package
        anchor = here.split(".")[: len(here.split(".")) - node.level]
        base = ".".join(anchor + ([node.module] if node.module else []))
    submodules = {f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in modules}
    attributes = [alias for alias in node.names if f"{base}.{alias.name}" not in modules]
    return submodules | ({base} if attributes and base in modules else set())


def _imports_of(path: Path, modules: frozenset[str], here: str) -> set[str]:
    return set(_resolved(path.read_text(encoding="utf-8"), modules, here))


@lru_cache(maxsize=1024)
def _resolved(source: str, modules: frozenset[str], here: str) -> frozenset[str]:
    return frozenset(target for node in import_statements(source)
                     for target in imported_modules(node, modules, here)) - {here}


def import_graph(package: Path) -> dict[str, set[str]]:
    """Module -> the package's modules it imports when it is imported (not those under TYPE_CHECKING)."""
    modules = package_modules(package)
    names = frozenset(modules)
    return {name: _imports_of(path, names, name) for name, path in modules.items()}


def reached_modules(source: Path, package: Path) -> dict[str, Path]:
    """Every module (name -> file) that importing the file `source` loads, directly or not, `source` left out.

    `source` may be a module of the package or a check file outside it. A check file's imports of the
    package are resolved against `package`, and the modules beside it that it imports are followed too
    (`import helpers` or `from seqclaims_checks import helpers`, for a `helpers.py` in the same folder)."""
    modules = package_modules(package)
    names = frozenset(modules)
    source = Path(source)
    inside = source.resolve().is_relative_to(package.resolve())
    here = module_name(source.resolve(), package.resolve()) if inside else None
    reached, frontier = ({}, {here}) if inside else _check_side(source, modules)
    seen: set[str] = set()
    while frontier:
        name = frontier.pop()
        seen.add(name)
        frontier |= _imports_of(modules[name], names, name) - seen
    seen.discard(here)
    return {**reached, **{name: modules[name] for name in sorted(seen)}}


def _check_side(source: Path, modules: dict[str, Path]) -> tuple[dict[str, Path], set[str]]:
    """The modules beside a check file that it reaches (name -> file), and the package's modules they and
    the check import."""
    beside = _beside(source)
    known = frozenset(modules) | frozenset(beside)
    reached: dict[str, Path] = {}
    entries: set[str] = set()
    frontier = [(f"{CHECKS_PACKAGE}.{source.stem}", source)]
    while frontier:
        here, path = frontier.pop()
        for target in _imports_of(path, known, here):
            if target in modules:
                entries.add(target)
            elif target not in reached:
                reached[target] = beside[target]
                frontier.append((target, beside[target]))
    return dict(sorted(reached.items())), entries


def _beside(path: Path) -> dict[str, Path]:
    """The other modules in a check file's folder, under both names a check may import them by."""
    beside = {p.stem: p for p in sorted(path.parent.glob("*.py")) if p.name != path.name}
    return {**beside, **{f"{CHECKS_PACKAGE}.{stem}": p for stem, p in beside.items()}}
