"""The contract every check family keeps, run over every module in `checks/` and the README's example family.

- it declares what a claim needs: an example claim whose criteria name its statistics, the alphabets it
  reads, whether it resamples whole sequences, a definition for every statistic;
- its `seqclaims new` template is a valid claim, and the example itself validates;
- judged on the planted model (the family's example with small data), its evidence holds every statistic it
  declares: a value, or a missing value that says why (a control the claim did not ask for).
"""

from __future__ import annotations

from pathlib import Path

import pytest

import claim_files
from seqclaims.cli import claim_template
from seqclaims.core.families import load_claim, load_families
from seqclaims.judging import init_baseline
from seqclaims.judging.claim_inputs import claim_context

EXAMPLES = Path(__file__).resolve().parents[1] / "docs" / "examples"
FAMILIES = load_families([claim_files.REPO / "checks", EXAMPLES])
NAMES = sorted(FAMILIES.families)
ALPHABETS = {"dna", "protein"}


def test_every_module_in_checks_and_the_readme_example_is_a_family():
    modules = {p.stem for p in (claim_files.REPO / "checks").glob("*.py")} | {"mean_norm"}
    assert set(NAMES) == modules and not FAMILIES.broken


@pytest.mark.parametrize("name", NAMES)
def test_a_family_declares_what_a_claim_needs(name):
    family = FAMILIES.families[name]
    assert family.summary and family.statistics and family.min_n >= 1
    assert all(statistic.doc for statistic in family.statistics.values())
    assert family.alphabets and set(family.alphabets) <= ALPHABETS
    assert isinstance(family.whole_sequences, bool)
    example = family.example
    assert {"model", "data", "params", "criteria"} <= set(example), "the example is a whole claim"
    assert {criterion["statistic"] for criterion in example["criteria"]} <= set(family.statistics)


@pytest.mark.parametrize("name", NAMES)
def test_the_template_and_the_example_load_as_claims(name, tmp_path):
    family = FAMILIES.families[name]
    template = tmp_path / "claims" / "study" / f"{name.replace('_', '-')}-template.yaml"
    template.parent.mkdir(parents=True)
    template.write_text(claim_template(family, template.stem), encoding="utf-8")
    loaded = load_claim(template, FAMILIES)
    assert loaded.check == name and [c.statistic for c in loaded.criteria] == [
        c["statistic"] for c in family.example["criteria"]]
    example = claim_files.write_claim(tmp_path, f"{name.replace('_', '-')}-example", check=name, **family.example)
    assert load_claim(example, FAMILIES).params == family.params.model_validate(family.example["params"])


@pytest.mark.parametrize("name", NAMES)
def test_every_declared_statistic_is_produced_on_the_planted_model(name, tmp_path):
    family = FAMILIES.families[name]
    claim = load_claim(claim_files.fixture_claim(name, "planted", tmp_path, FAMILIES), FAMILIES)
    context = claim_context(claim, whole_sequences=family.whole_sequences)
    evidence = family.evaluate(claim, context)
    evidence.statistics.update(init_baseline.init_statistics(claim, family, context, evidence.statistics))
    assert set(evidence.statistics) == set(family.statistics)
    unpaired = [name for name in family.init_statistics
                if not evidence.statistics[name].is_missing and evidence.statistics[name].samples is None]
    assert unpaired == [], "a key statistic's resamples are what its _minus_init is paired over"
    unexplained = [n for n, e in evidence.statistics.items() if e.estimate != e.estimate and not e.reason]
    assert unexplained == [], "a missing value must say why"
    assert any(e.estimate == e.estimate for e in evidence.statistics.values()), "something was computed"


def test_the_readme_shows_the_example_family_as_it_is_tested():
    readme = (claim_files.REPO / "README.md").read_text(encoding="utf-8")
    assert (EXAMPLES / "mean_norm.py").read_text(encoding="utf-8") in readme
