"""One bad input never stops the other claims, evidence that cannot be trusted is never a pass, and
registration and ledger problems are visible."""

from __future__ import annotations

import dataclasses
import json

import pytest

from conftest import TOY_FAMILY_DIR, toy_claim, write_claim
from seqclaims.cli import main as seqclaims_main
from seqclaims.core.evidence import Ceiling, Estimate
from seqclaims.core.families import FamilyTable, load_claim, load_families
from seqclaims.core.verdicts import INCONCLUSIVE, criterion_verdict
from seqclaims.errors import ClaimError


def results(pytester):
    return json.loads((pytester.path / "reports" / "latest" / "results.json").read_text())


def claim_result(pytester, claim_id):
    return next(c for c in results(pytester)["claims"] if c["id"] == claim_id)


def test_undecodable_and_unhashable_files_do_not_stop_the_others(claims_project):
    root = claims_project.path
    write_claim(root, "alpha", "good", toy_claim(id="good"))
    (root / "claims" / "alpha" / "binary.yaml").write_bytes(b"id: binary\ntitle: \xff\xfe\n")
    (root / "claims" / "alpha" / "odd-key.yaml").write_text(toy_claim(id="odd-key") + "? [a, b]\n: 1\n")
    run = claims_project.runpytest("claims/", "-p", "no:cacheprovider")
    run.assert_outcomes(passed=1, failed=2)
    run.stdout.fnmatch_lines(["*binary.yaml: not UTF-8 text*", "*odd-key.yaml*a mapping key must be a plain scalar*"])
    assert {c["id"]: c["status"] for c in results(claims_project)["claims"]} == {
        "good": "evaluated", "binary": "error", "odd-key": "error"}


def test_corrupt_registry_line_fails_items_with_one_line_and_keeps_the_report(claims_project, capsys):
    root = claims_project.path
    path = write_claim(root, "alpha", "reg", toy_claim(id="reg"))
    assert seqclaims_main(["register", str(path)]) == 0
    with open(root / "claims" / "registry.jsonl", "a") as handle:
        handle.write("{not json\n")
    run = claims_project.runpytest("claims/", "-p", "no:cacheprovider")
    run.assert_outcomes(failed=1)
    run.stdout.fnmatch_lines(["*registry.jsonl: line 2 is not a JSON object*"])
    assert claim_result(claims_project, "reg")["status"] == "evaluated"
    capsys.readouterr()
    assert seqclaims_main(["registry", "verify"]) == 1
    assert "line 2: not valid JSON" in capsys.readouterr().err


def test_unreachable_criterion_is_inconclusive_with_the_ceiling_shown(claims_project):
    text = toy_claim(id="unreachable", effect=0.0, threshold=0.5, expect="inconclusive").replace(
        "  effect: 0.0", "  effect: 0.0\n  ceiling: 0.1")
    write_claim(claims_project.path, "alpha", "unreachable", text)
    claims_project.runpytest("claims/", "-p", "no:cacheprovider").assert_outcomes(passed=1)
    result = claim_result(claims_project, "unreachable")
    assert result["verdict"] == "inconclusive" and result["criteria"][0]["reason"] == "unreachable criterion"
    assert result["criteria"][0]["ceiling"]["estimate"] == pytest.approx(0.1)
    html = (claims_project.path / "reports" / "latest" / "index.html").read_text()
    assert "unreachable criterion" in html and "0.100 [0.090, 0.110]" in html


def test_nan_ceiling_never_turns_a_fail_into_unreachable():
    broken = Estimate(0.1, 0.05, 0.15, 500, ceiling=Ceiling(float("nan"), float("nan"), float("nan")))
    assert criterion_verdict(broken, ">=", 0.5).verdict == "fail"


def test_interval_bounds_in_the_wrong_order_are_a_family_bug():
    with pytest.raises(ValueError):
        Estimate(0.1, 0.2, 0.0, 10)


@pytest.mark.parametrize("n, reason", [(5, "evidence too thin"), (0, "no draws")])
def test_thin_or_empty_evidence_is_never_supported(claims_project, n, reason):
    write_claim(claims_project.path, "alpha", "thin", toy_claim(id="thin", effect=5.0, n=n, expect="inconclusive"))
    claims_project.runpytest("claims/", "-p", "no:cacheprovider").assert_outcomes(passed=1)
    result = claim_result(claims_project, "thin")
    assert result["verdict"] == INCONCLUSIVE and reason in result["criteria"][0]["reason"]


def test_decision_any_is_supported_when_one_criterion_passes(claims_project):
    text = toy_claim(id="any-of", effect=0.8, threshold=0.3).replace("seed: 0\n", "") + (
        "  - statistic: mean\n    op: \"<=\"\n    threshold: -1\ndecision: any\n")
    write_claim(claims_project.path, "alpha", "any-of", text)
    claims_project.runpytest("claims/", "-p", "no:cacheprovider").assert_outcomes(passed=1)
    assert [c["verdict"] for c in claim_result(claims_project, "any-of")["criteria"]] == ["pass", "fail"]


