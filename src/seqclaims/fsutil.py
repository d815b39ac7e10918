"""File-system helpers shared by every cache: atomic writes, inter-process locks and content hashes.

Readers never see half a file: a write goes to a temporary file in the same folder, is flushed to
disk and then moved into place with ``os.replace``. Processes that build the same cached file
serialise on an ``fcntl.flock`` lock held on a sibling ``<name>.lock`` file, so one builds and the
others wait and then read.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import pickle
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Iterator, TypeVar

T = TypeVar("T")

__all__ = [
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "file_lock",
    "file_sha256",
    "lock_path",
    "package_version",
    "source_hash",
]


def atomic_write_bytes(path: Path | str, data: bytes | bytearray | memoryview) -> None:
    """Write ``data`` to ``path`` (parents created) so that readers see the old file or the new one, never a mix."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


def atomic_write_text(path: Path | str, text: str) -> None:
    """:func:`atomic_write_bytes` of ``text`` encoded as UTF-8."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path | str, obj: Any) -> None:
    """:func:`atomic_write_text` of ``obj`` as indented JSON with sorted keys and a final newline."""
    atomic_write_text(path, json.dumps(obj, indent=1, sort_keys=True) + "\n")


def lock_path(path: Path | str) -> Path:
    """The lock file that guards ``path``: ``<path>.lock`` beside it."""
    path = Path(path)
    return path.with_name(f"{path.name}.lock")


@contextlib.contextmanager
def file_lock(path: Path | str) -> Iterator[None]:
    """Hold an exclusive inter-process lock on :func:`lock_path` of ``path`` while the block runs.

    Not re-entrant: a process that takes the lock on one path twice (nested) waits for itself.
    """
    guard = lock_path(path)
    guard.parent.mkdir(parents=True, exist_ok=True)
    with open(guard, "a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def read_pickle(path: Path, valid: Callable[[Any], bool] = lambda _: True) -> Any | None:
    """The object pickled at `path`; None (rebuild it) when absent, unreadable, of a renamed class, or not `valid`."""
    if not path.is_file():
        return None
    try:
        with open(path, "rb") as handle:
            value = pickle.load(handle)
    except Exception:  # unpickling fails in many ways (damaged file, a class moved by an upgrade): rebuild
        return None
    return value if valid(value) else None


def pickled(path: Path, build: Callable[[], T], valid: Callable[[Any], bool] = lambda _: True) -> T:
    """The object cached at `path`, else `build()` written there atomically; one process builds it, the
    others wait on the lock and read it."""
    value = read_pickle(path, valid)
    if value is None:
        with file_lock(path):
            value = read_pickle(path, valid)
            if value is None:
                value = build()
                atomic_write_bytes(path, pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))
    return value


def file_sha256(path: Path | str) -> str:
    """sha256 hex digest of a file's bytes, read in blocks."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def source_hash(*modules: ModuleType | str) -> str:
    """sha256 over the source files of ``modules`` (module objects or dotted names, not imported).

    Part of a cache key, so that a change to the code that builds an entry cannot reuse it.
    """
    digest = hashlib.sha256()
    for module in modules:
        name = module if isinstance(module, str) else module.__name__
        digest.update(f"{name}\0{file_sha256(_source_file(module))}\0".encode())
    return digest.hexdigest()


def package_version(package: str) -> str | None:
    """The installed version of a distribution, or None when it is not installed."""
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _source_file(module: ModuleType | str) -> str:
    if not isinstance(module, str):
        return module.__file__
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.origin:
        raise ModuleNotFoundError(f"no source file for module {module!r}")
    return spec.origin
