"""Networks that learned nothing, and the claim a researcher would write about them with `seqclaims new`.

The null of the randomization control (DESIGN section 3): a randomly initialised ESM-style masked LM
(2 layers, 8 heads, d_model 64, rotary positions, single-nucleotide tokens, dropout 0), the architecture of
the random networks on which head statistics were found to pass without controls; and a family's template
(`FAMILY.example`, what `seqclaims new` writes) pointed at one. `scripts/calibrate_init.py` counts how often
such claims are supported; the tests reproduce the random-network findings with it.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from seqclaims.core.families import Family
from seqclaims.inputs.models import save_random_model

NETWORK = dict(n_layers=2, n_heads=8, d_model=64, d_mlp=128)
TEMPLATE_INIT_SEEDS = 3  # what `seqclaims new` writes
CORRECTED = ("qk_motif", "attention_association")  # families whose templates select over heads with p-values


def random_network(folder: Path, seed: int) -> Path:
    """A randomly initialised network saved in `folder` (kept when it is there already)."""
    if not (Path(folder) / "config.json").is_file():
        save_random_model(folder, "esm", seed=seed, **NETWORK)
    return Path(folder)


def template_claim(family: Family, folder: Path, model: Path | str, seed: int, **overrides) -> Path:
    """The family's template as a claim file in `folder/claims/null/`, on `model`, with the claim seed `seed`
    (so each claim's initialised copies differ too). A token-logit metric a single-nucleotide vocabulary
    lacks becomes the probe metric. `overrides` replace top-level keys (data, params, criteria)."""
    example = family.example
    params = dict(example.get("params", {}))
    if params.get("metric", {}).get("kind") == "token_logit":
        params["metric"] = {"kind": "probe", "probe_layer": 1}
    content = {"id": f"{family.name.replace('_', '-')}-template", "title": "a template on a random network",
               "statement": "the template's hypothesis", "expect": "refuted",
               "model": model if isinstance(model, str) else {"path": str(model)},  # an embedded name, or a folder
               "data": example["data"], "check": family.name, "params": params, "criteria": example["criteria"],
               "seed": seed, "init_seeds": TEMPLATE_INIT_SEEDS,
               **({"correction": "holm"} if family.name in CORRECTED else {}), **overrides}
    path = Path(folder) / "claims" / "null" / f"{content['id']}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(content, sort_keys=False))
    return path
