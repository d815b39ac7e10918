"""The ledger (DESIGN section 5): the committed record of accepted conclusions, and the comparison of
a run against it.

An accepted verdict that differs from the claim's `expect` is an accepted outcome: the prediction was
not met, and the record says so instead of rewriting the prediction. Against the ledger, a verdict that
changed is a recovery when it now meets the prediction, otherwise a regression (whether the accepted
verdict met the prediction or was an accepted outcome)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from seqclaims.core.values import json_safe
from seqclaims.errors import InputError
from seqclaims.fsutil import atomic_write_text

REGRESSION, RECOVERY, MISSING = "regression", "recovery", "missing"
PREDICTION_MET, PREDICTION_NOT_MET = "prediction met", "prediction not met"


@dataclass(frozen=True)
class LedgerChange:
    claim: str
    kind: str
    old_verdict: str | None
    new_verdict: str | None
    old_criteria: list[dict[str, Any]]
    new_criteria: list[dict[str, Any]]

    def describe(self) -> str:
        return f"{self.kind.upper()}: {self.claim}: {self.old_verdict} -> {self.new_verdict}"


def read_ledger(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {"claims": {}}
    return json.loads(path.read_text(encoding="utf-8"))


def accepted_outcome(ledger: dict[str, Any], claim_id: str, verdict: str | None, expect: str | None) -> bool:
    """Whether the ledger records `verdict`, which differs from the prediction `expect`, as the accepted
    outcome of this very prediction."""
    entry = ledger.get("claims", {}).get(claim_id)
    return (verdict != expect and entry is not None and entry.get("status") == "evaluated"
            and entry.get("verdict") == verdict and entry.get("expect") == expect)


def _outcome(result: dict[str, Any]) -> str | None:
    if result.get("status") != "evaluated":
        return None
    return PREDICTION_MET if result.get("verdict") == result.get("expect") else PREDICTION_NOT_MET


def _conclusion(result: dict[str, Any]) -> dict[str, Any]:
    return {
        "verdict": result.get("verdict"),
        "status": result.get("status"),
        "expect": result.get("expect"),
        "outcome": _outcome(result),
        "claim_sha256": (result.get("versions") or {}).get("claim_sha256"),
        "criteria": [{k: c.get(k) for k in ("statistic", "op", "threshold", "estimate", "ci_low", "ci_high", "n")}
                     for c in result.get("criteria", [])],
    }


def compare_with_ledger(results: list[dict[str, Any]], ledger: dict[str, Any],
                        complete_run: bool = False) -> list[LedgerChange]:
    """Claims whose verdict differs from the accepted one.

    Recovery: the new verdict meets the claim's prediction (`expect`); regression: it does not, whether
    the accepted verdict met the prediction or was accepted as the outcome of a failed one. An accepted
    claim that now skips is `missing`; so is one absent from a complete run (every claim collected, no
    -k or -m selection)."""
    accepted = ledger.get("claims", {})
    changes = []
    seen = set()
    for result in results:
        seen.add(result["id"])
        old = accepted.get(result["id"])
        if old is None:
            continue
        old_verdict = old.get("verdict")
        if result.get("status") == "skipped":
            if old.get("status") != "skipped":
                changes.append(LedgerChange(result["id"], MISSING, old_verdict, None, old.get("criteria", []), []))
            continue
        new_verdict = result.get("verdict")
        if new_verdict == old_verdict:
            continue
        kind = RECOVERY if new_verdict == result.get("expect") else REGRESSION
        changes.append(LedgerChange(result["id"], kind, old_verdict, new_verdict,
                                    old.get("criteria", []), _conclusion(result)["criteria"]))
    if complete_run:
        for claim_id in sorted(set(accepted) - seen):
            old = accepted[claim_id]
            changes.append(LedgerChange(claim_id, MISSING, old.get("verdict"), None, old.get("criteria", []), []))
    return changes


def accept(results_path: Path, ledger_path: Path, git_commit: str) -> dict[str, Any]:
    """Record the conclusions of a rendered run (its results.json) as accepted; skipped claims keep
    their previous entry."""
    if not results_path.exists():
        raise InputError(f"{results_path} not found: run `pytest claims/` first")
    try:
        run = json.loads(results_path.read_text(encoding="utf-8"))
        run["claims"]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError):
        raise InputError(f"{results_path} is not a seqclaims results.json; rerun `pytest claims/`") from None
    ledger = read_ledger(ledger_path)
    claims = dict(ledger.get("claims", {}))
    for result in run.get("claims", []):
        if result.get("status") != "skipped":
            claims[result["id"]] = _conclusion(result)
    updated = {
        "accepted_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "git_commit": git_commit,
        "run_started": run.get("run", {}).get("started"),
        "claims": dict(sorted(claims.items())),
    }
    write_json_atomic(ledger_path, updated)
    return updated


def write_json_atomic(path: Path, data: Any) -> None:
    """JSON with NaN as null and numpy values as plain numbers, written atomically."""
    text = json.dumps(json_safe(data), indent=2, sort_keys=False, allow_nan=False, default=str)
    atomic_write_text(path, text + "\n")
