"""probe: does a linear probe on a layer's pooled activations decode the label, beyond sequence-only baselines?

Evidence. The claim's dataset (region-disjoint train/test split); pooled activations of every probe site
(``embed`` and ``layer.{l}.resid_post``) from one cached extraction: mean over content tokens (neither
special nor padding) by default, or the first (CLS) token, or the token covering a given character
position. Probes (`seqclaims.methods.probing.LinearProbe`): standardise, L2 logistic regression, C chosen by
inner cross-validation on the train split only (folds are blocks of consecutive windows along the genome
when coordinates exist), refitted on the whole train split and scored on the test split.

The evaluated layer is the named one, or with ``layer: all`` the one with the highest pooled
held-out-fold AUROC on the train split (never chosen on the test split). Every interval is a percentile
bootstrap over test sequences (windows cut from one sequence move together) at the claim's `ci_level`
with `resamples` resamples; every statistic on the test split uses the *same* resampled sequences, so a
contrast ``a_minus_b`` is a paired bootstrap of the difference.

Statistics (AUROC is the Mann-Whitney area, ties one half; n = test sequences unless said otherwise):

- ``auroc``, ``auprc`` (average precision), ``accuracy`` (decision > 0): the probe at the evaluated layer.
- ``gc_only_auroc``: the same probe pipeline on (GC fraction, GC skew (G-C)/(G+C), length).
- ``kmer_auroc``: the same pipeline on k-mer frequencies (``kmer_k``, read strand, 4^k features).
- ``position_only_auroc``: the same pipeline on (start in Mb, strand, chromosome); needs coordinates.
- ``random_label_auroc``: mean over ``random_label_permutations`` probes fitted on permuted train labels
  (at the evaluated layer's C) of their AUROC against the true test labels; chance is 0.5.
- ``auroc_minus_gc``, ``auroc_minus_kmer``: auroc minus the baseline's AUROC on the same test sequences.
- ``auroc_minus_gc_matched``: auroc minus gc_only_auroc on the GC-matched test subset: each test positive,
  in random order, takes the unused test negative nearest in GC fraction if within ``gc_caliper``. The
  interval resamples matched pairs (n = matched sequences). Inconclusive (missing) when the test split is
  already GC-matched (equal classes whose sorted GC values pair up within the caliper, or every window
  matched: the contrast would repeat auroc_minus_gc), when the matched classes' GC distributions still
  differ (two-sample KS p < 0.05, or a standardised mean difference above 0.1), or with fewer than 20
  pairs.
- ``gc_shift_auroc``: with the train split's median GC as the cut, a probe fitted (inner CV) on low-GC train
  windows and scored on high-GC test windows, and one fitted on high-GC and scored on low-GC; the statistic
  is the smaller of the two AUROCs (worst direction), taken inside every resample; both in `detail`.
- ``best_layer``, ``best_layer_auroc`` (``layer: all``): the selection is redone inside every resample: each
  resample draws train sequences, re-selects the layer by its held-out-fold AUROC under those draws, and
  scores the re-selected layer on that resample's test sequences (`stats.select_and_score`; a resample in
  which no layer's train AUROC is defined is undefined and counts against the NaN limit). Selecting on train
  and scoring on test keeps the winner's curse out of the interval. best_layer is -1 for the embeddings.
- ``transfer_auroc`` (``transfer: <species>``): the evaluated probe, trained on the claim's species, scored
  on the test-region windows of the same dataset built for the other species; n = those windows.
- ``model_b_auroc``, ``auroc_minus_model_b`` (``model_b: <model>``): the same pipeline on the second model's
  activations of the same windows (its own layer selection with ``layer: all``), and the paired difference.

Minimum n: 40 test sequences. A claim on a user file or hub model that is not present locally is skipped
with a reason that says where to put it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable, Literal

import numpy as np
from pydantic import Field, field_validator, model_validator

from seqclaims.core.evidence import Card, Estimate, Evidence, Figure
from seqclaims.core.families import Family, Statistic
from seqclaims.core.schema import StrictModel
from seqclaims.errors import InputError, Unavailable
from seqclaims.inputs.models import EMBEDDED_MODELS, ModelRef, load_model, resolve_folder
from seqclaims.methods import probing
from seqclaims.methods.figures import figure_from_matplotlib
from seqclaims.methods.stats import bootstrap, column_samples, expand_to_items, percentile_interval, resample_counts, select_and_score
from seqclaims.methods.weighted import auprc_weighted, auroc_weighted

MIN_N = 40
MIN_MATCHED_PAIRS = 20
GC_BALANCE_ALPHA = 0.05
GC_BALANCE_MAX_SMD = 0.1  # a KS test on few pairs rarely rejects; agreement also needs a small mean difference


class ProbeParams(StrictModel):
    layer: int | Literal["all", "embed"] = Field(
        "all", description="which activations: a block index l (layer.{l}.resid_post), embed, or all (every "
        "layer; the best is selected on the train split and the per-layer curve is drawn)")
    pooling: Literal["mean", "cls", "position"] = Field(
        "mean", description="mean over content tokens (not special, not padding); cls: the first token; "
        "position: the token covering character `position`")
    position: int | None = Field(None, ge=0, description="0-based character index in the window, for pooling: position")
    label: Literal["dataset", "gc_content"] = Field(
        "dataset", description="dataset: the dataset's labels; gc_content: 1 when the window's GC fraction "
        "exceeds the train split's median (a label defined by composition alone, a shortcut control)")
    kmer_k: int = Field(4, ge=1, le=6, description="k of the k-mer frequency baseline (4^k features)")
    inner_folds: int = Field(5, ge=2, le=20, description="folds of the inner cross-validation that chooses C")
    c_grid: list[float] = Field(list(probing.DEFAULT_C_GRID), min_length=1,
                                description="inverse regularisation strengths searched by the inner cross-validation")
    random_label_permutations: int = Field(20, ge=0, le=1000,
                                           description="probes fitted on permuted train labels (0 skips the control)")
    gc_caliper: float = Field(0.01, gt=0, le=0.2, description="largest GC-fraction difference of a matched pair")
    transfer: Literal["athaliana", "alyrata", "aarenosa"] | None = Field(
        None, description="species whose windows (the same dataset, built the same way) the probe is also scored on")
    model_b: ModelRef | None = Field(
        None, description="a second model probed on the same windows, for a paired difference (auroc_minus_model_b)")

    @field_validator("c_grid")
    @classmethod
    def _positive(cls, value: list[float]) -> list[float]:
        if any(not np.isfinite(c) or c <= 0 for c in value):
            raise ValueError("every C in c_grid must be a positive number")
        return sorted(value)

    @model_validator(mode="after")
    def _position_with_position_pooling(self) -> "ProbeParams":
        if (self.pooling == "position") != (self.position is not None):
            raise ValueError("`position` goes with `pooling: position`, and `pooling: position` needs `position`")
        return self

    @field_validator("model_b")
    @classmethod
    def _known_model(cls, value: ModelRef | None) -> ModelRef | None:
        if value is not None and value.name and value.name not in EMBEDDED_MODELS:
            raise ValueError(f"unknown embedded model {value.name!r}; embedded models: {', '.join(EMBEDDED_MODELS)}")
        return value


STATISTICS = {
    "auroc": Statistic("AUROC of the probe at the evaluated layer on the test split", init=True),
    "auprc": Statistic("average precision of the probe at the evaluated layer on the test split", init=True),
    "accuracy": Statistic("share of test sequences classified correctly (decision > 0)"),
    "gc_only_auroc": Statistic("AUROC of the same probe pipeline on GC fraction, GC skew and length"),
    "kmer_auroc": Statistic("AUROC of the same probe pipeline on k-mer frequencies (kmer_k)"),
    "position_only_auroc": Statistic("AUROC of the same probe pipeline on genomic start, strand and chromosome"),
    "random_label_auroc": Statistic("mean AUROC of probes fitted on permuted train labels (chance 0.5)"),
    "auroc_minus_gc": Statistic("auroc - gc_only_auroc, paired bootstrap over test sequences", init=True, control=True),
    "auroc_minus_kmer": Statistic("auroc - kmer_auroc, paired bootstrap over test sequences", init=True, control=True),
    "auroc_minus_gc_matched": Statistic(
        "auroc - gc_only_auroc on the GC-matched test subset (caliper matching); inconclusive when matching "
        "changes nothing or leaves the classes' GC distributions different", init=True, control=True),
    "gc_shift_auroc": Statistic("smaller AUROC of low-GC -> high-GC and high-GC -> low-GC train/test shifts"),
    "best_layer": Statistic("layer selected on the train split (-1 = embeddings), re-selected per resample",
                            selection=True),
    "best_layer_auroc": Statistic("test AUROC of the train-selected layer, selection redone inside every resample",
                                  selection=True, init=True),
    "transfer_auroc": Statistic("AUROC of the probe on the `transfer` species' test-region windows"),
    "model_b_auroc": Statistic("AUROC of the same pipeline on `model_b`'s activations of the same windows"),
    "auroc_minus_model_b": Statistic("auroc - model_b_auroc, paired bootstrap over test sequences", control=True),
}


# ---------------------------------------------------------------------------------------------
# evaluate


def evaluate(claim, context) -> Evidence:
    params = claim.params
    require_local_inputs(claim)
    if params.transfer:
        check_transfer_target(claim)
    inputs = context.inputs()
    probe_data = probe_data_for(inputs.model, inputs.dataset, params)
    if probe_data.problem:
        return Evidence({name: Estimate.missing(probe_data.problem) for name in STATISTICS}, cards=inputs.cards)
    suite = probing.fit_suite(probe_data.suite_inputs, suite_settings(params, context, probe_data.layer_hook))
    evidence = probe_evidence(probe_data, suite, claim, context)
    if params.transfer:
        evidence.statistics["transfer_auroc"] = transfer_estimate(claim, context, suite, probe_data)
    else:
        evidence.statistics["transfer_auroc"] = Estimate.missing("no `transfer` species in params")
    if params.model_b is not None:
        evidence.statistics.update(model_b_estimates(claim, context, suite, probe_data))
    else:
        evidence.statistics.update({name: Estimate.missing("no `model_b` in params")
                                    for name in ("model_b_auroc", "auroc_minus_model_b")})
    evidence.cards = [*inputs.cards, *evidence.cards]
    evidence.versions.update(inputs.versions)
    return evidence


def require_local_inputs(claim) -> None:
    """Skip (Unavailable) with every missing local input named: the model, model_b, a user data file."""
    reasons = []
    for ref in (claim.model, claim.params.model_b):
        if ref is None:
            continue
        try:
            resolve_folder(ref)
        except Unavailable as missing:
            reasons.append(missing.message)
    data = claim.data
    if data.dataset == "user":
        for given in (data.path, data.fasta):
            path = Path(given).expanduser() if given else None
            if path is not None and not path.is_absolute():
                path = Path(os.path.normpath(claim.path.parent / path))
            if path is not None and not path.is_file():
                reasons.append(f"data file {path} is not present; export the data set of '{claim.title}' to {path} "
                               "(CSV with columns sequence,label and optional split,chrom,start,end,strand)")
    if reasons:
        raise Unavailable("; ".join(reasons))


@dataclass
class ProbeData:
    """The claim's windows ready for fitting. unit_of_item: (n,) sequence of origin of each window."""

    suite_inputs: probing.SuiteInputs
    layer_hook: str | None
    unit_of_item: np.ndarray
    gc: np.ndarray
    dataset: Any
    problem: str | None = None


