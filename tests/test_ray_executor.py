"""`--claims-executor ray`: claims judged on a local Ray cluster (2 workers) give the results of `-n 2`."""

from __future__ import annotations

import json

import pytest

from conftest import REPO_ROOT, toy_claim, write_claim
from seqclaims.core.families import load_claim
from seqclaims.executors import group_key

PLANTED_ENRICHMENT = """\
id: planted-motif-head-enriched
title: TBP sites receive more of the planted motif head's attention
statement: Tokens over TBP hits receive at least twice the motif head's attention of matched background.
expect: supported
model: planted
data: {dataset: motif_sites, matrix: MA0108.3, n: 200}
check: attention_enrichment
params: {layer: 0, head: 2}
criteria:
  - {statistic: rho, op: ">=", threshold: 2}
"""


@pytest.fixture
def project(claims_project):
    root = claims_project.path
    (root / "fixtures").symlink_to(REPO_ROOT / "fixtures")  # the embedded models
    (root / "checks" / "attention_enrichment.py").symlink_to(REPO_ROOT / "checks" / "attention_enrichment.py")
    write_claim(root, "alpha", "strong-effect", toy_claim(id="strong-effect", effect=0.8, threshold=0.3))
    write_claim(root, "alpha", "no-effect", toy_claim(id="no-effect", effect=0.0, threshold=0.3, expect="refuted"))
    write_claim(root, "alpha", "other-seed", toy_claim(id="other-seed", effect=0.8, threshold=0.3, seed=1))
    write_claim(root, "beta", "unavailable-data", toy_claim(id="unavailable-data", dataset="missing"))
    write_claim(root, "planted", "planted-motif-head-enriched", PLANTED_ENRICHMENT)
    return claims_project


def _outcomes(pytester) -> dict:
    document = json.loads((pytester.path / "reports" / "latest" / "results.json").read_text())
    return {c["id"]: (c["status"], c["verdict"], c["criteria"]) for c in document["claims"]}


def test_ray_cluster_gives_the_results_of_two_xdist_workers(project):
    local = project.runpytest_subprocess("claims/", "-p", "no:cacheprovider", "-n", "2")
    local.assert_outcomes(passed=4, skipped=1)
    expected = _outcomes(project)
    on_ray = project.runpytest_subprocess("claims/", "-p", "no:cacheprovider", "--claims-executor", "ray",
                                          "--claims-ray-workers", "2")
    on_ray.assert_outcomes(passed=4, skipped=1)
    assert _outcomes(project) == expected  # verdicts and every criterion's statistics
    assert expected["planted-motif-head-enriched"][1] == "supported"


def test_ray_executor_refuses_xdist_and_reports_failures_like_a_local_run(project):
    both = project.runpytest_subprocess("claims/", "-p", "no:cacheprovider", "-n", "2", "--claims-executor", "ray")
    assert both.ret == pytest.ExitCode.USAGE_ERROR
    both.stderr.fnmatch_lines(["*--claims-executor ray runs the claims on Ray workers; drop -n*"])
    write_claim(project.path, "alpha", "wrong", toy_claim(id="wrong", effect=0.8, threshold=0.3, expect="refuted"))
    run = project.runpytest_subprocess("claims/", "-p", "no:cacheprovider", "--claims-executor", "ray",
                                       "--claims-ray-workers", "1", "-k", "wrong or strong")
    run.assert_outcomes(passed=1, failed=1)
    run.stdout.fnmatch_lines(["*verdict 'supported' but the claim expects 'refuted'*"])


def test_claims_group_by_model_dataset_and_seed(tmp_path):
    from claim_files import FAMILIES
    from claim_files import write_claim as write_family_claim

    data = {"dataset": "motif_sites", "matrix": "MA0108.3", "n": 200}
    criteria = [{"statistic": "rho", "op": ">=", "threshold": 2}]
    paths = [write_family_claim(tmp_path, f"c{i}", check="attention_enrichment", data=d, criteria=criteria,
                                params={"layer": 0, "head": h})
             for i, (d, h) in enumerate([(data, 2), (data, 1), ({**data, "n": 400}, 2)])]
    keys = [group_key(load_claim(p, FAMILIES)) for p in paths]
    assert keys[0] == keys[1] != keys[2]



def test_a_cache_url_is_refused_in_one_line(project, monkeypatch):
    """Object stores give no atomic rename or file lock: SEQCLAIMS_CACHE=s3://... is a usage error, not a
    local folder named 's3:'."""
    monkeypatch.setenv("SEQCLAIMS_CACHE", "s3://bucket/seqclaims")
    refused = project.runpytest_subprocess("claims/", "-p", "no:cacheprovider")
    assert refused.ret == pytest.ExitCode.USAGE_ERROR
    refused.stderr.fnmatch_lines(["*SEQCLAIMS_CACHE=s3://bucket/seqclaims: a URL is not a cache folder; mount the "
                                  "storage and give its path*"])
    assert not (project.path / "s3:").exists()
