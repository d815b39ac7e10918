"""The model card of a trained organism: card.json, curve.json and curve.png, sha256sums.txt and README.md.

Rendered from the card's facts, which `training.write_card` gathers at the end of `seqclaims train-organism`;
`refresh_card` re-renders a folder's card. This module knows the card, not the training run.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Sequence

import numpy as np

from seqclaims.inputs.models import DEFINING_FILES, WEIGHT_SUFFIXES, file_sha256, folder_hash


def file_digests(folder: Path) -> dict[str, str]:
    """sha256 of every file that defines the model (weights, config, tokenizer), by file name."""

    return {
        path.name: file_sha256(path)
        for path in sorted(Path(folder).iterdir())
        if path.is_file() and (path.suffix in WEIGHT_SUFFIXES or path.name in DEFINING_FILES)
    }


def refresh_card(folder: Path, notes: str | None = None) -> None:
    """Re-render a model folder's card from its card.json and curve.json (e.g. with new notes)."""
    card = json.loads((Path(folder) / "card.json").read_text())
    if notes is not None:
        card["notes"] = notes
    render_card(Path(folder), card)


def render_card(folder: Path, card: dict) -> None:
    """Write curve.png, sha256sums.txt, card.json (with the files' hashes) and README.md."""

    curve = json.loads((folder / "curve.json").read_text())
    plot_curve(folder / "curve.png", card, curve)
    digests = file_digests(folder)
    (folder / "sha256sums.txt").write_text("".join(f"{digest}  {name}\n" for name, digest in digests.items()))
    card = {**card, "files_sha256": digests, "folder_sha256": folder_hash(folder)}
    (folder / "card.json").write_text(json.dumps(card, indent=1))
    (folder / "README.md").write_text(card_markdown(card))


REPRODUCIBILITY_TOLERANCE = 0.01  # nats per step, for a retrain of the first logged steps on CPU


