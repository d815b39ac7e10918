"""Interventions on attention heads: counterfactual pairs, target metrics, activation patching, head
ablation and restoration (PM) statistics.

Counterfactual pairs (`make_pairs`). A clean sequence holds a site: the best window of a JASPAR motif
(both strands) whose start lies in a region and that scores at or above the threshold of a one-strand
window p-value (default 1e-3), or a splice dinucleotide at the dataset's anchor with its context (donor:
3 exonic bases, GT, 4 intronic bases, the MAG|GTRAGT consensus; acceptor: 4 intronic bases before AG and
the first exonic base after it). The corrupted sequence replaces the site's bases by

- ``shuffle``: a random permutation of them (same bases, so the same composition), or
- ``swap``: a random k-mer with the same number of G+C (the same GC content),

drawn with the pair's own seeded generator and accepted only when it destroys the site: no motif window
overlapping the edit scores at or above the threshold on either strand, or the dinucleotide occurs
nowhere in the edit and its two flanking bases. Every pair records (row, position, original,
replacement, method). GC content is equal by construction (checked). A pair whose two tokenizations have
different lengths cannot be aligned token by token; it is excluded and counted, as are clean sequences
without a site and sites with no acceptable corruption.

Target metrics (`TargetMetric`), computed from one forward pass per sequence:

- ``probe``: decision value (logit of label 1) of a `probing.LinearProbe` on the mean over content
  tokens of ``layer.{l}.resid_post``;
- ``masked_logprob``: log-probability of the clean sequence's token at a character position, that token
  being replaced by the mask token in every run (clean, corrupted, patched, ablated);
- ``token_logit``: mean over content tokens of the masked-LM logit of a named vocabulary entry (no
  masking; the planted model's designated output).

Patching (`patching_effects`): the clean run's head outputs (``layer.{l}.attn.head_out``, before the
attention output projection) are written into the corrupted run, at every token or at the tokens that
overlap the edit, one head at a time; every head of a layer goes through one batched pass
(`models.patch_every_head`). Ablation (`ablation_effects`): a head's output before the projection is
replaced by zeros or by its mean over the content tokens of reference sequences, at every token.

Restoration (`restoration`, `aggregate_pm`): per pair, PM = (f_patched - f_corrupted) / (f_clean -
f_corrupted); pairs whose denominator, times the expected sign, is below the floor are excluded and
counted. Aggregates over pairs: ``mean`` (of per-pair PM), ``median`` (of per-pair PM), and
``ratio_of_means`` (sum of f_patched - f_corrupted over sum of f_clean - f_corrupted). Every aggregate
takes bootstrap weights over pairs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Literal, Sequence

import numpy as np
from pydantic import Field, model_validator

from seqclaims.core.schema import StrictModel
from seqclaims.errors import InputError
from seqclaims.inputs import data as data_module
from seqclaims.inputs import motifs
from seqclaims.inputs.models import (iter_run, masked_lm_logits, metric_gradients, patch_every_head, patch_head,
                                     run_with_interventions)
from seqclaims.inputs.tokenizers import Batch
from seqclaims.lazy import lazy_import
from seqclaims.methods.probing import composition_features, train_split_probe

torch = lazy_import("torch")

DEFAULT_SITE_PVALUE = 1e-3
RELATIVE_DENOMINATOR_FLOOR = 0.1
ABSOLUTE_DENOMINATOR_FLOOR = 1e-6
DINUCLEOTIDE_SITES = {"donor": ("GT", 3, 4), "acceptor": ("AG", 4, 1)}  # word, bases before it, bases after it
ACTIVATION_BYTES = 64 * 2**20  # clean head outputs held per chunk of pairs
BASES = np.frombuffer(b"ACGT", dtype=np.uint8)
GC_BASES = np.frombuffer(b"GC", dtype=np.uint8)
AT_BASES = np.frombuffer(b"AT", dtype=np.uint8)


# ---------------------------------------------------------------------------------------------
# What a claim says about pairs and metrics


class CorruptionSpec(StrictModel):
    """How clean/corrupted pairs are made (see the module docstring)."""

    method: Literal["shuffle", "swap"] = Field(
        "shuffle", description="shuffle: permute the site's bases (same composition); swap: a random k-mer with "
        "the same G+C count. Either is redrawn until the site is destroyed")
    site: Literal["motif", "donor", "acceptor"] = Field(
        "motif", description="motif: best JASPAR motif window in `region`; donor / acceptor: the GT / AG at the "
        "dataset's anchor with its consensus context")
    matrix: str | None = Field(None, description="JASPAR matrix of a motif site (default: the dataset's)")
    release: str | None = Field(None, description="JASPAR release (default: the dataset's, else JASPAR2024)")
    pseudocount: float = Field(0.8, ge=0, description="PSSM pseudocount, split by the uniform background")
    pvalue: float = Field(DEFAULT_SITE_PVALUE, gt=0, le=1, description="a motif window is a hit when it scores at "
                          "or above the threshold of this one-strand window p-value; sites are hits, corruptions "
                          "leave no hit overlapping the edit")
    region: list[int] | None = Field(
        None, min_length=2, max_length=2, description="[first, last] 0-based start index of the motif windows a site "
        "may take (default: tata -40..-20 of the TSS by window centre; motif_sites the centred window; else anywhere)")
    anchor: int | None = Field(None, ge=0, description="donor / acceptor: 0-based index of the dinucleotide's first "
                               "base (default: the dataset's anchor)")
    max_tries: int = Field(256, ge=1, le=100000, description="corruptions drawn per pair before it is excluded")
    max_pairs: int | None = Field(None, ge=1, description="at most this many pairs (a seeded random subset)")


class MetricSpec(StrictModel):
    """The target metric f of every pair or sequence."""

    kind: Literal["probe", "masked_logprob", "token_logit"] = Field(
        "probe", description="probe: decision value of a probe (trained on the train split) on mean-pooled "
        "resid_post of `probe_layer`; masked_logprob: log-probability of the clean token at `mask_position`, "
        "masked; token_logit: mean over content tokens of the masked-LM logit of `token`")
    probe_layer: int | None = Field(None, ge=0, description="probe: the layer whose resid_post it reads "
                                    "(default: the last layer)")
    mask_position: int | None = Field(None, ge=0, description="masked_logprob: 0-based character index of the "
                                      "masked base (default: the dataset's anchor)")
    token: str | None = Field(None, description="token_logit: the vocabulary entry, e.g. TATAAAA")

    @model_validator(mode="after")
    def _consistent(self) -> "MetricSpec":
        if self.kind == "token_logit" and not self.token:
            raise ValueError("kind token_logit needs `token:` (a vocabulary entry)")
        if self.kind != "token_logit" and self.token:
            raise ValueError(f"`token` applies to kind token_logit, not {self.kind}")
        if self.kind != "probe" and self.probe_layer is not None:
            raise ValueError(f"`probe_layer` applies to kind probe, not {self.kind}")
        if self.kind != "masked_logprob" and self.mask_position is not None:
            raise ValueError(f"`mask_position` applies to kind masked_logprob, not {self.kind}")
        return self


# ---------------------------------------------------------------------------------------------
# Counterfactual pairs


@dataclass(frozen=True)
class Corruption:
    """One pair's edit: bases [position, position + len(original)) of dataset row `row`."""

    row: int
    position: int
    original: str
    replacement: str
    method: str


