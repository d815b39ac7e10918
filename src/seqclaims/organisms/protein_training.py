"""Training the embedded `protein` language model on the proteins of the embedded genome's annotation.

`protein` is an ESM-style masked LM (the organism's architecture and optimiser: `EsmForMaskedLM`,
rotary positions, pre-LayerNorm, dropout 0, local heads in layer 0) with one token per residue (20 amino
acids and X), trained on the proteins translated from TAIR10 chromosome 1 (`seqclaims.inputs.proteins`) whose
genes lie in the chromosome's train region; the genes of the test region (`data.test_region`) are held
out, as every nucleotide dataset holds them out.

Batches: proteins drawn in proportion to their length, a random crop of the step's window length (the
whole protein when it is shorter, padded), 15% of residues masked one by one, BERT 80/10/10. Evaluation:
the held-out proteins' first `n_tok` residues, one masked residue per block of 10 (at least 6 apart),
against context baselines over 20 letters fitted on the train proteins (`baselines.PROTEIN_BASELINES`).
"""

from __future__ import annotations

import argparse
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from seqclaims.inputs import data, genome, proteins
from seqclaims.inputs.tokenizers import AMINO_ACIDS, build_protein_tokenizer
from seqclaims.lazy import lazy_import
from seqclaims.methods import baselines
from seqclaims.organisms.training import (EVAL_PURPOSE, Corpus, Recipe, Vocabulary, _nucleotide_baseline, _scored,
                                          checkpoint_keeper, corrupt, masked_logprobs, save_model,
                                          score_against_baselines, span_mask, sparse_positions, step_rng, train,
                                          write_card)
from seqclaims.paths import fixtures_dir

torch = lazy_import("torch")


class ProteinRecipe(Recipe):
    """The organism recipe's fields, with protein data and single-residue masking."""

    name: str = "protein"
    window_tokens: tuple[int, ...] = (128, 256)
    window_weights: tuple[float, ...] = (0.5, 0.5)
    mean_span: float = 1.0
    max_span: int = 1
    steps: int = 1500
    warmup_steps: int = 100
    eval_every: int = 100
    eval_windows: int = 64


@dataclass(frozen=True)
class ProteinSplit:
    """Residue codes of the train and held-out proteins (lists of int8 arrays, AMINO_ACIDS order)."""

    train: list[np.ndarray]
    heldout: list[np.ndarray]
    train_genes: np.ndarray
    heldout_genes: np.ndarray


@functools.lru_cache(maxsize=2)
def split_proteins(species: str, chrom: str, test_fraction: float) -> ProteinSplit:
    """Proteins of `chrom` whose gene ends before the test region (train) or starts inside it (held out), as
    the `proteins` dataset splits them; genes that straddle the boundary are left out."""
    proteome = proteins.proteome(species)
    split = data.protein_split(proteome, test_fraction)
    on_chrom = proteome.chrom == genome.resolve_chromosome(species, chrom)
    train = np.flatnonzero(on_chrom & (split == "train"))
    heldout = np.flatnonzero(on_chrom & (split == "test"))
    codes = [proteins.residue_codes(s) for s in proteome.sequences]
    return ProteinSplit([codes[i] for i in train], [codes[i] for i in heldout], proteome.gene[train], proteome.gene[heldout])


def _split(recipe: Recipe) -> ProteinSplit:
    return split_proteins(recipe.species, recipe.chrom, recipe.test_fraction)


def padded(rows: list[np.ndarray], width: int) -> np.ndarray:
    """(n, width) int8 codes, -1 after each row's end."""
    out = np.full((len(rows), width), -1, dtype=np.int8)
    for i, row in enumerate(rows):
        out[i, : len(row)] = row[:width]
    return out


def random_crops(sequences: list[np.ndarray], rng: np.random.Generator, n: int, width: int) -> np.ndarray:
    """`n` crops of at most `width` residues, proteins drawn in proportion to their length. (n, width) int8."""
    lengths = np.array([len(s) for s in sequences], dtype=np.float64)
    chosen = rng.choice(len(sequences), size=n, p=lengths / lengths.sum())
    crops = []
    for i in chosen:
        start = int(rng.integers(0, max(1, len(sequences[i]) - width + 1)))
        crops.append(sequences[i][start : start + width])
    return padded(crops, width)


