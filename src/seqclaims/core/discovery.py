"""Which YAML files are claims: those below a `claims/` folder, or named explicitly, except templates
(`_name.yaml`, or anything inside a `templates/` folder). The pytest plugin collects them, the command
line checks and judges them."""

from __future__ import annotations

from pathlib import Path

from seqclaims.errors import SeqclaimsError

CLAIM_SUFFIXES = (".yaml", ".yml")


def is_claim_file(file_path: Path, root: Path, explicit: bool = False) -> bool:
    """YAML files below a `claims/` folder, or named explicitly, except templates (`_name.yaml`, or
    inside `templates/`)."""
    return file_path.suffix in CLAIM_SUFFIXES and not_collected_because(file_path, root, explicit) is None


def not_collected_because(file_path: Path, root: Path, explicit: bool = False) -> str | None:
    """Why a YAML file is not collected as a claim, or None when it is."""
    if file_path.name.startswith("_"):
        return "a template (its name starts with '_'); claims include it with `include:`"
    try:
        parts = file_path.resolve().relative_to(root.resolve()).parts
    except ValueError:
        parts = file_path.parts
    if "templates" in parts[:-1]:
        return "inside a templates/ folder"
    if "claims" not in parts[:-1] and not explicit:
        return "not below a claims/ folder; name the file explicitly to run it"
    return None


def claim_files(paths: list[Path], root: Path, explicit: bool = False) -> list[Path]:
    """Claim files among `paths`: files as given, and the claims (not templates) inside folders; with
    `explicit`, every YAML claim in a named folder, whether or not it lies below a claims/ folder."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files += sorted(p for p in path.rglob("*.y*ml") if is_claim_file(p, root, explicit))
        elif path.is_file():
            files.append(path)
        else:
            raise SeqclaimsError(f"{path}: no such claim file or folder")
    return files
