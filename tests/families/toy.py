"""A test-only check family: the mean of synthetic normal draws.

It exercises every path of the framework without a model: estimates with intervals, a p-value,
a ceiling, a figure and a card, an unavailable dataset (skip) and a failure inside the family (error).
"""

from __future__ import annotations

import numpy as np
from pydantic import Field
from scipy import stats as scipy_stats

from seqclaims.core.evidence import Card, Ceiling, Estimate, Evidence
from seqclaims.core.families import Family, Statistic
from seqclaims.core.schema import StrictModel
from seqclaims.errors import Unavailable
from seqclaims.methods.stats import bootstrap, correct_pvalues


class ToyParams(StrictModel):
    effect: float = Field(0.0, description="true mean of the draws")
    sd: float = Field(1.0, gt=0, description="standard deviation of the draws")
    ceiling: float | None = Field(None, description="if set, an ideal mechanism reaches this mean")
    explode: bool = Field(False, description="raise inside the family (tests error handling)")
    groups: int = Field(5, ge=1, description="the draws are split into this many groups for min_p")


class ToyData(StrictModel):
    dataset: str = Field(description="'synthetic', or 'missing' to test an unavailable dataset")
    n: int = Field(200, ge=0, description="number of draws")


def evaluate(claim, context) -> Evidence:
    params, data = claim.params, claim.data
    if params.explode:
        raise RuntimeError("the toy family was asked to fail")
    if data.dataset == "missing":
        raise Unavailable("dataset 'missing' is not available locally; use dataset: synthetic")
    draws = context.rng("draws").normal(params.effect, params.sd, size=data.n)
    return Evidence(statistics={
        "mean": _mean_estimate(draws, context, claim.ci_level, params.ceiling),
        "p_value": _p_value(draws),
        "n_draws": Estimate(float(data.n), float(data.n), float(data.n), data.n, kind="count"),
        "min_p": _min_group_p(draws, params.groups, claim.correction or "bonferroni"),
    }, cards=[Card("toy data", {"n": data.n, "effect": params.effect})])


def _mean_estimate(draws: np.ndarray, context, level: float, ceiling: float | None) -> Estimate:
    if draws.size == 0:
        return Estimate.missing("no draws", n=0)
    def weighted_mean(weights):
        if weights is None:
            return np.array([draws.mean()])
        return weights @ draws / weights.sum(axis=1)

    interval = bootstrap(weighted_mean, draws.size, n_resamples=context.claim.resamples,
                         seed=context.seed_for("bootstrap"), level=level)
    top = None if ceiling is None else Ceiling(ceiling, ceiling - 0.01, ceiling + 0.01)
    return Estimate(float(interval.estimate), float(interval.low), float(interval.high), int(draws.size), min_n=10,
                    ceiling=top,
                    effect_size=float(draws.mean() / draws.std(ddof=1)) if draws.size > 1 else None)


def _min_group_p(draws: np.ndarray, groups: int, correction: str) -> Estimate:
    """The smallest corrected p-value over groups of draws: a selection among many candidates."""
    parts = [part for part in np.array_split(draws, groups) if part.size >= 2]
    if not parts:
        return Estimate.missing("fewer than two draws per group", n=int(draws.size))
    raw = np.array([scipy_stats.ttest_1samp(part, 0.0, alternative="greater").pvalue for part in parts])
    return Estimate.pvalue(float(correct_pvalues(raw, correction).min()), int(draws.size))


def _p_value(draws: np.ndarray) -> Estimate:
    if draws.size < 2:
        return Estimate.missing("fewer than two draws", n=int(draws.size))
    p = float(scipy_stats.ttest_1samp(draws, 0.0, alternative="greater").pvalue)
    return Estimate.pvalue(p, int(draws.size))


FAMILY = Family(
    name="toy",
    summary="mean of synthetic normal draws (test-only)",
    params=ToyParams,
    data_schema=ToyData,
    statistics={
        "mean": Statistic("sample mean, percentile bootstrap interval"),
        "p_value": Statistic("one-sided t-test p-value against mean 0", kind="pvalue"),
        "n_draws": Statistic("number of draws", kind="count"),
        "min_p": Statistic("smallest corrected p-value over groups of draws", kind="pvalue", selection=True),
    },
    evaluate=evaluate,
    min_n=10,
    needs_model=False,
    example={"model": "none", "data": {"dataset": "synthetic", "n": 200},
             "params": {"effect": 0.5, "sd": 1.0},
             "criteria": [{"statistic": "mean", "op": ">=", "threshold": 0.2}]},
)
