"""What a claim's `model:` and `data:` mappings say: the schemas `load_claim` validates them with.

`ModelRef` (with its `Tokenization` and `ModuleMap`) names a model, `DataSpec` a dataset. They belong to
the claim schema, so claims are validated without loading a model or building a dataset; what they name
is loaded by `seqclaims.inputs.models` and built by `seqclaims.inputs.data` and `datasets`, which
re-export these names.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Kind = Literal["single", "kmer_overlapping", "kmer_nonoverlapping"]
TATA_REGION = (-40, -20)  # where the `tata` dataset looks for the TBP motif, relative to the TSS


# ---------------------------------------------------------------------------------------------
# model:


class Tokenization(BaseModel):
    """A declared tokenization scheme, as a claim's ``model: {tokenization: {kind, k}}`` states it.

    Values are not coerced: ``k: "6"`` is an error.
    """

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    kind: Kind
    k: int = Field(1, ge=1, le=12)

    @model_validator(mode="after")
    def _single_means_k1(self) -> "Tokenization":
        if self.kind == "single" and self.k != 1:
            raise ValueError("tokenization kind 'single' takes k = 1")
        return self


# `<name>@step<N>`: the checkpoint `seqclaims train-organism` kept after N steps (step0: the initialisation)
EMBEDDED_MODELS = ("organism", "organism-6mer", "planted", "planted-circuit", "organism@step0", "organism@step200",
                   "protein", "protein@step0")

class ModuleMap(BaseModel):
    """Where the hook points live in an architecture without built-in support.

    layers: path of the list of blocks, from the loaded masked-LM model (e.g. ``bert.encoder.layer``).
    attn_out_proj: linear layer, relative to a block, whose input is the concatenated head outputs
        (e.g. ``attention.output.dense``).
    mlp_out_proj: linear layer, relative to a block, whose input is the MLP activations after the
        nonlinearity (e.g. ``output.dense`` for BERT, ``mlp.wo`` for MosaicBERT's gated MLP).
    mixer: module, relative to a block, whose output is a state-space model's sequence mixing (e.g.
        ``mixer``); attention-free models declare it instead of the two projections.
    embed: module whose output is the embedding (e.g. ``bert.embeddings``); optional.
    attn_probs: module, relative to a block, whose output's second item is the attention probabilities
        under eager attention (e.g. ``attention.self``); optional.
    attn_probs_input: module, relative to a block, whose input is the attention probabilities, whatever
        the implementation (e.g. ``attention.self.dropout`` in DNABERT-2's MosaicBERT); optional. Without
        either, ``attn.pattern`` is recomputed at the scaled_dot_product_attention kernel.
    qkv: fused query-key-value projection, relative to a block, whose output is [q; k; v] along the last
        axis (e.g. ``attention.self.Wqkv``); optional, lets ``key_score: qk_weights`` read fused models.
    block_output: what a block returns: its output (``hidden``), or a (hidden, residual) pair whose sum is
        the residual stream (``hidden_plus_residual``: mamba_ssm blocks, the released Caduceus and PlantCAD2).
    """

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    layers: str
    attn_out_proj: str | None = None
    mlp_out_proj: str | None = None
    mixer: str | None = None
    embed: str | None = None
    attn_probs: str | None = None
    attn_probs_input: str | None = None
    qkv: str | None = None
    block_output: Literal["hidden", "hidden_plus_residual"] = "hidden"

    @model_validator(mode="after")
    def _transformer_or_state_space(self) -> "ModuleMap":
        if not self.mixer and not (self.attn_out_proj and self.mlp_out_proj):
            raise ValueError("declare attn_out_proj and mlp_out_proj (a transformer) or mixer (a state-space model)")
        return self


class ModelRef(BaseModel):
    """A claim's ``model:``: an embedded model's name, or a mapping naming a local folder or a cached hub model.

    Accepted forms: ``"organism"``; ``{path: <folder>}``; ``{hf_id: <id>, revision: <sha>}`` (resolved in
    the local Hugging Face cache only; the revision is a 40-hex commit sha, since a branch or tag can
    move); each mapping optionally with ``trust_remote_code`` (false unless the claim opts in),
    ``tokenization`` (``{kind, k}``; default: the folder's tokenizer), ``attn_implementation`` (eager by
    default) and ``module_map``. Values are not coerced: ``trust_remote_code: "yes"`` is an error.
    """

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    name: str | None = Field(None, pattern=r"^[a-z0-9]+(-[a-z0-9]+)*(@step[0-9]+)?$")
    path: str | None = None
    hf_id: str | None = None
    revision: str | None = None
    trust_remote_code: bool = False
    tokenization: Tokenization | None = None
    attn_implementation: Literal["eager", "sdpa"] = "eager"
    module_map: ModuleMap | None = None

    @model_validator(mode="before")
    @classmethod
    def _bare_name(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _one_source(self) -> "ModelRef":
        given = [key for key in ("name", "path", "hf_id") if getattr(self, key)]
        if len(given) != 1:
            raise ValueError("give exactly one of an embedded model name, `path` or `hf_id`")
        if self.revision and not self.hf_id:
            raise ValueError("`revision` goes with `hf_id`")
        if self.hf_id and not _COMMIT_SHA.fullmatch(self.revision or ""):
            raise ValueError(
                f"`hf_id: {self.hf_id}` needs `revision:` set to the 40-hex commit sha of the snapshot "
                f"(got {self.revision!r}; a branch or tag can move)"
            )
        return self

    def describe(self) -> str:
        if self.hf_id:
            return f"{self.hf_id}@{self.revision}"
        return self.name or str(self.path)


_COMMIT_SHA = re.compile(r"[0-9a-f]{40}")


# ---------------------------------------------------------------------------------------------
# data:


class DataSpec(BaseModel):
    """Keys of a claim's `data:` mapping. Unknown keys are an error."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    dataset: Literal["promoters", "tata", "splice_donors", "splice_acceptors", "coding", "motif_sites", "proteins", "user"]
    species: Literal["athaliana", "alyrata", "aarenosa"] = "athaliana"
    n: int | None = Field(default=None, gt=1, description="total windows, balanced classes (default 2000; user data: all rows)")
    window: list[int] | None = Field(default=None, min_length=2, max_length=2, description="[upstream, downstream] nt around the site")
    matrix: str | None = Field(default=None, description="JASPAR matrix ID, e.g. MA0108.3")
    release: str = "JASPAR2024"
    threshold_fraction: float | None = Field(default=None, ge=0, le=1, description="motif hit: score >= min + f (max - min)")
    path: str | None = Field(default=None, description="user CSV/TSV/BED file")
    fasta: str | None = Field(default=None, description="FASTA the BED intervals refer to")
    format: Literal["csv", "tsv", "bed"] | None = None
    test_fraction: float = Field(default=0.2, gt=0, lt=1)
    ambiguous: Literal["exclude", "missing"] = "exclude"
    max_length: int | None = Field(default=None, gt=0)
    windowing: bool = False
    gc_match: bool | None = None

    @model_validator(mode="after")
    def _consistent(self) -> "DataSpec":
        if self.window is not None and min(self.window) < 0:
            raise ValueError("window: [upstream, downstream] must be non-negative")
        if self.dataset == "user" and self.path is None:
            raise ValueError("dataset 'user' needs `path:` (a CSV, TSV or BED file)")
        if self.dataset != "user" and (self.path or self.fasta or self.format):
            raise ValueError(f"`path`, `fasta` and `format` apply to dataset 'user', not {self.dataset!r}")
        if self.dataset == "proteins" and self.window is not None and self.window[0] != 0:
            raise ValueError("dataset 'proteins' keeps residues from the N-terminus: window [0, last residue index]")
        if self.dataset == "proteins" and (self.matrix or self.gc_match):
            raise ValueError("dataset 'proteins' takes no `matrix` or `gc_match` (they apply to DNA windows)")
        if self.dataset == "motif_sites" and self.matrix is None:
            raise ValueError("dataset 'motif_sites' needs `matrix:` (a JASPAR ID such as MA0139.1)")
        if self.dataset == "tata" and self.window is not None and self.window[0] < -TATA_REGION[0] + 10:
            raise ValueError(f"dataset 'tata' needs window upstream >= {-TATA_REGION[0] + 10} to hold -40..-20")
        return self
