"""Null calibration of qk_motif's p-values, and what token-level p-values would have said.

Null data: the claim's key scores of every head with the motif tracks permuted between sequences (so no
head can be associated with the motif). In each repetition the family's test runs as in a claim: r per
head pooled over tokens, p by permuting motif tracks between sequences, Holm-corrected over all heads.
Reported: the share of heads (and of repetitions with any head) wrongly at corrected p < alpha, with
Monte Carlo standard errors, under the default settings and under MINTS's settings (weight-only QK
logits averaged over queries, uncentred, overlap-max track); and, on the same null data under MINTS's
settings, the share of heads at token-level p < alpha (two-sided scipy.stats.pearsonr over all tokens,
what MINTS reported) before and after Bonferroni correction.

    python scripts/calibrate_qk_motif.py [--models planted organism] [--repetitions 200]

Writes benchmarks/results/calibration_qk_motif.json and docs/figures/calibration_qk_motif.png.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from scipy import stats as scipy_stats

from seqclaims.inputs.datasets import build
from seqclaims.inputs.models import load_model
from seqclaims.inputs.motifs import load_motif
from seqclaims.methods import attention as att, key_scores
from seqclaims.methods.stats import correct_pvalues, mc_standard_error, permutation_pvalue

ROOT = Path(__file__).resolve().parents[1]
RESULT = ROOT / "benchmarks" / "results" / "calibration_qk_motif.json"
FIGURE = ROOT / "docs" / "figures" / "calibration_qk_motif.png"
ALPHA = 0.05
SETTINGS = {
    "default": {"key_score": "attention_received", "scale": "log_probability", "centre": True, "alignment": "anchored"},
    "mints": {"key_score": "qk_weights", "scale": "logit", "centre": False, "alignment": "overlap_max",
              "qk_biases": False},
}
DATA = {"planted": {"dataset": "motif_sites", "matrix": "MA0108.3", "n": 400},
        "organism": {"dataset": "tata", "n": 400}}


def null_inputs(model_name: str, setting: dict):
    """(K, n_seq, n_tok) key scores, (n_seq, n_tok) motif scores and (n_seq,) lengths for one setting."""
    model = load_model(model_name)
    dataset = build(DATA[model_name], seed=0)
    motif = load_motif("MA0108.3")
    table = key_scores.extract_key_scores(model, dataset.sequences, dataset_hash=dataset.content_hash,
                                   key_score=setting["key_score"])
    x = np.concatenate(key_scores.key_score_values(table, setting["scale"], qk_biases=setting.get("qk_biases", True)))
    y = att.motif_tracks(att.window_scores(dataset.sequences, motif), table.offsets, motif.length, setting["alignment"])
    return x, y, np.array([len(s) for s in dataset.sequences])


def one_repetition(x, y, lengths, centre: bool, n_permutations: int, rng: np.random.Generator) -> dict:
    """Per-head p-values on null data: sequence-permutation (raw, Holm) and token-level (raw, Bonferroni)."""
    shuffled = y[rng.permutation(len(y))]
    tracks = att.paired_tracks(x, shuffled, centre=centre)
    observed = att.pearson_from_sums(att.sequence_moments(tracks).sum(axis=0))
    null = att.permuted_pearson(tracks, att.sequence_permutations(lengths, n_permutations, int(rng.integers(2**62))))
    p_raw = permutation_pvalue(observed, null, "greater")  # NaN for a head with no variance (not tested)
    token = np.array([scipy_stats.pearsonr(tracks.x[h][tracks.mask], tracks.y[tracks.mask]).pvalue
                      if np.isfinite(observed[h]) else np.nan for h in range(x.shape[0])])
    spread = np.nanstd(null, axis=0) * np.sqrt(tracks.n_tokens)  # permutation SD over the token-level SD
    return {"p_raw": p_raw, "p_holm": correct_pvalues(p_raw, "holm"), "token_p": token,
            "token_bonferroni": correct_pvalues(token, "bonferroni"), "sd_inflation": spread}


def rates(p: np.ndarray) -> dict:
    """Share of tested heads and of repetitions with any head at p < ALPHA, with Monte Carlo standard errors.

    p: (R, K) p-values, NaN for heads that could not be tested (constant key score)."""
    tested = np.isfinite(p).all(axis=0)
    rejected = p[:, tested] < ALPHA
    per_head, any_head = float(rejected.mean()), float(rejected.any(axis=1).mean())
    n_heads, n_reps = rejected.size, rejected.shape[0]
    return {"share_of_heads": per_head, "mc_se_heads": float(mc_standard_error(ALPHA, n_heads)),
            "bound_heads": ALPHA + 2 * float(mc_standard_error(ALPHA, n_heads)),
            "share_of_repetitions_any_head": any_head, "mc_se_repetitions": float(mc_standard_error(ALPHA, n_reps)),
            "bound_repetitions": ALPHA + 2 * float(mc_standard_error(ALPHA, n_reps)),
            "within_bound": bool(per_head <= ALPHA + 2 * mc_standard_error(ALPHA, n_heads)
                                 and any_head <= ALPHA + 2 * mc_standard_error(ALPHA, n_reps))}


def calibrate(model_name: str, repetitions: int, n_permutations: int, seed: int) -> tuple[dict, dict]:
    summary, raw = {}, {}
    for name, setting in SETTINGS.items():
        x, y, lengths = null_inputs(model_name, setting)
        rng = np.random.default_rng([seed, len(name)])
        started = time.perf_counter()
        runs = [one_repetition(x, y, lengths, setting["centre"], n_permutations, rng) for _ in range(repetitions)]
        stacked = {key: np.array([run[key] for run in runs]) for key in runs[0]}
        raw[name] = stacked
        summary[name] = {
            "settings": setting, "heads": int(x.shape[0]), "sequences": int(len(lengths)),
            "heads_not_tested": int((~np.isfinite(stacked["p_raw"]).all(axis=0)).sum()),
            "permutation_holm": rates(stacked["p_holm"]),
            "permutation_uncorrected": rates(stacked["p_raw"]),
            "token_level_uncorrected": rates(stacked["token_p"]),
            "token_level_bonferroni": rates(stacked["token_bonferroni"]),
            "median_token_p_of_best_head": float(np.median(np.nanmin(stacked["token_p"], axis=1))),
            "sd_inflation_per_head": [None if not np.isfinite(v) else round(float(v), 2)
                                      for v in np.nanmean(np.where(np.isfinite(stacked["sd_inflation"]),
                                                                   stacked["sd_inflation"], np.nan), axis=0)],
            "seconds": round(time.perf_counter() - started, 1),
        }
    return summary, raw


def figure(summaries: dict, raws: dict, repetitions: int) -> None:
    """One row per model: ECDF of the uncorrected null p-values, and shares of heads wrongly at p < 0.05."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(summaries), 2, figsize=(10, 4 * len(summaries)), squeeze=False)
    for (model_name, summary), (ecdf, bars) in zip(summaries.items(), axes):
        raw = raws[model_name]
        grid = np.linspace(0, 1, 201)
        for name, label, style in (("default", "sequence permutation, default settings", "-"),
                                   ("mints", "sequence permutation, MINTS settings", "--")):
            p = raw[name]["p_raw"].ravel()
            p = p[np.isfinite(p)]
            ecdf.plot(grid, [(p <= g).mean() for g in grid], style, label=label)
        token = raw["mints"]["token_p"].ravel()
        token = token[np.isfinite(token)]
        ecdf.plot(grid, [(token <= g).mean() for g in grid], ":", color="crimson",
                  label="token-level pearsonr, MINTS settings")
        ecdf.plot([0, 1], [0, 1], color="grey", linewidth=0.8)
        ecdf.set_xlabel("nominal p")
        ecdf.set_ylabel("share of null heads with p at or below")
        ecdf.set_title(f"{model_name}: uncorrected p-values on null data (diagonal = calibrated)", fontsize=9)
        ecdf.legend(fontsize=7)
        labels, values, errors = [], [], []
        for name, key, label in (("default", "permutation_holm", "default\nperm. + Holm"),
                                 ("mints", "permutation_holm", "MINTS settings\nperm. + Holm"),
                                 ("mints", "token_level_uncorrected", "MINTS settings\ntoken p"),
                                 ("mints", "token_level_bonferroni", "MINTS settings\ntoken p + Bonf.")):
            share = summary[name][key]["share_of_heads"]
            tested = repetitions * (summary[name]["heads"] - summary[name]["heads_not_tested"])
            labels.append(label)
            values.append(share)
            errors.append(2 * np.sqrt(max(share * (1 - share), 1e-12) / tested))
        bars.bar(range(len(values)), values, yerr=errors, color=["tab:blue", "tab:blue", "crimson", "crimson"])
        bars.axhline(ALPHA, color="black", linewidth=1, label="alpha = 0.05")
        bars.axhline(summary["default"]["permutation_holm"]["bound_heads"], color="black", linestyle="--",
                     linewidth=1, label="alpha + 2 MC SE")
        bars.set_xticks(range(len(values)), labels, fontsize=7)
        bars.set_ylabel("share of heads wrongly at p < 0.05")
        bars.set_title(f"{model_name}: {repetitions} null repetitions x {summary['default']['heads']} heads", fontsize=9)
        bars.legend(fontsize=7)
    FIGURE.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(FIGURE, dpi=100)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["planted", "organism"], choices=sorted(DATA))
    parser.add_argument("--repetitions", type=int, default=200)
    parser.add_argument("--permutations", type=int, default=999)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    os.environ.setdefault("SEQCLAIMS_PROGRESS", "0")
    summaries, raws = {}, {}
    for model_name in args.models:
        summaries[model_name], raws[model_name] = calibrate(model_name, args.repetitions, args.permutations, args.seed)
        for name, values in summaries[model_name].items():
            holm, token = values["permutation_holm"], values["token_level_uncorrected"]
            print(f"{model_name} {name}: heads at Holm p < {ALPHA}: {holm['share_of_heads']:.4f} (bound "
                  f"{holm['bound_heads']:.4f}); repetitions with any: {holm['share_of_repetitions_any_head']:.3f} "
                  f"(bound {holm['bound_repetitions']:.3f}); token-level p < {ALPHA}: {token['share_of_heads']:.3f}; "
                  f"{values['seconds']} s", flush=True)
    record = {"name": "calibration_qk_motif", "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "motif": "MA0108.3", "alpha": ALPHA, "repetitions": args.repetitions,
              "permutations": args.permutations, "seed": args.seed,
              "models": {name: {"data": DATA[name], "results": summaries[name]} for name in args.models}}
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text(json.dumps(record, indent=2) + "\n")
    figure(summaries, raws, args.repetitions)
    print(f"wrote {RESULT.relative_to(ROOT)} and {FIGURE.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
