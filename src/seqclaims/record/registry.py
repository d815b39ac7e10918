"""Pre-registration (DESIGN section 4): an append-only, hash-chained log of claim contents.

Each line is a JSON object `{claim, sha256, event, time, commit, access, reason, prev, content,
entry_sha256}`, with `correct_error: true` on an amendment that corrects a clerical mistake in
`expect`. `sha256` hashes the claim's canonical content (parsed, includes resolved, key-sorted), so
formatting changes do not count; `prev` is the hash of the previous line's text, so the log is a chain;
`entry_sha256` hashes the entry itself, so an edit of the last line is caught too. Where the log is
tracked by git, the committed log must be a prefix of the working log (append-only).

`expect` is the registered prediction. After results are seen it changes only back to the prediction of
record or as a recorded clerical correction; a failed prediction goes to the ledger as an accepted
outcome instead (`record.ledger`).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import subprocess
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

from seqclaims.core.schema import canonical_content, canonical_hash, canonical_json
from seqclaims.errors import ClaimError

ACCESS_LEVELS = ("none", "blinded", "results-seen")
EVENTS = ("register", "amend")
GENESIS = "0" * 64
REQUIRED_KEYS = ("claim", "sha256", "event", "time", "commit", "access", "reason", "prev")


def line_hash(line: str) -> str:
    return hashlib.sha256(line.rstrip("\n").encode("utf-8")).hexdigest()


def entry_hash(entry: dict[str, Any]) -> str:
    body = {key: value for key, value in entry.items() if key != "entry_sha256"}
    return hashlib.sha256(canonical_json(body).encode("utf-8")).hexdigest()


def git_commit(root: Path) -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 else "unknown"


@dataclass
class Registry:
    """The log as read from disk. Lines that are not JSON objects are kept (so `verify` can name them)
    but ignored when looking up a claim's history."""

    path: Path
    lines: list[str] = field(default_factory=list)

    @classmethod
    def open(cls, path: Path) -> "Registry":
        lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
        return cls(path, [line for line in lines if line.strip()])

    def entries(self) -> list[dict[str, Any]]:
        return [entry for entry in map(_parse_line, self.lines) if entry is not None]

    def unreadable_lines(self) -> list[int]:
        return [number for number, line in enumerate(self.lines, start=1) if _parse_line(line) is None]

    def history(self, claim_id: str) -> list[dict[str, Any]]:
        return self._by_claim().get(claim_id, [])

    def last(self, claim_id: str) -> dict[str, Any] | None:
        history = self.history(claim_id)
        return history[-1] if history else None

    def claim_ids(self) -> list[str]:
        return list(self._by_claim())

    def _by_claim(self) -> dict[str, list[dict[str, Any]]]:
        index: dict[str, list[dict[str, Any]]] = {}
        for entry in self.entries():
            index.setdefault(str(entry.get("claim")), []).append(entry)
        return index

    def append(self, claim_id: str, content: dict[str, Any], event: str, access: str, reason: str,
               root: Path, check: Callable[["Registry"], None] | None = None,
               flags: dict[str, bool] | None = None) -> dict[str, Any]:
        """Append one entry under an exclusive lock, re-reading the file first so that the chain stays
        intact; `check` validates the event against the freshly read log, inside the lock; `flags` are
        recorded in the entry when true."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a+", encoding="utf-8") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            handle.seek(0)
            self.lines = [line for line in handle.read().splitlines() if line.strip()]
            if check is not None:
                check(self)
            entry = {
                "claim": claim_id,
                "sha256": canonical_hash(content),
                "event": event,
                "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "commit": git_commit(root),
                "access": access,
                "reason": reason,
                "prev": line_hash(self.lines[-1]) if self.lines else GENESIS,
                "content": canonical_content(content),
                **{name: True for name, value in (flags or {}).items() if value},
            }
            entry["entry_sha256"] = entry_hash(entry)
            line = json.dumps(entry, sort_keys=True, ensure_ascii=False)
            handle.write(line + "\n")
            self.lines.append(line)
        return entry


@lru_cache(maxsize=16384)  # every claim's status reads the whole log; each line is parsed once per process
def _parse_line(line: str) -> dict[str, Any] | None:
    """The entry a line holds (shared between readers: read it, never change it), or None."""
    try:
        entry = json.loads(line)
    except json.JSONDecodeError:
        return None
    return entry if isinstance(entry, dict) else None


# ---------------------------------------------------------------------------------------------
# commands


def register(registry: Registry, claim_id: str, content: dict[str, Any], access: str, reason: str,
             root: Path) -> dict[str, Any]:
    _check_access(access)

    def not_yet_registered(current: Registry) -> None:
        if current.last(claim_id) is not None:
            raise ClaimError(f"claim {claim_id!r} is already registered; record a change with "
                             f"`seqclaims amend <path> --reason TEXT --access LEVEL`")

    return registry.append(claim_id, content, "register", access, reason, root, check=not_yet_registered)


def amend(registry: Registry, claim_id: str, content: dict[str, Any], access: str, reason: str,
          root: Path, correct_error: bool = False) -> dict[str, Any]:
    """Record a change to a registered claim. `expect` is the registered prediction: with `results-seen`
    it may change only back to the prediction of record (a restoration) or as a recorded correction of
    a clerical mistake (`correct_error`); a failed prediction is recorded in the ledger instead."""
    _check_access(access)
    if not reason.strip():
        raise ClaimError("amend: --reason must say why the claim changed")

    def registered_and_changed(current: Registry) -> None:
        history = current.history(claim_id)
        if not history:
            raise ClaimError(f"claim {claim_id!r} is not registered; register it first with "
                             "`seqclaims register <path>`")
        if history[-1].get("sha256") == canonical_hash(content):
            raise ClaimError(f"claim {claim_id!r} has not changed since its last registry entry; nothing to amend")
        _check_expect_change(claim_id, history, content.get("expect"), access, correct_error)

    return registry.append(claim_id, content, "amend", access, reason, root, check=registered_and_changed,
                           flags={"correct_error": correct_error})


def _check_expect_change(claim_id: str, history: list[dict[str, Any]], expect: Any, access: str,
                         correct_error: bool) -> None:
    changed = expect != _content(history[-1]).get("expect")
    if correct_error and not changed:
        raise ClaimError(f"amend: --correct-error corrects a registered expect, and {claim_id!r} keeps "
                         f"expect {expect!r}")
    if changed and access == "results-seen" and not correct_error and expect != registered_prediction(history):
        raise ClaimError(f"amend: {claim_id!r}: expect is the registered prediction and does not change after "
                         "results are seen; record the observed verdict as an accepted outcome with "
                         "`seqclaims ledger accept` (or pass --correct-error if the registered value was a "
                         "clerical mistake)")


def registered_prediction(history: list[dict[str, Any]]) -> Any:
    """The prediction of record: the `expect` of the first registration, or of the latest amendment that
    corrected it as a clerical mistake; None for a claim never registered."""
    if not history:
        return None
    corrections = [entry for entry in history[1:] if entry.get("correct_error")]
    return _content(corrections[-1] if corrections else history[0]).get("expect")


def _content(entry: dict[str, Any]) -> dict[str, Any]:
    return entry.get("content") or {}


def _check_access(access: str) -> None:
    if access not in ACCESS_LEVELS:
        raise ClaimError(f"--access {access!r} is not one of {', '.join(ACCESS_LEVELS)}")


# ---------------------------------------------------------------------------------------------
# status and verification


@dataclass(frozen=True)
class RegistrationStatus:
    state: str  # exploratory | registered | amended | changed | registry-invalid
    post_hoc: bool
    history: list[dict[str, Any]]
    message: str = ""

    @property
    def corrected(self) -> bool:
        """An amendment corrected `expect` as a clerical mistake."""
        return any(entry.get("correct_error") for entry in self.history)

    @property
    def registered_after_results(self) -> bool:
        return bool(self.history) and self.history[0].get("access") == "results-seen"

    def to_json(self) -> dict[str, Any]:
        return {"state": self.state, "post_hoc": self.post_hoc, "message": self.message,
                "prediction": registered_prediction(self.history),
                "registered_after_results": self.registered_after_results, "corrected": self.corrected,
                "history": [summarise_entry(e, p) for e, p in zip(self.history, [None, *self.history])]}


def registration_status(registry: Registry, claim_id: str, content: dict[str, Any], path: Path) -> RegistrationStatus:
    unreadable = registry.unreadable_lines()
    if unreadable:
        return RegistrationStatus("registry-invalid", False, registry.history(claim_id),
                                  f"{registry.path.name}: line {unreadable[0]} is not a JSON object; restore the "
                                  "log from version control and run `seqclaims registry verify`")
    history = registry.history(claim_id)
    if not history:
        return RegistrationStatus("exploratory", False, [], "not registered: reported as exploratory")
    post_hoc = any(e.get("event") == "amend" and e.get("access") == "results-seen" for e in history)
    if history[-1].get("sha256") != canonical_hash(content):
        message = (f"{path}: changed after registration (registered sha256 {str(history[-1].get('sha256'))[:12]}, now "
                   f"{canonical_hash(content)[:12]}); record the change with "
                   f"`seqclaims amend {path} --reason TEXT --access none|blinded|results-seen`")
        return RegistrationStatus("changed", post_hoc, history, message)
    state = "amended" if len(history) > 1 else "registered"
    return RegistrationStatus(state, post_hoc, history)


def summarise_entry(entry: dict[str, Any], previous: dict[str, Any] | None) -> dict[str, Any]:
    summary = {key: entry.get(key) for key in ("event", "time", "commit", "access", "reason", "sha256")}
    summary["post_hoc"] = entry.get("event") == "amend" and entry.get("access") == "results-seen"
    summary["correct_error"] = bool(entry.get("correct_error"))
    if previous is not None:
        summary["changes"] = content_changes(previous.get("content") or {}, entry.get("content") or {})
    return summary


def content_changes(old: Any, new: Any, prefix: str = "") -> list[dict[str, Any]]:
    """Leaf-level differences between two contents: [{key, old, new}], e.g. criteria[0].threshold."""
    if isinstance(old, dict) and isinstance(new, dict):
        changes = []
        for key in sorted(set(old) | set(new)):
            path = f"{prefix}.{key}" if prefix else str(key)
            changes += content_changes(old.get(key), new.get(key), path)
        return changes
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        changes = []
        for index, (a, b) in enumerate(zip(old, new)):
            changes += content_changes(a, b, f"{prefix}[{index}]")
        return changes
    return [] if old == new else [{"key": prefix, "old": old, "new": new}]


def verify_chain(lines: list[str]) -> list[str]:
    """Problems with the log itself: malformed lines, broken links, edited entries, bad event order."""
    problems: list[str] = []
    registered: set[str] = set()
    previous_line: str | None = None
    for number, line in enumerate(lines, start=1):
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            problems.append(f"line {number}: not valid JSON")
            previous_line = line
            continue
        missing = [key for key in REQUIRED_KEYS if key not in entry]
        if missing:
            problems.append(f"line {number}: missing keys {', '.join(missing)}")
        expected_prev = line_hash(previous_line) if previous_line is not None else GENESIS
        if entry.get("prev") != expected_prev:
            problems.append(f"line {number}: prev does not match the previous line (edited, deleted or reordered)")
        if "entry_sha256" in entry and entry["entry_sha256"] != entry_hash(entry):
            problems.append(f"line {number}: entry content does not match its entry_sha256 (edited)")
        if "content" in entry and entry.get("sha256") != canonical_hash(entry["content"]):
            problems.append(f"line {number}: sha256 does not match the recorded content (edited)")
        if entry.get("event") not in EVENTS:
            problems.append(f"line {number}: unknown event {entry.get('event')!r}")
        elif entry["event"] == "register" and entry.get("claim") in registered:
            problems.append(f"line {number}: {entry.get('claim')!r} registered twice")
        elif entry["event"] == "amend" and entry.get("claim") not in registered:
            problems.append(f"line {number}: {entry.get('claim')!r} amended before it was registered")
        if entry.get("access") not in ACCESS_LEVELS:
            problems.append(f"line {number}: unknown access {entry.get('access')!r}")
        registered.add(entry.get("claim"))
        previous_line = line
    return problems


def verify_committed_prefix(path: Path, root: Path) -> list[str]:
    """Where git tracks the log, its committed version must be a prefix of the working file."""
    try:
        relative = path.resolve().relative_to(root.resolve())
        out = subprocess.run(["git", "show", f"HEAD:{relative.as_posix()}"], cwd=root,
                             capture_output=True, text=True, timeout=10)
    except (ValueError, OSError, subprocess.SubprocessError):
        return []
    if out.returncode != 0:
        return []
    committed = [line for line in out.stdout.splitlines() if line.strip()]
    current = Registry.open(path).lines
    if current[: len(committed)] != committed:
        return [f"{path.name}: the committed log is not a prefix of the working file "
                "(a committed line was edited, deleted or reordered)"]
    return []