def probe_data_for(model, dataset, params: ProbeParams, labels: np.ndarray | None = None) -> ProbeData:
    """Pooled activations of every probe site, labels (the dataset's, gc_content, or `labels`), units."""
    hooks = probing.probe_hooks(model)
    layer_hook = layer_hook_for(params.layer, hooks)
    features, key = probing.pooled_activations(model, dataset.sequences, dataset.content_hash, hooks,
                                               params.pooling, params.position)
    gc = probing.gc_fraction(dataset.sequences)
    split = np.asarray(dataset.split)
    if labels is None:
        labels = np.asarray(dataset.labels)
        if params.label == "gc_content":
            labels = (gc > np.nanmedian(gc[split == "train"])).astype(np.int64)
    if not np.isin(labels, (0, 1)).all():
        raise InputError(f"dataset {dataset.name}: the probe needs binary labels 0/1, found "
                         f"{sorted(np.unique(labels).tolist())[:6]}; relabel the data as 0/1")
    suite_inputs = probing.SuiteInputs(features, labels, split, list(dataset.sequences), dataset.coords, key)
    source = dataset.source if dataset.source is not None else np.arange(len(dataset))
    return ProbeData(suite_inputs, layer_hook, np.asarray(source), gc, dataset, _ineligible(labels, split))


