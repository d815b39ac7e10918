"""`pytest claims/` end to end on the test-only toy family: collection, options, registration,
report and ledger."""

from __future__ import annotations

import json

import pytest

from conftest import toy_claim, write_claim
from seqclaims.cli import main as seqclaims_main
from seqclaims.plugin import SeqclaimsPlugin


def results(pytester):
    return json.loads((pytester.path / "reports" / "latest" / "results.json").read_text())


def claim_result(pytester, claim_id):
    return next(c for c in results(pytester)["claims"] if c["id"] == claim_id)


@pytest.fixture
def demo(claims_project):
    root = claims_project.path
    write_claim(root, "alpha", "strong-effect", toy_claim(id="strong-effect", effect=0.8, threshold=0.3))
    write_claim(root, "alpha", "no-effect", toy_claim(id="no-effect", effect=0.0, threshold=0.3, expect="refuted"))
    write_claim(root, "beta", "unavailable-data", toy_claim(id="unavailable-data", dataset="missing"))
    return claims_project


def test_items_pass_skip_and_report(demo):
    run = demo.runpytest("claims/", "-p", "no:cacheprovider", "-rs")
    run.assert_outcomes(passed=2, skipped=1)
    run.stdout.fnmatch_lines(["*unavailable-data*not available locally*"])
    document = results(demo)
    assert {"started", "finished", "seqclaims_version", "git_commit"} <= set(document["run"])
    strong = claim_result(demo, "strong-effect")
    assert strong["status"] == "evaluated" and strong["verdict"] == "supported"
    assert strong["registration"]["state"] == "exploratory"
    assert {"statistic", "op", "threshold", "estimate", "ci_low", "ci_high", "n", "p", "verdict"} <= set(
        strong["criteria"][0])
    assert (demo.path / "reports" / "latest" / "summary.md").read_text().count("|") > 10
    assert "forest plot" in (demo.path / "reports" / "latest" / "index.html").read_text().lower()


def test_node_ids_keyword_and_markers(demo):
    run = demo.runpytest("claims/", "-p", "no:cacheprovider", "--collect-only", "-q")
    run.stdout.fnmatch_lines(["claims/alpha/strong-effect.yaml::strong-effect"])
    demo.runpytest("claims/", "-p", "no:cacheprovider", "-k", "strong").assert_outcomes(passed=1)
    demo.runpytest("claims/", "-p", "no:cacheprovider", "-m", "beta").assert_outcomes(skipped=1)
    demo.runpytest("claims/", "-p", "no:cacheprovider", "-m", "toy and alpha").assert_outcomes(passed=2)


def test_failure_shows_a_compact_table(claims_project):
    write_claim(claims_project.path, "alpha", "wrong-expectation",
                toy_claim(id="wrong-expectation", effect=0.8, threshold=0.3, expect="refuted"))
    run = claims_project.runpytest("claims/", "-p", "no:cacheprovider")
    run.assert_outcomes(failed=1)
    run.stdout.fnmatch_lines(["*verdict 'supported' but the claim expects 'refuted'*",
                              "*statistic*estimate*interval*threshold*verdict*",
                              "*mean*>= 0.300*pass*"])
    assert "Traceback" not in run.stdout.str()


def test_error_in_family_fails_only_that_claim(claims_project):
    root = claims_project.path
    write_claim(root, "alpha", "fine", toy_claim(id="fine"))
    write_claim(root, "alpha", "explodes", toy_claim(id="explodes").replace("  effect: 0.5", "  effect: 0.5\n  explode: true"))
    run = claims_project.runpytest("claims/", "-p", "no:cacheprovider")
    run.assert_outcomes(passed=1, failed=1)
    run.stdout.fnmatch_lines(["*internal error in family 'toy'*"])
    assert claim_result(claims_project, "explodes")["status"] == "error"


def test_last_failed_and_junitxml(demo):
    write_claim(demo.path, "alpha", "will-fail", toy_claim(id="will-fail", effect=0.0, threshold=0.3))
    demo.runpytest("claims/").assert_outcomes(passed=2, skipped=1, failed=1)
    rerun = demo.runpytest("claims/", "--lf")
    rerun.assert_outcomes(failed=1)
    demo.runpytest("claims/", "-p", "no:cacheprovider", "--junitxml=junit.xml")
    xml = (demo.path / "junit.xml").read_text()
    assert xml.count("<testcase") == 4 and "strong-effect" in xml