def plot_curve(path: Path, card: dict, curve: dict) -> None:
    """Training and held-out masked-token loss (bits per token) against steps, with the best baseline; small PNG.

    curve: {"train": [{step, loss (nats), ...}], "heldout": [{step, loss_bits_per_token, ...}]}.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    recipe, evaluation = card["recipe"], card["evaluation"]
    figure, axis = plt.subplots(figsize=(6, 3.4), dpi=90)
    train = np.array([[p["step"], p["loss"] / math.log(2)] for p in curve["train"]])
    axis.plot(train[:, 0], train[:, 1], lw=1, label="train (span-masked, BERT 80/10/10)")
    if curve["heldout"]:
        held = np.array([[p["step"], p["loss_bits_per_token"]] for p in curve["heldout"]])
        axis.plot(held[:, 0], held[:, 1], "o-", ms=3, lw=1, label="held-out (span-masked, all [MASK])")
    predictors = evaluation["predictors"]
    best = evaluation["best_baseline"]
    axis.axhline(predictors["model"]["bits_per_token"][0], color="black", ls=":", lw=1,
                 label="model, held-out sparse masking")
    axis.axhline(predictors[best]["bits_per_token"][0], color="grey", ls="--", lw=1,
                 label=f"{best}, held-out sparse masking")
    axis.set_xlabel("step")
    axis.set_ylabel("masked-token loss (bits)")
    axis.set_title(f"{card['name']}: {recipe['n_layers']} layers x {recipe['d_model']}, "
                   f"{'single-nucleotide' if recipe['k'] == 1 else str(recipe['k']) + '-mer'} tokens", fontsize=9)
    # zoom on the end of the run: the first steps fall from log2(vocabulary) and would flatten the rest
    settled = train[train[:, 0] >= min(100, train[-1, 0] / 4), 1]
    levels = [predictors["model"]["bits_per_token"][0], predictors[best]["bits_per_token"][0]]
    held_levels = list(held[:, 1]) if curve["heldout"] else []
    pad = 0.02 * recipe["k"]
    axis.set_ylim(min(settled.min(), *levels) - pad, max(settled.max(), *levels, *held_levels) + pad)
    axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def percent_interval(triple: Sequence[float]) -> str:
    estimate, low, high = triple
    return f"{100 * estimate:.2f}% [{100 * low:.2f}, {100 * high:.2f}]"


def _bits(triple: Sequence[float]) -> str:
    estimate, low, high = triple
    return f"{estimate:.4f} [{low:.4f}, {high:.4f}]"


def _verdict(evaluation: dict) -> str:
    """One paragraph: the model against the best baseline, in accuracy and in loss, with intervals."""
    level = round(100 * evaluation["ci_level"])
    margin = evaluation["accuracy_minus_best_baseline"]
    best = evaluation["best_baseline"]
    if margin[1] > 0:
        verdict = (f"The model beats the best k-mer baseline ({best}) by {100 * margin[0]:.2f} accuracy points "
                   f"({level}% interval {100 * margin[1]:.2f} to {100 * margin[2]:.2f}, best baseline re-selected in every resample).")
    elif margin[2] < 0:
        verdict = (f"The model falls short of the best k-mer baseline ({best}) by {-100 * margin[0]:.2f} accuracy points "
                   f"({level}% interval {100 * margin[1]:.2f} to {100 * margin[2]:.2f}).")
    else:
        verdict = (f"The model and the best k-mer baseline ({best}) cannot be told apart: difference {100 * margin[0]:.2f} "
                   f"accuracy points ({level}% interval {100 * margin[1]:.2f} to {100 * margin[2]:.2f}).")
    if "bits_minus_best_baseline" in evaluation:
        gap = evaluation["bits_minus_best_baseline"]
        side = "below" if gap[0] < 0 else "above"
        verdict += (f" In loss the model is {abs(gap[0]):.4f} bits per token {side} the best baseline by loss "
                    f"({evaluation['best_baseline_by_loss']}; {level}% interval of the difference {gap[1]:.4f} to {gap[2]:.4f}).")
    return verdict


def _predictor_rows(predictors: dict, per_letter: bool = True) -> str:
    return "\n".join(
        f"| {name} | {percent_interval(values['accuracy'])} | {_bits(values['bits_per_token'])} |"
        + (f" {values['bits_per_nucleotide'][0]:.4f} |" if per_letter else "")
        for name, values in predictors.items()
    )


def card_markdown(card: dict) -> str:
    """The model card as Markdown, from card.json's content."""
    if card.get("kind") == "protein":
        return protein_card_markdown(card)
    recipe, training, evaluation = card["recipe"], card["training"], card["evaluation"]
    predictors = evaluation["predictors"]
    k = recipe["k"]
    level = round(100 * evaluation["ci_level"])
    settings = evaluation["settings"]
    verdict = _verdict(evaluation)
    unit = "nucleotide" if k == 1 else f"{k}-mer token"
    rows = _predictor_rows(predictors)
    baseline_note = (
        "Baselines: left-context Markov chains of order 0-5 (`markov-k`) and symmetric contexts of 1-4 bases per "
        "side (`symmetric-s`), counted on the train region on both strands, additive smoothing 0.5."
        if k == 1 else
        f"Baselines: left-context Markov chains of order 0-5 (`markov-k`) counted on the train region on both "
        f"strands; each scores the whole masked {k}-mer by its joint probability given the true bases to its left "
        f"(exact argmax over the 4^{k} {k}-mers). Symmetric-context baselines do not define a joint {k}-mer "
        "probability and are left out."
    )
    stopped = "" if training["steps"] >= recipe["steps"] else (
        f" The run stopped at its wall-time budget after {training['steps']} of the schedule's {recipe['steps']} steps.")
    span = evaluation["span_masked"]
    return f"""# `{card['name']}`: a small DNA masked language model of *A. thaliana* chromosome 1

An ESM-style masked LM (`EsmForMaskedLM`: rotary positions, pre-LayerNorm, dropout 0) with
{'single-nucleotide' if k == 1 else f'non-overlapping {k}-mer (Nucleotide Transformer style)'} tokens,
{recipe['n_layers']} layers of width {recipe['d_model']}, {recipe['n_heads']} heads, MLP {recipe['d_mlp']},
context {recipe['context_tokens']} tokens. Trained by this project's recipe (`seqclaims train-organism
--tokenization {'single' if k == 1 else f'{k}mer'}`) on the train region of TAIR10 chromosome 1 (positions before
{settings.get('train_end', 'the test region')}; the last {round(100 * recipe['test_fraction'])}% of the chromosome is held out,
as `seqclaims.inputs.data.test_region` defines it), both strands. Load it as `model: {card['name']}`.

## Held-out result

{verdict}

Masked-{unit} prediction on {evaluation['n_tokens']:,} masked tokens in {evaluation['n_windows']:,} held-out windows of
{settings['n_tok']} tokens (random strand), one masked token per block of {settings['block']} tokens, masked tokens at least
{settings['gap']} tokens apart. The model sees the window with only those tokens set to `[MASK]`, so the local context
the baselines read is unmasked for the model too; the model also sees the rest of the window (up to
{settings['n_tok'] * k} nt), the baselines only their context. {level}% percentile bootstrap intervals over windows
({settings['n_resamples']} resamples).

| predictor | accuracy | bits per token | bits per nucleotide |
|---|---|---|---|
{rows}

{baseline_note}

Under training-like masking ({round(100 * recipe['mask_rate'])}% in spans, all `[MASK]`, {span['n_tokens']:,} tokens in
{span['n_windows']} other held-out windows) the model reaches {100 * span['accuracy']:.2f}% accuracy and
{span['bits_per_token']:.4f} bits per token; there its context is partly masked, so this number is not comparable with
the baselines above, which always read the true context.

## Training

Seed {recipe['seed']}; {training['steps']:,} steps; {training['tokens_seen']:,} tokens ({training['nucleotides_seen']:,}
nucleotides) seen, {round(100 * recipe['mask_rate'])}% of them masked and predicted; wall time
{training['wall_time_s'] / 60:.1f} min on {training['threads']} CPU thread(s) (torch {training['torch']},
transformers {training['transformers']}), bf16 autocast {'on' if recipe['bf16'] else 'off'}.{stopped}
The curve (`curve.json`; every step up to step {recipe['log_first']}, then means over {recipe['log_every']} steps;
held-out span-masked loss every {recipe['eval_every']} steps on {recipe['eval_windows']} windows):

![training curve](curve.png)

Reproducibility: retraining the recipe for its first steps reproduces the recorded per-step losses within
{training['reproducibility_tolerance_nats']} nats (`tests/test_training.py`). Batches are a function of (seed, step), so a
resumed run sees the same data as an uninterrupted one.

## Recipe

Local bias: rotary positions; in layer 0 the query and key biases of head h are set so that it attends to the token
at offset `local_heads[0][h]` from each query (query/key weights scaled by 0.1 at initialisation; all trainable);
training windows of {', '.join(str(t) for t in recipe['window_tokens'])} tokens (probabilities
{', '.join(str(w) for w in recipe['window_weights'])}), {recipe['tokens_per_batch']} tokens per batch. Masking: span
starts uniform, span lengths geometric (mean {recipe['mean_span']}, at most {recipe['max_span']}), about
{round(100 * recipe['mask_rate'])}% of tokens; masked tokens become `[MASK]` ({round(100 * recipe['replace_mask'])}%), a
random token ({round(100 * recipe['replace_random'])}%) or stay. AdamW (no decay on biases, LayerNorms and
embeddings), linear warmup then cosine to {recipe['min_lr_ratio']} x peak, gradient clipping
{recipe['grad_clip']}. Windows containing N are skipped; half of the windows are reverse-complemented.

{_recipe_and_files(card)}"""


