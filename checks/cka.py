"""cka: how similar are two representations of the same bases (layers, models or checkpoints)?

Evidence: per-base representations (each base's token's) at `layer.{layer}.{site}` of the claim's model and
at `other.layer` / `other.site` of `other.model` (default: the claim's model), on the same windows, from the
shared activation cache; models with different tokenizers are compared base by base.

Definitions:
- cka: linear CKA between the two representations over all bases of all windows (bases defined in both),
  with the unbiased HSIC estimator of Song et al. (2012): HSIC_1(K, L) / sqrt(HSIC_1(K, K) HSIC_1(L, L))
  for K = A A^T, L = B B^T, computed from per-window sums without an n x n matrix. Unlike the plug-in
  estimator, its expectation is about 0 for independent representations whatever their dimension (the
  plug-in CKA of two unrelated 128-dimensional representations of a few hundred points is far above 0).
- cka_shuffled: the same with the other representation's bases permuted within each window (seeded): the
  similarity that window-level resemblance alone gives.
- cka_over_shuffled: cka minus cka_shuffled, paired.
Intervals: normal intervals with the delete-one-window jackknife standard error (`ci_level`; a bootstrap
over windows would pair a repeated window's bases with their own copies, which the unbiased estimator takes
for new examples, and put two independent representations' resamples above their estimate); n: windows.
Minimum n: 20.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field

from seqclaims.core.evidence import Evidence
from seqclaims.core.families import Family, Statistic
from seqclaims.core.schema import StrictModel
from seqclaims.inputs.models import ModelRef, load_model
from seqclaims.methods import geometry as geo

MIN_N = 20


class OtherRepresentation(StrictModel):
    model: ModelRef | None = Field(None, description="the other model (default: the claim's)")
    layer: int = Field(ge=0)
    site: Literal[geo.SITES] = "resid_post"


class CkaParams(StrictModel):
    layer: int = Field(ge=0, description="layer of the claim's model")
    site: Literal[geo.SITES] = "resid_post"
    other: OtherRepresentation = Field(description="the representation compared with")


def evaluate(claim, context) -> Evidence:
    params = claim.params
    inputs = context.inputs()
    dataset = inputs.dataset
    other_model = inputs.model if params.other.model is None else load_model(params.other.model)
    mine = geo.nucleotide_representations(inputs.model, dataset.sequences,
                                          geo.representation_hook(claim, inputs.model, params.layer, params.site),
                                          dataset.content_hash)
    theirs = geo.nucleotide_representations(
        other_model, dataset.sequences, geo.representation_hook(claim, other_model, params.other.layer, params.other.site),
        dataset.content_hash)
    rng = context.rng("cka-shuffle")
    level = claim.ci_level
    aligned, shuffled = [], []
    for a, b in zip(mine, theirs):
        both = np.all(np.isfinite(a), axis=1) & np.all(np.isfinite(b), axis=1)
        a, b = a[both], b[both]
        aligned.append(geo.cka_sums(a, b))
        shuffled.append(geo.cka_sums(a, b[rng.permutation(len(b))]))
    cka = geo.cka_interval(aligned, level=level)
    control = geo.cka_interval(shuffled, level=level)
    described = f"{other_model.ref.describe()} layer {params.other.layer} {params.other.site}"
    statistics = {"cka": geo.as_estimate(cka, MIN_N, other=described),
                  "cka_shuffled": geo.as_estimate(control, MIN_N, other=described),
                  "cka_over_shuffled": geo.as_estimate(geo.difference_of(cka, control, claim.ci_level), MIN_N)}
    evidence = Evidence(statistics=statistics, cards=inputs.cards)
    evidence.versions.update(inputs.versions)
    return evidence


FAMILY = Family(
    name="cka",
    summary="debiased linear CKA between two representations of the same bases (layers, models, checkpoints)",
    params=CkaParams,
    statistics={
        "cka": Statistic("debiased linear CKA over all bases", init=True),
        "cka_shuffled": Statistic("the same with the other representation's bases permuted within windows"),
        "cka_over_shuffled": Statistic("cka minus cka_shuffled, paired", init=True, control=True),
    },
    evaluate=evaluate,
    min_n=MIN_N,
    example={
        "model": "organism",
        "data": {"dataset": "promoters", "n": 200},
        "params": {"layer": 1, "other": {"layer": 0}},
        "criteria": [{"statistic": "cka_over_shuffled_minus_init", "op": ">", "threshold": 0.0}],
    },
)
