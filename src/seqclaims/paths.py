"""Where the project lives and where derived artefacts (indexes, activations, SAEs) are cached."""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent


def project_root(start: Path | None = None) -> Path:
    """The nearest folder at or above `start` (default: cwd) that holds both `claims/` and `checks/`.

    Falls back to the source checkout this package was installed from (editable installs).
    """
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
    folder = Path(configured) if configured else project_root() / ".cache" / "seqclaims"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def fixtures_dir() -> Path:
    return project_root() / "fixtures"
