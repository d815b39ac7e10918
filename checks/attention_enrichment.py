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

Log scale, per site (`methods.enrichment`). rho is a ratio of sums: the sites and sequences with the most
attention dominate it, and it explodes when a sharp head leaves its background with almost none.
- reference attention of a token: the mean attention received by the matched background tokens of its
  (sequence, composition class) cell (the matching above); a token whose cell has none is not usable.
- log ratio of a site: log(max(a, f) / max(r, f)), a = mean attention received by the site's usable tokens, r =
  mean of their reference attentions, f = floor_fraction (0.01) / (content tokens of the sequence): a stated
  fraction of what every key would receive under uniform attention. Natural log; a site whose a or r hits the
  floor is counted per head (detail sites_at_floor).
- log_rho: the mean of the site log ratios over the sites of the eligible sequences (as a ratio of
  per-sequence sums: total and number of sites), named head; percentile bootstrap interval over sequences,
  the same resamples as rho. max_log_rho: the head with the largest log_rho on the train split, scored on the
  test split, the selection redone in every resample (`stats.select_and_score`). log(1.5) = 0.405 is a
  1.5-fold enrichment.
- composition-matched non-sites of a site: windows of the site's number of consecutive tokens in its
  sequence, with no support token (every motif window inside them scores below the support threshold) and a
  usable token, whose composition distance to the site is at most `composition_tolerance` (0.3; distance: the
  larger of the total variation distances between base fractions and between dinucleotide fractions of the
  two windows' bases, 0 for the same composition) and whose motif score (best both-strand score of the
  motif windows starting in its tokens) is at most the `nonsite_quantile` (0.5) quantile of the scores of
  those composition-matched windows: the less motif-like arrangements of the site's composition. The
  nearest in composition are taken first (ties: nearest to the site), non-overlapping, at most
  `composition_neighbours` (5). Each non-site's log ratio is computed as a site's.
- log_rho_over_composition: mean over sites with a usable non-site of (site log ratio minus the mean log
  ratio of its non-sites), named head, same resamples; max_log_rho_over_composition: selected as max_log_rho.
  A head that reads a window's composition gives about 0; a detector of the motif's arrangement gives > 0.
  Detail: matched_sites, non_sites, mean_composition_distance, sites and non-sites at the floor.
- init: rho, max_rho, log_rho, max_log_rho and the two composition-controlled statistics are also computed on
  a randomly initialised copy of the model (<name>_init, <name>_minus_init, paired over the resamples).

Composition control. Matching on the window's GC controls a head that reads that window's GC, but not
one that reads another window (flanks, part of the site) or another composition (dinucleotides); such a
head enriches any site of the motif's composition. rho_over_shuffled = rho of the motif's sites over the
`shuffled_quantile` (0.95) of rho of the sites of `shuffles` (20) column-permuted copies of the matrix
(the same base preferences and score distribution, so sites of the same composition, support threshold
and matching), on the same sequences, inside every resample. Above 1 the head prefers the motif's sites to
those of all but a few arrangements of its columns. Named head, and max_rho_over_shuffled: the head with
the largest value on the train split, scored on the test split, the selection redone in every resample.
shuffled_similarity: the mean over the shuffled matrices of the Pearson correlation of their flattened 4 x L
log-odds with the motif's (no interval: fixed by the matrix and the shuffle seed; also in rho_over_shuffled's
detail). Permuting the columns of a low-complexity matrix changes little, so its shuffled sites are nearly the
motif's and the contrast is weak: above 0.5 the evidence carries a note.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
from pydantic import Field

from seqclaims.core.evidence import Card, Estimate, Evidence, rounded
from seqclaims.core.families import Family, Statistic
from seqclaims.errors import InputError
from seqclaims.methods import attention as att, key_scores
from seqclaims.methods import composition as comp
from seqclaims.methods import enrichment as enr
from seqclaims.methods.figures import HeadMarks, head_heatmap
from seqclaims.methods.stats import percentile_interval

