"""What a check family hands back: one estimate per statistic, plus figures and cards for the report.

`Figure` lives in `seqclaims.methods.figures` and is re-exported here for family authors."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from seqclaims.errors import InputError
from seqclaims.inputs.cache import CODE_VERSION, extract
from seqclaims.inputs.datasets import build
from seqclaims.inputs.models import load_model
from seqclaims.methods.figures import Figure
from seqclaims.record.ledger import json_safe


@dataclass(frozen=True)
class Ceiling:
    """The statistic an ideal mechanism reaches under the claim's exact settings (DESIGN section 3)."""

    estimate: float
    ci_low: float
    ci_high: float


@dataclass(frozen=True)
class Estimate:
    """One statistic: point estimate, confidence interval, the sample size it rests on.

    `p` is the corrected p-value where one is meaningful. `kind == "pvalue"` marks a statistic that
    *is* a p-value: criteria compare it directly (its interval is the point). `reason` explains a
    missing estimate (NaN), which makes every criterion on it inconclusive.
    """

    estimate: float
    ci_low: float
    ci_high: float
    n: int
    p: float | None = None
    kind: str = "estimate"
    min_n: int = 1
    ceiling: Ceiling | None = None
    effect_size: float | None = None
    reason: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        low, high = self.ci_low, self.ci_high
        if math.isfinite(low) and math.isfinite(high) and low > high:
            raise ValueError(f"confidence interval [{low}, {high}] has its bounds in the wrong order")

    @classmethod
    def missing(cls, reason: str, n: int = 0) -> "Estimate":
        nan = float("nan")
        return cls(nan, nan, nan, n, reason=reason)

    @classmethod
    def pvalue(cls, p: float, n: int, **kwargs: Any) -> "Estimate":
        return cls(p, p, p, n, p=p, kind="pvalue", **kwargs)

    @property
    def is_missing(self) -> bool:
        return not all(math.isfinite(v) for v in (self.estimate, self.ci_low, self.ci_high))

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["ceiling"] = asdict(self.ceiling) if self.ceiling else None
        return {key: _finite_or_none(value) for key, value in data.items()}


@dataclass(frozen=True)
class Card:
    """A dataset or model card: a title and a flat or nested mapping of facts."""

    title: str
    facts: dict[str, Any]


@dataclass
class Evidence:
    statistics: dict[str, Estimate]
    figures: list[Figure] = field(default_factory=list)
    cards: list[Card] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    versions: dict[str, str] = field(default_factory=dict)


def rounded(value: Any, digits: int = 6) -> float | None:
    """A number for a detail table: rounded, or None when it is NaN or infinite."""
    return round(float(value), digits) if math.isfinite(float(value)) else None


def _finite_or_none(value: Any) -> Any:
    return json_safe(value)


# ---------------------------------------------------------------------------------------------
# Gathering what a family asks for: the claim's model, dataset and cached activations


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


def token_annotation(tracks: list[Any], offsets: Any, how: str = "any") -> Any:
    """Per-token values of per-nucleotide tracks through the tokenizer's character offsets.

    tracks: n_seq arrays (n_nt,); offsets: (n_seq, n_tok, 2) character spans, (0, 0) for special tokens
    and padding. how: `any` (max over the token's span: the token covers an annotated base), or
    `anchored` (the value at the token's first base). Returns (n_seq, n_tok) float with NaN at special
    tokens and padding."""

    offsets = np.asarray(offsets)
    out = np.full(offsets.shape[:2], np.nan)
    for row, track in enumerate(tracks):
        values = np.asarray(track, dtype=float)
        starts, ends = offsets[row, :, 0], offsets[row, :, 1]
        content = ends > starts
        if how == "anchored":
            out[row, content] = values[starts[content]]
        elif how == "any":
            prefix_max = _span_max(values, starts[content], ends[content])
            out[row, content] = prefix_max
        else:
            raise ValueError(f"unknown token alignment {how!r}: use 'any' or 'anchored'")
    return out


def _span_max(values: Any, starts: Any, ends: Any) -> Any:
    width = int((ends - starts).max()) if len(starts) else 0
    padded = np.concatenate([values, np.full(max(width, 1), -np.inf)])
    index = starts[:, None] + np.arange(max(width, 1))[None, :]
    window = np.where(index < ends[:, None], padded[index], -np.inf)
    return window.max(axis=1)