def test_xdist_two_workers_write_one_complete_report(demo):
    single = demo.runpytest("claims/", "-p", "no:cacheprovider")
    single.assert_outcomes(passed=2, skipped=1)
    first = {c["id"]: c["criteria"] for c in results(demo)["claims"]}
    parallel = demo.runpytest_subprocess("claims/", "-p", "no:cacheprovider", "-n", "2")
    parallel.assert_outcomes(passed=2, skipped=1)
    second = {c["id"]: c["criteria"] for c in results(demo)["claims"]}
    assert first == second  # same seeds, same statistics, whatever the scheduling


def test_edit_after_registration_fails_until_amended(claims_project):
    root = claims_project.path
    path = write_claim(root, "alpha", "registered-claim", toy_claim(id="registered-claim", threshold=0.2))
    assert seqclaims_main(["register", str(path)]) == 0
    claims_project.runpytest("claims/", "-p", "no:cacheprovider").assert_outcomes(passed=1)
    assert claim_result(claims_project, "registered-claim")["registration"]["state"] == "registered"

    path.write_text(path.read_text().replace("threshold: 0.2", "threshold: 0.25"))
    run = claims_project.runpytest("claims/", "-p", "no:cacheprovider")
    run.assert_outcomes(failed=1)
    run.stdout.fnmatch_lines(["*changed after registration*seqclaims amend*"])
    assert seqclaims_main(["registry", "verify"]) == 1

    assert seqclaims_main(["amend", str(path), "--reason", "threshold raised after seeing the estimate",
                           "--access", "results-seen"]) == 0
    claims_project.runpytest("claims/", "-p", "no:cacheprovider").assert_outcomes(passed=1)
    registration = claim_result(claims_project, "registered-claim")["registration"]
    assert registration["state"] == "amended" and registration["post_hoc"] is True
    change = registration["history"][-1]["changes"]
    assert {"key": "criteria[0].threshold", "old": 0.2, "new": 0.25} in change
    html = (root / "reports" / "latest" / "index.html").read_text()
    assert "post hoc" in html and "criteria[0].threshold: 0.2 → 0.25" in html
    assert seqclaims_main(["registry", "verify"]) == 0


def test_changed_verdict_against_ledger_is_a_regression(claims_project):
    root = claims_project.path
    path = write_claim(root, "alpha", "ledger-claim", toy_claim(id="ledger-claim", effect=0.8, threshold=0.3))
    claims_project.runpytest("claims/", "-p", "no:cacheprovider").assert_outcomes(passed=1)
    assert seqclaims_main(["ledger", "accept"]) == 0
    assert json.loads((root / "reports" / "ledger.json").read_text())["claims"]["ledger-claim"]["verdict"] == "supported"

    path.write_text(path.read_text().replace("effect: 0.8", "effect: 0.0"))
    run = claims_project.runpytest("claims/", "-p", "no:cacheprovider")
    run.assert_outcomes(failed=1)
    run.stdout.fnmatch_lines(["*REGRESSION: ledger-claim: supported -> refuted  mean 0.8* -> mean 0.0*"])
    change = results(claims_project)["ledger_changes"][0]
    assert change["kind"] == "regression" and change["old_criteria"][0]["ci_low"] is not None
    assert "regression" in (root / "reports" / "latest" / "index.html").read_text()


def test_same_seed_same_statistics_different_seed_different(claims_project):
    root = claims_project.path
    path = write_claim(root, "alpha", "seeded", toy_claim(id="seeded", seed=7))
    claims_project.runpytest("claims/", "-p", "no:cacheprovider")
    first = claim_result(claims_project, "seeded")["criteria"]
    claims_project.runpytest("claims/", "-p", "no:cacheprovider")
    assert claim_result(claims_project, "seeded")["criteria"] == first
    path.write_text(path.read_text().replace("seed: 7", "seed: 8"))
    claims_project.runpytest("claims/", "-p", "no:cacheprovider")
    assert claim_result(claims_project, "seeded")["criteria"] != first