MIN_SEQUENCES = 20
DEFAULT_SUPPORT_PVALUE = 1e-3
MAX_COMPOSITION_BINS = 20
DEFAULT_FLOOR_FRACTION = 0.01
NAMED = ("rho", "max_rho_selects_named", "rho_over_shuffled", "log_rho", "log_rho_over_composition")
SIMILAR_SHUFFLES = 0.5  # mean similarity of the shuffled matrices above which the evidence carries a note


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
    floor_fraction: float = Field(
        DEFAULT_FLOOR_FRACTION, gt=0, le=1, description="log_rho: attention means below this fraction of uniform "
        "attention (1 / content tokens of the sequence) are raised to it before the log")
    nonsite_quantile: float = Field(
        0.5, ge=0, le=1, description="composition-matched non-sites: motif score (best both-strand window starting "
        "in them) at most this quantile of the scores of the windows of the site's composition")
    composition_tolerance: float = Field(
        0.3, ge=0, le=1, description="composition-matched non-sites: largest composition distance to the site "
        "(total variation distance of base and of dinucleotide fractions, the larger)")
    composition_neighbours: int = Field(5, ge=1, le=50, description="composition-matched non-sites per site, at most")


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
    layers, indices = np.array(heads).T
    attention = key_scores.key_score_values(table, "probability", qk_biases=params.qk_biases)[layers, indices]
    analysis = enrichment_analysis(claim, context, dataset.sequences, table.offsets, attention, dataset.split, motif,
                                   heads, named)
    statistics = analysis.statistics()
    evidence = Evidence(statistics=statistics, figures=[rho_heatmap(claim, analysis, model, heads)],
                        cards=[*inputs.cards, settings_card(motif, params, analysis.matched, table)],
                        notes=analysis.notes())
    evidence.versions.update(inputs.versions)
    return evidence


def enrichment_analysis(claim, context, sequences, offsets, attention, split, motif, heads, named) -> "Enrichment":
    """Every statistic's inputs from the attention each key receives ((K, n_seq, n_tok), NaN at special tokens)."""
    params = claim.params
    classes = composition_classes(sequences, offsets, motif.length, params)
    support, distance = support_and_distance(sequences, offsets, motif, params)
    matched = matched_from(support, distance, classes, params, motif.length)
    shuffles = comp.shuffled_motifs(motif, params.shuffles, context.seed_for("shuffled-motifs"))
    shuffled = [att.enrichment_sums(attention, matched_sites(sequences, offsets, m, classes, params)) for m in shuffles]
    per_site = site_enrichment(sequences, offsets, attention, motif, classes, support, matched, params)
    return Enrichment(claim, context, att.enrichment_sums(attention, matched), matched, split, heads, named, shuffled,
                      per_site=per_site, shuffled_similarity=enr.matrix_similarity(motif, shuffles))


def matched_sites(sequences, offsets, motif, classes, params) -> att.MatchedTokens:
    """The motif's support tokens and their matched background (`attention.matched_tokens`)."""
    return matched_from(*support_and_distance(sequences, offsets, motif, params), classes, params, motif.length)


def matched_from(support, distance, classes, params, motif_length: int) -> att.MatchedTokens:
    return att.matched_tokens(support, distance, classes, flank=params.flank,
                              bins=composition_bins(params, motif_length))


def support_and_distance(sequences, offsets, motif, params) -> tuple[np.ndarray, np.ndarray]:
    """(n_seq, n_tok) support tokens and each token's distance in nt to the nearest support base."""
    covered = att.support_bases(sequences, motif, fraction=params.support_fraction, pvalue=support_pvalue(params))
    return att.token_support(covered, offsets), att.distance_to_support(covered, offsets)