def test_selection_pvalue_with_declared_correction(claims_project):
    text = toy_claim(id="selected", effect=0.8).replace(
        "  - statistic: mean\n    op: \">=\"\n    threshold: 0.2", "  - statistic: min_p\n    op: \"<\"\n    threshold: 0.05"
    ) + "correction: holm\n"
    write_claim(claims_project.path, "alpha", "selected", text)
    claims_project.runpytest("claims/", "-p", "no:cacheprovider").assert_outcomes(passed=1)
    assert claim_result(claims_project, "selected")["criteria"][0]["p"] < 0.05


def test_edited_registered_claim_that_skips_still_fails(claims_project):
    path = write_claim(claims_project.path, "alpha", "skips", toy_claim(id="skips", dataset="missing"))
    assert seqclaims_main(["register", str(path)]) == 0
    path.write_text(path.read_text().replace("threshold: 0.2", "threshold: 0.3"))
    run = claims_project.runpytest("claims/", "-p", "no:cacheprovider")
    run.assert_outcomes(failed=1)
    run.stdout.fnmatch_lines(["*changed after registration*"])


def test_deleting_a_registered_claim_is_reported(claims_project, capsys):
    path = write_claim(claims_project.path, "alpha", "gone", toy_claim(id="gone"))
    assert seqclaims_main(["register", str(path)]) == 0
    path.unlink()
    assert seqclaims_main(["registry", "verify"]) == 1
    assert "registered claim 'gone' has no file" in capsys.readouterr().err


def test_ledger_recovery_regression_and_missing(claims_project):
    """After an accepted outcome (refuted against a prediction of supported, or of inconclusive), the
    verdict that meets the prediction is a recovery and any other change a regression."""
    root = claims_project.path
    recovering = write_claim(root, "alpha", "recovering", toy_claim(id="recovering", effect=0.0, threshold=0.3))
    changing = write_claim(root, "alpha", "changing", toy_claim(id="changing", effect=0.0, threshold=0.3,
                                                                 expect="inconclusive"))
    vanishing = write_claim(root, "alpha", "vanishing", toy_claim(id="vanishing"))
    claims_project.runpytest("claims/", "-p", "no:cacheprovider", "--claims-ledger", "ledger.json")
    assert seqclaims_main(["ledger", "accept", "--ledger", "ledger.json"]) == 0
    recovering.write_text(recovering.read_text().replace("effect: 0.0", "effect: 0.9"))
    changing.write_text(changing.read_text().replace("effect: 0.0", "effect: 0.9"))
    vanishing.write_text(vanishing.read_text().replace("dataset: synthetic", "dataset: missing"))
    run = claims_project.runpytest("claims/", "-p", "no:cacheprovider", "--claims-ledger", "ledger.json")
    kinds = {c["claim"]: c["kind"] for c in results(claims_project)["ledger_changes"]}
    assert kinds == {"recovering": "recovery", "changing": "regression", "vanishing": "missing"}
    assert run.ret != 0  # an accepted conclusion that disappears fails the run


def test_results_shape_for_skipped_and_error_claims(claims_project):
    root = claims_project.path
    write_claim(root, "alpha", "skipped-one", toy_claim(id="skipped-one", dataset="missing"))
    write_claim(root, "alpha", "error-one", toy_claim(id="error-one").replace("title:", "titel:"))
    claims_project.runpytest("claims/", "-p", "no:cacheprovider")
    for claim_id, status in (("skipped-one", "skipped"), ("error-one", "error")):
        result = claim_result(claims_project, claim_id)
        assert result["status"] == status and result["reason"] and result["criteria"] == []
        assert {"id", "path", "family", "status", "verdict", "expect", "registration", "criteria"} <= set(result)


def test_strict_mode_fails_a_run_that_evaluates_nothing(claims_project):
    write_claim(claims_project.path, "alpha", "only-skip", toy_claim(id="only-skip", dataset="missing"))
    assert claims_project.runpytest("claims/", "-p", "no:cacheprovider").ret == 0
    strict = claims_project.runpytest("claims/", "-p", "no:cacheprovider", "--claims-strict")
    assert strict.ret != 0
    strict.stdout.fnmatch_lines(["*no claim was evaluated (strict mode)*"])


def test_misspelled_embedded_model_is_a_claim_error(tmp_path):
    table = load_families([TOY_FAMILY_DIR])
    needs_model = dataclasses.replace(table.families["toy"], needs_model=True)
    families = FamilyTable({"toy": needs_model}, {})
    path = write_claim(tmp_path, "alpha", "typo", toy_claim(id="typo").replace("model: none", "model: orgnism"))
    with pytest.raises(ClaimError, match="unknown embedded model 'orgnism' \\(did you mean 'organism'\\?\\)"):
        load_claim(path, families)