def _recipe_and_files(card: dict) -> str:
    """The end of every card: the recipe's fields and hash, notes, and the folder's files and hash."""
    recipe_rows = "\n".join(f"| `{key}` | `{json.dumps(value)}` |" for key, value in card["recipe"].items())
    files = "\n".join(f"| `{name}` | `{digest}` |" for name, digest in card["files_sha256"].items())
    return f"""| field | value |
|---|---|
{recipe_rows}

Recipe sha256: `{card['recipe_sha256']}`

{card['notes']}

## Files

| file | sha256 |
|---|---|
{files}

Folder hash (`seqclaims.inputs.models.folder_hash`): `{card['folder_sha256']}`
"""


def protein_card_markdown(card: dict) -> str:
    """The protein model's card (`seqclaims train-protein`)."""
    recipe, training, evaluation = card["recipe"], card["training"], card["evaluation"]
    settings = evaluation["settings"]
    level = round(100 * evaluation["ci_level"])
    stopped = "" if training["steps"] >= recipe["steps"] else (
        f" The run stopped at its wall-time budget after {training['steps']} of the schedule's {recipe['steps']} steps.")
    return f"""# `{card['name']}`: a small protein masked language model of *A. thaliana* chromosome 1 proteins

An ESM-style masked LM (`EsmForMaskedLM`: rotary positions, pre-LayerNorm, dropout 0) with one token per residue
(20 amino acids and X), {recipe['n_layers']} layers of width {recipe['d_model']}, {recipe['n_heads']} heads, MLP
{recipe['d_mlp']}, context {recipe['context_tokens']} tokens. Trained by `seqclaims train-protein` on the proteins
translated from TAIR10 chromosome 1 (`seqclaims.inputs.proteins`: one protein per protein-coding gene, its longest CDS) whose
genes lie before the test region ({settings['n_train_proteins']:,} proteins); the {settings['n_heldout_proteins']:,}
proteins whose genes lie in the test region (positions {settings['test_region'][0]:,} to {settings['test_region'][1]:,},
as `seqclaims.inputs.data.test_region` defines it) are held out. Load it as `model: {card['name']}`.

## Held-out result

{_verdict(evaluation)}

Masked-residue prediction on {evaluation['n_tokens']:,} masked residues of the first {settings['n_tok']} residues of each
held-out protein, one masked residue per block of {settings['block']}, at least {settings['gap']} apart and at least
{settings['margin']} from either end. The model sees the protein with only those residues set to `[MASK]`; the
baselines read their true context. {level}% percentile bootstrap intervals over proteins ({settings['n_resamples']}
resamples).

| predictor | accuracy | bits per residue |
|---|---|---|
{_predictor_rows(evaluation['predictors'], per_letter=False)}

Baselines over the 20 amino acids, counted on the train proteins, additive smoothing 0.5: left-context Markov chains
of order 0-2 (`markov-k`) and symmetric contexts of 1-2 residues per side (`symmetric-s`); a context running past the
protein's end falls back to the residue frequencies. Longer contexts over 20 letters (8,000 and more) are too sparse
for a proteome of this size.

## Training

Seed {recipe['seed']}; {training['steps']:,} steps; {training['tokens_seen']:,} residues seen,
{round(100 * recipe['mask_rate'])}% of them masked and predicted; wall time {training['wall_time_s'] / 60:.1f} min on
{training['threads']} CPU thread(s) (torch {training['torch']}, transformers {training['transformers']}), bf16 autocast
{'on' if recipe['bf16'] else 'off'}.{stopped} Proteins are drawn in proportion to their length and cropped at random to
the step's window ({', '.join(str(t) for t in recipe['window_tokens'])} residues); shorter proteins are padded and
attention ignores the padding. The curve (`curve.json`; held-out masked loss every {recipe['eval_every']} steps on
{recipe['eval_windows']} held-out proteins):

![training curve](curve.png)

## Recipe

{_recipe_and_files(card)}"""
