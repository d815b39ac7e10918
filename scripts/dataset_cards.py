"""Build every embedded dataset at its default size and write their cards as a Markdown table.

    python scripts/dataset_cards.py [--n 2000] [--seed 0] [--out benchmarks/results/dataset_cards.md]

The table (counts per split and label, GC mean of each class before and after matching,
windows dropped for ambiguous bases) goes into the README.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from seqclaims.inputs import data, datasets

SPECS = [
    {"dataset": "promoters"},
    {"dataset": "tata"},
    {"dataset": "splice_donors"},
    {"dataset": "splice_acceptors"},
    {"dataset": "coding"},
    {"dataset": "motif_sites", "matrix": "MA0139.1"},
    {"dataset": "motif_sites", "matrix": "MA0108.3"},
]


def _gc(card: dict, label: str) -> str:
    gc = card["gc"].get(label)
    if not gc or gc["before"]["mean"] is None:
        return "-"
    before, after = gc["before"], gc["after"]
    return f"{before['mean']:.3f} ± {before['sd']:.3f} → {after['mean']:.3f} ± {after['sd']:.3f}"


def card_row(dataset: data.Dataset, seconds: float) -> str:
    card = dataset.card
    params = card["parameters"]
    counts = card["counts"]
    name = params["dataset"] + (f" ({params['matrix']})" if params.get("matrix") else "")
    window = params["window"]
    cells = [
        name,
        params["species"],
        f"-{window[0]}..+{window[1]} ({window[0] + window[1] + 1} nt)",
        *(str(counts[split].get(label, 0)) for split in data.SPLITS for label in ("1", "0")),
        _gc(card, "1"),
        _gc(card, "0"),
        "yes" if params["gc_match"] else "no",
        "/".join(str(card["excluded_ambiguous"][label]) for label in ("1", "0")),
        f"{seconds:.1f}",
    ]
    return "| " + " | ".join(cells) + " |"


def render(rows: list[str], n: int, seed: int) -> str:
    header = [
        "| dataset | species | window | train 1 | train 0 | test 1 | test 0 | GC label 1 (candidates → chosen) "
        "| GC label 0 (candidates → chosen) | GC-matched | excluded N/IUPAC (1/0) | build s |",
        "|" + "---|" * 12,
    ]
    notes = [
        "",
        f"Requested n = {n} per dataset (balanced classes, {int(round(n * 0.2))} in the test split), seed {seed}.",
        "GC: mean ± sd of the G+C fraction; 'candidates' is every eligible window of that class before "
        "selection, 'chosen' the windows in the dataset. Test split = last 20% of each chromosome; "
        "no test window overlaps a train window. Build times are from an empty dataset cache.",
    ]
    return "\n".join(["# Dataset cards (TAIR10 chromosome 1)", "", *header, *rows, *notes]) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=data.DEFAULT_N)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/dataset_cards.md"))
    args = parser.parse_args(argv)
    rows = []
    for spec in SPECS:
        started = time.perf_counter()
        dataset = datasets.build({**spec, "n": args.n}, seed=args.seed, use_cache=False)
        rows.append(card_row(dataset, time.perf_counter() - started))
        for shortfall in dataset.card.get("shortfalls", []):
            print(f"{dataset.name}: {shortfall}", file=sys.stderr)
    text = render(rows, args.n, args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
