"""rc_consistency: are a layer's representations of a sequence's reverse complement derivable from those of
the sequence (DNAtlas's reverse-complement equivariance)?

Evidence: per-base representations (each base's token's, at `layer.{layer}.{site}`) of every window x and of
its reverse complement rc(x), from the shared activation cache.

Definitions. Base i of x and base L-1-i of rc(x) are the two strands of one base pair. On the train split,
a linear map (least squares, a ridge of 1e-6 of the mean variance) is fitted from the representation of
base i of x to that of base L-1-i of rc(x); on the test split:
- rc_equivariance: R^2 of that map, 1 - squared error / total sum of squares about the mean, pooled over
  channels and bases. 1 when rc(x)'s representations are a linear function of x's at the same base pair,
  as in a reverse-complement parameter-sharing model (a channel permutation); a model that processes the
  two strands unrelatedly reaches only what the base pair's local content allows.
- rc_shuffled: the same with base i of x paired with a random base of rc(x) (one permutation per window,
  seeded), its own map fitted on train: what a sequence-level resemblance alone gives.
- rc_equivariance_over_shuffled: rc_equivariance minus rc_shuffled, paired over the same test windows.
- rc_beyond_sequence: how much of what the base pair's local sequence leaves unexplained x's representation
  explains: 1 - SSE([x's representation, sequence]) / SSE(sequence), both maps fitted on train, where
  sequence = one-hot of the `sequence_k`-mer (default 3) centred on base i of x (its complement is the
  k-mer around base L-1-i of rc(x)). Every model's representations carry the base pair, which maps to its
  complement linearly, so rc_equivariance is high for nearly any model; this statistic is 1 for a
  reverse-complement parameter-sharing model and near 0 for one whose strands see unrelated context.
- rc_equivariance_minus_compared, rc_beyond_sequence_minus_compared (`compare_to: <model>`): the
  statistic minus the other model's on the same windows, paired.
Intervals: percentile bootstrap over test windows (`resamples`, `ci_level`), the map fixed; n: test
windows. Minimum n: 20.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from seqclaims.core.evidence import Estimate, Evidence
from seqclaims.core.families import Family, Statistic
from seqclaims.core.schema import StrictModel
from seqclaims.inputs.models import ModelRef
from seqclaims.methods import geometry as geo

MIN_N = 20


class RcParams(StrictModel):
    layer: int = Field(ge=0, description="layer whose representations are compared")
    site: Literal[geo.SITES] = Field("resid_post", description="which representation of the layer")
    sequence_k: int = Field(3, ge=1, le=5, description="k of the centred one-hot k-mer sequence baseline (odd)")
    compare_to: ModelRef | None = Field(None, description="a second model for the _minus_compared statistics")

    @model_validator(mode="after")
    def _odd_k(self) -> "RcParams":
        if self.sequence_k % 2 == 0:
            raise ValueError(f"sequence_k must be odd (got {self.sequence_k}), so that the k-mer is centred on the base")
        return self


def strand_fits(model, claim, dataset, seed: int) -> dict[str, geo.Interval]:
    """rc_equivariance and rc_shuffled of one model on the claim's windows (same resamples for every model)."""
    hook = geo.representation_hook(claim, model, claim.params.layer, claim.params.site)
    forward = geo.nucleotide_representations(model, dataset.sequences, hook, dataset.content_hash)
    reverse = geo.nucleotide_representations(model, geo.reverse_complements(dataset.sequences), hook,
                                             geo.derived_hash(dataset.content_hash, "reverse-complement"))
    rng = np.random.default_rng(seed)
    shuffles = [rng.permutation(len(f)) for f in forward]
    split = np.asarray(dataset.split)
    train, test = np.flatnonzero(split == "train"), np.flatnonzero(split == "test")
    out = {}
    for name, alignment in (("rc_equivariance", [None] * len(forward)), ("rc_shuffled", shuffles)):
        pairs = [geo.aligned_rc_pairs(f, r, a) for f, r, a in zip(forward, reverse, alignment)]
        fitted = geo.fit_linear_map(np.concatenate([pairs[i][0] for i in train]),
                                    np.concatenate([pairs[i][1] for i in train]))
        sums = geo.rc_sums([pairs[i] for i in test], fitted)
        out[name] = geo.ratio_interval(sums, geo.r_squared_from_sums, resamples=claim.resamples,
                                       seed=seed + 1, level=claim.ci_level)
    k = claim.params.sequence_k
    with_sequence = []
    for f, r, sequence in zip(forward, reverse, dataset.sequences):
        context = geo.centred_kmer_one_hot(sequence, k)
        x, y = geo.aligned_rc_pairs(np.hstack([f, context]), r)
        with_sequence.append((x[:, : f.shape[1]], y, x[:, f.shape[1]:]))
    train_rows = [with_sequence[i] for i in train]
    y_train = np.concatenate([p[1] for p in train_rows])
    both = geo.fit_linear_map(np.concatenate([np.hstack([p[0], p[2]]) for p in train_rows]), y_train)
    alone = geo.fit_linear_map(np.concatenate([p[2] for p in train_rows]), y_train)
    sums = geo.residual_sums([with_sequence[i] for i in test], both, alone)
    out["rc_beyond_sequence"] = geo.ratio_interval(sums, geo.explained_beyond, resamples=claim.resamples,
                                                   seed=seed + 1, level=claim.ci_level)
    return out