def layer_hook_for(layer: int | str, hooks: list[str]) -> str | None:
    """The hook a named layer reads; None for `all`."""
    if layer == "all":
        return None
    name = "embed" if layer == "embed" else f"layer.{layer}.resid_post"
    if name not in hooks:
        raise InputError(f"params.layer: {layer!r} is not a probe site of this model (sites: "
                         f"{', '.join(hooks)}); use a block index 0..{probing.layer_number(hooks[-1])}, embed or all")
    return name


def _ineligible(labels: np.ndarray, split: np.ndarray) -> str | None:
    for part in ("train", "test"):
        counts = np.bincount(labels[split == part], minlength=2)
        if counts.min() < 2:
            return f"the {part} split has {counts[0]} negatives and {counts[1]} positives; a probe needs both classes"
    return None


def suite_settings(params: ProbeParams, context, layer_hook: str | None) -> probing.SuiteSettings:
    return probing.SuiteSettings(
        layer=layer_hook, kmer_k=params.kmer_k, c_grid=tuple(params.c_grid), n_folds=params.inner_folds,
        permutations=params.random_label_permutations, fold_seed=context.seed_for("folds") % 2**32,
        permutation_seed=context.seed_for("random_labels"))


# ---------------------------------------------------------------------------------------------
# Statistics on the test split


