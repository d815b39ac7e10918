"""Networks that learned nothing must not pass (DESIGN section 3, randomization).

Six randomly initialised ESM-style networks (2 layers, 8 heads, rotary positions, single-nucleotide tokens,
seeds 100-105): their heads read their key token's base and correlate with the TATA-box matrix, their
attention is associated with TBP sites, and their residuals decode promoters beyond GC. A head claim that
decides on a p-value, and a probe claim on `auroc_minus_gc`, are supported on them; the templates, which
decide on the difference from randomly initialised copies, are not. (The probe runs on 400 promoter windows
rather than the 1,000 of the original finding, to keep the suite's time; `scripts/calibrate_init.py` has the
20-network calibration of the head and unit templates.)
"""

from __future__ import annotations

import pytest

import claim_files
from seqclaims.core.families import load_claim
from seqclaims.judging.judge import judge
from seqclaims.organisms.random_networks import random_network, template_claim

SEEDS = range(100, 106)
TBP = {"dataset": "motif_sites", "matrix": "MA0108.3", "n": 300}
FAMILIES = claim_files.FAMILIES


@pytest.fixture(scope="module")
def networks(tmp_path_factory):
    folder = tmp_path_factory.mktemp("random-networks")
    return [random_network(folder / str(seed), seed) for seed in SEEDS]


def _verdict(family_name: str, network, folder, seed: int, **overrides) -> str:
    family = FAMILIES.families[family_name]
    path = template_claim(family, folder, network, seed, **overrides)
    result = judge(load_claim(path, FAMILIES), family, use_store=False)
    assert result.status == "evaluated", result.reason
    return result.verdict


@pytest.mark.slow
@pytest.mark.parametrize("family, overrides", [
    ("qk_motif", {"data": TBP}),
    ("attention_association", {"data": TBP, "params": {"annotation": {"motif": "MA0108.3", "align": "anchored"}}}),
    ("probe", {"data": {"dataset": "promoters", "n": 400, "gc_match": False},
               "params": {"layer": 1, "pooling": "mean", "random_label_permutations": 3}}),
])
def test_the_templates_do_not_support_claims_on_random_networks(family, overrides, networks, tmp_path):
    verdicts = [_verdict(family, network, tmp_path / str(seed), seed, **overrides)
                for seed, network in zip(SEEDS, networks)]
    assert "supported" not in verdicts, verdicts


@pytest.mark.slow
def test_a_p_value_alone_is_supported_on_random_networks(networks, tmp_path):
    """The finding the templates answer: without a control, some head 'tracks TBP' in random networks."""
    p_only = {"data": TBP, "criteria": [{"statistic": "max_r_p", "op": "<", "threshold": 0.05}], "init_seeds": 0}
    verdicts = [_verdict("qk_motif", network, tmp_path / str(seed), seed, **p_only)
                for seed, network in zip(SEEDS[:2], networks[:2])]
    assert verdicts.count("supported") >= 1, verdicts
