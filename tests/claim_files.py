"""Claim files for the families' known-answer tests: write one into a temporary project, evaluate it."""

from __future__ import annotations

from pathlib import Path

import yaml

from seqclaims.families import Context, checks_dirs, load_claim, load_families
from seqclaims.judge import judge
from seqclaims.paths import cache_dir

REPO = Path(__file__).resolve().parents[1]
FAMILIES = load_families(checks_dirs(REPO))


def write_claim(folder: Path, claim_id: str, *, check: str, data: dict, criteria: list[dict],
                params: dict | None = None, model="planted", **top) -> Path:
    """`folder/claims/planted/<claim_id>.yaml`, validated by its family like any claim when evaluated."""
    content = {"id": claim_id, "title": claim_id, "statement": "test claim", "expect": "supported",
               "model": model, "data": data, "check": check, "params": params or {},
               "criteria": criteria, "resamples": 200, **top}
    path = folder / "claims" / "planted" / f"{claim_id}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(content, sort_keys=False))
    return path


def evaluate(path: Path):
    """Judge the claim from freshly computed evidence (known-answer tests exercise the families' code)."""
    claim = load_claim(path, FAMILIES)
    return judge(claim, FAMILIES.get(claim.check, path), Context(claim, cache_dir()), use_store=False)


def criterion(result, statistic: str):
    return next(c for c in result.criteria if c.statistic == statistic)
