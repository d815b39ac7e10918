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
