"""activation_patching: does writing one head's clean output into a corrupted run restore the target metric?
(MINTS's denoising patching, with composition-preserving corruptions, counted exclusions and an honest best head.)

Evidence. Clean/corrupted pairs from the claim dataset's held-out (test) split only, positives (label 1)
only (`interventions.make_pairs`): the clean sequence's site (the best window of the motif at or above
the one-strand p-value threshold, default p <= 1e-3, in the dataset's site region; or the splice GT/AG at
the anchor with its consensus context) is destroyed without changing GC content: its bases shuffled
(default), or replaced by a random k-mer with the same G+C count, redrawn until no motif window
overlapping the edit reaches the threshold (or the dinucleotide is gone). Every pair records (row,
position, original, replacement, method) in the detail of n_pairs. Pairs whose clean and corrupted
sequences tokenize to different lengths are excluded and counted, as are sequences without a site and
sites without an acceptable corruption (card).

Target metric f (params.metric; default ``probe``): the decision value of a probe (`probing.train_split_probe`,
fitted on the train split of the same dataset) on mean-pooled ``layer.{probe_layer}.resid_post`` (default:
the last layer); or ``masked_logprob``, the log-probability of the clean token at `mask_position`, masked
in every run; or ``token_logit``, the mean over content tokens of the masked-LM logit of `token`.

Patching. The clean run's ``layer.{l}.attn.head_out`` of one head (before the attention output
projection) replaces the corrupted run's, at every token (`at: all`, the default) or at the tokens that
overlap the edit (`at: site`); every head of every candidate layer, all heads of a layer in one batched
pass. Per pair, PM = (f_patched - f_corrupted) / (f_clean - f_corrupted). Pairs whose denominator times
the expected sign (`expected_sign`, default positive: the clean sequence scores higher) is below the floor
are excluded and counted; the floor is `denominator_floor` (metric units), by default 0.1 times the median
|f_clean - f_corrupted| over the pairs, and at least 1e-6.

Statistics (intervals: percentile bootstrap over the kept pairs, each a distinct test sequence, at the
claim's ci_level with its resamples; n = kept pairs unless said otherwise):

- ``ratio_of_means_pm``: sum over pairs of (f_patched - f_corrupted) / sum of (f_clean - f_corrupted), the
  named head; ``mean_pm``: mean of the per-pair PM (MINTS's aggregate; sensitive to small denominators);
  ``median_pm``: median of the per-pair PM.
- ``pm``: the named head under `aggregate` (default ratio_of_means).
- ``best_pm``: the kept pairs are split at random (seeded) into a selection part (`selection_fraction`,
  default half) and a scoring part; the head with the largest PM (under `aggregate`) on the selection part
  is scored on the scoring part, and every resample redraws both parts' pairs and selects again (n = the
  scoring part). Selecting on the pairs it is scored on would bias a best-of-K upward.
- ``heads_mean_pm``: the mean over every candidate head of its PM (MINTS's "mean PM" column).
- ``excluded_fraction``: pairs excluded by the denominator rule / pairs measured (Wilson interval; n = pairs
  measured).
- ``n_pairs``: pairs measured (count; the per-pair record is its detail).

Attribution patching (activation patching approximated by gradients): the first-order estimate of f_patched,
f_corrupted + sum over the patched tokens of (clean - corrupted head output) . d f / d head output at the
corrupted run, every head of every layer from one forward and one backward pass (`interventions.patching_effects`).
With `method: exact` (default) it is computed beside exact patching:

- ``attribution_pm``: the named head's PM from the estimate (same aggregate, pairs and resamples).
- ``attribution_rank_agreement``: Spearman correlation over the exactly patched heads of their PM and their
  attribution PM (bootstrap over kept pairs): how well attribution ranks heads.
- ``attribution_max_error``: the largest |PM - attribution PM| over those heads (bootstrap over kept pairs).

`method: attribution` computes every statistic from the estimate alone (the agreement statistics are then
missing). `prescreen: k`: attribution PM ranks the heads on the selection part of the kept pairs (the part
best_pm selects on, so the scoring part stays unseen) and only the k best, plus the named head, are patched
exactly (one pass each); the other heads' PM are undefined, best_pm selects among the screened heads and
heads_mean_pm is missing.

Minimum n: 20 kept pairs. Figures: layer x head heatmap of PM (all kept pairs), and the distribution of
per-pair PM for the named head (else the best head).
"""

