"""Hypothesis properties of the three-valued verdicts (DESIGN section 3)."""

from __future__ import annotations

import math

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from seqclaims.core.evidence import Ceiling, Estimate
from seqclaims.core.verdicts import (FAIL, FLIPPED, INCONCLUSIVE, PASS, REFUTED, SUPPORTED, CriterionVerdict,
                                     claim_verdict, criterion_verdict, interval_verdict)

finite = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)
ops = st.sampled_from([">=", ">", "<=", "<"])
verdicts = st.sampled_from([PASS, FAIL, INCONCLUSIVE])
RANK = {FAIL: 0, INCONCLUSIVE: 1, PASS: 2}


def interval(a, b):
    return (min(a, b), max(a, b))


@given(finite, finite, finite, finite, st.sampled_from([">=", ">"]))
def test_verdict_is_monotone_in_threshold_for_greater(a, b, t1, t2, op):
    low, high = interval(a, b)
    lower, higher = interval(t1, t2)
    assert RANK[interval_verdict(low, high, op, lower)] >= RANK[interval_verdict(low, high, op, higher)]


@given(finite, finite, finite, finite, st.sampled_from(["<=", "<"]))
def test_verdict_is_monotone_in_threshold_for_less(a, b, t1, t2, op):
    low, high = interval(a, b)
    lower, higher = interval(t1, t2)
    assert RANK[interval_verdict(low, high, op, lower)] <= RANK[interval_verdict(low, high, op, higher)]


@given(finite, finite, finite, ops)
def test_interval_strictly_containing_threshold_is_inconclusive(a, b, c, op):
    low, t, high = sorted((a, b, c))  # the middle value is the threshold: only ties are filtered out
    assume(low < t < high)
    assert interval_verdict(low, high, op, t) == INCONCLUSIVE


@given(finite, finite, finite, ops)
def test_flipping_the_operator_swaps_pass_and_fail(a, b, t, op):
    low, high = interval(a, b)
    verdict, flipped = interval_verdict(low, high, op, t), interval_verdict(low, high, FLIPPED[op], t)
    assert {verdict, flipped} in ({PASS, FAIL}, {INCONCLUSIVE})


@given(finite, finite, finite, ops, st.integers(0, 50), st.integers(1, 50))
def test_thin_evidence_is_inconclusive(a, b, t, op, n, min_n):
    assume(n < min_n)
    low, high = interval(a, b)
    estimate = Estimate((low + high) / 2, low, high, n, min_n=min_n)
    assert criterion_verdict(estimate, op, t).verdict == INCONCLUSIVE


def test_missing_estimate_and_missing_statistic_are_inconclusive():
    assert criterion_verdict(Estimate.missing("no eligible items"), ">=", 0.5).verdict == INCONCLUSIVE
    assert criterion_verdict(None, ">=", 0.5).verdict == INCONCLUSIVE


def test_an_inconclusive_criterion_says_why():
    assert criterion_verdict(None, ">=", 0.5) == CriterionVerdict(INCONCLUSIVE, "statistic not produced")
    assert criterion_verdict(Estimate.missing(""), ">=", 0.5) == CriterionVerdict(INCONCLUSIVE, "no estimate")
    straddling = Estimate(0.5, 0.4, 0.6, 100)
    assert criterion_verdict(straddling, ">=", 0.5) == CriterionVerdict(INCONCLUSIVE, "interval straddles the threshold")
    thin = Estimate(0.9, 0.8, 1.0, 4, min_n=5)
    assert criterion_verdict(thin, ">=", 0.5) == CriterionVerdict(INCONCLUSIVE, "evidence too thin: n=4 < minimum 5")
    nothing = Estimate(0.9, 0.8, 1.0, 0, min_n=0)
    assert criterion_verdict(nothing, ">=", 0.5) == CriterionVerdict(INCONCLUSIVE, "evidence too thin: n=0 < minimum 1")


@pytest.mark.parametrize(("n", "min_n"), [(5, 5), (1, 0), (1, 1)])
def test_the_minimum_n_itself_is_enough(n, min_n):
    assert criterion_verdict(Estimate(0.9, 0.8, 1.0, n, min_n=min_n), ">=", 0.5) == CriterionVerdict(PASS)

def test_unreachable_criterion_is_inconclusive_not_refuted():
    estimate = Estimate(0.30, 0.28, 0.32, 5000, ceiling=Ceiling(0.33, 0.31, 0.35))
    decided = criterion_verdict(estimate, ">=", 0.5)
    assert decided.verdict == INCONCLUSIVE and decided.reason == "unreachable criterion"
    reachable = Estimate(0.30, 0.28, 0.32, 5000, ceiling=Ceiling(0.9, 0.88, 0.92))
    assert criterion_verdict(reachable, ">=", 0.5).verdict == FAIL


@given(st.lists(verdicts, min_size=1, max_size=6))
def test_all_and_any_are_duals(criteria):
    dual = {PASS: FAIL, FAIL: PASS, INCONCLUSIVE: INCONCLUSIVE}
    flip_claim = {SUPPORTED: REFUTED, REFUTED: SUPPORTED, INCONCLUSIVE: INCONCLUSIVE}
    assert claim_verdict(criteria, "any") == flip_claim[claim_verdict([dual[v] for v in criteria], "all")]


@given(st.lists(verdicts, min_size=1, max_size=6))
def test_all_decision(criteria):
    verdict = claim_verdict(criteria, "all")
    assert (verdict == SUPPORTED) == all(v == PASS for v in criteria)
    assert (verdict == REFUTED) == (FAIL in criteria)


def test_all_is_the_default_decision_and_an_unknown_decision_is_an_error():
    assert claim_verdict([PASS, INCONCLUSIVE]) == INCONCLUSIVE != claim_verdict([PASS, INCONCLUSIVE], "any")
    with pytest.raises(ValueError, match="^unknown decision 'most': use 'all' or 'any'$"):
        claim_verdict([PASS], "most")

def test_no_criteria_is_never_supported():
    assert claim_verdict([], "all") == INCONCLUSIVE
    assert claim_verdict([], "any") == INCONCLUSIVE


def test_pvalue_estimate_compares_the_point():
    assert criterion_verdict(Estimate.pvalue(0.01, 100), "<", 0.05).verdict == PASS
    assert criterion_verdict(Estimate.pvalue(0.2, 100), "<", 0.05).verdict == FAIL
    assert math.isclose(Estimate.pvalue(0.01, 100).ci_low, 0.01)