@dataclass
class Resampled:
    """Bootstrap of a set of items (windows, matched pairs' members) by the units they belong to."""

    unit_of_item: np.ndarray  # (n_items,) in 0..n_units-1
    n_units: int

    @classmethod
    def of(cls, source: np.ndarray) -> "Resampled":
        _, inverse = np.unique(source, return_inverse=True)
        return cls(inverse, int(inverse.max()) + 1 if len(inverse) else 0)

    def interval(self, statistic: Callable[[np.ndarray | None], np.ndarray], claim, seed: int):
        """Percentile bootstrap of statistic(item weights (B, n_items) or None) -> (B,) or (B, K)."""
        def on_counts(counts):
            return statistic(None if counts is None else expand_to_items(counts, self.unit_of_item))

        return bootstrap(on_counts, self.n_units, n_resamples=claim.resamples, seed=seed, level=claim.ci_level)

    def counts(self, claim, seed: int) -> np.ndarray:
        return resample_counts(self.n_units, claim.resamples, seed)


def probe_evidence(data: ProbeData, suite: probing.ProbeSuite, claim, context, *, figures: bool = True) -> Evidence:
    """Every statistic computable from the fitted suite, the per-layer figure and the matching figure."""
    inputs = data.suite_inputs
    test, train = inputs.test, inputs.train
    y = inputs.labels[test].astype(bool)
    units = Resampled.of(data.unit_of_item[test])
    seed = context.seed_for("bootstrap")
    n = units.n_units
    chosen = suite.test_decision[suite.selected]

    def auroc_of(scores):
        return lambda w: auroc_weighted(scores, y, w)

    def minus(a, b):
        return lambda w: a(w) - b(w)

    def estimate(statistic, **detail) -> Estimate:
        return _estimate(units.interval(statistic, claim, seed), n, detail)

    stats: dict[str, Estimate] = {
        "auroc": estimate(auroc_of(chosen), layer=suite.selected_hook),
        "auprc": estimate(lambda w: auprc_weighted(chosen, y, w), prevalence=float(y.mean())),
        "accuracy": estimate(lambda w: _accuracy(chosen > 0, y, w)),
    }
    for name in ("gc_only", "kmer", "position_only"):
        if name in suite.baselines:
            stats[f"{name}_auroc"] = estimate(auroc_of(suite.baselines[name]))
        else:
            stats[f"{name}_auroc"] = Estimate.missing("no genomic coordinates (give chrom, start, end columns)", n)
    stats["auroc_minus_gc"] = estimate(minus(auroc_of(chosen), auroc_of(suite.baselines["gc_only"])))
    stats["auroc_minus_kmer"] = estimate(minus(auroc_of(chosen), auroc_of(suite.baselines["kmer"])))
    if len(suite.random_label):
        stats["random_label_auroc"] = estimate(
            lambda w: np.mean([auroc_weighted(d, y, w) for d in suite.random_label], axis=0),
            permutations=len(suite.random_label))
    else:
        stats["random_label_auroc"] = Estimate.missing("random_label_permutations is 0", n)
    stats["gc_shift_auroc"] = _gc_shift_estimate(suite, y, units, claim, seed)
    matched, matching = _gc_matched_estimate(data, suite, chosen, claim, context)
    stats["auroc_minus_gc_matched"] = matched
    stats.update(_best_layer_estimates(suite, inputs.labels[train], Resampled.of(data.unit_of_item[train]), y, units,
                                       claim, context))
    layer_samples = _layer_aurocs(suite.test_decision, y, units, units.counts(claim, seed))  # the shared resamples
    drawn = [_layer_curve_figure(suite, y, layer_samples, stats, claim),
             _gc_matching_figure(data.gc[test], y, matching, claim)] if figures else []
    card = Card("probe", {
        "evaluated layer": suite.selected_hook, "selection": "named" if data.layer_hook else
        "highest held-out-fold AUROC on the train split", "pooling": claim.params.pooling,
        "label": claim.params.label, "inner folds": f"{claim.params.inner_folds} ({suite.fold_method})",
        "C by layer": dict(zip(suite.hooks, map(float, suite.C))),
        "train held-out-fold AUROC by layer": dict(zip(suite.hooks, np.round(suite.cv_auroc, 4).tolist())),
        "train windows": int(len(train)), "test windows": int(len(test)), "test sequences": n,
        "GC median (train)": round(suite.gc_median, 4), "GC matching": matching["summary"],
    })
    return Evidence(stats, figures=drawn, cards=[card], notes=matching["notes"])


