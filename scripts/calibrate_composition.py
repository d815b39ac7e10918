"""Composition-only heads: how often each head statistic calls them motif detectors.

A composition-only head has, at every key token j, the attention logit beta * f(window of j): f is the GC
fraction (or the AT fraction, or the CpG fraction, or a random weighting of the four bases) of a window of
w nt placed at offset o from the key. It knows no motif, so every claim that it detects one is wrong. Each
repetition draws such a head (w in 4..16, o in -w..0, beta in 2..12 per unit fraction, f at random) and a
dataset (windows of A. thaliana chromosome 1 centred on the best hits of a matrix, half GC-matched
background), and runs the families' own statistics on it, with the claim's default settings:

- qk_motif: r (with its permutation p), r_partial_composition and r_minus_shuffled of the named head;
- attention_enrichment: rho with background matched on the GC of the token's own bases in 5 classes (the
  matching before composition windows), and on the GC count of the motif-length window (the default
  now), and rho_over_shuffled.

"Wrongly supported" is what a claim with that criterion would decide: r >= 0.3 with r_p < 0.05; lower
bound of the 95% interval above 0 for r_partial_composition and r_minus_shuffled; lower bound above 1
for rho and rho_over_shuffled. Nominal rate of a one-sided interval decision at this level:
0.025; the bar is alpha = 0.05 plus 2 Monte Carlo standard errors.

    python scripts/calibrate_composition.py [--repetitions 200] [--tokens single kmer7]

Writes benchmarks/results/calibration_composition.json and docs/figures/calibration_composition.png.
"""

from __future__ import annotations

import argparse
import sys
import json
import time
import zlib
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from seqclaims import attention as att
from seqclaims import composition as comp
from seqclaims.data import build
from seqclaims.families import checks_dirs, load_families
from seqclaims.motifs import load_motif
from seqclaims.stats import mc_standard_error

ROOT = Path(__file__).resolve().parents[1]
RESULT = ROOT / "benchmarks" / "results" / "calibration_composition.json"
FIGURE = ROOT / "docs" / "figures" / "calibration_composition.png"
ALPHA = 0.05
MATRICES = ("MA0079.5", "MA0506.2", "MA0139.1", "MA0108.3")  # SP1 (GC 0.91), Nrf1, CTCF, TBP (GC 0.06)
TOKENS = {"single": {"kind": "single"}, "kmer7": {"kind": "kmer_overlapping", "k": 7}}
DECISIONS = ("r", "r_partial_composition", "r_minus_shuffled", "rho_token", "rho_window", "rho_over_shuffled")


def family(name: str):
    return sys.modules[load_families(checks_dirs(ROOT)).get(name, ROOT).evaluate.__module__]


QK, ENRICHMENT = family("qk_motif"), family("attention_enrichment")