def test_a_claim_named_explicitly_is_collected_wherever_it_lies(claims_project):
    root = claims_project.path
    loose = root / "elsewhere" / "loose.yaml"
    loose.parent.mkdir()
    loose.write_text(toy_claim(id="loose"))
    (root / "elsewhere" / "_template.yaml").write_text("title: a template\n")
    claims_project.runpytest("elsewhere/loose.yaml", "-p", "no:cacheprovider").assert_outcomes(passed=1)
    folder = claims_project.runpytest("elsewhere", "-p", "no:cacheprovider")
    folder.stdout.fnmatch_lines(["seqclaims: elsewhere: 1 YAML file(s) not collected: not below a claims/ folder*"])
    template = claims_project.runpytest("elsewhere/_template.yaml", "-p", "no:cacheprovider")
    template.stdout.fnmatch_lines(["seqclaims: elsewhere/_template.yaml: not collected: a template*"])


def test_report_directory_option(demo):
    demo.runpytest("claims/", "-p", "no:cacheprovider", "--claims-report", "elsewhere")
    assert (demo.path / "elsewhere" / "index.html").exists()


def test_nothing_of_one_session_leaks_into_the_next_in_the_same_process(claims_project):
    """Each session keeps its state on its own plugin object: a session that writes no report leaves no
    result behind for the next one, and each session registers a fresh object."""
    root = claims_project.path
    write_claim(root, "alpha", "first", toy_claim(id="first"))
    first = claims_project.inline_run("claims/", "-p", "no:cacheprovider", "--claims-no-report")
    first.assertoutcome(passed=1)
    (root / "claims" / "alpha" / "first.yaml").unlink()
    write_claim(root, "beta", "second", toy_claim(id="second"))
    second = claims_project.inline_run("claims/", "-p", "no:cacheprovider")
    second.assertoutcome(passed=1)
    assert [c["id"] for c in results(claims_project)["claims"]] == ["second"]
    sessions = [run.getcall("pytest_sessionfinish").session.config.pluginmanager.get_plugin("seqclaims-session")
                for run in (first, second)]
    assert all(isinstance(s, SeqclaimsPlugin) for s in sessions) and sessions[0] is not sessions[1]
    assert [s.seen_ids for s in sessions] == [{"first": root / "claims" / "alpha" / "first.yaml"},
                                              {"second": root / "claims" / "beta" / "second.yaml"}]


# ---------------------------------------------------------------------------------------------
# failed predictions stay on the record: accepted outcomes and the prediction record


def registered_claim(root, claim_id, **fields):
    path = write_claim(root, "alpha", claim_id, toy_claim(id=claim_id, threshold=0.3, **fields))
    assert seqclaims_main(["register", str(path)]) == 0
    return path


def summary_lines(pytester):
    return (pytester.path / "reports" / "latest" / "summary.md").read_text().splitlines()


def test_a_failed_prediction_fails_until_its_outcome_is_accepted_then_passes_marked(claims_project):
    root = claims_project.path
    registered_claim(root, "met", effect=0.8)
    registered_claim(root, "not-met", effect=0.8, expect="refuted")
    first = claims_project.runpytest("claims/", "-p", "no:cacheprovider", "--claims-strict")
    first.assert_outcomes(passed=1, failed=1)
    first.stdout.fnmatch_lines(["*verdict 'supported' but the claim expects 'refuted'*seqclaims ledger accept*"])
    assert claim_result(claims_project, "not-met")["outcome"] == "not met"

    assert seqclaims_main(["ledger", "accept"]) == 0
    ledger = json.loads((root / "reports" / "ledger.json").read_text())["claims"]
    assert [ledger[c]["outcome"] for c in ("met", "not-met")] == ["prediction met", "prediction not met"]

    second = claims_project.runpytest("claims/", "-p", "no:cacheprovider", "--claims-strict", "-v")
    assert second.ret == 0
    second.stdout.fnmatch_lines(["*not-met.yaml::not-met NOT MET (accepted)*",
                                 "prediction record: 1 met, 1 not met (1 accepted as outcomes), 0 undecided, of 2*",
                                 "*1 passed, 1 not met (accepted)*"])
    assert claim_result(claims_project, "not-met")["outcome"] == "not met (accepted)"
    assert claim_result(claims_project, "not-met")["expect"] == "refuted"  # the prediction stands
    document = results(claims_project)
    assert document["counts"]["accepted_outcomes"] == 1 and document["counts"]["not_as_expected"] == 0
    assert summary_lines(claims_project)[0] == "## seqclaims: predictions 1 met · 1 not met · 0 undecided"
    html = (root / "reports" / "latest" / "index.html").read_text()
    assert html.index('id="prediction-record"') < html.index('id="summary-counts"') < html.index('id="claims-table"')


