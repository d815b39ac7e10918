"""Warm reruns: each claim's evidence is stored under a key of what decides it, and re-judged from it."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from conftest import toy_claim, write_claim
from seqclaims.core.evidence import Ceiling, Estimate, Evidence
from seqclaims.core.schema import Criterion
from seqclaims.judging import evidence_store
from seqclaims.methods.figures import HeadMarks, draw_for_criteria, head_heatmap, store_dir


@pytest.fixture
def store_project(claims_project, monkeypatch, tmp_path):
    """A toy claims project with the evidence store on, in a cache folder of its own."""
    monkeypatch.delenv(evidence_store.DISABLE_ENV, raising=False)
    monkeypatch.setenv("SEQCLAIMS_CACHE", str(tmp_path / "cache"))
    return claims_project


def run(project):
    project.runpytest("claims/", "-p", "no:cacheprovider")
    document = json.loads((project.path / "reports" / "latest" / "results.json").read_text())
    return {claim["id"]: claim for claim in document["claims"]}


def test_an_unchanged_claim_is_rejudged_from_its_stored_evidence(store_project):
    write_claim(store_project.path, "alpha", "stored", toy_claim(id="stored", effect=0.5, threshold=0.2))
    first = run(store_project)["stored"]
    second = run(store_project)["stored"]
    assert (first["evidence_source"], second["evidence_source"]) == ("computed", "stored")
    assert second["criteria"] == first["criteria"] and second["verdict"] == first["verdict"] == "supported"


def test_a_threshold_edit_rejudges_without_recomputing_and_a_seed_edit_recomputes(store_project):
    path = write_claim(store_project.path, "alpha", "edited", toy_claim(id="edited", effect=0.5, threshold=0.2))
    computed = run(store_project)["edited"]
    path.write_text(path.read_text().replace("threshold: 0.2", "threshold: 0.9").replace(
        "Toy mean is above a threshold", "Retitled"))
    rejudged = run(store_project)["edited"]
    assert rejudged["evidence_source"] == "stored"
    assert rejudged["criteria"][0]["threshold"] == 0.9 and rejudged["verdict"] == "refuted"
    assert rejudged["criteria"][0]["estimate"] == computed["criteria"][0]["estimate"]
    path.write_text(path.read_text().replace("seed: 0", "seed: 3"))
    reseeded = run(store_project)["edited"]
    assert reseeded["evidence_source"] == "computed"
    assert reseeded["criteria"][0]["estimate"] != computed["criteria"][0]["estimate"]


def test_a_change_to_the_family_code_recomputes(store_project, tmp_path, monkeypatch):
    from conftest import TOY_FAMILY_DIR
    from seqclaims.core import families

    copy = tmp_path / "families"
    copy.mkdir()
    source = (TOY_FAMILY_DIR / "toy.py").read_text()
    (copy / "toy.py").write_text(source)
    monkeypatch.setenv("SEQCLAIMS_CHECKS_PATH", str(copy))
    monkeypatch.setattr(families, "_LOADED", {})
    write_claim(store_project.path, "alpha", "coded", toy_claim(id="coded"))
    assert run(store_project)["coded"]["evidence_source"] == "computed"
    assert run(store_project)["coded"]["evidence_source"] == "stored"
    (copy / "toy.py").write_text(source + "\n# an edit\n")
    monkeypatch.setattr(families, "_LOADED", {})
    assert run(store_project)["coded"]["evidence_source"] == "computed"


def test_the_key_reads_the_claim_as_validated_with_its_defaults(store_project):
    path = write_claim(store_project.path, "alpha", "defaults", toy_claim(id="defaults"))
    assert run(store_project)["defaults"]["evidence_source"] == "computed"
    path.write_text(path.read_text() + "resamples: 1000\nci_level: 0.95\n")  # the defaults, now spelt out
    assert run(store_project)["defaults"]["evidence_source"] == "stored"
    path.write_text(path.read_text().replace("resamples: 1000", "resamples: 500"))
    assert run(store_project)["defaults"]["evidence_source"] == "computed"


def test_errors_and_skips_for_other_reasons_than_an_absent_model_are_never_stored(store_project):
    write_claim(store_project.path, "alpha", "skips", toy_claim(id="skips", dataset="missing"))
    write_claim(store_project.path, "alpha", "fails", toy_claim(id="fails").replace("effect: 0.5\n", "effect: 0.5\n  explode: true\n"))
    for _ in range(2):
        results = run(store_project)
        assert results["skips"]["status"] == "skipped" and results["skips"]["evidence_source"] == "computed"
        assert results["fails"]["status"] == "error" and results["fails"]["evidence_source"] == "computed"


def test_recompute_switch_and_damaged_entries(store_project, monkeypatch, tmp_path):
    write_claim(store_project.path, "alpha", "damaged", toy_claim(id="damaged"))
    run(store_project)
    monkeypatch.setenv(evidence_store.DISABLE_ENV, "1")
    assert run(store_project)["damaged"]["evidence_source"] == "computed"
    monkeypatch.delenv(evidence_store.DISABLE_ENV)
    for entry in (tmp_path / "cache" / "evidence").rglob("*.json"):
        entry.write_text(entry.read_text()[:40])
    assert run(store_project)["damaged"]["evidence_source"] == "computed"
    assert run(store_project)["damaged"]["evidence_source"] == "stored"


def test_stored_statistics_equal_the_computed_ones_exactly(monkeypatch, tmp_path):
    monkeypatch.setenv("SEQCLAIMS_CACHE", str(tmp_path))
    key = evidence_store.EvidenceKey("ab" * 32, False)
    evidence = Evidence(statistics={
        "x": Estimate(0.1 + 0.2, 1 / 3, math.pi, np.int64(7), p=np.float64(1e-300), ceiling=Ceiling(0.5, 0.4, 0.6),
                      detail={"table": [np.float64(0.25), float("nan")]}),
        "missing": Estimate.missing("no data"),
    }, notes=["a note"], versions={"model": "m"})
    evidence_store.save_evidence(key, evidence)
    stored = evidence_store.load(key, []).evidence
    x = stored.statistics["x"]
    assert (x.estimate, x.ci_low, x.ci_high, x.n, x.p) == (0.1 + 0.2, 1 / 3, math.pi, 7, 1e-300)
    assert x.ceiling == Ceiling(0.5, 0.4, 0.6) and stored.statistics["missing"].is_missing
    assert stored.notes == ["a note"] and stored.versions == {"model": "m"}


def test_the_key_ignores_prose_and_thresholds_but_not_statistics_or_settings():
    content = {"id": "a", "title": "t", "statement": "s", "expect": "supported", "decision": "all",
               "params": {"layer": 1}, "seed": 0,
               "criteria": [{"statistic": "r", "op": ">=", "threshold": 0.5}]}
    base = evidence_store.computational_content(content)
    edited = {**content, "title": "other", "expect": "refuted",
              "criteria": [{"statistic": "r", "op": "<", "threshold": 0.1}]}
    assert evidence_store.computational_content(edited) == base
    for change in ({"params": {"layer": 2}}, {"seed": 1},
                   {"criteria": [{"statistic": "max_r", "op": ">=", "threshold": 0.5}]}):
        assert evidence_store.computational_content({**content, **change}) != base


def test_a_heatmap_is_drawn_against_the_criteria_it_is_judged_with(monkeypatch, tmp_path):
    monkeypatch.setenv("SEQCLAIMS_CACHE", str(tmp_path))
    values = np.array([[0.1, 0.9], [0.2, np.nan]])
    marks = HeadMarks(("r",), low=values - 0.05, high=values + 0.05)
    recipe = head_heatmap(values, title="r per head", label="r", caption="Per head.", marks=marks)
    assert recipe.file is None and recipe.recipe is not None
    strict = draw_for_criteria(recipe, [Criterion(statistic="r", op=">=", threshold=0.8)])
    lenient = draw_for_criteria(recipe, [Criterion(statistic="r", op=">=", threshold=0.1)])
    again = draw_for_criteria(recipe, [Criterion(statistic="r", op=">=", threshold=0.8)])
    assert strict.file != lenient.file and again.file == strict.file
    assert (store_dir() / strict.file).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "Outlined" in strict.caption and strict.caption.startswith("Per head.")
    unmarked = draw_for_criteria(recipe, [Criterion(statistic="other", op=">=", threshold=0.8)])
    assert "Outlined" not in unmarked.caption