class Inputs:
    """One dataset, tokenized without a model, with its motif tracks, shuffles and composition windows."""

    def __init__(self, matrix: str, tokens: dict, n: int, seed: int):
        self.dataset = build({"dataset": "motif_sites", "matrix": matrix, "n": n}, seed=0)
        self.sequences = self.dataset.sequences
        self.motif = load_motif(matrix)
        self.lengths = np.array([len(s) for s in self.sequences])
        rng = np.random.default_rng(seed)
        self.offsets = att.surrogate_offsets(self.sequences, tokens["kind"], k=tokens.get("k", 1), rng=rng)
        self.scores = att.window_scores(self.sequences, self.motif)
        self.params = QK.QkMotifParams()
        self.enrichment_params = ENRICHMENT.EnrichmentParams()
        self.motif_score = att.motif_tracks(self.scores, self.offsets, self.motif.length, self.params.alignment)
        # before composition windows: the token's own GC in 5 classes; now (the defaults): the window's GC count
        settings = {"token": self.enrichment_params.model_copy(update={"composition_window": "token",
                                                                        "composition_bins": 5}),
                    "anchored": self.enrichment_params}
        classes = {window: ENRICHMENT.composition_classes(self.sequences, self.offsets, self.motif.length, p)
                   for window, p in settings.items()}
        self.matched = {window: ENRICHMENT.matched_sites(self.sequences, self.offsets, self.motif, classes[window], p)
                        for window, p in settings.items()}
        self.shuffled_matched = [ENRICHMENT.matched_sites(self.sequences, self.offsets, m, classes["anchored"],
                                                          self.enrichment_params)
                                 for m in comp.shuffled_motifs(self.motif, self.enrichment_params.shuffles, seed)]

    def head_logits(self, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
        """(n_seq, n_tok) logits of a random composition-only head, and what it reads."""
        width = int(rng.integers(4, 17))
        offset = int(rng.integers(-width, 1))
        beta = float(rng.uniform(2, 12))
        reads = str(rng.choice(["GC", "AT", "CpG", "bases"]))
        starts = self.offsets[..., 0] + offset
        spans = np.stack([starts, starts + width], axis=-1)
        real = self.offsets[..., 1] > self.offsets[..., 0]
        spans = np.where((real & (starts >= 0) & (starts + width <= self.lengths[:, None]))[..., None], spans, -1)
        kind = "dinucleotides" if reads == "CpG" else "bases"
        z = comp.composition_features(self.sequences, spans, kind)
        if reads == "GC":
            f = z[1] + z[2]
        elif reads == "AT":
            f = 1 - z[1] - z[2]
        elif reads == "CpG":
            f = z[3 + 4 * 1 + 2]
        else:
            weights = rng.normal(size=4)
            f = z[0] * weights[0] + z[1] * weights[1] + z[2] * weights[2] + (1 - z[:3].sum(axis=0)) * weights[3]
        return beta * f, {"width": width, "offset": offset, "beta": round(beta, 2), "reads": reads}


def stand_in(params, seed: int, resamples: int):
    claim = SimpleNamespace(params=params, resamples=resamples, ci_level=0.95, correction=None, criteria=[])
    context = SimpleNamespace(seed_for=lambda purpose: zlib.crc32(f"{seed}:{purpose}".encode()))
    return claim, context


def one_head(inputs: Inputs, rng: np.random.Generator, resamples: int) -> dict:
    logits, reads = inputs.head_logits(rng)
    key = att.ideal_key_scores(logits, "log_probability", "attention_received")
    tracks = att.paired_tracks(key[None], inputs.motif_score, centre=True)
    ideal = QK.ideal_tracks(inputs.scores, inputs.offsets, inputs.motif, inputs.motif_score, inputs.params)
    seed = int(rng.integers(2**62))
    claim, context = stand_in(inputs.params, seed, resamples)
    controls = QK.composition_controls(inputs.sequences, inputs.offsets, inputs.motif, tracks, ideal, inputs.params,
                                       seed)
    analysis = QK.Analysis(claim, context, tracks, ideal, inputs.lengths, inputs.dataset.split, [(0, 0)], 0, controls)
    stats = analysis.statistics()
    probability = np.exp(key)[None]
    out = {"head": reads}
    for name in ("r", "r_p", "r_partial_composition", "r_minus_shuffled"):
        e = stats[name]
        out[name] = [e.estimate, e.ci_low, e.ci_high]
    claim.params = inputs.enrichment_params
    shuffled = [att.enrichment_sums(probability, m) for m in inputs.shuffled_matched]
    for window, matched in inputs.matched.items():
        sums = att.enrichment_sums(probability, matched)
        enrichment = ENRICHMENT.Enrichment(claim, context, sums, matched, inputs.dataset.split, [(0, 0)], 0,
                                           shuffled if window == "anchored" else ())
        e = enrichment.named_rho()
        out[f"rho_{window}"] = [e.estimate, e.ci_low, e.ci_high]
        if window == "anchored":
            e = enrichment.over_shuffled()["rho_over_shuffled"]
            out["rho_over_shuffled"] = [e.estimate, e.ci_low, e.ci_high]
    return out


def decisions(row: dict) -> dict[str, bool]:
    low = {name: row[name][1] for name in row if isinstance(row[name], list)}
    return {"r": row["r"][0] >= 0.3 and row["r_p"][0] < ALPHA,
            "r_partial_composition": bool(low["r_partial_composition"] > 0),
            "r_minus_shuffled": bool(low["r_minus_shuffled"] > 0),
            "rho_token": bool(low["rho_token"] > 1), "rho_window": bool(low["rho_anchored"] > 1),
            "rho_over_shuffled": bool(low["rho_over_shuffled"] > 1)}


def summarise(rows: list[dict]) -> dict:
    flags = {name: [decisions(row)[name] for row in rows] for name in DECISIONS}
    n = len(rows)
    return {name: {"rate": float(np.mean(values)), "n": n, "mc_se": mc_standard_error(max(float(np.mean(values)), ALPHA), n),
                   "bar": ALPHA + 2 * mc_standard_error(ALPHA, n)} for name, values in flags.items()}


def plot(results: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.6))
    labels = {"r": "r >= 0.3, p < .05", "r_partial_composition": "r_partial_composition > 0",
              "r_minus_shuffled": "r_minus_shuffled > 0", "rho_token": "rho > 1 (token GC)",
              "rho_window": "rho > 1 (window GC)", "rho_over_shuffled": "rho_over_shuffled > 1"}
    width = 0.8 / len(results)
    for i, (tokens, summary) in enumerate(results.items()):
        rates = [summary[name]["rate"] for name in DECISIONS]
        errors = [2 * summary[name]["mc_se"] for name in DECISIONS]
        ax.bar(np.arange(len(DECISIONS)) + i * width, rates, width, yerr=errors, label=f"{tokens} tokens")
    bar = next(iter(results.values()))["r"]["bar"]
    ax.axhline(bar, color="k", ls="--", lw=1, label=f"alpha + 2 MC SE ({bar:.3f})")
    ax.set_xticks(np.arange(len(DECISIONS)) + width * (len(results) - 1) / 2)
    ax.set_xticklabels([labels[name] for name in DECISIONS], rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("share of composition-only heads\ncalled motif detectors")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    ax.set_title("Composition-only heads: old statistics fooled, composition controls not")
    fig.tight_layout()
    FIGURE.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(FIGURE, dpi=110)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repetitions", type=int, default=200, help="composition-only heads per tokenization")
    parser.add_argument("--tokens", nargs="+", default=list(TOKENS), choices=list(TOKENS))
    parser.add_argument("--n", type=int, default=200, help="windows per dataset")
    parser.add_argument("--resamples", type=int, default=400)
    args = parser.parse_args(argv)
    started = time.time()
    results, rows_by_tokens = {}, {}
    for tokens in args.tokens:
        datasets = [Inputs(matrix, TOKENS[tokens], args.n, seed=i) for i, matrix in enumerate(MATRICES)]
        rng = np.random.default_rng(13)
        rows = []
        for repetition in range(args.repetitions):
            inputs = datasets[repetition % len(datasets)]
            row = one_head(inputs, rng, args.resamples)
            row["matrix"] = inputs.motif.matrix_id
            rows.append(row)
            if (repetition + 1) % 20 == 0:
                print(f"{tokens}: {repetition + 1}/{args.repetitions} heads ({time.time() - started:.0f} s)", flush=True)
        results[tokens] = summarise(rows)
        rows_by_tokens[tokens] = rows
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text(json.dumps({"when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                                  "repetitions": args.repetitions, "n_windows": args.n, "resamples": args.resamples,
                                  "matrices": list(MATRICES), "alpha": ALPHA, "summary": results,
                                  "heads": rows_by_tokens, "seconds": round(time.time() - started, 1)}, indent=1))
    plot(results)
    for tokens, summary in results.items():
        print(tokens, {name: round(value["rate"], 3) for name, value in summary.items()})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
