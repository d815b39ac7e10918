"""Claim files for the families' known-answer tests: write one into a temporary project, evaluate it."""

from __future__ import annotations

from pathlib import Path

import yaml

from seqclaims.core.families import checks_dirs, load_claim, load_families
from seqclaims.judging.judge import judge

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
    return judge(claim, FAMILIES.get(claim.check, path), use_store=False)


def criterion(result, statistic: str):
    return next(c for c in result.criteria if c.statistic == statistic)


SMALL = {"dataset": "motif_sites", "matrix": "MA0108.3", "n": 200}


def fixture_claim(family: str, model, tmp_path: Path, families=None) -> Path:
    """The family's example claim (its `seqclaims new` template) on a fixture, with small data and a
    metric every vocabulary has (the probe's decision value instead of a planted token's logit)."""
    example = (families or FAMILIES).get(family, tmp_path).example
    params = dict(example.get("params", {}))
    if "metric" in params:
        params["metric"] = {"kind": "probe", "probe_layer": 1}
    if family == "probe":
        params = {"layer": 1, "pooling": "mean", "random_label_permutations": 3}
    if family == "sae_feature":
        params["sae"] = {**params.get("sae", {}), "tokens": 20000, "epochs": 2}
    criteria = [{**criterion, "statistic": criterion["statistic"]} for criterion in example["criteria"]]
    data = {**SMALL, **({"window": example["data"]["window"]} if "window" in example["data"] else {})}
    return write_claim(tmp_path, f"{family.replace('_', '-')}-on-fixture", check=family, model=model,
                       data={**data, "gc_match": False} if family == "probe" else data, params=params,
                       criteria=criteria)
