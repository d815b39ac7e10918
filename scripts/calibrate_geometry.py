"""Null data for the geometry families and attention_association: how often a criterion "> 0" (or "p < 0.05")
is supported when nothing is there, on the embedded models.

- attention_association (planted model, 400 TBP windows): the annotation of every window replaced by that
  of another window of its split, circularly shifted (`permuted: true`, a new draw per repetition via the
  claim's seed); rates of max_association_p < 0.05 and of the motif head's association_p < 0.05.
- gram (organism, layer 3, 400 coding windows): codon_periodicity_over_shuffled with the real windows
  replaced by a second independent codon shuffle (two shuffles of the same windows differ only by chance);
  rate of a lower bound above 0.
- rc_consistency (organism, layer 3, 200 promoter windows): rc_beyond_sequence with each window's reverse
  complement representations taken from another window of the same length (unrelated strands); rate of a
  lower bound above 0.
- cka (organism layer 3 against organism@step0 layer 3, 200 promoter windows): each window compared with
  an unrelated window of the other model, its bases permuted (aligned by position, two windows' similarity
  matrices share their offset structure, a real dependence); rate of a lower bound above 0.

The bar: alpha = 0.05 plus 2 Monte-Carlo standard errors (the nominal rate of a one-sided decision from a
95% interval is 0.025).

    python scripts/calibrate_geometry.py [--repetitions 40] [--parts association gram strands]

A run of some parts keeps the other parts' rates from the previous record.

Writes benchmarks/results/calibration_geometry.json and docs/figures/calibration_geometry.png.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

os.environ.setdefault("SEQCLAIMS_PROGRESS", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402

from seqclaims.core.families import checks_dirs, load_claim, load_families  # noqa: E402
from seqclaims.judging.claim_inputs import claim_context  # noqa: E402
from seqclaims.inputs.datasets import build  # noqa: E402
from seqclaims.inputs.models import load_model  # noqa: E402
from seqclaims.methods import geometry as geo  # noqa: E402
from seqclaims.methods.stats import mc_standard_error  # noqa: E402
from seqclaims.paths import cache_dir  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ALPHA = 0.05


def association_null(repetitions: int, families) -> dict:
    folder = cache_dir() / "calibration" / "claims" / "calibration"
    folder.mkdir(parents=True, exist_ok=True)
    selected = named = 0
    for seed in range(repetitions):
        path = folder / "calibration-association.yaml"
        path.write_text(f"""id: calibration-association
title: calibration
statement: calibration
expect: refuted
model: planted
data: {{dataset: motif_sites, matrix: MA0108.3, n: 400}}
check: attention_association
correction: holm
seed: {seed}
params:
  annotation: {{motif: MA0108.3, align: anchored, permuted: true}}
  layer: 0
  head: 2
  permutations: 499
criteria:
  - {{statistic: max_association_p, op: "<", threshold: 0.05}}