def _estimate(interval, n: int, detail: dict[str, Any] | None = None, reason: str | None = None) -> Estimate:
    """An Estimate from a bootstrap Interval; missing (with the NaN share) when the interval is undefined."""
    values = (float(interval.estimate), float(interval.low), float(interval.high))
    if not np.isfinite(values).all():
        share = float(np.asarray(interval.nan_fraction).max())
        return Estimate.missing(reason or f"undefined: {share:.0%} of resamples lack a class", n)
    samples = column_samples(interval) if np.ndim(interval.samples) == 1 else None
    return Estimate(*values, n=n, min_n=MIN_N, detail=detail or {}, samples=samples)


def _accuracy(predicted: np.ndarray, truth: np.ndarray, weights: np.ndarray | None) -> np.ndarray:
    correct = (predicted == truth).astype(np.float64)
    if weights is None:
        return np.array([correct.mean()])
    return (weights @ correct) / weights.sum(axis=1)


def _gc_shift_estimate(suite, y, units: Resampled, claim, seed: int) -> Estimate:
    if len(suite.gc_shift) < 2:
        return Estimate.missing("a GC half of the train split lacks a class; the GC-shift probes cannot be fitted",
                                units.n_units)

    def worst(w):
        values = [auroc_weighted(scores, y[rows], None if w is None else w[:, rows])
                  for rows, scores in suite.gc_shift.values()]
        return np.minimum(*values)

    directions = {name: round(float(auroc_weighted(scores, y[rows])[0]), 4) for name, (rows, scores) in suite.gc_shift.items()}
    return _estimate(units.interval(worst, claim, seed), units.n_units, {"auroc_by_direction": directions,
                                                                        "gc_cut": round(suite.gc_median, 4)})


