"""Null calibration of the sae_feature (and neuron) families on random-init copies of the organism.

Question: on a model that has learned nothing, and an annotation that has nothing to do with the
sequence, how often does the family call the best-of-all-latents AUPRC, chosen on the train split and
scored on the test split, "above chance" (criterion auprc_over_chance > 1, i.e. the lower end of the 95 %
interval above 1)? A calibrated family does so in at most alpha = 2.5 % of replicates (one side of a 95 %
interval).

Each replicate is a real claim evaluated by the family: a random-init copy of the organism (the organism's
config, weights re-initialised with a seed), the organism claims' promoter windows, and the start-codon
annotation (middle base) *permuted between sequences and circularly shifted* (`annotation.permuted`, a
different permutation per claim seed). The SAE is trained once per model and reused across permutations.

For contrast (not a calibration: the null is false there), the same random-init models are scored against
the real start-codon annotation: random networks pass token identity through, and the middle base of ATG
is a T, so even an untrained model has latents above chance; a claim that a *trained* model's feature is
meaningful needs a threshold well above that (the organism claims use auprc_over_chance >= 10) or a
comparison with the k-mer baseline (auprc_over_pattern).

Run: python scripts/calibrate_sae_feature.py [--models 5] [--permutations 40] [--neuron-permutations 10]
Writes benchmarks/results/calibration_sae_feature.json and docs/figures/calibration_sae_feature.png.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "calibration_sae_feature.json"
FIGURE = ROOT / "docs" / "figures" / "calibration_sae_feature.png"
ALPHA = 0.025  # one side of a 95 % interval
DATA = {"dataset": "promoters", "n": 200, "window": [49, 250]}
ANNOTATION = {"track": "start_codon", "base": 1}
SAE = {"d_sae": 1024, "k": 16, "lr": 0.002, "tokens": 200000, "epochs": 3, "batch_size": 4096, "seed": 0}
ABOVE_CHANCE = [{"statistic": "auprc_over_chance", "op": ">", "threshold": 1}]


def random_organism(folder: Path, seed: int) -> Path:
    """A copy of the organism with its config and tokenizer and freshly initialised weights."""
    import torch
    from transformers import AutoConfig, AutoModelForMaskedLM

    from seqclaims.inputs.models import save_random_model
    from seqclaims.inputs.tokenizers import build_nucleotide_tokenizer
    from seqclaims.paths import fixtures_dir

    organism = fixtures_dir() / "models" / "organism"
    if not (organism / "model.safetensors").is_file():  # before the organism ships: the recipe's dimensions
        tokenizer = build_nucleotide_tokenizer("single", model_max_length=514)
        return save_random_model(folder, "esm", tokenizer=tokenizer, n_layers=4, d_model=128, n_heads=4, d_mlp=512,
                                 seed=seed)
    torch.manual_seed(seed)
    model = AutoModelForMaskedLM.from_config(AutoConfig.from_pretrained(organism, local_files_only=True))
    model.save_pretrained(folder)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
        if (organism / name).is_file():
            shutil.copy(organism / name, folder / name)
    return folder


def claim_file(project: Path, claim_id: str, model: Path, check: str, params: dict, seed: int, resamples: int) -> Path:
    content = {"id": claim_id, "title": claim_id, "statement": "calibration replicate", "expect": "refuted",
               "model": {"path": str(model)}, "data": DATA, "check": check, "params": params,
               "criteria": ABOVE_CHANCE, "seed": seed, "resamples": resamples}
    path = project / "claims" / "calibration" / f"{claim_id}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(content, sort_keys=False))
    return path


def evaluate(path: Path) -> dict:
    from seqclaims.core.families import checks_dirs, load_claim, load_families
    from seqclaims.judging.judge import judge

    families = load_families(checks_dirs(ROOT))
    claim = load_claim(path, families)
    result = judge(claim, families.get(claim.check, path))
    if result.status != "evaluated":
        raise RuntimeError(f"{path.name}: {result.status}: {result.reason}")
    criterion = result.criteria[0]
    return {"estimate": criterion.estimate, "ci_low": criterion.ci_low, "ci_high": criterion.ci_high,
            "supported": result.verdict == "supported", "verdict": result.verdict,
            "best_unit": criterion.detail.get("best_unit"), "n_test_annotated": criterion.detail.get("n_test_annotated")}


def summary(replicates: list[dict]) -> dict:
    from seqclaims.methods.stats import mc_standard_error

    supported = np.array([r["supported"] for r in replicates], dtype=float)
    rate = float(supported.mean()) if supported.size else float("nan")
    return {"replicates": len(replicates), "supported": int(supported.sum()), "rate": rate,
            "mc_standard_error": float(mc_standard_error(rate, max(len(replicates), 1))),
            "alpha": ALPHA, "within_alpha": bool(rate <= ALPHA + 2 * mc_standard_error(ALPHA, max(len(replicates), 1))),
            "median_estimate": float(np.median([r["estimate"] for r in replicates])) if replicates else None}


def run(args: argparse.Namespace, project: Path) -> dict:
    arms: dict[str, list[dict]] = {"sae_null": [], "neuron_null": [], "sae_real_annotation": [],
                                   "neuron_real_annotation": []}
    sae_params = {"hook": "layer.2.resid_post", "sae": SAE, "top_windows": 0}
    neuron_params = {"layer": "all", "top_windows": 0}
    for model_seed in range(args.models):
        started = time.perf_counter()
        model = random_organism(project / "models" / f"random-{model_seed}", seed=1000 + model_seed)
        for check, params, arm, permutations in (("sae_feature", sae_params, "sae", args.permutations),
                                                 ("neuron", neuron_params, "neuron", args.neuron_permutations)):
            if permutations == 0:
                continue
            real = claim_file(project, f"{arm}-real-{model_seed}", model, check, {**params, "annotation": ANNOTATION},
                              seed=0, resamples=args.resamples)
            arms[f"{arm}_real_annotation"].append({"model_seed": model_seed, **evaluate(real)})
            for permutation in range(permutations):
                null = claim_file(project, f"{arm}-null-{model_seed}-{permutation}", model, check,
                                  {**params, "annotation": {**ANNOTATION, "permuted": True}}, seed=permutation,
                                  resamples=args.resamples)
                arms[f"{arm}_null"].append({"model_seed": model_seed, "permutation": permutation, **evaluate(null)})
        print(f"model {model_seed}: {time.perf_counter() - started:.0f} s; "
              + ", ".join(f"{arm} {summary(r)['supported']}/{len(r)}" for arm, r in arms.items()), flush=True)
        shutil.rmtree(project / "cache" / "activations", ignore_errors=True)  # one model's entries at a time
    return {name: {"summary": summary(replicates), "replicates": replicates} for name, replicates in arms.items()}


def figure(results: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for arm, colour in (("sae_null", "tab:blue"), ("neuron_null", "tab:orange")):
        lows = [r["ci_low"] for r in results[arm]["replicates"]]
        if lows:
            left.hist(lows, bins=30, alpha=0.6, color=colour, label=f"{arm.replace('_', ' ')} ({len(lows)})")
    left.axvline(1.0, color="black", linestyle="--", label="criterion: lower end > 1")
    left.set_xlabel("lower end of the 95 % interval of auprc_over_chance")
    left.set_ylabel("replicates")
    left.set_title("permuted annotation, random-init organism")
    left.legend(fontsize=8)
    names = [name for name in results if results[name]["replicates"]]
    rates = [results[name]["summary"]["rate"] for name in names]
    errors = [2 * results[name]["summary"]["mc_standard_error"] for name in names]
    right.bar(range(len(names)), rates, yerr=errors, color=["tab:blue" if "sae" in n else "tab:orange" for n in names],
              alpha=0.8, capsize=4)
    right.axhline(ALPHA, color="black", linestyle="--", label=f"alpha = {ALPHA}")
    right.set_xticks(range(len(names)), [n.replace("_", "\n") for n in names], fontsize=8)
    right.set_ylabel('share of replicates "above chance"')
    right.set_yscale("symlog", linthresh=0.05)
    right.set_ylim(0, 1.05)
    right.set_title("supported rate (bars: 2 Monte-Carlo SE)")
    right.legend(fontsize=8)
    fig.tight_layout()
    FIGURE.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(FIGURE, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=4, help="random-init copies of the organism")
    parser.add_argument("--permutations", type=int, default=25, help="permuted annotations per model (sae_feature)")
    parser.add_argument("--neuron-permutations", type=int, default=5, help="permuted annotations per model (neuron)")
    parser.add_argument("--resamples", type=int, default=500, help="bootstrap resamples per claim")
    args = parser.parse_args(argv)
    main_cache = Path(os.environ.get("SEQCLAIMS_CACHE") or ROOT / ".cache" / "seqclaims")
    with tempfile.TemporaryDirectory(prefix="calibration-") as folder:
        project = Path(folder)
        (project / "cache").mkdir()
        for shared in ("datasets", "file_hashes"):  # datasets are shared; activations of random models are not
            (main_cache / shared).mkdir(parents=True, exist_ok=True)
            (project / "cache" / shared).symlink_to(main_cache / shared)
        os.environ["SEQCLAIMS_CACHE"] = str(project / "cache")
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("SEQCLAIMS_PROGRESS", "0")
        sys.path.insert(0, str(ROOT / "src"))
        started = time.perf_counter()
        results = run(args, project)
    record = {"question": "share of null replicates in which auprc_over_chance's 95 % interval lies above 1",
              "settings": {"models": args.models, "permutations": args.permutations,
                           "neuron_permutations": args.neuron_permutations, "resamples": args.resamples,
                           "data": DATA, "annotation": ANNOTATION, "sae": SAE, "sae_hook": "layer.2.resid_post",
                           "neuron_layers": "all", "criterion": ABOVE_CHANCE[0]},
              "seconds": round(time.perf_counter() - started, 1), **results}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(record, indent=1) + "\n")
    figure(results)
    for name, arm in results.items():
        s = arm["summary"]
        print(f"{name}: {s['supported']}/{s['replicates']} supported (rate {s['rate']:.3f} +- {s['mc_standard_error']:.3f}),"
              f" median auprc_over_chance {s['median_estimate']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