@dataclass
class Pairs:
    """Clean/corrupted pairs. rows (n,) dataset rows; clean, corrupted: n strings of equal length;
    corruptions: n edits; excluded: reason -> count of clean candidates left out; offered: candidates."""

    rows: np.ndarray
    clean: list[str]
    corrupted: list[str]
    corruptions: list[Corruption]
    excluded: dict[str, int]
    offered: int
    site: str

    def __len__(self) -> int:
        return len(self.clean)

    @property
    def edits(self) -> np.ndarray:
        """(n, 2) character span [start, end) of each edit."""
        return np.array([(c.position, c.position + len(c.original)) for c in self.corruptions], dtype=np.int64).reshape(-1, 2)

    def table(self) -> list[dict]:
        return [{"row": c.row, "position": c.position, "original": c.original, "replacement": c.replacement,
                 "method": c.method} for c in self.corruptions]


@dataclass(frozen=True)
class SiteRule:
    """Where sites are and when a corruption destroys one. motif: a `motifs.Motif` (None for
    dinucleotide sites); threshold in bits; region: (first, last) window starts; word/before/after and
    anchor for dinucleotide sites."""

    kind: str
    motif: object | None = None
    threshold: float = float("nan")
    region: tuple[int, int] | None = None
    anchor: int | None = None

    def describe(self) -> str:
        if self.motif is not None:
            where = f"window starts {self.region[0]}..{self.region[1]}" if self.region else "anywhere"
            return (f"best {self.motif.matrix_id} ({self.motif.name}) window, either strand, scoring >= "
                    f"{self.threshold:.3f} bits, {where}")
        word, before, after = DINUCLEOTIDE_SITES[self.kind]
        return f"{word} at index {self.anchor} with {before} bases before and {after} after it"