""")
        claim = load_claim(path, families)
        statistics = families.get("attention_association", path).evaluate(claim, claim_context(claim)).statistics
        selected += statistics["max_association_p"].estimate < ALPHA
        named += statistics["association_p"].estimate < ALPHA
        print(f"association {seed}: max p {statistics['max_association_p'].estimate:.3f}", flush=True)
    return {"max_association_p < 0.05": selected / repetitions, "named head association_p < 0.05": named / repetitions}


def gram_null(repetitions: int) -> dict:
    model = load_model("organism")
    dataset = build({"dataset": "coding", "n": 400}, seed=0)
    hook = "layer.3.resid_post"
    runs = [geo.coding_run(p) for p in dataset.tracks["codon_phase"]]
    rows = [i for i in range(len(dataset)) if dataset.labels[i] == 1 and runs[i].sum() >= 60]
    supported = 0
    for seed in range(repetitions):
        shares = []
        for draw in (2 * seed, 2 * seed + 1):
            rng = np.random.default_rng(draw)
            shuffled = [geo.shuffle_within_codons(dataset.sequences[i], dataset.tracks["codon_phase"][i], runs[i], rng)
                        for i in rows]
            representations = geo.nucleotide_representations(
                model, shuffled, hook, geo.derived_hash(dataset.content_hash, "calibration-shuffle", draw))
            shares.append(geo.offset_profiles(representations, [runs[i] for i in rows], 30).share)
        interval = geo.mean_interval(shares[0] - shares[1], resamples=1000, seed=seed, level=0.95)
        supported += interval.low > 0
        print(f"gram {seed}: {interval.estimate:.4f} [{interval.low:.4f}, {interval.high:.4f}]", flush=True)
    return {"codon_periodicity_over_shuffled > 0 (shuffle against shuffle)": supported / repetitions}


def promoter_representations(model_name: str, dataset, hook: str, reverse: bool = False):
    model = load_model(model_name)
    sequences = geo.reverse_complements(dataset.sequences) if reverse else dataset.sequences
    key = geo.derived_hash(dataset.content_hash, "reverse-complement") if reverse else dataset.content_hash
    return geo.nucleotide_representations(model, sequences, hook, key)


def rc_and_cka_null(repetitions: int) -> dict:
    dataset = build({"dataset": "promoters", "n": 200}, seed=0)
    hook = "layer.3.resid_post"
    forward = promoter_representations("organism", dataset, hook)
    reverse = promoter_representations("organism", dataset, hook, reverse=True)
    initial = promoter_representations("organism@step0", dataset, hook)
    split = np.asarray(dataset.split)
    train, test = np.flatnonzero(split == "train"), np.flatnonzero(split == "test")
    rc_supported = cka_supported = 0
    for seed in range(repetitions):
        rng = np.random.default_rng(seed)
        partner = rng.permutation(len(forward))  # all windows have one length
        pairs = []
        for i, j in enumerate(partner):
            context = geo.centred_kmer_one_hot(dataset.sequences[i], 3)
            x, y = geo.aligned_rc_pairs(np.hstack([forward[i], context]), reverse[j])
            pairs.append((x[:, : forward[i].shape[1]], y, x[:, forward[i].shape[1]:]))
        rows = [pairs[i] for i in train]
        y = np.concatenate([p[1] for p in rows])
        both = geo.fit_linear_map(np.concatenate([np.hstack([p[0], p[2]]) for p in rows]), y)
        alone = geo.fit_linear_map(np.concatenate([p[2] for p in rows]), y)
        rc = geo.ratio_interval(geo.residual_sums([pairs[i] for i in test], both, alone), geo.explained_beyond,
                                resamples=1000, seed=seed, level=0.95)
        rc_supported += rc.low > 0
        sums = []
        for i, j in enumerate(partner):
            a, b = forward[i], initial[j][rng.permutation(len(initial[j]))]  # bases permuted: no shared offsets
            defined = np.all(np.isfinite(a), axis=1) & np.all(np.isfinite(b), axis=1)
            sums.append(geo.cka_sums(a[defined], b[defined]))
        cka = geo.cka_interval(sums, level=0.95)
        cka_supported += cka.low > 0
        print(f"rc {seed}: {rc.estimate:.4f} [{rc.low:.4f}, {rc.high:.4f}]  cka {cka.estimate:.4f} "
              f"[{cka.low:.4f}, {cka.high:.4f}]", flush=True)
    return {"rc_beyond_sequence > 0 (unrelated strands)": rc_supported / repetitions,
            "cka > 0 (unrelated windows, bases permuted)": cka_supported / repetitions}


def figure(rates: dict, repetitions: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bar = ALPHA + 2 * mc_standard_error(ALPHA, repetitions)
    names = list(rates)
    fig, ax = plt.subplots(figsize=(7.5, 0.5 + 0.45 * len(names)))
    ax.barh(range(len(names)), [rates[n] for n in names], color="tab:blue")
    ax.axvline(bar, color="tab:red", linestyle="--", label=f"alpha + 2 MC SE = {bar:.3f}")
    ax.axvline(0.025, color="grey", linestyle=":", label="nominal 0.025")
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.set_xlabel(f"share of {repetitions} null repetitions supported")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repetitions", type=int, default=40)
    parser.add_argument("--parts", nargs="+", default=["association", "gram", "strands"],
                        choices=["association", "gram", "strands"])
    args = parser.parse_args(argv)
    started = time.perf_counter()
    out = ROOT / "benchmarks" / "results" / "calibration_geometry.json"
    rates = json.loads(out.read_text())["rates"] if out.is_file() and len(args.parts) < 3 else {}
    if "association" in args.parts:
        rates.update(association_null(args.repetitions, load_families(checks_dirs(ROOT))))
    if "gram" in args.parts:
        rates.update(gram_null(args.repetitions))
    if "strands" in args.parts:
        rates = {k: v for k, v in rates.items() if not k.startswith("cka")}
        rates.update(rc_and_cka_null(args.repetitions))
    bar = ALPHA + 2 * mc_standard_error(ALPHA, args.repetitions)
    record = {"calibration": "geometry and attention_association null data",
              "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "repetitions": args.repetitions, "bar": bar, "rates": rates,
              "within_bar": {name: rate <= bar for name, rate in rates.items()},
              "seconds": round(time.perf_counter() - started, 1)}
    out.write_text(json.dumps(record, indent=2) + "\n")
    figure(rates, args.repetitions, ROOT / "docs" / "figures" / "calibration_geometry.png")
    print(json.dumps(rates, indent=2))
    return 0 if all(record["within_bar"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
