"""attention_enrichment: do motif sites receive more of a head's attention than matched background?
(MINTS's matched attention enrichment, with background matched by place and composition.)

Evidence: the attention each key token receives, per head (mean over real queries of the attention
probabilities; the same cached pass as qk_motif, `key_scores.extract_key_scores`), and the motif's
support: bases covered by a window scoring at or above the threshold on either strand.

Definitions (per head):
- support tokens: content tokens whose character span holds a support base; a site is a run of
  consecutive support tokens.
- matched background: content tokens that are not support and lie within `flank` nt of a support base
  (either side of a site: matched by distance from the site), in the same sequence and in the same
  composition class: GC fraction, in `composition_bins` equal bins (default one per GC count of the window,
  at most 20, so the window's GC is matched exactly), of the motif-length window placed
  by `composition_window` (default anchored at the token's first base, as qk_motif's default motif
  track; centred; overlap_max: every base an overlapping window reaches; token: the token's own bases
  only, which for single-nucleotide tokens is 0 or 1 and leaves a head that reads the GC of the bases
  around its keys free to look enriched). Tokens without such a window are left out. Within each
  (sequence, class) cell the background tokens are weighted so that together they weigh as much as the
  cell's support tokens; support tokens of cells without background are left out (counted).
- rho = (sum over support tokens of the attention they receive) / (sum over support tokens of the mean
  attention received by their cell's background): mean attention to motif-support tokens over mean
  attention to matched background tokens.
- rho: the head named by `layer`, `head`, on every sequence with a matched site; percentile bootstrap
  interval over sequences.
- max_rho: the head with the largest rho on the train split, scored on the test split, the selection
  redone in every resample; max_rho_selects_named: share of resamples whose selection is the named head.
- n_sequences (sequences with a matched site), n_sites, n_support_tokens (matched). Minimum n: 20.

Composition control. Matching on the window's GC controls a head that reads that window's GC, but not
one that reads another window (flanks, part of the site) or another composition (dinucleotides); such a
head enriches any site of the motif's composition. rho_over_shuffled = rho of the motif's sites over the
`shuffled_quantile` (0.95) of rho of the sites of `shuffles` (20) column-permuted copies of the matrix
(the same base preferences and score distribution, so sites of the same composition, support threshold
and matching), on the same sequences, inside every resample. Above 1 the head prefers the motif's sites to
those of all but a few arrangements of its columns. Named head, and max_rho_over_shuffled: the head with
the largest value on the train split, scored on the test split, the selection redone in every resample.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field

from seqclaims.core.evidence import Card, Estimate, Evidence, rounded
from seqclaims.core.families import Family, Statistic
from seqclaims.errors import InputError
from seqclaims.methods import attention as att, key_scores
from seqclaims.methods import composition as comp
from seqclaims.methods.figures import HeadMarks, head_heatmap
from seqclaims.methods.stats import percentile_interval

MIN_SEQUENCES = 20
DEFAULT_SUPPORT_PVALUE = 1e-3
MAX_COMPOSITION_BINS = 20
NAMED = ("rho", "max_rho_selects_named", "rho_over_shuffled")


class EnrichmentParams(comp.ShuffledMotifParams):
    matrix: str | None = Field(None, description="JASPAR matrix ID of the motif (default: the dataset's `matrix`)")
    release: str | None = Field(None, description="JASPAR release (default: the dataset's, else JASPAR2024)")
    pseudocount: float = Field(0.8, ge=0, description="PSSM pseudocount, split by the uniform background")
    layer: int | None = Field(None, ge=0, description="layer of the named head (statistic rho)")
    head: int | None = Field(None, ge=0, description="head of the named head (statistic rho)")
    layers: list[int] | None = Field(None, description="layers whose heads are tested (default: all)")
    key_score: Literal["attention_received", "qk_weights"] = Field(
        "attention_received", description="attention_received: the real attention probabilities; qk_weights: "
        "MINTS's weight-only reconstruction (softmax of the QK logits without positions)")
    qk_biases: bool = Field(True, description="qk_weights: include the query/key projection biases (MINTS: false)")
    support_pvalue: float | None = Field(
        None, gt=0, le=1, description=f"motif hit: window p-value on one strand at most this (default "
        f"{DEFAULT_SUPPORT_PVALUE} unless support_fraction is given)")
    support_fraction: float | None = Field(
        None, ge=0, le=1, description="motif hit: score >= min + fraction * (max - min) instead of a p-value")
    flank: int = Field(50, ge=1, description="background tokens lie within this many nt of a support base")
    composition_bins: int | None = Field(
        None, ge=1, le=MAX_COMPOSITION_BINS, description="GC-fraction classes that background is matched on (default: "
        f"one class per GC count of the window, at most {MAX_COMPOSITION_BINS})")
    composition_window: Literal["anchored", "centred", "overlap_max", "token"] = Field(
        "anchored", description="whose GC is matched: the motif-length window anchored at the token, centred on "
        "it, every base an overlapping window reaches, or the token's own bases")


def evaluate(claim, context) -> Evidence:
    params = claim.params
    att.require_named_head(claim, NAMED)
    if params.support_pvalue is not None and params.support_fraction is not None:
        raise InputError(f"{claim.path}: params: give support_pvalue or support_fraction, not both")
    inputs = context.inputs()
    dataset, model = inputs.dataset, inputs.model
    motif = att.claim_motif(claim, dataset)
    heads, named = att.claim_heads(claim, model)
    table = key_scores.extract_key_scores(model, dataset.sequences, dataset_hash=dataset.content_hash,
                                   key_score=params.key_score)
    classes = composition_classes(dataset.sequences, table.offsets, motif.length, params)
    matched = matched_sites(dataset.sequences, table.offsets, motif, classes, params)
    layers, indices = np.array(heads).T
    attention = key_scores.key_score_values(table, "probability", qk_biases=params.qk_biases)[layers, indices]
    shuffled = [att.enrichment_sums(attention, matched_sites(dataset.sequences, table.offsets, m, classes, params))
                for m in comp.shuffled_motifs(motif, params.shuffles, context.seed_for("shuffled-motifs"))]
    analysis = Enrichment(claim, context, att.enrichment_sums(attention, matched), matched, dataset.split, heads, named,
                          shuffled)
    statistics = analysis.statistics()
    evidence = Evidence(statistics=statistics, figures=[rho_heatmap(claim, analysis, model, heads)],
                        cards=[*inputs.cards, settings_card(motif, params, matched, table)])
    evidence.versions.update(inputs.versions)
    return evidence


def matched_sites(sequences, offsets, motif, classes, params) -> att.MatchedTokens:
    """The motif's support tokens and their matched background (`attention.matched_tokens`)."""
    covered = att.support_bases(sequences, motif, fraction=params.support_fraction, pvalue=support_pvalue(params))
    return att.matched_tokens(att.token_support(covered, offsets), att.distance_to_support(covered, offsets), classes,
                              flank=params.flank, bins=composition_bins(params, motif.length))


