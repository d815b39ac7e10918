"""What a family gets from `Context.inputs()`: the claim's model and its dataset, loaded once, with
activations through the shared cache (`seqclaims.inputs.cache`).

The judge gives every `Context` this module's `gather_inputs` as its loader; `claim_context` builds such
a context for code that calls a family's `evaluate` directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from seqclaims.core.families import Context
from seqclaims.core.schema import Claim
from seqclaims.core.values import Card
from seqclaims.errors import InputError
from seqclaims.inputs.cache import CODE_VERSION, extract
from seqclaims.inputs.datasets import build
from seqclaims.inputs.models import load_model
from seqclaims.paths import cache_dir


@dataclass
class ClaimInputs:
    """The claim's model and dataset, loaded once; activations come through the shared cache."""

    model: Any
    dataset: Any

    @property
    def versions(self) -> dict[str, str]:
        return {"model_sha256": self.model.model_hash, "data_sha256": self.dataset.content_hash,
                "activation_code": CODE_VERSION}

    @property
    def cards(self) -> list[Card]:
        model_facts = {"architecture": self.model.architecture, "layers": self.model.n_layers,
                       "heads": self.model.n_heads, "d_model": self.model.d_model,
                       "context": self.model.max_length, "sha256": self.model.model_hash}
        return [Card(f"dataset: {self.dataset.name}", self.dataset.card), Card("model", model_facts)]

    def activations(self, hooks: list[str], *, reduce: str | None = None, sequences: list[str] | None = None,
                    dataset_hash: str | None = None) -> Any:
        """Activations of `hooks` on the dataset (or on `sequences`), from the content-addressed cache."""

        return extract(self.model, sequences if sequences is not None else self.dataset.sequences, hooks,
                       dataset_hash=dataset_hash or self.dataset.content_hash, reduce=reduce)


def gather_inputs(claim: Any, *, data_overrides: dict[str, Any] | None = None,
                  whole_sequences: bool = False) -> ClaimInputs:
    """Load the claim's model (Unavailable if absent) and build its dataset (cached, deterministic).

    A sequence longer than the model's context is an InputError naming the claim, unless the claim's
    data asks for windowing. whole_sequences: the family resamples rows as independent sequences, so
    windows cut from one sequence are an InputError too."""

    model = load_model(claim.model)
    spec = claim.data.model_dump(exclude_none=True)
    spec.update(data_overrides or {})
    if spec.get("windowing") and not spec.get("max_length"):
        spec["max_length"] = _max_characters(model)
    dataset = build(spec, seed=claim.seed, base_dir=claim.path.parent)
    if dataset.alphabet != model.alphabet:
        raise InputError(f"{claim.path}: data.dataset: {dataset.name} holds {dataset.alphabet} sequences but model "
                         f"{model.ref.describe()} reads {model.alphabet}; pair a {model.alphabet} dataset with it "
                         f"or use a {dataset.alphabet} model")
    longest = max((len(s) for s in dataset.sequences), default=0)
    if longest > _max_characters(model):
        raise InputError(f"{claim.path}: data: the longest sequence has {longest} characters but the model takes at "
                         f"most {_max_characters(model)}; shorten `window`, or set `windowing: true`")
    cut = (dataset.card.get("windowing") or {}).get("sequences_cut", 0)
    if whole_sequences and cut:
        raise InputError(f"{claim.path}: data.windowing: {claim.check} treats rows as independent sequences, but "
                         f"{cut} sequences were cut into windows; shorten the sequences or raise `max_length`")
    return ClaimInputs(model, dataset)


def _max_characters(model: Any) -> int:
    """Characters that fit the context: tokens minus two special tokens, times bases per token."""
    scheme = model.tokenization
    per_token = scheme.k if scheme is not None and scheme.kind == "kmer_nonoverlapping" else 1
    return (model.max_length - 2) * per_token


def claim_context(claim: Claim, *, whole_sequences: bool = False) -> Context:
    """The context the judge gives a family: the shared cache folder and this module's input loader."""
    return Context(claim=claim, cache_dir=cache_dir(), whole_sequences=whole_sequences, loader=gather_inputs)
