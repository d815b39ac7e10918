"""Three-valued verdicts (DESIGN section 3).

A criterion passes when the whole confidence interval satisfies the comparison, fails when the whole
interval violates it, and is inconclusive otherwise: when the interval straddles the threshold, when
the evidence is thinner than the family's minimum n, when the estimate is missing, or when even an
ideal mechanism could not have met the threshold (unreachable criterion).
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass

from seqclaims.core.values import Estimate

PASS, FAIL, INCONCLUSIVE = "pass", "fail", "inconclusive"
SUPPORTED, REFUTED = "supported", "refuted"

COMPARISONS = {">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt}
FLIPPED = {">=": "<", ">": "<=", "<=": ">", "<": ">="}


@dataclass(frozen=True)
class CriterionVerdict:
    verdict: str
    reason: str = ""


def compare(value: float, op: str, threshold: float) -> bool:
    return COMPARISONS[op](value, threshold)


def interval_verdict(low: float, high: float, op: str, threshold: float) -> str:
    """pass if every value of [low, high] satisfies `op threshold`, fail if none does, else inconclusive."""
    satisfied_at_low, satisfied_at_high = compare(low, op, threshold), compare(high, op, threshold)
    if satisfied_at_low and satisfied_at_high:
        return PASS
    if not satisfied_at_low and not satisfied_at_high:
        return FAIL
    return INCONCLUSIVE


def unreachable(estimate: Estimate, op: str, threshold: float) -> bool:
    """True when the ideal mechanism's whole interval misses the threshold, so a fail would mean nothing."""
    ceiling = estimate.ceiling
    if ceiling is None or not all(math.isfinite(v) for v in (ceiling.estimate, ceiling.ci_low, ceiling.ci_high)):
        return False  # a broken ceiling must never turn a fail into "unreachable"
    return interval_verdict(ceiling.ci_low, ceiling.ci_high, op, threshold) == FAIL


def criterion_verdict(estimate: Estimate | None, op: str, threshold: float) -> CriterionVerdict:
    if estimate is None:
        return CriterionVerdict(INCONCLUSIVE, "statistic not produced")
    if estimate.is_missing:
        return CriterionVerdict(INCONCLUSIVE, estimate.reason or "no estimate")
    if estimate.n < max(estimate.min_n, 1):
        return CriterionVerdict(INCONCLUSIVE, f"evidence too thin: n={estimate.n} < minimum {max(estimate.min_n, 1)}")
    verdict = interval_verdict(estimate.ci_low, estimate.ci_high, op, threshold)
    if verdict != PASS and unreachable(estimate, op, threshold):
        return CriterionVerdict(INCONCLUSIVE, "unreachable criterion")
    if verdict == INCONCLUSIVE:
        return CriterionVerdict(INCONCLUSIVE, "interval straddles the threshold")
    return CriterionVerdict(verdict)


def claim_verdict(criterion_verdicts: list[str], decision: str = "all") -> str:
    """Combine criterion verdicts. `all`: supported iff every criterion passes, refuted if any fails.
    `any` is the dual: supported if any passes, refuted iff every criterion fails. No criteria: inconclusive."""
    if not criterion_verdicts:
        return INCONCLUSIVE
    if decision == "all":
        if all(v == PASS for v in criterion_verdicts):
            return SUPPORTED
        return REFUTED if FAIL in criterion_verdicts else INCONCLUSIVE
    if decision == "any":
        if PASS in criterion_verdicts:
            return SUPPORTED
        return REFUTED if all(v == FAIL for v in criterion_verdicts) else INCONCLUSIVE
    raise ValueError(f"unknown decision {decision!r}: use 'all' or 'any'")