from __future__ import annotations

from functools import partial
from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from seqclaims.core.evidence import Card, Estimate, Evidence, Figure, rounded
from seqclaims.core.families import Family, Statistic
from seqclaims.core.schema import StrictModel
from seqclaims.errors import InputError
from seqclaims.methods import attention as att
from seqclaims.methods import interventions as iv
from seqclaims.methods.figures import HeadMarks, figure_from_matplotlib, head_heatmap
from seqclaims.methods.stats import bootstrap, select_and_score

MIN_PAIRS = 20
NAMED = ("pm", "mean_pm", "median_pm", "ratio_of_means_pm")


class PatchingParams(StrictModel):
    layer: int | None = Field(None, ge=0, description="layer of the named head (statistics pm, *_pm)")
    head: int | None = Field(None, ge=0, description="head of the named head")
    layers: list[int] | None = Field(None, description="layers whose heads are patched (default: all)")
    at: Literal["all", "site"] = Field(
        "all", description="patch at every token, or only at the tokens overlapping the edit (a head that writes "
        "the same value at every position restores PM near 1 only with `all`)")
    aggregate: Literal["ratio_of_means", "mean", "median"] = Field(
        "ratio_of_means", description="how per-pair restoration is aggregated for pm and best_pm")
    expected_sign: Literal["positive", "negative"] = Field(
        "positive", description="sign of f_clean - f_corrupted a pair must have to be kept")
    denominator_floor: float | None = Field(
        None, gt=0, description="keep pairs with sign * (f_clean - f_corrupted) >= this (metric units); default "
        "relative_floor * median |f_clean - f_corrupted|")
    relative_floor: float = Field(iv.RELATIVE_DENOMINATOR_FLOOR, ge=0, le=1,
                                  description="the default floor as a fraction of the median |denominator|")
    selection_fraction: float = Field(0.5, gt=0, lt=1, description="best_pm: share of kept pairs that select the head")
    method: Literal["exact", "attribution"] = Field(
        "exact", description="exact patching (with its attribution estimate beside it), or attribution patching alone")
    prescreen: int | None = Field(None, ge=1, description="patch exactly only the this many heads with the largest "
                                  "attribution PM on the selection part of the pairs (plus the named head)")

    @model_validator(mode="after")
    def _prescreen_needs_exact(self) -> "PatchingParams":
        if self.prescreen is not None and self.method == "attribution":
            raise ValueError("prescreen selects heads for exact patching; it does not apply to method: attribution")
        return self
    corruption: iv.CorruptionSpec = Field(default_factory=iv.CorruptionSpec, description="how pairs are made")
    metric: iv.MetricSpec = Field(default_factory=iv.MetricSpec, description="the target metric f")


def evaluate(claim, context) -> Evidence:
    params = claim.params
    att.require_named_head(claim, NAMED)
    inputs = context.inputs()
    model = inputs.model
    heads, named = att.claim_heads(claim, model)
    try:
        pairs = claim_pairs(claim, inputs, context)
        target = iv.target_metric(params.metric, inputs, seed=claim.seed)
        layers = sorted({layer for layer, _ in heads})
        run = patching_run(claim, context, model, target, pairs, layers, heads, named) if len(pairs) else None
    except InputError as error:
        raise InputError(f"{claim.path}: {error}") from None
    analysis = Patching(claim, context, pairs, run, heads, named)
    evidence = Evidence(statistics=analysis.statistics(), figures=analysis.figures(model),
                        cards=[*inputs.cards, pairs_card(pairs, params), metric_card(target, analysis)])
    evidence.versions.update(inputs.versions)
    return evidence