def _gc_matched_estimate(data: ProbeData, suite, chosen: np.ndarray, claim, context) -> tuple[Estimate, dict]:
    """auroc_minus_gc_matched on caliper-matched test pairs; the interval resamples pairs."""
    inputs = data.suite_inputs
    test = inputs.test
    gc, y = data.gc[test], inputs.labels[test]
    pairs = probing.gc_matched_pairs(gc, y, claim.params.gc_caliper, context.rng("gc_matching"))
    items = pairs.ravel()
    matching = {"pairs": pairs, "notes": [], "summary": {"pairs": int(len(pairs)), "test windows": int(len(test)),
                                                         "caliper": claim.params.gc_caliper}}
    if _already_gc_matched(gc, y, claim.params.gc_caliper) or len(items) == len(test):
        reason = ("the test split is already GC-matched (its classes pair up in GC order within the caliper, so the "
                  "matched subset is the whole split); auroc_minus_gc is the contrast on these data")
        matching["notes"].append(f"auroc_minus_gc_matched: {reason}")
        return Estimate.missing(reason, len(test)), matching
    if len(pairs) < MIN_MATCHED_PAIRS:
        return Estimate.missing(f"only {len(pairs)} GC-matched pairs within caliper {claim.params.gc_caliper}"), matching
    balance = probing.gc_balance(gc[pairs[:, 0]], gc[pairs[:, 1]])
    matching["summary"].update({k: round(v, 4) for k, v in balance.items()})
    if balance["ks_p"] < GC_BALANCE_ALPHA or abs(balance["smd"]) > GC_BALANCE_MAX_SMD:
        reason = (f"GC distributions of the matched classes still differ (KS p = {balance['ks_p']:.3g}, "
                  f"standardised mean difference {balance['smd']:.3g})")
        return Estimate.missing(reason, len(items)), matching
    truth = y[items].astype(bool)
    probe, gc_only = chosen[items], suite.baselines["gc_only"][items]
    pair_units = Resampled(np.repeat(np.arange(len(pairs)), 2), len(pairs))

    def contrast(w):
        return auroc_weighted(probe, truth, w) - auroc_weighted(gc_only, truth, w)

    detail = {"pairs": int(len(pairs)), "auroc_matched": round(float(auroc_weighted(probe, truth)[0]), 4),
              "gc_only_auroc_matched": round(float(auroc_weighted(gc_only, truth)[0]), 4), **balance}
    interval = pair_units.interval(contrast, claim, context.seed_for("bootstrap_matched"))
    return _estimate(interval, len(items), detail), matching


def _already_gc_matched(gc: np.ndarray, labels: np.ndarray, caliper: float) -> bool:
    """True when the classes are the same size and their sorted GC values pair up within the caliper: a
    matching that keeps every window exists, so matching cannot change the contrast."""
    positive, negative = np.sort(gc[labels == 1]), np.sort(gc[labels == 0])
    return len(positive) == len(negative) and bool(np.all(np.abs(positive - negative) <= caliper))


def _best_layer_estimates(suite, y_train, train_units: Resampled, y_test, test_units: Resampled, claim,
                          context) -> dict[str, Estimate]:
    """best_layer and best_layer_auroc (`stats.select_and_score`): the layer with the best held-out-fold AUROC
    on the resampled train sequences, scored on the resampled test sequences (the shared test resamples)."""
    n = test_units.n_units
    if claim.params.layer != "all":
        reason = f"the claim names layer {claim.params.layer}; best-layer statistics need layer: all"
        return {"best_layer": Estimate.missing(reason, n), "best_layer_auroc": Estimate.missing(reason, n)}
    layers = np.array([probing.layer_number(h) for h in suite.hooks], dtype=np.float64)

    def test_auroc_and_layer(counts):  # (B, L, 2): each layer's test AUROC and its number
        aurocs = _layer_aurocs(suite.test_decision, y_test, test_units, counts)
        return np.stack([aurocs, np.broadcast_to(layers, aurocs.shape)], axis=2)

    seeds = (context.seed_for("bootstrap_train"), context.seed_for("bootstrap"))
    chosen = select_and_score(partial(_layer_aurocs, suite.oof_train, y_train, train_units), test_auroc_and_layer,
                              train_units.n_units, n, seeds=seeds, n_resamples=claim.resamples, level=claim.ci_level)
    if chosen.index < 0:
        reason = "no layer has a defined held-out-fold AUROC on the train split"
        return {"best_layer": Estimate.missing(reason, n), "best_layer_auroc": Estimate.missing(reason, n)}
    detail = {"layer": suite.hooks[chosen.index],
              "selection_frequency": {h: round(float(f), 4) for h, f in zip(suite.hooks, chosen.frequency)}}
    auroc, layer = ((chosen.estimate[i], chosen.low[i], chosen.high[i]) for i in range(2))
    return {"best_layer": _checked(*layer, n, detail),
            "best_layer_auroc": _checked(*auroc, n, detail, samples=column_samples(chosen, 0))}


def _layer_aurocs(scores: np.ndarray, labels: np.ndarray, units: Resampled, counts: np.ndarray | None) -> np.ndarray:
    """(B, L) AUROC of every layer's scores (L, n_items) under unit counts (B, n_units); None: (1, L)."""
    if counts is None:
        return probing.auroc_weighted_rows(scores, labels)[None]
    return probing.auroc_weighted_rows(scores, labels, expand_to_items(counts, units.unit_of_item))