def evaluate(claim, context) -> Evidence:
    inputs = context.inputs()
    dataset = inputs.dataset
    if not ((np.asarray(dataset.split) == "train").any() and (np.asarray(dataset.split) == "test").any()):
        statistics = {name: Estimate.missing("needs windows in both the train and the test split")
                      for name in FAMILY.statistics}
        return Evidence(statistics=statistics, cards=inputs.cards)
    seed = context.seed_for("rc")
    ours = strand_fits(inputs.model, claim, dataset, seed)
    level = claim.ci_level
    statistics = {
        "rc_equivariance": geo.as_estimate(ours["rc_equivariance"], MIN_N),
        "rc_shuffled": geo.as_estimate(ours["rc_shuffled"], MIN_N),
        "rc_equivariance_over_shuffled": geo.as_estimate(
            geo.difference_of(ours["rc_equivariance"], ours["rc_shuffled"], level), MIN_N),
        "rc_beyond_sequence": geo.as_estimate(ours["rc_beyond_sequence"], MIN_N),
    }
    other_model = geo.compared_model(claim)
    other = strand_fits(other_model, claim, dataset, seed) if other_model is not None else None
    for name in ("rc_equivariance", "rc_beyond_sequence"):
        statistics[f"{name}_minus_compared"] = (
            Estimate.missing("the claim compares with no model (params.compare_to)") if other is None else
            geo.as_estimate(geo.difference_of(ours[name], other[name], level), MIN_N,
                            compared=other_model.ref.describe()))
    evidence = Evidence(statistics=statistics, cards=inputs.cards)
    evidence.versions.update(inputs.versions)
    return evidence


FAMILY = Family(
    name="rc_consistency",
    summary="R^2 of the best linear map from a layer's representation of each base pair on one strand to the "
            "other strand's, fitted on train, scored on test, against a shuffled alignment",
    params=RcParams,
    statistics={
        "rc_equivariance": Statistic("test R^2 of the linear map from x's base i to rc(x)'s base L-1-i", init=True),
        "rc_shuffled": Statistic("the same with a random base of rc(x)"),
        "rc_equivariance_over_shuffled": Statistic("rc_equivariance minus rc_shuffled, paired", control=True),
        "rc_beyond_sequence": Statistic("share of the local-sequence map's error that x's representation removes",
                                        init=True, control=True),
        "rc_equivariance_minus_compared": Statistic("rc_equivariance minus compare_to's, paired", control=True),
        "rc_beyond_sequence_minus_compared": Statistic("rc_beyond_sequence minus compare_to's, paired", control=True),
    },
    evaluate=evaluate,
    min_n=MIN_N,
    example={
        "model": "organism",
        "data": {"dataset": "promoters", "n": 200},
        "params": {"layer": 1},
        "criteria": [{"statistic": "rc_equivariance_over_shuffled", "op": ">", "threshold": 0.0},
                     {"statistic": "rc_equivariance_minus_init", "op": ">", "threshold": 0.0}],
    },
)