def protein_corpus(recipe: Recipe) -> Corpus:
    tokenizer = build_protein_tokenizer(model_max_length=recipe.context_tokens + 2)
    vocab = Vocabulary.of(tokenizer, 1, AMINO_ACIDS)
    train_codes = _split(recipe).train

    def batch(step: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = step_rng(recipe, step)
        n_tok = int(rng.choice(recipe.window_tokens, p=np.asarray(recipe.window_weights) / sum(recipe.window_weights)))
        windows = random_crops(train_codes, rng, max(1, recipe.tokens_per_batch // n_tok), n_tok)
        mask = span_mask(rng, len(windows), n_tok, recipe.mask_rate, recipe.mean_span, recipe.max_span)
        inputs, labels = corrupt(vocab.token_ids(windows), mask, rng, vocab, recipe.replace_mask, recipe.replace_random)
        return torch.from_numpy(inputs), torch.from_numpy(labels)

    return Corpus(tokenizer, batch, _monitor(recipe, vocab) if recipe.eval_every else None)


# ---------------------------------------------------------------------------------------------
# Held-out evaluation


@dataclass(frozen=True)
class ProteinEvalSettings:
    n_tok: int = 256
    margin: int = 3
    block: int = 10
    gap: int = 6
    n_resamples: int = 1000


def heldout_mask(windows: np.ndarray, settings: ProteinEvalSettings, rng: np.random.Generator) -> np.ndarray:
    """(n, n_tok) bool: one position per block, kept where it is a residue at least `margin` from the protein's end."""
    positions = sparse_positions(rng, len(windows), settings.n_tok, settings.margin, settings.block, settings.gap)
    mask = np.zeros(windows.shape, dtype=bool)
    np.put_along_axis(mask, positions, True, axis=1)
    lengths = (windows >= 0).sum(axis=1)
    return mask & (np.arange(settings.n_tok)[None, :] < lengths[:, None] - settings.margin)


def fitted_protein_baselines(recipe: Recipe) -> list[baselines.ContextModel]:
    return baselines.fit_baselines(_split(recipe).train, baselines.PROTEIN_BASELINES)


def evaluate(model, recipe: Recipe, settings: ProteinEvalSettings | None = None,
             log: Callable[[str], None] = print) -> dict:
    """Held-out masked-residue accuracy and loss of the model beside the 20-letter context baselines."""

    settings = settings or ProteinEvalSettings()
    vocab = Vocabulary.of(build_protein_tokenizer(), 1, AMINO_ACIDS)
    split = _split(recipe)
    windows = padded(split.heldout, settings.n_tok)
    mask = heldout_mask(windows, settings, step_rng(recipe, 0, EVAL_PURPOSE))
    log(f"evaluating {recipe.name} on {mask.sum()} masked residues of {len(windows)} held-out proteins")
    result = score_against_baselines(model, vocab, windows, mask, fitted_protein_baselines(recipe),
                                     _nucleotide_baseline, settings.n_resamples, recipe.seed)
    result["settings"] = settings.__dict__ | {
        "n_masked": int(mask.sum()), "n_train_proteins": len(split.train), "n_heldout_proteins": len(split.heldout),
        "test_region": list(data.test_region(recipe.species, genome.resolve_chromosome(recipe.species, recipe.chrom),
                                             recipe.test_fraction)),
    }
    return result


def _monitor(recipe: Recipe, vocab: Vocabulary) -> Callable[[Any], dict]:
    settings = ProteinEvalSettings()
    windows = padded(_split(recipe).heldout[: recipe.eval_windows], settings.n_tok)
    mask = heldout_mask(windows, settings, step_rng(recipe, 0, EVAL_PURPOSE + 1))

    def monitor(model) -> dict:
        correct, bits = _scored(*masked_logprobs(model, vocab, windows, mask))
        return {"loss_bits_per_token": round(float(bits.mean()), 5), "accuracy": round(float(correct.mean()), 5)}

    return monitor


# ---------------------------------------------------------------------------------------------
# Command line


def add_command(subparsers) -> None:
    """`seqclaims train-protein`: train the embedded protein model, evaluate it, write its card."""
    command = subparsers.add_parser("train-protein", help="train the embedded protein model (CPU) and write its card")
    command.add_argument("--steps", type=int, default=None, help="length of the schedule (default: the recipe's)")
    command.add_argument("--minutes", type=float, default=None, help="stop when the run's wall time reaches this")
    command.add_argument("--out", type=Path, default=None, help="model folder (default: fixtures/models/protein)")
    command.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    command.add_argument("--fresh", action="store_true", help="ignore a checkpoint of the same recipe")
    command.add_argument("--notes", type=Path, default=None, help="Markdown file appended to the card")
    command.set_defaults(run=run_train_protein)


def run_train_protein(args: argparse.Namespace) -> int:
    torch.set_num_threads(args.threads)
    recipe = ProteinRecipe(**({"steps": args.steps} if args.steps else {}))
    folder = args.out or fixtures_dir() / "models" / recipe.name
    log = lambda line: print(line, flush=True)  # noqa: E731
    model, tokenizer, state = train(recipe, corpus=protein_corpus(recipe), minutes=args.minutes, resume=not args.fresh,
                                    keep=checkpoint_keeper(folder, recipe, log), keep_steps=(0,), log=log)
    save_model(model, tokenizer, folder)
    evaluation = evaluate(model, recipe, log=log)
    write_card(folder, recipe, state, evaluation, threads=args.threads,
               notes=args.notes.read_text() if args.notes else "", kind="protein")
    row = evaluation["predictors"]["model"]["accuracy"]
    log(f"wrote {folder}: held-out accuracy {100 * row[0]:.2f}%, best baseline {evaluation['best_baseline']}")
    return 0