def site_enrichment(sequences, offsets, attention, motif, classes, support, matched, params) -> enr.SiteEnrichment:
    """Per-site log ratios and composition-controlled differences (`methods.enrichment`) of every head.

    support: (n_seq, n_tok) support tokens (`support_and_distance`); sites are its runs among tokens with a
    composition class, as rho's n_sites counts them."""
    reference = enr.background_reference(attention, matched, classes, composition_bins(params, motif.length))
    content = offsets[..., 1] > offsets[..., 0]
    totals = enr.WindowTotals(attention, reference, content, params.floor_fraction)
    sites = enr.site_runs(support & (classes >= 0))
    start_scores = att.ideal_logits(att.window_scores(sequences, motif), offsets, motif.length, "overlap_max")
    matches = enr.composition_matches(sequences, offsets, sites, support | ~content, totals.usable, start_scores,
                                      tolerance=params.composition_tolerance, quantile=params.nonsite_quantile,
                                      neighbours=params.composition_neighbours)
    return enr.site_enrichment(totals, sites, matches, len(sequences))


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
    """rho, log_rho and their controls for every head over the sequences with a matched site, with intervals
    and selection. per_site: `methods.enrichment.SiteEnrichment` (the log-scale statistics); None leaves them
    out. shuffled_similarity: (S,) similarity of each shuffled matrix to the motif's."""

    def __init__(self, claim, context, sums, matched, split, heads, named, shuffled=(), *, per_site=None,
                 shuffled_similarity=None):
        self.claim, self.context, self.heads, self.named, self.matched = claim, context, heads, named, matched
        self.per_site, self.shuffled_similarity = per_site, shuffled_similarity
        self.eligible = np.flatnonzero(matched.support.sum(axis=1) > 0)
        self.sums = sums[self.eligible]
        # (n, K, 2 (S + 1)): the motif's sums, then each shuffled matrix's, on the same sequences
        self.with_shuffles = np.concatenate([sums, *shuffled], axis=2)[self.eligible] if len(shuffled) else None
        split = split[self.eligible]
        self.train, self.test = np.flatnonzero(split == "train"), np.flatnonzero(split == "test")
        self.n = len(self.eligible)
        self.rho = att.ratio_from_sums(self.sums.sum(axis=0))
        self.counts = att.split_counts(self.n, claim.resamples, context.seed_for("bootstrap")) if self.n else None
        self.samples = self.resampled(self.sums, att.ratio_from_sums)
        if self.n:
            low, high = percentile_interval(self.samples, claim.ci_level)
            self.low, self.high = np.atleast_1d(low), np.atleast_1d(high)
        else:
            self.low = self.high = np.full(len(heads), np.nan)

    def resampled(self, sums, finish) -> np.ndarray:
        """(B, K) statistic of every head in each bootstrap resample of the eligible sequences."""
        if not self.n:
            return np.full((self.claim.resamples, len(self.heads)), np.nan)
        return finish(att.weighted_sums(sums, self.counts))

    def statistics(self) -> dict[str, Estimate]:
        counts = {"n_sequences": self.n, "n_sites": int(self.matched.n_sites[self.eligible].sum()),
                  "n_support_tokens": int(self.matched.support.sum())}
        out = {name: Estimate(float(v), float(v), float(v), self.n, kind="count") for name, v in counts.items()}
        out["rho"] = self.named_rho()
        out.update(self.selected())
        if self.with_shuffles is not None:
            out.update(self.over_shuffled())
            out["shuffled_similarity"] = self.similarity()
        if self.per_site is not None:
            out.update(self.log_scale())
        return out

    def notes(self) -> list[str]:
        similarity = self.shuffled_similarity
        if similarity is None or not len(similarity) or not np.mean(similarity) > SIMILAR_SHUFFLES:
            return []
        return [f"rho_over_shuffled: the column-permuted matrices resemble the motif (mean Pearson r of the "
                f"log-odds {np.mean(similarity):.2f} > {SIMILAR_SHUFFLES}), so their sites are nearly the motif's and "
                "the contrast is weak; log_rho_over_composition compares sites with composition-matched non-sites"]

    def similarity(self) -> Estimate:
        values = self.shuffled_similarity
        value = float(np.mean(values))
        return Estimate(value, value, value, len(values), detail={
            "per_shuffle": [rounded(v, 4) for v in values], "min": rounded(np.min(values), 4),
            "max": rounded(np.max(values), 4), "interval": "none: fixed by the matrix and the shuffle seed"})

    def over_shuffled(self) -> dict[str, Estimate]:
        """rho_over_shuffled of the named head (every eligible sequence) and of the head selected on train."""
        quantile = self.claim.params.shuffled_quantile

        def finish(sums):
            return comp.over_shuffled_from_sums(sums, quantile)

        detail = {"shuffles": self.claim.params.shuffles, "shuffled_quantile": quantile}
        if self.shuffled_similarity is not None:
            detail["shuffled_similarity"] = rounded(np.mean(self.shuffled_similarity), 4)
        out = {}
        if self.named is None:
            out["rho_over_shuffled"] = Estimate.missing("the claim names no head (params.layer, params.head)")
        elif self.n:
            k = self.named
            value = finish(self.with_shuffles.sum(axis=0)[None])[0, k]
            low, high = percentile_interval(self.resampled(self.with_shuffles, finish)[:, k], self.claim.ci_level)
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

    def log_scale(self) -> dict[str, Estimate]:
        """log_rho and log_rho_over_composition of the named head and of the head selected on train."""
        site = self.per_site
        floor = {"floor_fraction": self.claim.params.floor_fraction,
                 "sites_at_floor": self.per_head(site.floored_sites)}
        composition = {"matched_sites": site.n_matched_sites, "non_sites": site.n_nonsites,
                       "mean_composition_distance": rounded(site.mean_distance, 4),
                       "non_sites_at_floor": self.per_head(site.floored_nonsites), **floor}
        out = {}
        for name, sums, detail, missing in (
                ("log_rho", site.log_sums, floor, "no sequence has a motif site with matched background"),
                ("log_rho_over_composition", site.composition_sums, composition,
                 "no motif site has a composition-matched non-site (params.composition_tolerance)")):
            sums = sums[self.eligible]
            out[name] = self.named_site_mean(name, sums, detail, missing)
            out[f"max_{name}"] = self.selected_site_mean(name, sums, detail, missing)
        return out

    def per_head(self, values) -> dict[str, int]:
        return {att.head_label(h): int(v) for h, v in zip(self.heads, values)}

    def named_site_mean(self, name, sums, detail, missing) -> Estimate:
        if self.named is None:
            return Estimate.missing("the claim names no head (params.layer, params.head)")
        k = self.named
        value = enr.mean_from_sums(sums.sum(axis=0))[k]
        samples = self.resampled(sums, enr.mean_from_sums)[:, k]
        if not np.isfinite(value):
            return Estimate.missing(missing, n=self.n)
        low, high = percentile_interval(samples, self.claim.ci_level)
        return self.estimate(value, low, high, self.n, samples=samples, detail={
            "layer": self.heads[k][0], "head": self.heads[k][1], "sites": int(sums[:, k, 1].sum()), **detail})

    def selected_site_mean(self, name, sums, detail, missing) -> Estimate:
        chosen = att.select_head(sums, enr.mean_from_sums, self.train, self.test, self.claim, self.context,
                                 units="matched sites", statistic=name)
        if isinstance(chosen, str):
            return Estimate.missing(chosen, n=len(self.test))
        if not np.isfinite(chosen.estimate):
            return Estimate.missing(missing, n=len(self.test))
        return self.estimate(chosen.estimate, chosen.low, chosen.high, len(self.test), samples=chosen.samples, detail={
            **att.selection_detail(self.heads, chosen, len(self.train), len(self.test), by=name), **detail})

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
        return self.estimate(self.rho[k], self.low[k], self.high[k], self.n, samples=self.samples[:, k],
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
        return {"max_rho": self.estimate(chosen.estimate, chosen.low, chosen.high, len(self.test),
                                         samples=chosen.samples, detail=detail),
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
        "log floor": f"{params.floor_fraction:g} / content tokens of the sequence",
        "non-sites": f"same token count, composition distance <= {params.composition_tolerance:g}, at most "
                     f"{params.composition_neighbours} per site, motif score <= their "
                     f"{params.nonsite_quantile:g} quantile",
        "activations": table.source})