def composition_classes(sequences, offsets, motif_length: int, params) -> np.ndarray:
    """(n_seq, n_tok) GC class of each token's `composition_window` (-1: not matchable)."""
    spans = comp.window_spans(offsets, [len(s) for s in sequences], motif_length, params.composition_window)
    return comp.composition_classes(sequences, spans, composition_bins(params, motif_length))


def composition_bins(params, motif_length: int) -> int:
    return params.composition_bins or min(motif_length + 1, MAX_COMPOSITION_BINS)


def support_pvalue(params) -> float | None:
    if params.support_fraction is not None:
        return None
    return params.support_pvalue if params.support_pvalue is not None else DEFAULT_SUPPORT_PVALUE


class Enrichment:
    """rho of every head over the sequences with a matched site, with intervals and selection."""

    def __init__(self, claim, context, sums, matched, split, heads, named, shuffled=()):
        self.claim, self.context, self.heads, self.named, self.matched = claim, context, heads, named, matched
        self.eligible = np.flatnonzero(matched.support.sum(axis=1) > 0)
        self.sums = sums[self.eligible]
        # (n, K, 2 (S + 1)): the motif's sums, then each shuffled matrix's, on the same sequences
        self.with_shuffles = np.concatenate([sums, *shuffled], axis=2)[self.eligible] if len(shuffled) else None
        split = split[self.eligible]
        self.train, self.test = np.flatnonzero(split == "train"), np.flatnonzero(split == "test")
        self.n = len(self.eligible)
        self.rho = att.ratio_from_sums(self.sums.sum(axis=0))
        if self.n:
            counts = att.split_counts(self.n, claim.resamples, context.seed_for("bootstrap"))
            low, high = percentile_interval(att.ratio_from_sums(att.weighted_sums(self.sums, counts)), claim.ci_level)
            self.low, self.high = np.atleast_1d(low), np.atleast_1d(high)
        else:
            self.low = self.high = np.full(len(heads), np.nan)

    def statistics(self) -> dict[str, Estimate]:
        counts = {"n_sequences": self.n, "n_sites": int(self.matched.n_sites[self.eligible].sum()),
                  "n_support_tokens": int(self.matched.support.sum())}
        out = {name: Estimate(float(v), float(v), float(v), self.n, kind="count") for name, v in counts.items()}
        out["rho"] = self.named_rho()
        out.update(self.selected())
        if self.with_shuffles is not None:
            out.update(self.over_shuffled())
        return out

    def over_shuffled(self) -> dict[str, Estimate]:
        """rho_over_shuffled of the named head (every eligible sequence) and of the head selected on train."""
        quantile = self.claim.params.shuffled_quantile

        def finish(sums):
            return comp.over_shuffled_from_sums(sums, quantile)

        detail = {"shuffles": self.claim.params.shuffles, "shuffled_quantile": quantile}
        out = {}
        if self.named is None:
            out["rho_over_shuffled"] = Estimate.missing("the claim names no head (params.layer, params.head)")
        elif self.n:
            k = self.named
            counts = att.split_counts(self.n, self.claim.resamples, self.context.seed_for("bootstrap"))
            value = finish(self.with_shuffles.sum(axis=0)[None])[0, k]
            low, high = percentile_interval(finish(att.weighted_sums(self.with_shuffles, counts))[:, k],
                                            self.claim.ci_level)
            out["rho_over_shuffled"] = self.estimate(value, low, high, self.n, detail={
                "layer": self.heads[k][0], "head": self.heads[k][1], **detail})
        else:
            out["rho_over_shuffled"] = self.estimate(np.nan, np.nan, np.nan, 0)
        chosen = att.select_head(self.with_shuffles, finish, self.train, self.test, self.claim, self.context,
                                 units="matched sites", statistic="rho_over_shuffled")
        if isinstance(chosen, str):
            out["max_rho_over_shuffled"] = Estimate.missing(chosen, n=len(self.test))
            return out
        out["max_rho_over_shuffled"] = self.estimate(chosen.estimate, chosen.low, chosen.high, len(self.test), detail={
            **att.selection_detail(self.heads, chosen, len(self.train), len(self.test), by="rho_over_shuffled"),
            **detail})
        return out

    def estimate(self, value, low, high, n, **kwargs) -> Estimate:
        if n == 0:
            return Estimate.missing("no sequence has a motif site with matched background")
        if not np.isfinite(value):
            return Estimate.missing("no attention to the matched background", n=n)
        return Estimate(float(value), float(low), float(high), n, min_n=MIN_SEQUENCES, **kwargs)

    def named_rho(self) -> Estimate:
        if self.named is None:
            return Estimate.missing("the claim names no head (params.layer, params.head)")
        k = self.named
        return self.estimate(self.rho[k], self.low[k], self.high[k], self.n,
                             detail={"layer": self.heads[k][0], "head": self.heads[k][1],
                                     "unmatched_support_tokens": self.matched.n_unmatched,
                                     "per_head": self.table()})

    def selected(self) -> dict[str, Estimate]:
        chosen = att.select_head(self.sums, att.ratio_from_sums, self.train, self.test, self.claim, self.context,
                                 units="matched sites", statistic="rho")
        if isinstance(chosen, str):
            missing = Estimate.missing(chosen, n=len(self.test))
            return {"max_rho": missing, "max_rho_selects_named": missing}
        detail = {**att.selection_detail(self.heads, chosen, len(self.train), len(self.test)), "per_head": self.table()}
        return {"max_rho": self.estimate(chosen.estimate, chosen.low, chosen.high, len(self.test), detail=detail),
                "max_rho_selects_named": att.selects_named(chosen, self.named, self.claim, len(self.train),
                                                           MIN_SEQUENCES)}

    def table(self) -> list[dict]:
        return [{"layer": layer, "head": head, "rho": rounded(self.rho[k], 4), "ci_low": rounded(self.low[k], 4),
                 "ci_high": rounded(self.high[k], 4)} for k, (layer, head) in enumerate(self.heads)]