def _checked(point: float, low: float, high: float, n: int, detail: dict, samples=None) -> Estimate:
    if not np.isfinite([point, low, high]).all():
        return Estimate.missing("undefined: too many resamples lack a class", n)
    return Estimate(point, float(low), float(high), n=n, min_n=MIN_N, detail=detail, samples=samples)


# ---------------------------------------------------------------------------------------------
# Transfer to another species and a paired comparison with a second model


def check_transfer_target(claim) -> None:
    """`transfer` rebuilds the claim's genome dataset on another species: a user file has no species to
    rebuild on, and the claim's own species would repeat the test split."""
    transfer = claim.params.transfer
    if claim.data.dataset == "user":
        raise InputError(f"{claim.path}: params.transfer: a user dataset cannot be rebuilt on {transfer}; "
                         "remove transfer, or use a genome dataset (promoters, tata, splice_donors, ...)")
    if transfer == claim.data.species:
        raise InputError(f"{claim.path}: params.transfer: {transfer} is the claim's own species; "
                         "name another species")


def transfer_estimate(claim, context, suite, data: ProbeData) -> Estimate:
    """The evaluated probe scored on the `transfer` species' test-region windows of the same dataset."""
    params = claim.params
    other = context.inputs({"species": params.transfer})
    dataset = other.dataset
    test = dataset.indices("test")
    hook = suite.selected_hook
    sequences = [dataset.sequences[i] for i in test]
    features, _ = probing.pooled_activations(other.model, sequences, f"{dataset.content_hash}:test",
                                             probing.probe_hooks(other.model), params.pooling, params.position)
    labels = np.asarray(dataset.labels)[test].astype(bool)
    if params.label == "gc_content":
        labels = probing.gc_fraction(sequences) > suite.gc_median
    scores = suite.probe().decision_function(features[hook])
    source = dataset.source[test] if dataset.source is not None else test
    units = Resampled.of(source)
    interval = units.interval(lambda w: auroc_weighted(scores, labels, w), claim, context.seed_for("bootstrap_transfer"))
    return _estimate(interval, units.n_units, {"species": params.transfer, "layer": hook,
                                               "windows": int(len(test)), "dataset": dataset.name})


def model_b_estimates(claim, context, suite, data: ProbeData) -> dict[str, Estimate]:
    """model_b_auroc and auroc_minus_model_b on the same test sequences (shared resamples)."""
    params = claim.params
    model_b = load_model(params.model_b)
    inputs = data.suite_inputs
    data_b = probe_data_for(model_b, data.dataset, params, labels=inputs.labels)
    suite_b = probing.fit_suite(data_b.suite_inputs, suite_settings(params, context, data_b.layer_hook))
    test = inputs.test
    y = inputs.labels[test].astype(bool)
    units = Resampled.of(data.unit_of_item[test])
    seed = context.seed_for("bootstrap")
    a, b = suite.test_decision[suite.selected], suite_b.test_decision[suite_b.selected]
    detail = {"model_b": params.model_b.describe(), "model_b_layer": suite_b.selected_hook, "layer": suite.selected_hook}
    return {
        "model_b_auroc": _estimate(units.interval(lambda w: auroc_weighted(b, y, w), claim, seed), units.n_units, detail),
        "auroc_minus_model_b": _estimate(
            units.interval(lambda w: auroc_weighted(a, y, w) - auroc_weighted(b, y, w), claim, seed),
            units.n_units, detail),
    }


# ---------------------------------------------------------------------------------------------
# Figures


def _layer_curve_figure(suite, y: np.ndarray, layer_samples: np.ndarray, stats: dict[str, Estimate], claim) -> Figure:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layers = np.array([probing.layer_number(h) for h in suite.hooks])
    point = probing.auroc_weighted_rows(suite.test_decision, y)
    low, high = percentile_interval(layer_samples, claim.ci_level)
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    ax.plot(layers, point, "o-", color="C0", label="probe (test AUROC)")
    ax.fill_between(layers, low, high, color="C0", alpha=0.2, label=f"{claim.ci_level:.0%} interval")
    ax.plot([layers[suite.selected]], [point[suite.selected]], "*", color="C3", markersize=14,
            label="evaluated layer")
    colours = {"gc_only_auroc": "C1", "kmer_auroc": "C2", "position_only_auroc": "C4", "random_label_auroc": "C7"}
    for name, colour in colours.items():
        value = stats.get(name)
        if value is None or value.is_missing:
            continue
        ax.axhline(value.estimate, color=colour, linestyle="--", label=name.replace("_auroc", ""))
        ax.axhspan(value.ci_low, value.ci_high, color=colour, alpha=0.08)
    ax.axhline(0.5, color="black", linewidth=0.6)
    ax.set_xticks(layers, ["embed" if l < 0 else str(l) for l in layers])
    ax.set_xlabel("layer")
    ax.set_ylabel("AUROC")
    ax.set_ylim(0.3, 1.02)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    ax.set_title(claim.id, fontsize=9)
    return figure_from_matplotlib(fig, "Per-layer probe AUROC with baselines",
                                  "Test-split AUROC by layer with bootstrap band; dashed: sequence-only baselines.")


