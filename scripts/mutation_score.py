"""The mutation score per module after `mutmut run` (`make mutate`): killed / total, and every survivor.

Usage: python scripts/mutation_score.py [--min 0.9] [PATTERN ...]

PATTERNs are the mutant-name globs given to `mutmut run` (e.g. "seqclaims.methods.stats.*"); only matching
mutants count, so a module mutated in part (the unit scoring of methods/features.py) is scored on that part.
A mutant counts as killed when a test failed or timed out on it; one that no selected test reaches counts as
a survivor. With --min, the exit status is 1 when a module's share killed is below it.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from fnmatch import fnmatch
from pathlib import Path

from mutmut.stats import status_by_exit_code

KILLED = {"killed", "timeout", "segfault"}
SURVIVED = {"survived", "no tests"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("patterns", nargs="*", default=["*"])
    parser.add_argument("--min", type=float, default=None, help="least share killed per module")
    parser.add_argument("--mutants", type=Path, default=Path("mutants"))
    args = parser.parse_args()
    by_module: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for meta in sorted(args.mutants.rglob("*.py.meta")):
        for name, exit_code in json.loads(meta.read_text())["exit_code_by_key"].items():
            if any(fnmatch(name, pattern) for pattern in args.patterns):
                module = name.rsplit(".", 1)[0]
                by_module[module][status_by_exit_code[exit_code]].append(name)
    if not by_module:
        print(f"no mutants under {args.mutants}/ match {' '.join(args.patterns)}; run `make mutate` first")
        return 1
    below = []
    for module, by_status in sorted(by_module.items()):
        killed = sum(len(by_status[s]) for s in KILLED)
        survivors = sorted(name for s in SURVIVED for name in by_status[s])
        scored = killed + len(survivors)
        other = {s: len(names) for s, names in by_status.items() if s not in KILLED | SURVIVED}
        share = killed / scored if scored else float("nan")
        print(f"{module}: {killed} / {scored} killed ({share:.1%})"
              + "".join(f", {n} {status}" for status, n in sorted(other.items())))
        for name in survivors:
            print(f"    {name}" + (" (no test reaches it)" if name in by_status["no tests"] else ""))
        if args.min is not None and not share >= args.min:
            below.append(module)
    if below:
        print(f"below {args.min:.0%} killed: {', '.join(below)}")
    return 1 if below else 0


if __name__ == "__main__":
    raise SystemExit(main())
