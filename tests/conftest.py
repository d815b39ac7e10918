"""Shared fixtures: the network is off for every test, and claim projects are built in tmp folders."""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

TESTS_DIR = Path(__file__).resolve().parent
REPO_ROOT = TESTS_DIR.parent
TOY_FAMILY_DIR = TESTS_DIR / "families"

for variable in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
    os.environ[variable] = "1"
os.environ.setdefault("SEQCLAIMS_CACHE", str(REPO_ROOT / ".cache" / "seqclaims"))
os.environ.setdefault("SEQCLAIMS_PROGRESS", "0")

_real_connect = socket.socket.connect


def _loopback_only_connect(self, address, *args, **kwargs):
    host = address[0] if isinstance(address, tuple) else address
    if isinstance(host, str) and (host in ("localhost", "::1") or host.startswith("127.") or host.startswith("/")):
        return _real_connect(self, address, *args, **kwargs)
    if self.family == getattr(socket, "AF_UNIX", None):
        return _real_connect(self, address, *args, **kwargs)
    raise OSError(f"network access is disabled in tests (attempted connection to {address!r})")


@pytest.fixture(autouse=True, scope="session")
def no_network():
    socket.socket.connect = _loopback_only_connect
    yield
    socket.socket.connect = _real_connect


VALID_TOY_CLAIM = """\
id: {id}
title: Toy mean is above a threshold
statement: The mean of synthetic draws with effect {effect} is at least {threshold}.
expect: {expect}
model: none
data:
  dataset: {dataset}
  n: {n}
check: toy
params:
  effect: {effect}
criteria:
  - statistic: mean
    op: ">="
    threshold: {threshold}
seed: {seed}
"""


def toy_claim(id="toy-claim", effect=0.5, threshold=0.2, expect="supported", dataset="synthetic", n=200, seed=0):
    return VALID_TOY_CLAIM.format(id=id, effect=effect, threshold=threshold, expect=expect, dataset=dataset,
                                  n=n, seed=seed)


@pytest.fixture
def claims_project(pytester, monkeypatch):
    """A project folder with claims/, checks/ (empty) and the test-only toy family on the checks path.
    Evidence is always computed here (tests of the evidence store turn it on in a cache of their own)."""
    monkeypatch.setenv("SEQCLAIMS_CHECKS_PATH", str(TOY_FAMILY_DIR))
    monkeypatch.setenv("SEQCLAIMS_RECOMPUTE", "1")
    (pytester.path / "checks").mkdir()
    (pytester.path / "claims").mkdir()
    shutil.copy(REPO_ROOT / "conftest.py", pytester.path / "conftest.py")
    (pytester.path / "pytest.ini").write_text("[pytest]\naddopts = -p no:benchmark\n")
    monkeypatch.chdir(pytester.path)
    return pytester


def write_claim(root: Path, study: str, claim_id: str, text: str) -> Path:
    path = root / "claims" / study / f"{claim_id}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _preload_heavy_modules() -> None:
    """In-process pytester runs restore sys.modules afterwards; C extensions such as scipy's cannot be
    imported twice, so the modules that claim runs import are loaded once here, outside any run."""
    import scipy.stats  # noqa: F401
    import torch  # noqa: F401

    import seqclaims.inputs.models  # noqa: F401
    from seqclaims.core.families import load_families

    load_families([REPO_ROOT / "checks", TOY_FAMILY_DIR])


_preload_heavy_modules()