def patching_run(claim, context, model, target, pairs, layers, heads, named) -> iv.PatchingRun:
    """Exact patching with the attribution estimate beside it, attribution alone, or (prescreen) exact
    patching of the heads attribution ranks best on the selection part of the pairs."""
    params = claim.params
    if params.method == "attribution":
        return iv.patching_effects(model, target, pairs, layers, at=params.at, method="attribution")
    if params.prescreen is None:
        return iv.patching_effects(model, target, pairs, layers, at=params.at, method="both")
    screen = iv.patching_effects(model, target, pairs, layers, at=params.at, method="attribution")
    screened = Patching(claim, context, pairs, screen, heads, named)
    chosen = screened.prescreened(params.prescreen)
    run = iv.patching_effects(model, target, pairs, layers, at=params.at, heads=[heads[k] for k in chosen])
    run.f_attributed = screen.f_attributed
    # the screen's f_corrupted (equal up to rounding), so that the kept pairs, and with them the selection part
    # the heads were screened on, are exactly those best_pm splits
    run.f_corrupted = screen.f_corrupted
    return run


def selection_split(context, n_kept: int, fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """The kept pairs (indices) that select best_pm's head, and those that score it (seeded)."""
    shuffled = context.rng("selection-split").permutation(np.arange(n_kept))
    cut = int(round(fraction * n_kept))
    return np.sort(shuffled[:cut]), np.sort(shuffled[cut:])


def claim_pairs(claim, inputs, context) -> iv.Pairs:
    """Pairs from the test split's positives under the claim's corruption settings."""
    spec, dataset = claim.params.corruption, inputs.dataset
    motif = claim_motif(spec, dataset) if spec.site == "motif" else None
    rule = iv.site_rule(spec, dataset, motif)
    rows = np.flatnonzero((dataset.split == "test") & (np.asarray(dataset.labels) == 1))
    return iv.make_pairs(dataset, rows, rule, spec.method, context.seed_for("corruption"),
                         max_tries=spec.max_tries, max_pairs=spec.max_pairs, model=inputs.model)


def claim_motif(spec, dataset):
    """The JASPAR matrix of `corruption.matrix`, else the dataset's."""
    from seqclaims.inputs.motifs import DEFAULT_RELEASE, load_motif

    recorded = dataset.card.get("motif") or {}
    matrix = spec.matrix or recorded.get("matrix")
    if not matrix:
        raise InputError(f"params.corruption.matrix: name the JASPAR matrix of the site (e.g. MA0108.3); dataset "
                         f"{dataset.name} has none")
    return load_motif(matrix, release=spec.release or recorded.get("release") or DEFAULT_RELEASE,
                      pseudocount=spec.pseudocount)


class Patching:
    """PM of every candidate head over the kept pairs, with intervals and the selected best head."""

    def __init__(self, claim, context, pairs: iv.Pairs, run: iv.PatchingRun | None, heads, named):
        self.claim, self.context, self.pairs, self.run, self.heads, self.named = claim, context, pairs, run, heads, named
        params = claim.params
        if run is None:
            self.rest = None
            return
        order = [run.layers.index(layer) * run.f_patched.shape[1] + head for layer, head in heads]
        sign = 1 if params.expected_sign == "positive" else -1

        def restored(f_patched: np.ndarray) -> iv.Restoration:
            flat = f_patched.reshape(-1, len(pairs))  # (n_layers * n_heads, n), layer-major like heads
            return iv.restoration(run.f_clean, run.f_corrupted, flat[order], sign=sign,
                                  floor=params.denominator_floor, relative_floor=params.relative_floor)

        self.rest = restored(run.f_patched)
        self.attributed = None if run.f_attributed is None else restored(run.f_attributed)
        self.exact = params.method == "exact"
        self.values = iv.aggregate_pm(self.rest, params.aggregate)[0]  # (K,)

    @property
    def n_kept(self) -> int:
        return 0 if self.rest is None else int(self.rest.kept.sum())

    def statistics(self) -> dict[str, Estimate]:
        n_pairs = len(self.pairs)
        out = {"n_pairs": Estimate(float(n_pairs), float(n_pairs), float(n_pairs), n_pairs, kind="count",
                                   detail={"pairs": self.pair_records(), "excluded_before": self.pairs.excluded})}
        out["excluded_fraction"] = self.excluded_fraction()
        for how in iv.AGGREGATES:
            out[f"{how}_pm"] = self.named_pm(how)
        out["pm"] = self.named_pm(self.claim.params.aggregate)
        out["best_pm"] = self.best_pm()
        out["heads_mean_pm"] = self.heads_mean_pm()
        out.update(self.attribution_statistics())
        return out

    def prescreened(self, k: int) -> list[int]:
        """Indices (into heads) of the k heads with the largest attribution PM on the selection part, and the
        named head."""
        if self.n_kept == 0:
            return [] if self.named is None else [self.named]
        selection, _ = selection_split(self.context, self.n_kept, self.claim.params.selection_fraction)
        weights = np.zeros((1, self.n_kept))
        weights[:, selection] = 1.0
        values = iv.aggregate_pm(self.rest, self.claim.params.aggregate, weights)[0]
        ranked = [int(i) for i in np.argsort(-np.where(np.isfinite(values), values, -np.inf))[:k]]
        return sorted(set(ranked) | ({self.named} if self.named is not None else set()))

    def attribution_statistics(self) -> dict[str, Estimate]:
        names = ("attribution_pm", "attribution_rank_agreement", "attribution_max_error")
        if (gone := self.missing()) is not None:
            return {name: gone for name in names}
        if self.attributed is None:
            return {name: Estimate.missing("no attribution estimate") for name in names}
        how = self.claim.params.aggregate
        out = {}
        if self.named is None:
            out["attribution_pm"] = Estimate.missing("the claim names no head (params.layer, params.head)")
        else:
            k = self.named
            interval = self.interval(lambda w: iv.aggregate_pm(self.attributed, how, w)[:, k], self.n_kept,
                                     f"bootstrap-{how}")
            out["attribution_pm"] = Estimate(float(interval.estimate), float(interval.low), float(interval.high),
                                             self.n_kept, min_n=MIN_PAIRS, detail={"layer": self.heads[k][0],
                                                                                   "head": self.heads[k][1]})
        if not self.exact:
            reason = "method: attribution patches nothing exactly"
            return {**out, "attribution_rank_agreement": Estimate.missing(reason),
                    "attribution_max_error": Estimate.missing(reason)}
        exact = np.flatnonzero(np.isfinite(self.values))
        pairs_of = lambda w: (iv.aggregate_pm(self.rest, how, w)[:, exact],  # noqa: E731
                              iv.aggregate_pm(self.attributed, how, w)[:, exact])
        agreement = self.interval(lambda w: rank_agreement(*pairs_of(w)), self.n_kept, "bootstrap-attribution")
        error = self.interval(lambda w: np.nanmax(np.abs(np.subtract(*pairs_of(w))), axis=1), self.n_kept,
                              "bootstrap-attribution")
        detail = {"heads_compared": len(exact)}
        for name, interval in (("attribution_rank_agreement", agreement), ("attribution_max_error", error)):
            out[name] = (Estimate(float(interval.estimate), float(interval.low), float(interval.high), self.n_kept,
                                  min_n=MIN_PAIRS, detail=detail) if np.isfinite(interval.estimate)
                         else Estimate.missing("fewer than 3 heads patched exactly", n=self.n_kept))
        return out

    def missing(self) -> Estimate | None:
        if self.rest is None:
            return Estimate.missing(f"no pairs: {self.pairs.offered} test positives offered, excluded "
                                    f"{self.pairs.excluded}")
        if self.n_kept == 0:
            return Estimate.missing(f"every pair was excluded by the denominator rule ({self.rest.excluded})",
                                    n=len(self.pairs))
        return None

    def interval(self, statistic, units: int, purpose: str):
        return bootstrap(statistic, units, n_resamples=self.claim.resamples, seed=self.context.seed_for(purpose),
                         level=self.claim.ci_level)

    def named_pm(self, how: str) -> Estimate:
        if self.named is None:
            return Estimate.missing("the claim names no head (params.layer, params.head)")
        if (gone := self.missing()) is not None:
            return gone
        k = self.named
        interval = self.interval(lambda w: iv.aggregate_pm(self.rest, how, w)[:, k], self.n_kept, f"bootstrap-{how}")
        layer, head = self.heads[k]
        return Estimate(float(interval.estimate), float(interval.low), float(interval.high), self.n_kept,
                        min_n=MIN_PAIRS, detail={"layer": layer, "head": head, "aggregate": how,
                                                 "per_head": self.table(how)})

    def best_pm(self) -> Estimate:
        if (gone := self.missing()) is not None:
            return gone
        selection, scoring = selection_split(self.context, self.n_kept, self.claim.params.selection_fraction)
        if len(selection) == 0 or len(scoring) == 0:
            return Estimate.missing("too few kept pairs to split into a selection and a scoring part", n=len(scoring))
        how = self.claim.params.aggregate

        def pm_of(units, weights):  # (B, K) PM of every head on the pairs `units` under their weights
            full = np.zeros((1 if weights is None else len(weights), self.n_kept))
            full[:, units] = 1.0 if weights is None else weights
            return iv.aggregate_pm(self.rest, how, full)

        seeds = (self.context.seed_for("best-selection"), self.context.seed_for("best-scoring"))
        chosen = select_and_score(partial(pm_of, selection), partial(pm_of, scoring), len(selection), len(scoring),
                                  seeds=seeds, n_resamples=self.claim.resamples, level=self.claim.ci_level)
        if chosen.index < 0:
            return Estimate.missing("no head has a defined PM on the selection part", n=len(scoring))
        layer, head = self.heads[chosen.index]
        detail = {"layer": layer, "head": head, "aggregate": how, "selected_on": f"{len(selection)} pairs",
                  "scored_on": f"{len(scoring)} pairs",
                  "selection_frequency": {att.head_label(h): round(float(f), 4)
                                          for h, f in zip(self.heads, chosen.frequency) if f > 0},
                  "best_on_all_pairs": att.head_label(self.heads[int(np.nanargmax(self.values))])}
        return Estimate(chosen.estimate, chosen.low, chosen.high, len(scoring), min_n=MIN_PAIRS, detail=detail)

    def heads_mean_pm(self) -> Estimate:
        if (gone := self.missing()) is not None:
            return gone
        if not np.all(np.isfinite(self.values)):
            return Estimate.missing("prescreen: not every head was patched exactly")
        how = self.claim.params.aggregate
        interval = self.interval(lambda w: np.nanmean(iv.aggregate_pm(self.rest, how, w), axis=1), self.n_kept,
                                 "bootstrap-heads-mean")
        return Estimate(float(interval.estimate), float(interval.low), float(interval.high), self.n_kept,
                        min_n=MIN_PAIRS, detail={"heads": len(self.heads), "aggregate": how})

    def excluded_fraction(self) -> Estimate:
        if self.rest is None:
            return Estimate.missing("no pairs were measured")
        n = len(self.pairs)
        share = self.rest.excluded_fraction
        low, high = att.wilson_interval(share, n, self.claim.ci_level)
        return Estimate(share, low, high, n, min_n=MIN_PAIRS,
                        detail={**self.rest.excluded, "floor": self.rest.floor, "sign": self.rest.sign})

    def table(self, how: str) -> list[dict]:
        values = iv.aggregate_pm(self.rest, how)[0]
        return [{"layer": layer, "head": head, "pm": rounded(values[k])} for k, (layer, head) in enumerate(self.heads)]

    def pair_records(self) -> list[dict]:
        records = self.pairs.table()
        if self.run is not None:
            for i, record in enumerate(records):
                record.update(f_clean=rounded(self.run.f_clean[i]), f_corrupted=rounded(self.run.f_corrupted[i]),
                              kept=bool(self.rest.kept[i]))
        return records

    def figures(self, model) -> list[Figure]:
        if self.rest is None or self.n_kept == 0:
            return []
        grid = att.head_grid(self.values, self.heads, model)
        claim = self.claim
        caption = (f"PM ({claim.params.aggregate}) of every patched head over {self.n_kept} kept pairs "
                   f"({len(self.pairs)} measured).")
        heatmap = head_heatmap(grid, title=f"{claim.id}: PM per head", label="PM", caption=caption,
                               marks=HeadMarks(("pm", "best_pm", *NAMED)))
        shown = self.named if self.named is not None else int(np.nanargmax(self.values))
        return [heatmap, pm_distribution(claim, self.rest.pm[shown], self.heads[shown], claim.params.aggregate,
                                         self.values[shown])]


def rank_agreement(exact: np.ndarray, attributed: np.ndarray) -> np.ndarray:
    """(B,) Spearman correlation of two (B, K) rows of per-head values (NaN with fewer than 3 heads)."""
    from scipy.stats import rankdata

    if exact.shape[1] < 3:
        return np.full(exact.shape[0], np.nan)
    a, b = rankdata(exact, axis=1), rankdata(attributed, axis=1)
    a, b = a - a.mean(axis=1, keepdims=True), b - b.mean(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (a * b).sum(axis=1) / np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))


