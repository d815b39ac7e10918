"""The `seqclaims` command: scaffolding, listing, one-line errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import TOY_FAMILY_DIR, toy_claim, write_claim
from seqclaims.cli import main as seqclaims_main
from seqclaims.core.families import load_claim, load_families


def test_new_writes_a_valid_commented_claim(claims_project):
    assert seqclaims_main(["new", "toy", "my-new-claim", "--study", "drafts"]) == 0
    path = claims_project.path / "claims" / "drafts" / "my-new-claim.yaml"
    text = path.read_text()
    assert text.count("#") >= 12  # every key carries its explanation
    claim = load_claim(path, load_families([claims_project.path / "checks", TOY_FAMILY_DIR]))
    assert claim.id == "my-new-claim" and claim.check == "toy"
    assert seqclaims_main(["new", "toy", "my-new-claim", "--study", "drafts"]) == 2  # no silent overwrite


def test_every_template_decides_with_a_control_and_draws_no_warning(tmp_path):
    """What `seqclaims new` writes is a claim `seqclaims check` has nothing to question: every family that reads
    a model decides on a control (the initialised copies, composition, token identity, a baseline)."""
    from seqclaims.cli import claim_template
    from seqclaims.core.families import design_warnings

    families = load_families([Path(__file__).resolve().parents[1] / "checks"])
    for name, family in families.families.items():
        text = claim_template(family, f"new-{name.replace('_', '-')}")
        path = tmp_path / "claims" / "drafts" / f"new-{name.replace('_', '-')}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        claim = load_claim(path, families)  # the template is a valid claim
        assert design_warnings(claim, family) == [], name
        if family.init_statistics:
            assert any(c.statistic.endswith("_minus_init") for c in claim.criteria), name


def test_new_with_unknown_family_is_one_line(claims_project, capsys):
    assert seqclaims_main(["new", "tyo", "x-claim"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "did you mean 'toy'" in err


def test_register_rejects_malformed_and_duplicate_registration(claims_project, capsys):
    root = claims_project.path
    good = write_claim(root, "alpha", "good-one", toy_claim(id="good-one"))
    bad = write_claim(root, "alpha", "bad-one", toy_claim(id="bad-one").replace("title:", "titel:"))
    assert seqclaims_main(["register", str(good), str(bad)]) == 2
    err = capsys.readouterr().err
    assert "titel: unknown key" in err and "Traceback" not in err
    assert seqclaims_main(["register", str(good)]) == 2
    assert "already registered" in capsys.readouterr().err
    assert seqclaims_main(["registry", "verify"]) == 1  # the malformed claim is reported
    bad.unlink()
    assert seqclaims_main(["registry", "verify"]) == 0


def test_amend_requires_a_change_and_a_known_access_level(claims_project, capsys):
    path = write_claim(claims_project.path, "alpha", "amend-me", toy_claim(id="amend-me"))
    assert seqclaims_main(["register", str(path)]) == 0
    assert seqclaims_main(["amend", str(path), "--reason", "nothing", "--access", "none"]) == 2
    assert "has not changed" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        seqclaims_main(["amend", str(path), "--reason", "x", "--access", "peeked"])


def test_ledger_accept_without_a_run_is_one_line(claims_project, capsys):
    assert seqclaims_main(["ledger", "accept"]) == 2
    assert "run `pytest claims/` first" in capsys.readouterr().err


def test_families_lists_statistics(claims_project, capsys):
    assert seqclaims_main(["families"]) == 0
    assert "p_value" in capsys.readouterr().out


def test_check_validates_without_computing_and_fails_on_any_problem(claims_project, capsys):
    root = claims_project.path
    good = write_claim(root, "alpha", "good", toy_claim(id="good"))
    assert seqclaims_main(["check"]) == 0
    assert "good.yaml: exploratory" in capsys.readouterr().out
    assert seqclaims_main(["register", str(good)]) == 0
    capsys.readouterr()
    assert seqclaims_main(["check", "-q", "claims"]) == 0
    assert capsys.readouterr().out.strip() == "1 of 1 claims ok"
    good.write_text(good.read_text().replace("threshold: 0.2", "threshold: 0.3"))
    bad = write_claim(root, "alpha", "bad", toy_claim(id="bad").replace("threshold:", "threshhold:"))
    assert seqclaims_main(["check"]) == 1
    err = capsys.readouterr().err
    assert "good.yaml: changed after registration" in err and "seqclaims amend" in err
    assert "bad.yaml: criteria[0].threshold: required key is missing; criteria[0].threshhold: unknown key" in err
    assert "0 of 2 claims ok; 2 with problems" in err
    outside = root / "elsewhere" / "loose.yaml"
    outside.parent.mkdir()
    outside.write_text(toy_claim(id="loose"))
    assert seqclaims_main(["check", str(outside.parent)]) == 0  # named explicitly: checked wherever it lies
    assert seqclaims_main(["check", "nowhere"]) == 2


def test_console_script_is_installed():
    out = subprocess.run([sys.executable, "-m", "seqclaims", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "register" in out.stdout


def test_amend_refuses_to_rewrite_a_prediction_after_results_unless_a_clerical_error(claims_project, capsys):
    path = write_claim(claims_project.path, "alpha", "predicted", toy_claim(id="predicted", expect="refuted"))
    assert seqclaims_main(["register", str(path)]) == 0
    path.write_text(path.read_text().replace("expect: refuted", "expect: supported"))
    capsys.readouterr()
    assert seqclaims_main(["amend", str(path), "--reason", "observed supported", "--access", "results-seen"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "`seqclaims ledger accept`" in err and "Traceback" not in err
    assert seqclaims_main(["amend", str(path), "--reason", "the registered value was a typo", "--access",
                           "results-seen", "--correct-error"]) == 0
    assert "expect corrected as a clerical error" in capsys.readouterr().out
    assert seqclaims_main(["check"]) == 0
    assert "predicted.yaml: amended (post hoc amendment) (expect corrected: clerical error)" in capsys.readouterr().out
