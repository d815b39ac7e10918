"""File-system helpers: atomic writes, the inter-process lock, file and source hashes."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import time

import pytest

from seqclaims import fsutil


def test_atomic_writes_create_parents_and_leave_no_temporary_files(tmp_path):
    target = tmp_path / "a" / "b" / "file.bin"
    fsutil.atomic_write_bytes(target, b"\x00\x01")
    assert target.read_bytes() == b"\x00\x01"
    fsutil.atomic_write_bytes(target, memoryview(b"new"))
    assert target.read_bytes() == b"new"
    fsutil.atomic_write_text(tmp_path / "t.txt", "héllo")
    assert (tmp_path / "t.txt").read_text(encoding="utf-8") == "héllo"
    fsutil.atomic_write_json(tmp_path / "d.json", {"b": [1, 2], "a": None})
    assert json.loads((tmp_path / "d.json").read_text()) == {"a": None, "b": [1, 2]}
    assert sorted(p.name for p in tmp_path.rglob("*") if p.name.endswith(".tmp")) == []


def test_a_failed_write_keeps_the_old_file_and_removes_its_temporary(tmp_path):
    target = tmp_path / "kept.txt"
    target.write_text("old")

    class Unwritable:
        def __buffer__(self, flags):
            raise RuntimeError("disk on fire")

    with pytest.raises((RuntimeError, TypeError)):
        fsutil.atomic_write_bytes(target, Unwritable())
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["kept.txt"]


def _hold_lock_then_append(path: str, log: str, label: str) -> None:
    with fsutil.file_lock(path):
        with open(log, "a") as handle:
            handle.write(f"{label}-in\n")
        time.sleep(0.3)
        with open(log, "a") as handle:
            handle.write(f"{label}-out\n")


def test_file_lock_serialises_processes(tmp_path):
    target, log = tmp_path / "entry", tmp_path / "log"
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_hold_lock_then_append, args=(str(target), str(log), label)) for label in "ab"]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert all(worker.exitcode == 0 for worker in workers)
    lines = log.read_text().split()
    assert len(lines) == 4
    # each holder leaves before the other enters
    assert lines[0][0] == lines[1][0] and lines[2][0] == lines[3][0] and lines[0][0] != lines[2][0]
    assert fsutil.lock_path(target) == tmp_path / "entry.lock" and (tmp_path / "entry.lock").is_file()


def test_file_sha256_matches_hashlib(tmp_path):
    path = tmp_path / "blob"
    payload = os.urandom(3 * 2**20 + 17)
    path.write_bytes(payload)
    assert fsutil.file_sha256(path) == hashlib.sha256(payload).hexdigest()


def test_source_hash_follows_the_source_and_accepts_names_or_modules(tmp_path, monkeypatch):
    assert fsutil.source_hash("seqclaims.fsutil") == fsutil.source_hash(fsutil)
    both = fsutil.source_hash("seqclaims.fsutil", "seqclaims.errors")
    assert both != fsutil.source_hash("seqclaims.fsutil") and len(both) == 64
    module = tmp_path / "probe_module_for_source_hash.py"
    module.write_text("VALUE = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    before = fsutil.source_hash("probe_module_for_source_hash")
    module.write_text("VALUE = 2\n")
    assert fsutil.source_hash("probe_module_for_source_hash") != before
    with pytest.raises(ModuleNotFoundError):
        fsutil.source_hash("no_such_module_anywhere_xyz")
