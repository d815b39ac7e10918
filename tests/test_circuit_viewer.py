"""The report's interactive circuit viewer (Cytoscape.js, shipped with the package and inlined, so it works
offline) in headless Chromium: every node renders, tapping a node shows its dashboard, and a screenshot shows
the graph."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from seqclaims.judging.judge import ClaimResult
from seqclaims.methods import figures
from seqclaims.record.report import VIEWER_LIBRARY, write_report

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
NODES = [{"id": f"L{layer}.f{latent}", "layer": layer, "latent": latent, "score": 0.1 * (latent + 1),
          "windows": [{"window": 7, "code": 1.5, "context": f"ACGT[TATA]GGCC latent {latent}"}]}
         for layer in (0, 1) for latent in (3, 5)]
EDGES = [{"source": "L0.f3", "target": "L1.f5", "weight": 0.8}, {"source": "L0.f5", "target": "L1.f3", "weight": -0.3}]


def chromium(html: Path, profile: Path, *flags: str, fragment: str = "") -> str:
    return subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--virtual-time-budget=5000", f"--user-data-dir={profile}", *flags, html.as_uri() + fragment],
        capture_output=True, text=True, timeout=120).stdout


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    figure = figures.draw_for_criteria(figures.circuit_graph("a circuit", "test graph", NODES, EDGES), [])
    assert figure.file and figure.graph and figure.recipe is None  # drawn PNG, graph kept for the viewer
    result = ClaimResult(id="circuit-claim", path="claims/x/circuit-claim.yaml", family="feature_circuit", study="x",
                         status="evaluated", verdict="supported", expect="supported", figures=[figure])
    out = tmp_path_factory.mktemp("report")
    return write_report(out, [result.to_json()], {"started": "", "finished": "", "git_commit": ""}, [], REPO)


def test_the_viewer_library_is_inlined_only_when_a_claim_has_a_graph(report, tmp_path):
    html = report.read_text()
    assert VIEWER_LIBRARY.read_text()[:200] in html and "cytoscape(" in html
    plain = ClaimResult(id="plain", path="claims/x/plain.yaml", family="probe", study="x", status="evaluated",
                        verdict="supported", expect="supported")
    other = write_report(tmp_path / "plain", [plain.to_json()], {"started": "", "finished": "", "git_commit": ""}, [], REPO)
    assert "cytoscape(" not in other.read_text()


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (`apt-get install chromium`)")
def test_nodes_render_and_tapping_a_node_shows_its_dashboard(report, tmp_path):
    dom = chromium(report, tmp_path / "profile", "--dump-dom", fragment="#select=L0.f5")
    assert re.search(r'data-circuits-rendered="1"', dom)
    assert re.search(r'data-nodes-rendered="4"', dom) and re.search(r'data-edges-rendered="2"', dom)
    assert 'data-selected="L0.f5"' in dom and "ACGT[TATA]GGCC latent 5" in dom


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (`apt-get install chromium`)")
def test_a_screenshot_shows_the_graph(report, tmp_path):
    from PIL import Image

    shot = tmp_path / "viewer.png"
    chromium(report, tmp_path / "profile", "--window-size=1200,900", f"--screenshot={shot}")
    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    green = (pixels[..., 1] > 100) & (pixels[..., 0] < 60) & (pixels[..., 2] < 90)  # the nodes' #1a7f37
    assert green.sum() > 200, green.sum()