def test_an_accepted_outcome_does_not_cover_another_verdict_or_another_prediction(claims_project):
    root = claims_project.path
    path = registered_claim(root, "moving", effect=0.0)  # refuted against a prediction of supported
    claims_project.runpytest("claims/", "-p", "no:cacheprovider").assert_outcomes(failed=1)
    assert seqclaims_main(["ledger", "accept"]) == 0
    assert claims_project.runpytest("claims/", "-p", "no:cacheprovider", "--claims-strict").ret == 0

    path.write_text(path.read_text().replace("effect: 0.0", "effect: 0.3"))  # now inconclusive
    assert seqclaims_main(["amend", str(path), "--reason", "effect changed", "--access", "none"]) == 0
    run = claims_project.runpytest("claims/", "-p", "no:cacheprovider", "--claims-strict")
    run.assert_outcomes(failed=1)
    run.stdout.fnmatch_lines(["*REGRESSION: moving: refuted -> inconclusive*"])
    assert results(claims_project)["ledger_changes"][0]["kind"] == "regression"

    path.write_text(path.read_text().replace("effect: 0.3", "effect: 0.0").replace("expect: supported",
                                                                                  "expect: inconclusive"))
    assert seqclaims_main(["amend", str(path), "--reason", "typo", "--access", "results-seen",
                           "--correct-error"]) == 0
    run = claims_project.runpytest("claims/", "-p", "no:cacheprovider")
    run.assert_outcomes(failed=1)  # refuted was accepted against 'supported', not against the corrected prediction
    run.stdout.fnmatch_lines(["*verdict 'refuted' but the claim expects 'inconclusive'*"])


def test_the_prediction_record_counts_the_expectation_as_first_registered(claims_project):
    root = claims_project.path
    registered_claim(root, "kept", effect=0.8)
    rewritten = registered_claim(root, "rewritten", effect=0.8, expect="refuted")
    rewritten.write_text(rewritten.read_text().replace("expect: refuted", "expect: supported"))
    assert seqclaims_main(["amend", str(rewritten), "--reason", "expectation changed", "--access", "none"]) == 0
    corrected = registered_claim(root, "corrected", effect=0.8, expect="refuted")
    corrected.write_text(corrected.read_text().replace("expect: refuted", "expect: supported"))
    assert seqclaims_main(["amend", str(corrected), "--reason", "a typo in expect", "--access", "results-seen",
                           "--correct-error"]) == 0
    registered_claim(root, "undecided", dataset="missing")
    late = write_claim(root, "alpha", "late", toy_claim(id="late", effect=0.8, threshold=0.3))
    assert seqclaims_main(["register", str(late), "--access", "results-seen"]) == 0
    write_claim(root, "alpha", "exploring", toy_claim(id="exploring", effect=0.8, threshold=0.3))

    run = claims_project.runpytest("claims/", "-p", "no:cacheprovider")
    run.assert_outcomes(passed=5, skipped=1)  # every item meets its standing expectation
    record = results(claims_project)["prediction_record"]
    assert record == {"predictions": 4, "met": 2, "not_met_accepted": 0, "not_met": 1, "undecided": 1,
                      "exploratory": 1, "after_results": 1}
    prediction = claim_result(claims_project, "rewritten")["prediction"]
    assert prediction["registered"] == "refuted" and prediction["record"] == "not met"
    assert claim_result(claims_project, "corrected")["prediction"] == {
        "registered": "supported", "corrected": True, "record": "met", "not_counted": None}
    lines = summary_lines(claims_project)
    assert lines[0] == "## seqclaims: predictions 2 met · 1 not met · 1 undecided"
    assert "Not counted: 1 exploratory (not registered), 1 registered after results were seen." in lines[1]
    assert "| rewritten | toy | supported (registered refuted) | supported | not met |" in "\n".join(lines)
    assert "expect corrected: clerical error" in (root / "reports" / "latest" / "index.html").read_text()
