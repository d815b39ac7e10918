"""Where the project lives and where derived artefacts (indexes, activations, SAEs) are cached."""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from seqclaims.errors import InputError

PACKAGE_DIR = Path(__file__).resolve().parent
_ROOT_OVERRIDE: list[Path] = []


@contextmanager
def project_root_set_to(root: Path) -> Iterator[None]:
    """While a claim is evaluated, the project is pytest's root folder, whatever the working folder."""
    _ROOT_OVERRIDE.append(Path(root).resolve())
    try:
        yield
    finally:
        _ROOT_OVERRIDE.pop()


def project_root(start: Path | None = None) -> Path:
    """The root set by the pytest plugin while a claim runs, else the nearest folder at or above
    `start` (default: cwd) that holds both `claims/` and `checks/`, else the source checkout this
    package was installed from (editable installs)."""
    if _ROOT_OVERRIDE and start is None:
        return _ROOT_OVERRIDE[-1]
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "claims").is_dir() and (folder / "checks").is_dir():
            return folder
    checkout = PACKAGE_DIR.parent.parent
    if (checkout / "checks").is_dir():
        return checkout
    return here


def cache_dir() -> Path:
    """Cache folder: $SEQCLAIMS_CACHE, else `<project root>/.cache/seqclaims`. Created on demand."""
    configured = os.environ.get("SEQCLAIMS_CACHE")
    if configured and "://" in configured:  # the caches need atomic renames and file locks
        raise InputError(f"SEQCLAIMS_CACHE={configured}: a URL is not a cache folder; mount the storage and give "
                         "its path (a folder every worker shares)")
    folder = Path(configured) if configured else project_root() / ".cache" / "seqclaims"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def fixtures_dir() -> Path:
    return project_root() / "fixtures"
