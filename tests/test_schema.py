"""Every malformed claim yields one clear line naming the file and the key; none passes."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from conftest import TESTS_DIR, TOY_FAMILY_DIR, toy_claim, write_claim
from seqclaims.core.families import load_claim, load_families
from seqclaims.core.schema import deep_merge, did_you_mean
from seqclaims.errors import ClaimError

MALFORMED_DIR = TESTS_DIR / "malformed"
MALFORMED = sorted(p for p in MALFORMED_DIR.glob("*.yaml") if not p.name.startswith("_"))


def expected_message(path: Path) -> str:
    first = path.read_text().splitlines()[0]
    assert first.startswith("# expect: "), f"{path.name} must start with '# expect: <message fragment>'"
    return first.removeprefix("# expect: ")


@pytest.fixture(scope="module")
def families():
    return load_families([TESTS_DIR.parent / "checks", TOY_FAMILY_DIR])


def test_corpus_covers_every_error_class():
    assert len(MALFORMED) >= 20


@pytest.mark.parametrize("path", MALFORMED, ids=[p.stem for p in MALFORMED])
def test_malformed_claim_gives_one_line_naming_file_and_key(path, families):
    with pytest.raises(ClaimError) as raised:
        load_claim(path, families)
    message = raised.value.message
    assert "\n" not in message
    assert path.name in message
    assert expected_message(path) in message, message


def test_python_tag_is_never_executed(families, tmp_path, capfd):
    with pytest.raises(ClaimError):
        load_claim(MALFORMED_DIR / "python-tag.yaml", families)
    assert "pwned" not in capfd.readouterr().out


def test_include_overrides_template_keys(families, tmp_path):
    study = tmp_path / "claims" / "demo"
    study.mkdir(parents=True)
    (study / "_base.yaml").write_text(toy_claim(id="base-only", threshold=0.1))
    (study / "derived.yaml").write_text("include: _base.yaml\nid: derived\ncriteria:\n"
                                        "  - {statistic: mean, op: '>=', threshold: 0.3}\n")
    claim = load_claim(study / "derived.yaml", families)
    assert claim.id == "derived"
    assert claim.criteria[0].threshold == 0.3
    assert claim.params.effect == 0.5


def test_deep_merge_merges_mappings_and_replaces_lists():
    merged = deep_merge({"a": {"x": 1, "y": 2}, "l": [1, 2]}, {"a": {"y": 3}, "l": [9]})
    assert merged == {"a": {"x": 1, "y": 3}, "l": [9]}


def test_did_you_mean_only_for_close_words():
    assert "threshold" in did_you_mean("threshhold", ["threshold", "op"])
    assert did_you_mean("zzz", ["threshold", "op"]) == ""


def test_malformed_claims_fail_and_valid_claim_still_runs(claims_project):
    root = claims_project.path
    corpus = root / "claims" / "corpus"
    corpus.mkdir(parents=True)
    for path in MALFORMED_DIR.glob("*.yaml"):
        shutil.copy(path, corpus / path.name)
    write_claim(root, "good", "good-claim", toy_claim(id="good-claim"))
    run = claims_project.runpytest("claims/", "-p", "no:cacheprovider")
    outcomes = run.parseoutcomes()
    assert outcomes.get("passed") == 1
    assert outcomes.get("failed") == len(MALFORMED)
    assert "Traceback" not in run.stdout.str()


def test_duplicate_ids_are_an_error_for_the_second_file(claims_project):
    root = claims_project.path
    write_claim(root, "one", "same-id", toy_claim(id="same-id"))
    write_claim(root, "two", "same-id", toy_claim(id="same-id"))
    run = claims_project.runpytest("claims/", "-p", "no:cacheprovider")
    run.assert_outcomes(passed=1, failed=1)
    run.stdout.fnmatch_lines(["*is also the id of*ids must be unique*"])
