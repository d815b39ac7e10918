"""List every statistic that differs between two runs' results.json, claim by claim.

    python scripts/compare_results.py OLD/results.json NEW/results.json

A verdict change is marked `VERDICT`; an estimate or interval bound that moved is listed with both values
and the difference. Statistics equal to the last bit are not listed. Use it after a change to the code
that computes evidence, to explain every moved number (the ledger only compares verdicts).
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

FIELDS = ("estimate", "ci_low", "ci_high", "p", "n")


def criteria_by_claim(path: Path) -> dict[str, tuple[str | None, dict[str, dict]]]:
    claims = json.loads(path.read_text(encoding="utf-8"))["claims"]
    return {c["id"]: (c.get("verdict"), {k["statistic"]: k for k in c.get("criteria", [])}) for c in claims}


def same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def moved_fields(old: dict, new: dict) -> list[str]:
    lines = []
    for field in FIELDS:
        a, b = old.get(field), new.get(field)
        if not same(a, b):
            delta = f" ({b - a:+.4g})" if isinstance(a, (int, float)) and isinstance(b, (int, float)) else ""
            lines.append(f"{field} {a} -> {b}{delta}")
    return lines


def differences(old_path: Path, new_path: Path) -> list[str]:
    old, new = criteria_by_claim(old_path), criteria_by_claim(new_path)
    lines = []
    for claim in sorted(old.keys() | new.keys()):
        if claim not in old or claim not in new:
            lines.append(f"{claim}: only in {'new' if claim in new else 'old'} run")
            continue
        (old_verdict, old_criteria), (new_verdict, new_criteria) = old[claim], new[claim]
        if old_verdict != new_verdict:
            lines.append(f"{claim}: VERDICT {old_verdict} -> {new_verdict}")
        for statistic in sorted(old_criteria.keys() & new_criteria.keys()):
            moved = moved_fields(old_criteria[statistic], new_criteria[statistic])
            if moved:
                lines.append(f"{claim}: {statistic}: " + "; ".join(moved))
    return lines


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    lines = differences(Path(argv[0]), Path(argv[1]))
    print("\n".join(lines) if lines else "no statistic moved")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