def pm_distribution(claim, pm: np.ndarray, head: tuple[int, int], how: str, aggregate: float) -> Figure:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3))
    finite = pm[np.isfinite(pm)]
    low, high = np.percentile(finite, [1, 99]) if finite.size else (0, 1)
    span = max(high - low, 1e-6)
    ax.hist(np.clip(finite, low - 0.1 * span, high + 0.1 * span), bins=40, color="#4878a8")
    ax.axvline(aggregate, color="black", linewidth=2, label=f"{how} = {aggregate:.3f}")
    for value, style in ((0.0, ":"), (1.0, "--")):
        ax.axvline(value, color="grey", linestyle=style, linewidth=1)
    ax.set_xlabel("per-pair PM (clipped to the 1st-99th percentile range)")
    ax.set_ylabel("pairs")
    ax.legend(fontsize=7)
    title = f"{claim.id}: per-pair PM of {att.head_label(head)}"
    ax.set_title(title, fontsize=9)
    return figure_from_matplotlib(fig, title, f"{finite.size} kept pairs; dotted: 0, dashed: 1.")


def pairs_card(pairs: iv.Pairs, params) -> Card:
    spec = params.corruption
    return Card("activation_patching pairs", {
        "site": pairs.site, "method": spec.method, "split": "test, label 1", "offered": pairs.offered,
        "pairs": len(pairs), "excluded": pairs.excluded, "patched_at": params.at,
        "gc_equal": "by construction (shuffle keeps the bases, swap keeps the G+C count)",
        "first_pairs": pairs.table()[:5]})