LOG_1_5 = round(math.log(1.5), 3)  # a 1.5-fold enrichment on the natural-log scale of the log statistics

FAMILY = Family(
    name="attention_enrichment",
    whole_sequences=True,
    summary="per-head ratio of the attention received by motif-support tokens to that received by "
            "background tokens matched by distance from the site and by composition, as a ratio of sums and as a "
            "mean log ratio over sites, with composition-matched non-sites and shuffled matrices as controls",
    params=EnrichmentParams,
    statistics={
        "rho": Statistic("mean attention to motif-support tokens / mean attention to matched background tokens, "
                         "named head; bootstrap interval over sequences", init=True),
        "max_rho": Statistic("rho of the head selected on the train split, scored on the test split; selection "
                             "redone in every resample; the head is in the detail", init=True),
        "max_rho_selects_named": Statistic("share of resamples whose selection is the named head"),
        "log_rho": Statistic("mean over motif sites of log(mean attention to the site's support tokens / mean "
                             "attention to their matched background), each mean floored at floor_fraction of uniform "
                             "attention; named head; bootstrap interval over sequences", init=True),
        "max_log_rho": Statistic("log_rho of the head selected on the train split, scored on the test split; "
                                 "selection redone in every resample", selection=True, init=True),
        "log_rho_over_composition": Statistic(
            "mean over motif sites of (the site's log ratio minus the mean log ratio of its composition-matched, "
            "low-scoring non-site windows in the same sequence); named head; above 0: the head prefers the motif's "
            "sites to windows of their composition", init=True, control=True),
        "max_log_rho_over_composition": Statistic(
            "log_rho_over_composition of the head selected on the train split, scored on the test split; selection "
            "redone in every resample", selection=True, init=True, control=True),
        "rho_over_shuffled": Statistic("rho of the named head over the shuffled_quantile of its rho on the sites of "
                                       "column-permuted copies of the matrix; above 1: motif-specific", control=True),
        "max_rho_over_shuffled": Statistic("rho_over_shuffled of the head with the largest one on the train split, "
                                           "scored on the test split; selection redone in every resample",
                                           selection=True, control=True),
        "shuffled_similarity": Statistic("mean Pearson correlation of the column-permuted matrices' flattened log-odds "
                                         "with the motif's (near 1: the shuffled control has little contrast)"),
        "n_sequences": Statistic("sequences with a matched motif site", kind="count"),
        "n_sites": Statistic("motif sites (runs of support tokens) in those sequences", kind="count"),
        "n_support_tokens": Statistic("support tokens with matched background", kind="count"),
    },
    evaluate=evaluate,
    min_n=MIN_SEQUENCES,
    example={"model": "planted",
             "data": {"dataset": "motif_sites", "matrix": "MA0108.3", "n": 400},
             "params": {"layer": 0, "head": 2, "flank": 50},
             "criteria": [{"statistic": "log_rho_minus_init", "op": ">=", "threshold": LOG_1_5},
                          {"statistic": "log_rho_over_composition", "op": ">=", "threshold": LOG_1_5}]},
)