def rho_heatmap(claim, analysis: Enrichment, model, heads):
    grid, low, high = (att.head_grid(values, heads, model) for values in (analysis.rho, analysis.low, analysis.high))
    caption = f"rho per head on the {analysis.n} sequences with a matched motif site (colour: log2 rho)."
    return head_heatmap(grid, title=f"{claim.id}: rho per head", label="rho", log2=True, caption=caption,
                        marks=HeadMarks(("rho", "max_rho"), low, high))


def settings_card(motif, params, matched, table) -> Card:
    support = (f"window p <= {support_pvalue(params):g} per strand" if params.support_fraction is None
               else f"score >= min + {params.support_fraction} (max - min)")
    return Card("attention_enrichment settings", {
        "motif": f"{motif.matrix_id} {motif.name} ({motif.length} bp, {motif.release})",
        "support": support, "flank_nt": params.flank, "composition_bins": composition_bins(params, motif.length),
        "composition_window": params.composition_window + ("" if params.composition_window == "token"
                                                           else f" ({motif.length} nt)"),
        "key_score": params.key_score, "unmatched_support_tokens": matched.n_unmatched,
        "activations": table.source})


FAMILY = Family(
    name="attention_enrichment",
    whole_sequences=True,
    summary="per-head ratio of the attention received by motif-support tokens to that received by "
            "background tokens matched by distance from the site and by composition",
    params=EnrichmentParams,
    statistics={
        "rho": Statistic("mean attention to motif-support tokens / mean attention to matched background tokens, "
                         "named head; bootstrap interval over sequences"),
        "max_rho": Statistic("rho of the head selected on the train split, scored on the test split; selection "
                             "redone in every resample; the head is in the detail"),
        "max_rho_selects_named": Statistic("share of resamples whose selection is the named head"),
        "rho_over_shuffled": Statistic("rho of the named head over the shuffled_quantile of its rho on the sites of "
                                       "column-permuted copies of the matrix; above 1: motif-specific"),
        "max_rho_over_shuffled": Statistic("rho_over_shuffled of the head with the largest one on the train split, "
                                           "scored on the test split; selection redone in every resample",
                                           selection=True),
        "n_sequences": Statistic("sequences with a matched motif site", kind="count"),
        "n_sites": Statistic("motif sites (runs of support tokens) in those sequences", kind="count"),
        "n_support_tokens": Statistic("support tokens with matched background", kind="count"),
    },
    evaluate=evaluate,
    min_n=MIN_SEQUENCES,
    example={"model": "planted",
             "data": {"dataset": "motif_sites", "matrix": "MA0108.3", "n": 400},
             "params": {"layer": 0, "head": 2, "flank": 50},
             "criteria": [{"statistic": "rho", "op": ">=", "threshold": 2.0},
                          {"statistic": "rho_over_shuffled", "op": ">", "threshold": 1.0}]},
)
