"""head_ablation: does removing a head's contribution hurt the target metric, and more for heads associated
with a feature than for uninformative heads of the same layer? (the attention-heads paper's ablation test,
with the ablation placed before the output projection rather than on a slice of the post-LayerNorm stream)

Evidence. Held-out (test split) sequences of the claim's dataset (all of them, or the positives with
`sequences: positives`). A head is ablated by replacing its output before the attention output projection
(``layer.{l}.attn.head_out``) at every token: by zeros (`ablation: zero`) or by its mean over the content
tokens of up to `mean_sequences` train-split sequences (`ablation: mean`, the default: a head with a large
constant output is then not mistaken for an important one). Every head of every candidate layer is ablated
in turn, all heads of a layer in one batched pass.

Target metric f (params.metric; default ``probe``): as in activation_patching (a probe fitted on the train
split, on mean-pooled ``layer.{probe_layer}.resid_post``; or ``masked_logprob``; or ``token_logit``).
Per sequence and head, delta = s * (f_ablated - f), where s = +1 for label-1 sequences and -1 for label-0
ones when `sign_by_label` (default for probe and token_logit: a negative delta moves the metric against the
sequence's label, i.e. ablation hurts), else s = 1 (default for masked_logprob: a negative delta lowers the
log-probability of the true token).

Association (selection of heads, on the TRAIN split only): per head, from the attention each token receives
(mean over real queries of the attention probabilities; the cached pass shared with qk_motif), against a
per-token annotation: ``motif`` (tokens covering a base of a motif window scoring at or above the one-strand
p-value threshold `support_pvalue`, default 1e-3, of `matrix`, default the dataset's) or a dataset track
(e.g. ``donor``; a token is annotated when any of its bases is).

- ``attention_enrichment`` (default): mean attention received by annotated content tokens / mean attention
  received by the other content tokens, pooled over the train sequences; the association is log2 of it.
- ``attention_r``: Pearson r, over content tokens of the train sequences, between the log of the attention
  received and the annotation (0/1), both centred within each sequence.

The associated heads are the `n_associated` candidate heads with the largest association; each is paired
with the uninformative head of its own layer: the other head whose association is closest to none (smallest
|association|).

Statistics (percentile bootstrap over test sequences at the claim's ci_level; n = test sequences):

- ``delta``: the named head's mean delta.
- ``associated_minus_uninformative``: mean over sequences of (mean over associated heads of delta minus the
  delta of its uninformative partner), paired within each sequence. Negative: ablating the associated heads
  hurts more. The heads are chosen again in every resample (`stats.select_and_score`): train and test
  sequences are resampled each within their split, the association is recomputed on the resampled train
  sequences, and the heads it picks are compared on the resampled test sequences. A head with an undefined
  association is neither chosen nor a partner; a resample without n_associated defined heads, or in which one
  has no partner, is undefined and counts against the NaN limit.
- ``n_sequences``: test sequences ablated (count).

Minimum n: 20 sequences. Figures: layer x head heatmaps of the mean delta and of the association.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field

from seqclaims.core.evidence import Card, Estimate, Evidence, rounded, token_annotation
from seqclaims.core.families import Family, Statistic
from seqclaims.core.schema import StrictModel
from seqclaims.errors import InputError
from seqclaims.methods import attention as att, key_scores
from seqclaims.methods import interventions as iv
from seqclaims.methods.figures import HeadMarks, head_heatmap
from seqclaims.methods.stats import bootstrap, select_and_score

MIN_SEQUENCES = 20
NAMED = ("delta",)


class AblationParams(StrictModel):
    layer: int | None = Field(None, ge=0, description="layer of the named head (statistic delta)")
    head: int | None = Field(None, ge=0, description="head of the named head")
    layers: list[int] | None = Field(None, description="layers whose heads are ablated (default: all)")
    ablation: Literal["mean", "zero"] = Field(
        "mean", description="replace the head's output before the output projection by its train-split mean "
        "over content tokens, or by zeros")
    mean_sequences: int = Field(256, ge=1, description="train sequences (seeded subset) the mean is taken over")
    sequences: Literal["all", "positives"] = Field("all", description="which test sequences are ablated")
    max_sequences: int | None = Field(None, ge=1, description="at most this many test sequences (seeded subset)")
    sign_by_label: bool | None = Field(
        None, description="multiply deltas by +1 (label 1) / -1 (label 0); default true for probe and token_logit, "
        "false for masked_logprob")
    association: Literal["attention_enrichment", "attention_r"] = Field(
        "attention_enrichment", description="how heads are associated with the annotation (train split)")
    annotation: str = Field("motif", description="motif (support of `matrix`), or a dataset track such as donor")
    matrix: str | None = Field(None, description="JASPAR matrix of the motif annotation (default: the dataset's)")
    release: str | None = Field(None, description="JASPAR release (default: the dataset's, else JASPAR2024)")
    pseudocount: float = Field(0.8, ge=0, description="PSSM pseudocount, split by the uniform background")
    support_pvalue: float = Field(iv.DEFAULT_SITE_PVALUE, gt=0, le=1,
                                  description="motif support: window p-value on one strand at most this")
    n_associated: int = Field(1, ge=1, description="how many of the most associated heads are compared")
    metric: iv.MetricSpec = Field(default_factory=iv.MetricSpec, description="the target metric f")


def evaluate(claim, context) -> Evidence:
    params = claim.params
    att.require_named_head(claim, NAMED)
    inputs = context.inputs()
    model, dataset = inputs.model, inputs.dataset
    heads, named = att.claim_heads(claim, model)
    layers = sorted({layer for layer, _ in heads})
    try:
        target = iv.target_metric(params.metric, inputs, seed=claim.seed)
        association = head_association(claim, inputs, heads)
        rows = test_rows(claim, dataset, context)
        means = reference_means(claim, inputs, layers, context) if params.ablation == "mean" else None
        run = iv.ablation_effects(model, target, [dataset.sequences[r] for r in rows], layers, means=means)
    except InputError as error:
        raise InputError(f"{claim.path}: {error}") from None
    signs = label_signs(claim, np.asarray(dataset.labels)[rows])
    deltas = signs * (run.f_ablated.reshape(-1, len(rows)) - run.f_base)  # (K, n), layer-major like heads
    analysis = Ablation(claim, context, deltas, association, heads, named)
    evidence = Evidence(statistics=analysis.statistics(), figures=analysis.figures(model),
                        cards=[*inputs.cards, settings_card(claim, target, len(rows))])
    evidence.versions.update(inputs.versions)
    return evidence


def test_rows(claim, dataset, context) -> np.ndarray:
    params = claim.params
    keep = dataset.split == "test"
    if params.sequences == "positives":
        keep &= np.asarray(dataset.labels) == 1
    rows = np.flatnonzero(keep)
    if params.max_sequences is not None and len(rows) > params.max_sequences:
        rows = np.sort(context.rng("test-subset").choice(rows, size=params.max_sequences, replace=False))
    return rows


def label_signs(claim, labels: np.ndarray) -> np.ndarray:
    """(n,) +1 / -1 by label when deltas are signed by label, else +1."""
    signed = claim.params.sign_by_label
    if signed is None:
        signed = claim.params.metric.kind != "masked_logprob"
    return np.where(labels == 1, 1.0, -1.0) if signed else np.ones(len(labels))


def reference_means(claim, inputs, layers: list[int], context) -> np.ndarray:
    """(n_layers, n_heads, d_head) mean head outputs over content tokens of train sequences."""
    train = inputs.dataset.indices("train")
    count = min(claim.params.mean_sequences, len(train))
    chosen = np.sort(context.rng("mean-sequences").choice(train, size=count, replace=False))
    return iv.head_means(inputs.model, [inputs.dataset.sequences[r] for r in chosen], layers)


def head_association(claim, inputs, heads) -> "Association":
    """(K,) association of every candidate head with the annotation, on the train split."""
    model, dataset = inputs.model, inputs.dataset
    table = key_scores.extract_key_scores(model, dataset.sequences, dataset_hash=dataset.content_hash,
                                   key_score="attention_received")
    annotated = token_flags(claim, dataset, table.offsets)  # (n_seq, n_tok) bool
    content = ~table.special
    train = dataset.split == "train"
    received = key_scores.key_score_values(table, "probability")  # (n_layers, n_heads, n_seq, n_tok)
    layers, indices = np.array(heads).T
    values = received[layers, indices][:, train]  # (K, n_train, n_tok)
    flags, content = annotated[train] & content[train], content[train]
    if not flags.any():
        raise InputError(f"params.annotation: no train-split token carries the annotation {claim.params.annotation!r}")
    if claim.params.association == "attention_enrichment":
        return association_enrichment(values, flags, content)
    return association_r(values, flags, content)


def token_flags(claim, dataset, offsets: np.ndarray) -> np.ndarray:
    """(n_seq, n_tok) bool: tokens covering an annotated base."""
    params = claim.params
    if params.annotation == "motif":
        from seqclaims.inputs.motifs import DEFAULT_RELEASE, load_motif

        recorded = dataset.card.get("motif") or {}
        matrix = params.matrix or recorded.get("matrix")
        if not matrix:
            raise InputError(f"params.matrix: the motif annotation needs a JASPAR matrix; dataset {dataset.name} has none")
        motif = load_motif(matrix, release=params.release or recorded.get("release") or DEFAULT_RELEASE,
                           pseudocount=params.pseudocount)
        tracks = att.support_bases(dataset.sequences, motif, pvalue=params.support_pvalue)
    elif params.annotation in dataset.tracks:
        tracks = dataset.tracks[params.annotation]
    else:
        raise InputError(f"params.annotation: {params.annotation!r} is neither 'motif' nor a track of dataset "
                         f"{dataset.name} ({', '.join(sorted(dataset.tracks))})")
    values = token_annotation([np.asarray(t, dtype=float) for t in tracks], offsets, "any")
    return np.nan_to_num(values, nan=0.0) > 0


class Association:
    """Per-head association on the train sequences, kept as per-sequence sums so that it can be recomputed on
    any resample of them. parts: (n_train, C, K) sums per sequence; combine: (B, C, K) weighted sums -> (B, K)."""

    def __init__(self, parts: np.ndarray, combine):
        self.parts, self.combine = parts, combine

    @classmethod
    def fixed(cls, values: np.ndarray) -> "Association":
        """An association given outright: one placeholder train unit, the same values under every resample."""
        values = np.asarray(values, dtype=np.float64)
        return cls(np.zeros((1, 1, values.size)), lambda sums: np.broadcast_to(values, (sums.shape[0], values.size)))

    @property
    def n_units(self) -> int:
        return self.parts.shape[0]

    def values(self, weights: np.ndarray | None = None) -> np.ndarray:
        """(B, K) association under train-sequence weights (B, n_train); None: the train split as it is."""
        w = np.ones((1, self.n_units)) if weights is None else weights
        with np.errstate(divide="ignore", invalid="ignore"):
            return self.combine(np.einsum("bn,nck->bck", w, self.parts))

    @property
    def full(self) -> np.ndarray:
        return self.values()[0]


def association_enrichment(values: np.ndarray, flags: np.ndarray, content: np.ndarray) -> Association:
    """log2 of mean attention received by annotated tokens over that of other content tokens.
    values (K, n, n_tok); flags, content (n, n_tok) bool."""
    other = content & ~flags
    filled = np.nan_to_num(values)
    on, off = (filled * flags).sum(axis=2).T, (filled * other).sum(axis=2).T  # (n, K)
    counts = np.stack([flags.sum(axis=1), other.sum(axis=1)], axis=1).astype(float)  # (n, 2)
    parts = np.stack([on, np.broadcast_to(counts[:, :1], on.shape), off, np.broadcast_to(counts[:, 1:], on.shape)],
                     axis=1)

    def combine(s: np.ndarray) -> np.ndarray:
        return np.log2((s[:, 0] / s[:, 1]) / (s[:, 2] / np.maximum(s[:, 3], 1)))

    return Association(parts, combine)


def association_r(values: np.ndarray, flags: np.ndarray, content: np.ndarray) -> Association:
    """Pearson r of log attention received with the annotation, both centred within each sequence."""
    logged = np.log(np.maximum(np.nan_to_num(values), key_scores.PROBABILITY_FLOOR))
    weights = content.astype(float)
    count = np.maximum(weights.sum(axis=1, keepdims=True), 1)

    def centred(x):
        return (x - (x * weights).sum(axis=-1, keepdims=True) / count) * weights

    x, y = centred(logged), centred(flags.astype(float))[None]
    cross, xx = (x * y).sum(axis=2).T, (x * x).sum(axis=2).T  # (n, K)
    parts = np.stack([cross, xx, np.broadcast_to((y * y).sum(axis=2).T, cross.shape)], axis=1)

    def combine(s: np.ndarray) -> np.ndarray:
        return s[:, 0] / np.sqrt(s[:, 1] * s[:, 2])

    return Association(parts, combine)


def uninformative_partners(association: np.ndarray, heads, chosen: np.ndarray) -> np.ndarray:
    """(len(chosen),) for each chosen head, the unchosen head of its layer with the smallest |association|
    (a head with an undefined association is never a partner); empty when a chosen head has none."""
    layers = np.array([layer for layer, _ in heads])
    candidates = ~np.isin(np.arange(len(heads)), chosen) & ~np.isnan(association)
    partners = []
    for k in chosen:
        others = np.flatnonzero((layers == layers[k]) & candidates)
        if not len(others):
            return np.zeros(0, dtype=np.int64)
        partners.append(others[np.argmin(np.abs(association[others]))])
    return np.array(partners, dtype=np.int64)


class Ablation:
    """Deltas (K, n) of every candidate head on the test sequences, with intervals."""

    def __init__(self, claim, context, deltas, association, heads, named):
        if not isinstance(association, Association):
            association = Association.fixed(association)
        self.claim, self.context, self.deltas, self.heads, self.named = claim, context, deltas, heads, named
        self.associations, self.association = association, association.full
        self.n = deltas.shape[1]

    def statistics(self) -> dict[str, Estimate]:
        out = {"n_sequences": Estimate(float(self.n), float(self.n), float(self.n), self.n, kind="count")}
        out["delta"] = self.named_delta()
        out["associated_minus_uninformative"] = self.contrast()
        return out

    def mean_interval(self, per_sequence: np.ndarray, purpose: str):
        def statistic(weights):
            if weights is None:
                return np.array([per_sequence.mean()])
            return weights @ per_sequence / weights.sum(axis=1)

        return bootstrap(statistic, self.n, n_resamples=self.claim.resamples, seed=self.context.seed_for(purpose),
                         level=self.claim.ci_level)

    def named_delta(self) -> Estimate:
        if self.named is None:
            return Estimate.missing("the claim names no head (params.layer, params.head)")
        if self.n == 0:
            return Estimate.missing("no test sequences")
        interval = self.mean_interval(self.deltas[self.named], "bootstrap-delta")
        layer, head = self.heads[self.named]
        return Estimate(float(interval.estimate), float(interval.low), float(interval.high), self.n, min_n=MIN_SEQUENCES,
                        detail={"layer": layer, "head": head, "per_head": self.table()}, samples=interval.samples)

    def contrast(self) -> Estimate:
        if self.n == 0:
            return Estimate.missing("no test sequences")
        chosen, partners = self.selection(self.association)
        if len(chosen) < self.claim.params.n_associated:
            return Estimate.missing(f"fewer than {self.claim.params.n_associated} heads have a defined association")
        if len(partners) != len(chosen):
            return Estimate.missing("an associated head has no other head of its layer with a defined association: "
                                    "no uninformative head to compare")
        seeds = (self.context.seed_for("bootstrap-contrast-train"), self.context.seed_for("bootstrap-contrast"))
        contrast = select_and_score(self.associations.values, self.mean_deltas, self.associations.n_units, self.n,
                                    choose=self.choose, seeds=seeds, n_resamples=self.claim.resamples,
                                    level=self.claim.ci_level)
        label = att.head_label
        detail = {"associated": [label(self.heads[k]) for k in chosen],
                  "uninformative": [label(self.heads[k]) for k in partners],
                  "association": self.claim.params.association, "selected_on": "train split",
                  "same_heads_chosen_in_resamples": round(contrast.same_choice, 4),
                  "per_head": self.table()}
        return Estimate(float(contrast.estimate), float(contrast.low), float(contrast.high), self.n,
                        min_n=MIN_SEQUENCES, detail=detail, samples=contrast.samples)

    def mean_deltas(self, weights: np.ndarray | None) -> np.ndarray:
        """(B, K) mean delta of every head over the test sequences under their weights (B, n); None: (1, K)."""
        if weights is None:
            return self.deltas.mean(axis=1)[None]
        return weights @ self.deltas.T / weights.sum(axis=1)[:, None]

    def choose(self, associations: np.ndarray) -> np.ndarray:
        """(B, K) coefficients of the contrast each row of associations (B, K) chooses: +1/n on the n most
        associated heads, -1/n on each one's uninformative partner; a row of zeros where no such choice exists."""
        n = self.claim.params.n_associated
        out = np.zeros(associations.shape)
        for row, association in zip(out, associations):
            chosen, partners = self.selection(association)
            if len(chosen) == n and len(partners) == n:
                np.add.at(row, chosen, 1.0 / n)
                np.add.at(row, partners, -1.0 / n)
        return out

    def selection(self, association: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The `n_associated` most associated heads (a head with an undefined association is never chosen; fewer
        when fewer are defined) and their uninformative partners."""
        defined = np.flatnonzero(~np.isnan(association))
        chosen = defined[np.argsort(-association[defined], kind="stable")][: self.claim.params.n_associated]
        return chosen, uninformative_partners(association, self.heads, chosen)

    def table(self) -> list[dict]:
        means = self.deltas.mean(axis=1) if self.n else np.full(len(self.heads), np.nan)
        return [{"layer": layer, "head": head, "delta": rounded(means[k]), "association": rounded(self.association[k])}
                for k, (layer, head) in enumerate(self.heads)]

    def figures(self, model) -> list:
        if self.n == 0:
            return []
        deltas = att.head_grid(self.deltas.mean(axis=1), self.heads, model)
        association = att.head_grid(self.association, self.heads, model)
        claim = self.claim
        return [
            head_heatmap(deltas, title=f"{claim.id}: mean ablation delta per head", label="delta",
                         caption=f"Mean signed change of the target metric over {self.n} test sequences when the "
                                 f"head is {claim.params.ablation}-ablated (negative: ablation hurts).",
                         marks=HeadMarks(("delta",))),
            head_heatmap(association, title=f"{claim.id}: association per head (train split)",
                         label=claim.params.association,
                         caption=f"{claim.params.association} with the {claim.params.annotation} annotation on "
                                 "the train split (log2 ratio for attention_enrichment); selects the heads compared."),
        ]


def settings_card(claim, target: iv.TargetMetric, n: int) -> Card:
    params = claim.params
    return Card("head_ablation settings", {
        "metric": target.describe(), "ablation": f"{params.ablation}, before the output projection, every token",
        "sequences": f"test split, {params.sequences} ({n})", "association": params.association,
        "annotation": params.annotation, "n_associated": params.n_associated,
        "sign_by_label": bool(label_signs(claim, np.array([0]))[0] < 0)})



FAMILY = Family(
    name="head_ablation",
    whole_sequences=True,
    summary="change of a target metric on held-out sequences when a head's output is ablated before the output "
            "projection; heads associated with a feature against uninformative heads of the same layer",
    params=AblationParams,
    statistics={
        "delta": Statistic("named head: mean signed change of the metric under ablation; bootstrap over sequences",
                           init=True),
        "associated_minus_uninformative": Statistic(
            "mean over sequences of delta(associated head) - delta(least associated head of the same layer); heads "
            "selected on the train split; paired bootstrap over test sequences", selection=True, init=True, control=True),
        "n_sequences": Statistic("test sequences ablated", kind="count"),
    },
    evaluate=evaluate,
    min_n=MIN_SEQUENCES,
    example={"model": "planted",
             "data": {"dataset": "motif_sites", "matrix": "MA0108.3", "n": 600},
             "params": {"layers": [0], "ablation": "mean", "metric": {"kind": "token_logit", "token": "TATAAAA"}},
             "criteria": [{"statistic": "associated_minus_uninformative", "op": "<", "threshold": 0.0},
                          {"statistic": "associated_minus_uninformative_minus_init", "op": "<", "threshold": 0.0}]},
)
