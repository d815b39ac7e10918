"""Which source modules each cache's key covers, in one place.

A cache entry is valid only while the code that computed it is unchanged, so each cache key holds a
digest of the source of an explicit, short list of modules: the code that decides the entry's content,
and nothing else. Editing a figure caption in `checks/sae_feature.py` therefore re-judges the SAE claims
(their evidence is recomputed from the cached SAEs and activations) but never retrains an SAE, and editing
the report or the verdict rules recomputes no evidence at all (verdicts are always re-judged).

Groups name other groups with a leading `@`: the evidence of a family covers its own module
(`checks/<family>.py`), the domain modules it calls, and the groups of the caches it reads from.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from seqclaims.fsutil import file_sha256, source_hash

CODE_GROUPS: dict[str, tuple[str, ...]] = {
    # caches of derived inputs
    "datasets": ("seqclaims.inputs.datasets", "seqclaims.inputs.data", "seqclaims.inputs.userdata",
                 "seqclaims.inputs.genome", "seqclaims.inputs.motifs", "seqclaims.inputs.proteins"),
    "activations": ("seqclaims.inputs.models", "seqclaims.inputs.tokenizers", "seqclaims.inputs.cache"),
    "key_scores": ("@activations", "seqclaims.methods.key_scores"),
    "probe_fits": ("@activations", "seqclaims.methods.probing"),
    "sae": ("@activations", "seqclaims.methods.sae"),
    # what every family's evidence rests on
    "evidence": ("@datasets", "@activations", "seqclaims.core.evidence", "seqclaims.methods.stats",
                 "seqclaims.methods.figures", "seqclaims.core.verdicts",
                 "seqclaims.core.schema", "seqclaims.core.families"),  # claim defaults; Context.seed_for
    # per family, beyond `evidence` and its own checks/<family>.py: every module its check imports, directly
    # or not, that computes (tests/test_imports.py holds the list to the import graph)
    "family:probe": ("@probe_fits",),
    "family:qk_motif": ("@key_scores", "seqclaims.methods.attention", "seqclaims.methods.composition"),
    "family:attention_enrichment": ("@key_scores", "seqclaims.methods.attention", "seqclaims.methods.composition"),
    "family:activation_patching": ("@key_scores", "@probe_fits", "seqclaims.methods.attention",
                                   "seqclaims.methods.interventions"),
    "family:head_ablation": ("@key_scores", "@probe_fits", "seqclaims.methods.attention", "seqclaims.methods.interventions"),
    "family:ov_alignment": ("@probe_fits", "seqclaims.methods.ov"),
    "family:sae_feature": ("@sae", "seqclaims.methods.features", "seqclaims.methods.composition",
                           "seqclaims.methods.attention", "seqclaims.methods.key_scores"),
    "family:neuron": ("seqclaims.methods.features", "seqclaims.methods.composition", "seqclaims.methods.attention",
                      "seqclaims.methods.key_scores"),
}
# modules that never change a number: messages, locations, hashing and locks, JSON formatting
NON_COMPUTING = ("seqclaims.errors", "seqclaims.paths", "seqclaims.fsutil", "seqclaims.code_keys",
                 "seqclaims.record.ledger")

def modules_of(group: str) -> tuple[str, ...]:
    """The dotted module names a group covers, `@` references expanded, sorted and without repeats."""
    return tuple(sorted(_expand(group, ())))


def _expand(group: str, seen: tuple[str, ...]) -> set[str]:
    if group in seen:
        raise ValueError(f"code group {group!r} includes itself ({' -> '.join((*seen, group))})")
    names: set[str] = set()
    for entry in CODE_GROUPS[group]:
        names |= _expand(entry[1:], (*seen, group)) if entry.startswith("@") else {entry}
    return names


@lru_cache(maxsize=None)
def group_digest(group: str) -> str:
    """sha256 (16 hex digits) over the source of every module the group covers."""
    return source_hash(*modules_of(group))[:16]


def family_digest(name: str, module_path: Path | None) -> str:
    """The code digest of a family's evidence: its own module file, `evidence` and its listed group. A
    family not listed (one from $SEQCLAIMS_CHECKS_PATH, say) is keyed on every module of the package."""
    own = file_sha256(module_path) if module_path is not None and Path(module_path).is_file() else "none"
    group = f"family:{name}"
    if group in CODE_GROUPS:
        covered = f"{group_digest('evidence')}:{group_digest(group)}"
    else:
        covered = f"{group_digest('evidence')}:{_package_digest()}"
    return f"{own[:16]}:{covered}"


@lru_cache(maxsize=None)
def _package_digest() -> str:
    package = Path(__file__).resolve().parent
    names = sorted(f"seqclaims.{p.stem}" for p in package.glob("*.py") if p.stem != "__main__")
    return source_hash(*names)[:16]
