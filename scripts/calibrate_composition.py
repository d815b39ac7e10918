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

"Wrongly supported" is what a claim with that criterion would decide from the 95% interval: r >= 0.5
with r_p < 0.05 (MINTS's criterion); r_partial_composition > 0, >= 0.1, >= 0.3; r_minus_shuffled > 0;
the `seqclaims new qk_motif` template (all four of r, r_p, r_partial_composition >= 0.3,
r_minus_shuffled > 0); rho > 1 and rho >= 2 under either matching; rho_over_shuffled > 1. Rates are given
for all heads, for heads whose window holds the whole motif window, and for the others. Nominal rate of a one-sided interval decision at this level:
0.025; the bar is alpha = 0.05 plus 2 Monte Carlo standard errors.

Units (`--parts units`): the same composition-only functions as per-token activations of an MLP channel
or SAE latent, scored by the `neuron` / `sae_feature` statistics against the matrix's site annotation
(support, anchored): auprc_over_chance >= 2 (what a composition reader reaches) and
auprc_over_composition > 1 (lower bound), the composition detector reading the motif-length window.

    python scripts/calibrate_composition.py [--repetitions 300] [--tokens single kmer6] [--parts heads units]

Writes benchmarks/results/calibration_composition.json and docs/figures/calibration_composition.png.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import zlib
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from seqclaims.core.families import checks_dirs, load_families
from seqclaims.inputs.datasets import build
from seqclaims.inputs.motifs import load_motif
from seqclaims.methods import attention as att
from seqclaims.methods import composition as comp
from seqclaims.methods.features import Annotation, TokenTable, composition_scores, score_units, token_labels
from seqclaims.methods.stats import mc_standard_error

ROOT = Path(__file__).resolve().parents[1]
RESULT = ROOT / "benchmarks" / "results" / "calibration_composition.json"
FIGURE = ROOT / "docs" / "figures" / "calibration_composition.png"
ALPHA = 0.05
MATRICES = ("MA0079.5", "MA0506.2", "MA0139.1", "MA0108.3")  # SP1 (GC 0.91), Nrf1, CTCF, TBP (GC 0.06)
TOKENS = {"single": {"kind": "single"}, "kmer6": {"kind": "kmer_nonoverlapping", "k": 6}}
LABELS = {
    "r_mints": "r >= 0.5, p < .05", "r_partial_gt_0": "r_partial > 0", "r_partial_ge_0.1": "r_partial >= 0.1",
    "r_partial_ge_0.3": "r_partial >= 0.3", "r_minus_shuffled": "r_minus_shuffled > 0",
    "qk_template": "qk template (all four)", "rho_token": "rho > 1 (token GC)", "rho_window": "rho > 1 (window GC)",
    "rho_token_ge_2": "rho >= 2 (token GC)", "rho_window_ge_2": "rho >= 2 (window GC)",
    "rho_over_shuffled": "rho_over_shuffled > 1"}
DECISIONS = tuple(LABELS)


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


def one_unit(inputs: Inputs, rng: np.random.Generator, resamples: int, table: TokenTable) -> dict:
    """A composition-only unit scored against the matrix's sites as `neuron` scores a named channel."""
    values, reads = inputs.head_logits(rng)
    column = np.nan_to_num(table.gather(values))[:, None]
    scored = score_units([column], table, ["u"], named=0, level=0.95, resamples=resamples,
                         seed=int(rng.integers(2**31)), min_n=20)
    out = {"unit": reads}
    for name in ("auprc", "auprc_over_chance", "composition_auprc", "auprc_over_composition"):
        e = scored.statistics[name]
        out[name] = [e.estimate, e.ci_low, e.ci_high]
    return out


def site_table(inputs: Inputs) -> TokenTable:
    """The scored tokens of a dataset for the matrix's anchored site annotation, with the composition detector."""
    annotation = Annotation(motif=inputs.motif.matrix_id, align="anchored")
    labels = token_labels(inputs.dataset, inputs.offsets, annotation)
    special = inputs.offsets[..., 1] <= inputs.offsets[..., 0]
    table = TokenTable.build(inputs.dataset, labels, special)
    table.composition = composition_scores(inputs.dataset, inputs.offsets, table, annotation, None)
    return table


def unit_decisions(row: dict) -> dict[str, bool]:
    return {"auprc_over_chance_ge_2": bool(row["auprc_over_chance"][1] >= 2),
            "auprc_over_composition": bool(row["auprc_over_composition"][1] > 1)}


def decisions(row: dict) -> dict[str, bool]:
    """What a claim with each criterion would decide (interval decisions: the lower bound past the threshold)."""
    value = {name: row[name][0] for name in row if isinstance(row[name], list)}
    low = {name: row[name][1] for name in row if isinstance(row[name], list)}
    mints = bool(low["r"] >= 0.5 and row["r_p"][0] < ALPHA)
    out = {"r_mints": mints, "r_partial_gt_0": low["r_partial_composition"] > 0,
           "r_partial_ge_0.1": low["r_partial_composition"] >= 0.1,
           "r_partial_ge_0.3": low["r_partial_composition"] >= 0.3,
           "r_minus_shuffled": low["r_minus_shuffled"] > 0,
           "rho_token": low["rho_token"] > 1, "rho_window": low["rho_anchored"] > 1,
           "rho_token_ge_2": low["rho_token"] >= 2, "rho_window_ge_2": low["rho_anchored"] >= 2,
           "rho_over_shuffled": low["rho_over_shuffled"] > 1}
    out["qk_template"] = mints and out["r_partial_ge_0.3"] and out["r_minus_shuffled"]
    del value
    return {name: bool(flag) for name, flag in out.items()}


def contains_motif_window(row: dict, motif_length: int) -> bool:
    """Whether the head's window holds the whole anchored motif window [j, j + L)."""
    head = row["head"]
    return head["offset"] <= 0 and head["offset"] + head["width"] >= motif_length


def summarise(rows: list[dict]) -> dict:
    """Share of heads each decision calls motif detectors, with its Monte Carlo SE and the bar."""
    def rates(subset: list[dict]) -> dict:
        n = len(subset)
        flags = {name: [decisions(row)[name] for row in subset] for name in DECISIONS}
        return {name: {"rate": float(np.mean(values)) if n else float("nan"), "n": n,
                       "mc_se": mc_standard_error(max(float(np.mean(values)), ALPHA), n) if n else float("nan"),
                       "bar": ALPHA + 2 * mc_standard_error(ALPHA, n) if n else float("nan")}
                for name, values in flags.items()}

    lengths = {matrix: load_motif(matrix).length for matrix in MATRICES}
    inside = [row for row in rows if contains_motif_window(row, lengths[row["matrix"]])]
    outside = [row for row in rows if not contains_motif_window(row, lengths[row["matrix"]])]
    return {"all": rates(rows), "window_holds_motif_window": rates(inside), "other_windows": rates(outside)}


def plot(results: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 4))
    width = 0.8 / len(results)
    for i, (tokens, summary) in enumerate(results.items()):
        rates = [summary["all"][name]["rate"] for name in DECISIONS]
        errors = [2 * summary["all"][name]["mc_se"] for name in DECISIONS]
        ax.bar(np.arange(len(DECISIONS)) + i * width, rates, width, yerr=errors, label=f"{tokens} tokens")
    bar = next(iter(results.values()))["all"]["r_mints"]["bar"]
    ax.axhline(bar, color="k", ls="--", lw=1, label=f"alpha + 2 MC SE ({bar:.3f})")
    ax.set_xticks(np.arange(len(DECISIONS)) + width * (len(results) - 1) / 2)
    ax.set_xticklabels([LABELS[name] for name in DECISIONS], rotation=25, ha="right", fontsize=8)
    ax.set_ylabel("share of composition-only heads\ncalled motif detectors")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    ax.set_title("Composition-only heads (random windows, 4 matrices): which decisions they fool")
    fig.tight_layout()
    FIGURE.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(FIGURE, dpi=110)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repetitions", type=int, default=300, help="composition-only heads (units) per tokenization")
    parser.add_argument("--tokens", nargs="+", default=list(TOKENS), choices=list(TOKENS))
    parser.add_argument("--parts", nargs="+", default=["heads", "units"], choices=["heads", "units"])
    parser.add_argument("--n", type=int, default=200, help="windows per dataset")
    parser.add_argument("--resamples", type=int, default=400)
    args = parser.parse_args(argv)
    started = time.time()
    saved = json.loads(RESULT.read_text()) if RESULT.is_file() else {}
    for part in args.parts:
        summary, rows_by_tokens = {}, {}
        for tokens in args.tokens:
            datasets = [Inputs(matrix, TOKENS[tokens], args.n, seed=i) for i, matrix in enumerate(MATRICES)]
            tables = [site_table(d) for d in datasets] if part == "units" else None
            rng = np.random.default_rng(13)
            rows = []
            for repetition in range(args.repetitions):
                which = repetition % len(datasets)
                inputs = datasets[which]
                row = one_head(inputs, rng, args.resamples) if part == "heads" else \
                    one_unit(inputs, rng, args.resamples, tables[which])
                row["matrix"] = inputs.motif.matrix_id
                rows.append(row)
                if (repetition + 1) % 20 == 0:
                    print(f"{part}, {tokens}: {repetition + 1}/{args.repetitions} ({time.time() - started:.0f} s)",
                          flush=True)
            summary[tokens] = summarise(rows) if part == "heads" else summarise_units(rows)
            rows_by_tokens[tokens] = rows
        saved[part] = {"summary": summary, "rows": rows_by_tokens}
        for tokens, groups in summary.items():
            for group, rates in groups.items():
                print(part, tokens, group, {name: round(value["rate"], 3) for name, value in rates.items()})
    saved.update({"when": datetime.now(timezone.utc).isoformat(timespec="seconds"), "repetitions": args.repetitions,
                  "n_windows": args.n, "resamples": args.resamples, "matrices": list(MATRICES), "alpha": ALPHA,
                  "seconds": round(time.time() - started, 1)})
    for stale in ("summary", "heads_rows"):
        saved.pop(stale, None)
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text(json.dumps(saved, indent=1))
    if "heads" in saved:
        plot(saved["heads"]["summary"])
    return 0


def summarise_units(rows: list[dict]) -> dict:
    n = len(rows)
    flags = {name: [unit_decisions(row)[name] for row in rows] for name in ("auprc_over_chance_ge_2",
                                                                            "auprc_over_composition")}
    return {"all": {name: {"rate": float(np.mean(values)), "n": n,
                           "mc_se": mc_standard_error(max(float(np.mean(values)), ALPHA), n),
                           "bar": ALPHA + 2 * mc_standard_error(ALPHA, n)} for name, values in flags.items()}}


if __name__ == "__main__":
    raise SystemExit(main())
