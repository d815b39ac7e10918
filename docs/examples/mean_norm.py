"""mean_norm: is the mean norm of a hook's mean-pooled activation at least some value? (the README's example)"""

import numpy as np
from pydantic import Field

from seqclaims import Estimate, Evidence, Family, Statistic, StrictModel, bootstrap
from seqclaims.inputs.cache import extract


class Params(StrictModel):  # unknown keys are errors; every field is documented
    hook: str = Field(description="hook point, e.g. layer.2.resid_post")


def evaluate(claim, context) -> Evidence:
    inputs = context.inputs()  # the claim's model and dataset, both cached
    dataset, hook = inputs.dataset, claim.params.hook
    pooled = extract(inputs.model, dataset.sequences, [hook], dataset_hash=dataset.content_hash, reduce="mean")[hook]
    norms = np.linalg.norm(pooled[dataset.split == "test"], axis=1)  # (n_test,)

    def mean_norm(weights):  # None: the point estimate; else (n_resamples, n_test) resampling weights
        return np.array([norms.mean()]) if weights is None else weights @ norms / weights.sum(axis=1)

    interval = bootstrap(mean_norm, norms.size, n_resamples=claim.resamples, seed=context.seed_for("bootstrap"),
                         level=claim.ci_level)
    estimate = Estimate(float(interval.estimate), float(interval.low), float(interval.high), int(norms.size), min_n=20)
    return Evidence(statistics={"mean_norm": estimate}, cards=inputs.cards)


FAMILY = Family(
    name="mean_norm",
    summary="mean L2 norm of a hook's mean-pooled activation over the test sequences",
    params=Params,
    statistics={"mean_norm": Statistic("mean norm over test sequences; percentile bootstrap interval over sequences")},
    evaluate=evaluate,
    min_n=20,
    example={"model": "organism", "data": {"dataset": "promoters", "n": 400},
             "params": {"hook": "layer.2.resid_post"},
             "criteria": [{"statistic": "mean_norm", "op": ">=", "threshold": 1.0}]},
    alphabets=("dna", "protein"),  # the sequences its statistic means something on
    whole_sequences=True,  # it resamples rows as independent sequences
)