def _gc_matching_figure(gc: np.ndarray, y: np.ndarray, matching: dict, claim) -> Figure:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pairs = matching["pairs"]
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.2), sharex=True)
    bins = np.linspace(np.nanmin(gc), np.nanmax(gc), 30) if len(gc) else 10
    panels = (("test split", gc[y], gc[~y]), (f"after matching ({len(pairs)} pairs)", gc[pairs[:, 0]], gc[pairs[:, 1]]))
    for ax, (title, positive, negative) in zip(axes, panels):
        ax.hist(positive, bins=bins, alpha=0.5, color="C3", label="label 1")
        ax.hist(negative, bins=bins, alpha=0.5, color="C0", label="label 0")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("GC fraction")
    axes[0].set_ylabel("windows")
    axes[0].legend(fontsize=7)
    return figure_from_matplotlib(fig, "GC distribution of each class before and after matching",
                                  f"Test split; caliper {claim.params.gc_caliper}.")


# ---------------------------------------------------------------------------------------------
# Calibration on label-permuted data


def null_verdicts(data: ProbeData, params: ProbeParams, criteria: list[tuple[str, str, float]],
                  replicates: range, *, ci_level: float = 0.95, resamples: int = 1000) -> np.ndarray:
    """Criterion verdicts on label-permuted copies of `data`: (len(replicates), len(criteria)) str.

    Replicate r permutes the labels within each split (seed r) and evaluates with claim seed r, so every
    criterion (statistic, op, threshold) is judged on data where the label carries no signal."""
    from types import SimpleNamespace

    from seqclaims.core.families import Context
    from seqclaims.core.verdicts import criterion_verdict
    from seqclaims.paths import cache_dir

    inputs = data.suite_inputs
    out = np.empty((len(replicates), len(criteria)), dtype=object)
    for row, replicate in enumerate(replicates):
        claim = SimpleNamespace(id=f"null-{replicate}", seed=replicate, params=params, ci_level=ci_level,
                                resamples=resamples)
        context = Context(claim=claim, cache_dir=cache_dir())
        labels = _permuted_within_splits(inputs.labels, inputs.split, np.random.default_rng(replicate))
        permuted = ProbeData(probing.SuiteInputs(inputs.features, labels, inputs.split, inputs.sequences,
                                                 inputs.coords, inputs.activation_key),
                             data.layer_hook, data.unit_of_item, data.gc, data.dataset)
        suite = probing.fit_suite(permuted.suite_inputs, suite_settings(params, context, data.layer_hook), use_cache=False)
        statistics = probe_evidence(permuted, suite, claim, context, figures=False).statistics
        for column, (name, op, threshold) in enumerate(criteria):
            out[row, column] = criterion_verdict(statistics[name], op, threshold).verdict
    return out


def _permuted_within_splits(labels: np.ndarray, split: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    permuted = np.array(labels, copy=True)
    for part in np.unique(split):
        rows = np.flatnonzero(split == part)
        permuted[rows] = rng.permutation(permuted[rows])
    return permuted


FAMILY = Family(
    name="probe",
    summary="logistic probe on pooled activations of a layer against GC, k-mer, position and random-label baselines",
    params=ProbeParams,
    statistics=STATISTICS,
    evaluate=evaluate,
    min_n=MIN_N,
    example={
        "model": "organism",
        "data": {"dataset": "promoters", "species": "athaliana", "n": 2000, "gc_match": False},
        "params": {"layer": "all", "pooling": "mean"},
        "criteria": [{"statistic": "auroc_minus_init", "op": ">=", "threshold": 0.05},
                     {"statistic": "auroc_minus_gc_matched_minus_init", "op": ">=", "threshold": 0.05}],
    },
)
