"""The randomization control of every family that reads a model (DESIGN section 3).

A family marks its key statistics `init` (`core.families.Statistic`). After the family has computed its
evidence on the claim's model, the judge evaluates the same claim (same data, same parameters, same seeds) on
`claim.init_seeds` randomly initialised copies of the model (`inputs.init_models.init_copy`, seeded from the
claim's seed) and adds, for each key statistic s:

- s_init: s on the copies (their mean, resample by resample, when there are several);
- s_minus_init: s minus s_init. The copies see the same sequences and the family draws its resamples from the
  same seeds, so resample b of the model and resample b of each copy rest on the same sequences: the interval
  is the percentile interval of the resample-by-resample differences (paired; where the family's interval is a
  delete-one jackknife over windows, the jackknife interval of the paired leave-one-out differences). A selection statistic (the best
  head, unit or layer) is selected again on each copy's own train split, inside every resample, by the family.
  Where a family gives no resamples for a statistic, the interval is the normal approximation from the two
  intervals' half-widths (unpaired, wider when the two are positively correlated), and the detail says so.
  Random networks differ from one another, and resampling sequences cannot see that: with several copies
  the interval is widened by their spread (`widened_by_copy_spread`), so that a network that learned nothing
  is supported no more often than the interval's level allows. The templates ask for three copies.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from seqclaims.core.families import INIT_SUFFIX, MINUS_INIT_SUFFIX, Context, Family
from seqclaims.core.input_specs import ModelRef
from seqclaims.core.schema import Claim
from seqclaims.core.values import Estimate
from seqclaims.errors import SeqclaimsError
from seqclaims.inputs import init_models
from seqclaims.methods.stats import jackknife_bounds, percentile_interval

SEED_SPACE = 2**31  # torch.manual_seed takes any 64-bit integer; a shorter seed is easier to read in a card


def init_seeds(claim: Claim, context: Context) -> list[int]:
    """The seeds of the claim's randomly initialised copies: derived from the claim's seed."""
    return [context.seed_for(f"init-{i}") % SEED_SPACE for i in range(claim.init_seeds)]


def init_statistics(claim: Claim, family: Family, context: Context, statistics: dict[str, Estimate]) -> dict[str, Estimate]:
    """<s>_init and <s>_minus_init of every key statistic `statistics` holds; {} when the family marks none or
    the claim asks for no copies. A copy whose evaluation fails gives missing statistics with the reason."""
    names = [name for name in family.init_statistics if name in statistics]
    if not names or claim.init_seeds == 0 or not family.needs_model:
        return {}
    if not isinstance(claim.model, (str, ModelRef)):  # an embedded name, or a folder or hub reference
        return _all_missing(names, "the claim's model is not a single model; no initialised copy is made")
    runs = []
    for seed in init_seeds(claim, context):
        copy = replace(claim, model=init_models.init_copy(claim.model, seed))
        try:
            runs.append(family.evaluate(copy, replace(context, claim=copy, whole_sequences=family.whole_sequences)).statistics)
        except SeqclaimsError as exc:
            return _all_missing(names, f"the randomly initialised copy could not be evaluated: {exc.message}")
    level = claim.ci_level
    out: dict[str, Estimate] = {}
    for name in names:
        copies = [run.get(name) for run in runs]
        if any(c is None for c in copies):
            out.update(_all_missing([name], "the randomly initialised copy did not produce it"))
            continue
        out[name + INIT_SUFFIX] = mean_of_copies(copies, level)
        difference = paired_difference(statistics[name], out[name + INIT_SUFFIX], level)
        out[name + MINUS_INIT_SUFFIX] = widened_by_copy_spread(difference, copies, level)
    return out


def widened_by_copy_spread(difference: Estimate, copies: list[Estimate], level: float) -> Estimate:
    """The paired interval widened by how much randomly initialised networks differ from one another.

    Resampling sequences holds the networks fixed; but were the model itself a network that learned nothing,
    it would differ from the copies' mean as one random network differs from the mean of k others: a
    spread sd * sqrt(1 + 1/k), sd the standard deviation of the k copies' estimates. Each bound is moved
    out to the root of the sum of squares of its paired half-width and t(k - 1) * sd * sqrt(1 + 1/k)
    (Student's t at the interval's level). With one copy the spread cannot be estimated: the interval is
    the paired one, and the detail says that the spread between networks is not in it."""
    if difference.is_missing:
        return difference
    k = len(copies)
    if k < 2:
        return replace(difference, detail={**difference.detail, "between_copies": "one copy: the spread between "
                                           "random networks is not in the interval (init_seeds >= 3 puts it in)"})
    from scipy.stats import t

    sd = float(np.std([c.estimate for c in copies], ddof=1))
    spread = float(t.ppf(0.5 + level / 2, k - 1)) * sd * math.sqrt(1 + 1 / k)
    point = difference.estimate
    low = point - math.hypot(point - difference.ci_low, spread)
    high = point + math.hypot(difference.ci_high - point, spread)
    return replace(difference, ci_low=low, ci_high=high,
                   detail={**difference.detail, "between_copies": f"{k} copies, sd {sd:.4g}, t({k - 1}) spread "
                           f"{spread:.4g} added in quadrature"})


def mean_of_copies(copies: list[Estimate], level: float) -> Estimate:
    """The statistic on the copies: one copy as it is, several as their mean, resample by resample."""
    if len(copies) == 1:
        return copies[0]
    point = float(np.mean([c.estimate for c in copies]))
    samples = _stacked_samples(copies)
    if samples is None:
        return Estimate.missing("the copies' resamples are not available to average", n=copies[0].n)
    mean = samples.mean(axis=0)
    kind = copies[0].samples_kind
    low, high = jackknife_bounds(point, mean, level) if kind == "jackknife" else percentile_interval(mean, level)
    return Estimate(point, float(low), float(high), copies[0].n, min_n=copies[0].min_n, samples=mean,
                    samples_kind=kind, detail={"copies": [c.estimate for c in copies]})


def paired_difference(model: Estimate, init: Estimate, level: float) -> Estimate:
    """model minus init: paired over the resamples when both carry them, else by the normal approximation."""
    point = model.estimate - init.estimate
    reason = model.reason or init.reason
    if not math.isfinite(point):
        return Estimate.missing(reason or "the statistic is undefined on the model or on its copy", n=model.n)
    detail = {"model": model.estimate, "init": init.estimate}
    paired = model.samples is not None and init.samples is not None and \
        np.shape(model.samples) == np.shape(init.samples) and model.samples_kind == init.samples_kind
    jackknife = model.samples_kind == "jackknife"
    if paired:
        samples = np.asarray(model.samples, dtype=float) - np.asarray(init.samples, dtype=float)
        low, high = jackknife_bounds(point, samples, level) if jackknife else percentile_interval(samples, level)
        detail["interval"] = f"paired {'leave-one-out values' if jackknife else 'resamples'}"
    else:
        samples = None
        low, high = _unpaired_interval(point, model, init, level)
        detail["interval"] = "normal approximation, unpaired"
    if not (math.isfinite(low) and math.isfinite(high)):
        return Estimate(point, math.nan, math.nan, model.n, min_n=model.min_n, detail=detail,
                        reason="too many undefined resamples for an interval")
    return Estimate(point, float(low), float(high), model.n, min_n=model.min_n, samples=samples, detail=detail,
                    samples_kind=model.samples_kind if paired else "bootstrap")


def _unpaired_interval(point: float, model: Estimate, init: Estimate, level: float) -> tuple[float, float]:
    from scipy.stats import norm

    z = norm.ppf(0.5 + level / 2)
    half_widths = [(e.ci_high - e.ci_low) / 2 for e in (model, init)]
    se = math.sqrt(sum((w / z) ** 2 for w in half_widths))
    return point - z * se, point + z * se


def _stacked_samples(copies: list[Estimate]) -> np.ndarray | None:
    if any(c.samples is None for c in copies) or len({(np.shape(c.samples), c.samples_kind) for c in copies}) != 1:
        return None
    return np.stack([np.asarray(c.samples, dtype=float) for c in copies])


def _all_missing(names: list[str], reason: str) -> dict[str, Estimate]:
    return {name + suffix: Estimate.missing(reason) for name in names for suffix in (INIT_SUFFIX, MINUS_INIT_SUFFIX)}
