"""The rendered HTML opens in a real browser and shows every claim row."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from conftest import toy_claim, write_claim

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (`apt-get install chromium`)")
def test_every_claim_row_renders_in_headless_chromium(claims_project, tmp_path):
    root = claims_project.path
    ids = [f"claim-{i}" for i in range(5)]
    for i, claim_id in enumerate(ids):
        write_claim(root, "alpha" if i % 2 else "beta", claim_id, toy_claim(id=claim_id, effect=0.2 * i))
    claims_project.runpytest("claims/", "-p", "no:cacheprovider")
    html = root / "reports" / "latest" / "index.html"
    dom = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1200,20000", "--virtual-time-budget=5000",
         f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", html.as_uri()],
        capture_output=True, text=True, timeout=120).stdout
    rendered = re.findall(r'<tr class="claim-row" data-claim="([^"]+)"', dom)
    assert sorted(rendered) == sorted(ids)
    assert 'id="summary-counts"' in dom and "data:image/png;base64," not in dom
    figures = re.search(r'data-figures="(\d+)" data-figures-loaded="(\d+)"', dom)
    assert figures and int(figures[1]) >= 1 and figures[1] == figures[2]  # every figure file loads
