"""One way to judge a claim file: `judging.judge.judge_path` loads the claim, then judges it; a file that
cannot be loaded is an error result, never an exception. The pytest plugin, the Ray executor's task and
`seqclaims judge` all go through it."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import toy_claim, write_claim
from seqclaims import cli, executors, plugin
from seqclaims.cli import main as seqclaims_main
from seqclaims.core.families import checks_dirs, load_families
from seqclaims.judging import judge as judging
from seqclaims.judging.judge import ERROR, EVALUATED, SKIPPED, judge_path


@pytest.fixture
def families(claims_project):
    return load_families(checks_dirs(claims_project.path))


@pytest.mark.parametrize("text, message", [
    ("- a\n- list\n", "a claim must be a YAML mapping"),
    (toy_claim(id="bad-file").replace("title:", "titel:"), "titel: unknown key"),
    (toy_claim(id="other-id"), "must equal the file stem"),
    (toy_claim(id="bad-file").replace("check: toy", "check: tyo"), "did you mean 'toy'"),
])
def test_a_file_that_cannot_be_loaded_is_an_error_result(claims_project, families, text, message):
    path = write_claim(claims_project.path, "alpha", "bad-file", text)
    result = judge_path(path, families)
    assert (result.id, result.status, result.verdict, result.study) == ("bad-file", ERROR, None, "alpha")
    assert message in result.reason and not result.matches_expectation


def test_an_unexpected_failure_while_loading_is_an_error_result(claims_project, families, monkeypatch):
    path = write_claim(claims_project.path, "alpha", "fine", toy_claim(id="fine"))

    def broken(*args, **kwargs):
        raise RecursionError("deep include")

    monkeypatch.setattr(judging, "load_claim", broken)
    result = judge_path(path, families)
    assert result.status == ERROR and "could not be loaded (RecursionError: deep include)" in result.reason


def test_a_loadable_claim_is_judged(claims_project, families):
    root = claims_project.path
    supported = judge_path(write_claim(root, "alpha", "strong", toy_claim(id="strong", effect=0.8)), families)
    assert (supported.status, supported.verdict, supported.family) == (EVALUATED, "supported", "toy")
    assert supported.criteria[0].statistic == "mean" and supported.versions["claim_sha256"]
    skipped = judge_path(write_claim(root, "alpha", "gone", toy_claim(id="gone", dataset="missing")), families)
    assert skipped.status == SKIPPED and "not available locally" in skipped.reason


@pytest.fixture
def recorded(monkeypatch):
    """Every call of judge_path, by the module that made it (each caller's own reference is wrapped)."""
    calls: list[tuple[str, Path]] = []
    for module in (plugin, executors, cli):
        def recording(path, families, *, _caller=module.__name__, **kwargs):
            calls.append((_caller, Path(path).name))
            return judge_path(path, families, **kwargs)
        monkeypatch.setattr(module, "judge_path", recording)
    return calls


def test_the_plugin_judges_each_item_through_judge_path(claims_project, recorded):
    write_claim(claims_project.path, "alpha", "strong", toy_claim(id="strong", effect=0.8))
    claims_project.runpytest("claims/", "-p", "no:cacheprovider").assert_outcomes(passed=1)
    assert recorded == [("seqclaims.plugin", "strong.yaml")]


def test_the_ray_task_judges_each_claim_through_judge_path(claims_project, recorded, monkeypatch):
    monkeypatch.setattr(executors, "one_thread_per_worker", lambda: None)  # keeps this process's thread counts
    path = write_claim(claims_project.path, "alpha", "strong", toy_claim(id="strong", effect=0.8))
    results = executors.judge_paths(str(claims_project.path), [str(path)], {})
    assert results[str(path)]["verdict"] == "supported"
    assert recorded == [("seqclaims.executors", "strong.yaml")]


def test_seqclaims_judge_goes_through_judge_path_and_exits_on_the_expectations(claims_project, recorded, capsys):
    root = claims_project.path
    write_claim(root, "alpha", "strong", toy_claim(id="strong", effect=0.8))
    assert seqclaims_main(["judge", "claims"]) == 0
    out = capsys.readouterr().out
    assert "strong [toy]: verdict 'supported', as expected (evidence computed)" in out and "statistic" in out
    write_claim(root, "alpha", "wrong", toy_claim(id="wrong", effect=0.8, expect="refuted"))
    assert seqclaims_main(["judge", "claims"]) == 1
    assert "wrong [toy]: verdict 'supported', the claim expects 'refuted'" in capsys.readouterr().out
    assert recorded == [("seqclaims.cli", name) for name in ("strong.yaml", "strong.yaml", "wrong.yaml")]