def site_rule(spec: CorruptionSpec, dataset, motif=None) -> SiteRule:
    """The claim's site rule for `dataset` (its card gives the anchor and the default region)."""

    anchor = dataset.card.get("anchor")
    if spec.site in DINUCLEOTIDE_SITES:
        anchor = spec.anchor if spec.anchor is not None else anchor
        if anchor is None:
            raise InputError(f"params.corruption.anchor: {spec.site} sites sit at an anchor, and dataset "
                             f"{dataset.name} records none; give the dinucleotide's 0-based index")
        return SiteRule(spec.site, anchor=int(anchor))
    if motif is None:
        raise InputError(f"params.corruption.matrix: name the JASPAR matrix of the site (dataset {dataset.name} "
                         "records none)")
    threshold = motifs.score_threshold(motif, pvalue=spec.pvalue)
    region = tuple(spec.region) if spec.region else None
    if region is None and anchor is not None and dataset.name.startswith("tata"):
        centre = motif.length // 2
        region = (anchor + data_module.TATA_REGION[0] - centre, anchor + data_module.TATA_REGION[1] - centre)
    elif region is None and anchor is not None and dataset.name.startswith("motif_sites"):
        region = (anchor - motif.length // 2,) * 2
    if region is not None and region[0] > region[1]:
        raise InputError(f"params.corruption.region: {list(region)} must be [first, last] with first <= last")
    return SiteRule("motif", motif, float(threshold), region)


def find_sites(sequences: Sequence[str], rule: SiteRule) -> np.ndarray:
    """(n, 2) site span [start, end) per sequence; (-1, -1) where the sequence has none."""
    out = np.full((len(sequences), 2), -1, dtype=np.int64)
    if rule.motif is None:
        word, before, after = DINUCLEOTIDE_SITES[rule.kind]
        a = rule.anchor
        for i, sequence in enumerate(sequences):
            if sequence[a: a + 2] == word and a - before >= 0 and a + 2 + after <= len(sequence):
                out[i] = (a - before, a + 2 + after)
        return out

    for i, sequence in enumerate(sequences):
        scores = motifs.scan(sequence, rule.motif)
        lo, hi = rule.region if rule.region else (0, len(scores) - 1)
        window = scores[max(lo, 0): min(hi, len(scores) - 1) + 1]
        if window.size and np.isfinite(window).any() and np.nanmax(window) >= rule.threshold:
            start = max(lo, 0) + int(np.nanargmax(window))
            out[i] = (start, start + rule.motif.length)
    return out


def candidate_kmers(original: np.ndarray, method: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """(n, k) uint8 candidate replacements of the k bases `original`: permutations (shuffle) or random
    k-mers with the same number of G and C (swap)."""
    if method == "shuffle":
        return rng.permuted(np.tile(original, (n, 1)), axis=1)
    k = len(original)
    n_gc = int(np.isin(original, GC_BASES).sum())
    is_gc = rng.permuted(np.tile(np.arange(k) < n_gc, (n, 1)), axis=1)
    return np.where(is_gc, GC_BASES[rng.integers(0, 2, (n, k))], AT_BASES[rng.integers(0, 2, (n, k))]).astype(np.uint8)


def destroys_site(sequence: np.ndarray, start: int, candidates: np.ndarray, rule: SiteRule) -> np.ndarray:
    """(n,) bool: which candidate replacements of sequence[start : start + k] leave no site touching the edit.

    motif: every motif window overlapping the edit scores below the threshold on both strands (windows
    touching a non-ACGT base score NaN and count as below); dinucleotide: the word occurs nowhere in the
    edit and its two flanking bases."""
    n, k = candidates.shape
    reach = rule.motif.length - 1 if rule.motif is not None else 1
    lo, hi = max(start - reach, 0), min(start + k + reach, len(sequence))
    spans = np.tile(sequence[lo:hi], (n, 1))
    spans[:, start - lo: start - lo + k] = candidates
    if rule.motif is None:
        word = np.frombuffer(DINUCLEOTIDE_SITES[rule.kind][0].encode(), dtype=np.uint8)
        return ~((spans[:, :-1] == word[0]) & (spans[:, 1:] == word[1])).any(axis=1)

    width = spans.shape[1] + 1  # one N between candidates, so no window spans two of them
    joined = np.concatenate([spans, np.full((n, 1), ord("N"), dtype=np.uint8)], axis=1).ravel()
    scores = motifs.scan(joined, rule.motif)
    scores = np.concatenate([scores, np.full(rule.motif.length - 1, np.nan, dtype=scores.dtype)]).reshape(n, width)
    best = np.nan_to_num(scores[:, : spans.shape[1] - rule.motif.length + 1], nan=-np.inf).max(axis=1, initial=-np.inf)
    return best < rule.threshold


def make_pairs(dataset, rows: np.ndarray, rule: SiteRule, method: str, seed: int, *, max_tries: int = 256,
               max_pairs: int | None = None, model=None) -> Pairs:
    """Clean/corrupted pairs from dataset `rows` (e.g. the test split's positives).

    Each row draws its corruptions from its own generator (seed, row), so a pair does not depend on
    which other rows are present. With `model`, pairs whose clean and corrupted token counts differ are
    excluded and counted under ``tokenization_changed``."""
    rows = np.asarray(rows, dtype=np.int64)
    if max_pairs is not None and len(rows) > max_pairs:
        rows = np.sort(np.random.default_rng([seed, 0]).choice(rows, size=max_pairs, replace=False))
    sequences = [dataset.sequences[r] for r in rows]
    spans = find_sites(sequences, rule)
    excluded = {"no_site": int((spans[:, 0] < 0).sum()), "no_corruption": 0, "tokenization_changed": 0}
    kept, clean, corrupted, corruptions = [], [], [], []
    for row, sequence, (start, end) in zip(rows, sequences, spans):
        if start < 0:
            continue
        codes = np.frombuffer(sequence.encode("ascii"), dtype=np.uint8).copy()
        replacement = _first_destroying(codes, int(start), int(end), rule, method, max_tries,
                                        np.random.default_rng([seed, int(row)]))
        if replacement is None:
            excluded["no_corruption"] += 1
            continue
        codes[start:end] = replacement
        kept.append(int(row))
        clean.append(sequence)
        corrupted.append(codes.tobytes().decode("ascii"))
        corruptions.append(Corruption(int(row), int(start), sequence[start:end], replacement.tobytes().decode("ascii"), method))
    pairs = Pairs(np.array(kept, dtype=np.int64), clean, corrupted, corruptions, excluded, len(rows), rule.describe())
    _check_gc_equal(pairs)
    return keep_aligned(pairs, model) if model is not None else pairs


def _first_destroying(codes: np.ndarray, start: int, end: int, rule: SiteRule, method: str, max_tries: int,
                      rng: np.random.Generator) -> np.ndarray | None:
    """The first drawn replacement that differs from the site and destroys it; None after max_tries."""
    original = codes[start:end]
    drawn = 0
    while drawn < max_tries:
        n = min(64, max_tries - drawn)
        candidates = candidate_kmers(original, method, n, rng)
        drawn += n
        good = (candidates != original).any(axis=1) & destroys_site(codes, start, candidates, rule)
        if good.any():
            return candidates[int(np.argmax(good))]
    return None


def _check_gc_equal(pairs: Pairs) -> None:
    if len(pairs) and not np.array_equal(composition_features(pairs.clean)[:, 0], composition_features(pairs.corrupted)[:, 0]):
        raise AssertionError("a corruption changed GC content")  # never: both methods keep the G+C count


def keep_aligned(pairs: Pairs, model) -> Pairs:
    """The pairs whose clean and corrupted sequences tokenize to the same number of tokens (the rest are
    counted under ``tokenization_changed``): only they can be patched token by token."""
    clean, corrupted = model.tokenize(pairs.clean), model.tokenize(pairs.corrupted)
    same = (clean.lengths == corrupted.lengths).numpy()
    excluded = dict(pairs.excluded, tokenization_changed=pairs.excluded["tokenization_changed"] + int((~same).sum()))
    keep = np.flatnonzero(same)
    return Pairs(pairs.rows[keep], [pairs.clean[i] for i in keep], [pairs.corrupted[i] for i in keep],
                 [pairs.corruptions[i] for i in keep], excluded, pairs.offered, pairs.site)


def edit_token_mask(batch, edits: np.ndarray) -> torch.Tensor:
    """(n_seq, n_tok) bool: content tokens whose character span overlaps each sequence's edit [start, end)."""
    offsets = batch.offsets.numpy()
    start, end = edits[:, :1], edits[:, 1:]
    overlap = (offsets[..., 0] < end) & (offsets[..., 1] > start) & batch.content_mask.numpy()
    return torch.from_numpy(overlap)


# ---------------------------------------------------------------------------------------------
# Target metrics

Metric = Callable[["torch.Tensor", "torch.Tensor"], "torch.Tensor"]


@dataclass
class Prepared:
    """A tokenized batch ready to run, and the metric to compute on it. true_ids: (n,) the masked tokens'
    ids (masked_logprob)."""

    batch: object
    metric: Metric
    true_ids: torch.Tensor | None = None


@dataclass
class TargetMetric:
    """The metric f of a sequence. kind: probe | masked_logprob | token_logit (module docstring).

    metric_input: what the metric reads from the forward pass (a hook name or ``hidden``)."""

    model: object
    kind: str
    probe_layer: int | None = None
    coef: torch.Tensor | None = None  # (d_model,) float64
    intercept: float = 0.0
    token_id: int | None = None
    mask_position: int | None = None

    @property
    def metric_input(self) -> str:
        return f"layer.{self.probe_layer}.resid_post" if self.kind == "probe" else "hidden"

    def describe(self) -> str:
        if self.kind == "probe":
            return f"probe decision value on mean-pooled layer.{self.probe_layer}.resid_post"
        if self.kind == "token_logit":
            return f"mean masked-LM logit of token id {self.token_id} over content tokens"
        return f"log-probability of the clean token covering base {self.mask_position}, masked"

    def prepare(self, sequences: Sequence[str], true_ids: torch.Tensor | None = None) -> Prepared:
        """Tokenize (and mask) `sequences`; true_ids: the masked tokens' ids to score (default: their own)."""
        batch = self.model.tokenize(list(sequences))
        if self.kind == "probe":
            return Prepared(batch, _pooled_probe(batch.content_mask, self.coef, self.intercept))
        if self.kind == "token_logit":
            return Prepared(batch, _mean_token_logit(self.model, batch.content_mask, self.token_id))
        index = covering_token(batch, self.mask_position)
        own = batch.input_ids[torch.arange(len(batch)), index]
        true_ids = own if true_ids is None else true_ids
        masked = _with_mask(batch, index, self.model.tokenizer.mask_token_id)
        return Prepared(masked, _masked_logprob(self.model, index, true_ids), true_ids)


def target_metric(spec: MetricSpec, inputs, *, seed: int = 0) -> TargetMetric:
    """The claim's metric on its inputs (`evidence.ClaimInputs`); a probe is fitted on the train split."""
    model = inputs.model
    if spec.kind == "probe":

        layer = model.n_layers - 1 if spec.probe_layer is None else spec.probe_layer
        if layer >= model.n_layers:
            raise InputError(f"params.metric.probe_layer: {layer} is not a layer of a {model.n_layers}-layer model")
        probe = train_split_probe(inputs, f"layer.{layer}.resid_post", pooling="mean", seed=seed)
        return TargetMetric(model, "probe", probe_layer=layer, coef=torch.from_numpy(np.asarray(probe.coef_, dtype=np.float64)),
                            intercept=float(probe.intercept_))
    if spec.kind == "token_logit":
        token_id = model.tokenizer.get_vocab().get(spec.token)
        if token_id is None:
            raise InputError(f"params.metric.token: {spec.token!r} is not in the vocabulary of {model.ref.describe()}")
        return TargetMetric(model, "token_logit", token_id=int(token_id))
    if model.tokenizer.mask_token_id is None:
        raise InputError(f"params.metric.kind: masked_logprob needs a mask token, which {model.ref.describe()} lacks")
    position = spec.mask_position if spec.mask_position is not None else inputs.dataset.card.get("anchor")
    if position is None:
        raise InputError("params.metric.mask_position: the dataset has no anchor; give the 0-based character index")
    return TargetMetric(model, "masked_logprob", mask_position=int(position))


def covering_token(batch, position: int) -> torch.Tensor:
    """(n_seq,) index of the token whose character span covers `position` (InputError if none does)."""
    offsets = batch.offsets
    covers = (offsets[..., 0] <= position) & (position < offsets[..., 1]) & batch.content_mask
    if not bool(covers.any(dim=1).all()):
        raise InputError(f"params.metric.mask_position: base {position} is not covered by a token of every "
                         "sequence; choose a position inside the windows")
    return covers.int().argmax(dim=1)


def _with_mask(batch, index: torch.Tensor, mask_id: int):
    ids = batch.input_ids.clone()
    ids[torch.arange(len(batch)), index] = mask_id
    return Batch(ids, batch.attention_mask, batch.offsets, batch.special_mask)


def _content_rows(content: torch.Tensor, rows: torch.Tensor, n_tok: int) -> torch.Tensor:
    return content[rows, :n_tok].to(torch.float64)


def _pooled_probe(content: torch.Tensor, coef: torch.Tensor, intercept: float) -> Metric:
    def metric(resid: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:  # (n_rows, n_tok, d) -> (n_rows,)
        weights = _content_rows(content, rows, resid.shape[1])
        pooled = torch.einsum("rt,rtd->rd", weights, resid.to(torch.float64)) / weights.sum(dim=1, keepdim=True)
        return pooled @ coef + intercept

    return metric


def _mean_token_logit(model, content: torch.Tensor, token_id: int) -> Metric:
    def metric(hidden: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        logits = masked_lm_logits(model, hidden, [token_id])[..., 0].to(torch.float64)  # (n_rows, n_tok)
        weights = _content_rows(content, rows, hidden.shape[1])
        return (logits * weights).sum(dim=1) / weights.sum(dim=1)

    return metric


def _masked_logprob(model, index: torch.Tensor, true_ids: torch.Tensor) -> Metric:
    def metric(hidden: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        at_mask = hidden[torch.arange(len(rows)), index[rows]]  # (n_rows, d_model)
        logprobs = torch.log_softmax(masked_lm_logits(model, at_mask).to(torch.float64), dim=-1)
        return logprobs[torch.arange(len(rows)), true_ids[rows]]

    return metric


# ---------------------------------------------------------------------------------------------
# Running: every head of every chosen layer


@dataclass
class PatchingRun:
    """f_clean, f_corrupted (n,); f_patched (n_layers, n_heads, n) for `layers` (NaN for heads not patched);
    f_attributed: the attribution-patching estimate of f_patched, when it was computed."""

    layers: list[int]
    f_clean: np.ndarray
    f_corrupted: np.ndarray
    f_patched: np.ndarray
    f_attributed: np.ndarray | None = None


PATCHING_METHODS = ("exact", "attribution", "both")


def patching_effects(model, target: TargetMetric, pairs: Pairs, layers: Sequence[int], *, at: str = "all",
                     batched: bool = True, batch_size: int = 16, method: str = "exact",
                     heads: Sequence[tuple[int, int]] | None = None) -> PatchingRun:
    """Patch every head of `layers` from the clean into the corrupted run, one pair chunk at a time.

    at: ``all`` tokens (special ones included) or ``site``, the tokens overlapping the edit. batched: all
    heads of a layer in one pass (`models.patch_every_head`); False patches one head per pass (the
    reference the batched path must equal). batch_size: rows per forward pass, copies included; small
    passes keep the activations in cache (on a shared two-core machine, 16 rows ran about 1.6 times faster
    per row than 64). method: ``exact`` patching; ``attribution`` patching, its first-order estimate
    f_patched ~ f_corrupted + sum over patched tokens of (clean - corrupted head output) . d f / d head output
    at the corrupted run, every head of every layer from one forward and one backward pass per chunk (it is
    then f_patched too); ``both`` (f_attributed beside the exact f_patched). heads: patch only these (layer,
    head) exactly, one pass each; the others are NaN."""
    if method not in PATCHING_METHODS:
        raise ValueError(f"unknown patching method {method!r}; use one of {', '.join(PATCHING_METHODS)}")
    layers = list(layers)
    n = len(pairs)
    f_clean, f_corrupted = np.zeros(n), np.zeros(n)
    f_patched = np.full((len(layers), model.n_heads, n), np.nan)
    f_attributed = np.zeros_like(f_patched) if method != "exact" else None
    edits = pairs.edits
    hooks = [f"layer.{layer}.attn.head_out" for layer in layers]
    for chunk in _chunks(n, _chunk_size(model, pairs.clean, len(layers))):
        clean = target.prepare([pairs.clean[i] for i in chunk])
        corrupted = target.prepare([pairs.corrupted[i] for i in chunk], true_ids=clean.true_ids)
        clean_run = _metric_run(model, clean, target, [], hooks, batch_size)
        f_clean[chunk] = clean_run["metric"].numpy()
        where = edit_token_mask(corrupted.batch, edits[chunk]) if at == "site" else None
        if method != "exact":
            f_corrupted[chunk], f_attributed[:, :, chunk] = _attributed(model, corrupted, target, hooks, clean_run,
                                                                        where, batch_size)
        if method == "attribution":
            continue
        if method == "exact":
            f_corrupted[chunk] = _metric_run(model, corrupted, target, [], [], batch_size)["metric"].numpy()
        for k, layer in enumerate(layers):
            values = clean_run[f"layer.{layer}.attn.head_out"]
            if heads is None:
                f_patched[k][:, chunk] = _every_head(model, corrupted, target, layer, values, where, batched, batch_size)
            else:
                f_patched[k][:, chunk] = _each_head(model, corrupted, target, layer, values, where, batch_size,
                                                    [h for patched_layer, h in heads if patched_layer == layer])
    if method == "attribution":
        f_patched = f_attributed
    return PatchingRun(layers, f_clean, f_corrupted, f_patched, f_attributed)


def _each_head(model, prepared: Prepared, target: TargetMetric, layer: int, values: torch.Tensor,
               where: torch.Tensor | None, batch_size: int, chosen) -> np.ndarray:
    """(n_heads, n) metric with each head of `chosen` of `layer` patched in its own pass; NaN for the others."""

    out = np.full((model.n_heads, len(prepared.batch)), np.nan)
    for head in chosen:
        out[head] = _metric_run(model, prepared, target, [patch_head(layer, head, values[:, :, head], where)], [],
                                batch_size)["metric"].numpy()
    return out


def _attributed(model, corrupted: Prepared, target: TargetMetric, hooks: list[str], clean_run: dict,
                where: torch.Tensor | None, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """f_corrupted (n,) and the attribution estimate of f_patched (n_layers, n_heads, n) for one chunk."""

    run = metric_gradients(model, corrupted.batch, hooks, metric=corrupted.metric, metric_input=target.metric_input,
                           batch_size=batch_size)
    f_corrupted = run["metric"].to(torch.float64).numpy()
    estimates = []
    for hook in hooks:
        delta = (clean_run[hook] - run[hook]).to(torch.float64)  # (n, n_tok, n_heads, d_head)
        if where is not None:
            delta = delta * where[..., None, None]
        estimates.append(torch.einsum("nthd,nthd->hn", delta, run[f"{hook}.grad"].to(torch.float64)).numpy())
    return f_corrupted, f_corrupted[None, None] + np.stack(estimates)


@dataclass
class AblationRun:
    """f_base (n,) unablated; f_ablated (n_layers, n_heads, n) for `layers`."""

    layers: list[int]
    f_base: np.ndarray
    f_ablated: np.ndarray


def ablation_effects(model, target: TargetMetric, sequences: Sequence[str], layers: Sequence[int], *,
                     means: np.ndarray | None = None, batched: bool = True, batch_size: int = 16) -> AblationRun:
    """Ablate every head of `layers`, one at a time, at every token: zeros, or `means` (n_layers, n_heads,
    d_head) from `head_means`."""
    layers = list(layers)
    n = len(sequences)
    f_base, f_ablated = np.zeros(n), np.zeros((len(layers), model.n_heads, n))
    for chunk in _chunks(n, _chunk_size(model, sequences, 1)):
        prepared = target.prepare([sequences[i] for i in chunk])
        f_base[chunk] = _metric_run(model, prepared, target, [], [], batch_size)["metric"].numpy()
        shape = (len(chunk), prepared.batch.n_tok, model.n_heads, model.d_head)
        for k, layer in enumerate(layers):
            values = torch.zeros(shape) if means is None else torch.as_tensor(means[k], dtype=torch.float32).expand(shape)
            f_ablated[k][:, chunk] = _every_head(model, prepared, target, layer, values, None, batched, batch_size)
    return AblationRun(layers, f_base, f_ablated)


def head_means(model, sequences: Sequence[str], layers: Sequence[int], batch_size: int = 32) -> np.ndarray:
    """(n_layers, n_heads, d_head) mean head output (before the output projection) over content tokens."""

    batch = model.tokenize(list(sequences))
    hooks = [f"layer.{layer}.attn.head_out" for layer in layers]
    total = torch.zeros(len(layers), model.n_heads, model.d_head, dtype=torch.float64)
    for rows, outputs in iter_run(model, batch, hooks, batch_size=batch_size):
        content = batch.content_mask[rows].to(torch.float64)
        for k, name in enumerate(hooks):
            total[k] += torch.einsum("rt,rthd->hd", content, outputs[name].to(torch.float64))
    return (total / batch.content_mask.sum()).numpy()


def _metric_run(model, prepared: Prepared, target: TargetMetric, interventions, hooks, batch_size: int) -> dict:
    return run_with_interventions(model, prepared.batch, interventions, hooks, metric=prepared.metric,
                                  metric_input=target.metric_input, batch_size=batch_size)


def _every_head(model, prepared: Prepared, target: TargetMetric, layer: int, values: torch.Tensor,
                where: torch.Tensor | None, batched: bool, batch_size: int) -> np.ndarray:
    """(n_heads, n) metric with each head of `layer` replaced by `values` (n, n_tok, n_heads, d_head)."""

    if batched:
        out = patch_every_head(model, prepared.batch, layer, values, where, metric=prepared.metric,
                               metric_input=target.metric_input, batch_size=batch_size)
        return out["metric"].numpy()
    return _each_head(model, prepared, target, layer, values, where, batch_size, range(model.n_heads))


def _chunk_size(model, sequences: Sequence[str], n_layers: int) -> int:
    """Pairs per chunk so that the clean head outputs of `n_layers` layers fit ACTIVATION_BYTES."""
    longest = max((len(s) for s in sequences), default=1) + 2
    return max(8, ACTIVATION_BYTES // (4 * longest * model.d_model * max(n_layers, 1)))


def _chunks(n: int, size: int) -> list[np.ndarray]:
    return [np.arange(start, min(start + size, n)) for start in range(0, n, size)]


# ---------------------------------------------------------------------------------------------
# Restoration (PM)


@dataclass
class Restoration:
    """PM of K heads over the kept pairs.

    kept: (n,) bool; numerator (K, m) f_patched - f_corrupted and denominator (m,) f_clean - f_corrupted
    of the m kept pairs, both times `sign`; floor: the denominator floor used; excluded: reason -> count."""

    kept: np.ndarray
    numerator: np.ndarray
    denominator: np.ndarray
    floor: float
    sign: int
    excluded: dict[str, int] = field(default_factory=dict)

    @property
    def pm(self) -> np.ndarray:
        """(K, m) per-pair PM."""
        return self.numerator / self.denominator

    @property
    def excluded_fraction(self) -> float:
        total = len(self.kept)
        return float((~self.kept).sum() / total) if total else float("nan")


def restoration(f_clean: np.ndarray, f_corrupted: np.ndarray, f_patched: np.ndarray, *, sign: int = 1,
                floor: float | None = None, relative_floor: float = RELATIVE_DENOMINATOR_FLOOR) -> Restoration:
    """PM = (f_patched - f_corrupted) / (f_clean - f_corrupted) for f_patched (K, n).

    A pair is kept when sign * (f_clean - f_corrupted) >= floor; the default floor is `relative_floor`
    times the median |f_clean - f_corrupted| over all pairs, and at least 1e-6. Pairs of the wrong sign
    and pairs below the floor are counted separately."""
    delta = sign * (np.asarray(f_clean, dtype=np.float64) - np.asarray(f_corrupted, dtype=np.float64))
    if floor is None:
        floor = max(relative_floor * float(np.median(np.abs(delta))) if delta.size else 0.0, ABSOLUTE_DENOMINATOR_FLOOR)
    kept = delta >= floor
    excluded = {"wrong_sign": int((delta <= 0).sum()), "below_floor": int(((delta > 0) & ~kept).sum())}
    numerator = sign * (np.asarray(f_patched, dtype=np.float64) - np.asarray(f_corrupted, dtype=np.float64))[:, kept]
    return Restoration(kept, numerator, delta[kept], float(floor), sign, excluded)


AGGREGATES = ("ratio_of_means", "mean", "median")


def aggregate_pm(rest: Restoration, how: str, weights: np.ndarray | None = None) -> np.ndarray:
    """(B, K) PM aggregated over the kept pairs under bootstrap weights (B, m) (None: every pair once, B = 1).

    ratio_of_means: sum w (f_patched - f_corrupted) / sum w (f_clean - f_corrupted); mean: weighted mean of
    per-pair PM; median: weighted median of per-pair PM (the midpoint of the lower and upper weighted
    medians, which is numpy's median for unit weights)."""
    w = np.ones((1, rest.denominator.size)) if weights is None else np.asarray(weights, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        if how == "ratio_of_means":
            return (w @ rest.numerator.T) / (w @ rest.denominator)[:, None]
        if how == "mean":
            return (w @ rest.pm.T) / w.sum(axis=1, keepdims=True)
    if how == "median":
        return weighted_median(rest.pm, w)
    raise ValueError(f"unknown aggregate {how!r}; use one of {', '.join(AGGREGATES)}")


def weighted_median(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """(B, K) weighted median of each row of values (K, m) under weights (B, m); NaN where weights sum to 0."""
    out = np.full((weights.shape[0], values.shape[0]), np.nan)
    if values.shape[1] == 0:
        return out
    total = weights.sum(axis=1)
    half = total / 2
    for k, row in enumerate(values):
        order = np.argsort(row, kind="stable")
        cumulative = np.cumsum(weights[:, order], axis=1)  # (B, m)
        lower = (cumulative < half[:, None] * (1 - 1e-12)).sum(axis=1)
        upper = (cumulative <= half[:, None] * (1 + 1e-12)).sum(axis=1)
        top = row.size - 1
        value = (row[order][np.minimum(lower, top)] + row[order][np.minimum(upper, top)]) / 2
        out[:, k] = np.where(total > 0, value, np.nan)
    return out