def metric_card(target: iv.TargetMetric, analysis: Patching) -> Card:
    facts = {"metric": target.describe(), "aggregate": analysis.claim.params.aggregate}
    if analysis.rest is not None:
        facts.update(floor=round(analysis.rest.floor, 6), excluded=analysis.rest.excluded,
                     median_f_clean_minus_f_corrupted=rounded(np.median(analysis.run.f_clean - analysis.run.f_corrupted)))
    return Card("activation_patching metric", facts)



FAMILY = Family(
    name="activation_patching",
    whole_sequences=True,
    summary="restoration (PM) of a target metric when one head's clean output is patched into a run on a "
            "composition-preserving corruption of the motif",
    params=PatchingParams,
    statistics={
        "pm": Statistic("PM of the named head under `aggregate`; bootstrap interval over kept pairs"),
        "mean_pm": Statistic("named head: mean of per-pair PM"),
        "median_pm": Statistic("named head: median of per-pair PM"),
        "ratio_of_means_pm": Statistic("named head: sum(f_patched - f_corrupted) / sum(f_clean - f_corrupted)"),
        "best_pm": Statistic("PM of the head selected on a selection part of the pairs, scored on the rest; "
                             "selection redone in every resample; the head is in the detail", selection=True),
        "heads_mean_pm": Statistic("mean PM over every candidate head"),
        "excluded_fraction": Statistic("share of measured pairs excluded by the denominator rule (Wilson interval)"),
        "n_pairs": Statistic("pairs measured; the per-pair corruption record is the detail", kind="count"),
        "attribution_pm": Statistic("named head: PM estimated by attribution patching (gradients)"),
        "attribution_rank_agreement": Statistic("Spearman over exactly patched heads of PM and attribution PM"),
        "attribution_max_error": Statistic("largest |PM - attribution PM| over exactly patched heads"),
    },
    evaluate=evaluate,
    min_n=MIN_PAIRS,
    example={"model": "planted",
             "data": {"dataset": "motif_sites", "matrix": "MA0108.3", "n": 1000},
             "params": {"layer": 0, "head": 2, "at": "all",
                        "corruption": {"method": "shuffle", "site": "motif", "pvalue": 0.001},
                        "metric": {"kind": "token_logit", "token": "TATAAAA"}},
             "criteria": [{"statistic": "pm", "op": ">=", "threshold": 0.8}]},
)
