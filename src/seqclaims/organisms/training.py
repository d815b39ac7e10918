"""Training the embedded `organism` DNA language models: recipe, data, loop, held-out evaluation, card.

`organism` is a small ESM-style masked LM (rotary positions, pre-LayerNorm, dropout 0) with
single-nucleotide tokens; `organism-6mer` follows the same recipe with non-overlapping 6-mer tokens
(Nucleotide Transformer style). Both are trained on the train region of TAIR10 chromosome 1 (everything
before :func:`seqclaims.inputs.data.test_region`), both strands, and evaluated on the held-out region.

Recipe choices that give the model a bias towards local context (a plain BERT with learned absolute
positions stalls at base-composition level on CPU budgets):

- rotary positions, so attention can depend on the offset between tokens from the first step;
- local attention heads at initialisation: in the first layer each head's query and key biases are set
  so that, through the rotary rotation, the head attends to one fixed offset (-2, -1, +1, +2 tokens) -
  a convolution-like stem inside the standard architecture; every weight stays trainable;
- short windows (a mix of 128, 256 and 512 tokens), so a CPU-minute buys many steps.

Masking: about 15% of tokens in spans of geometric length (mean 2, so half of them single tokens), BERT
80/10/10 replacement; the gaps between spans leave unmasked stretches of many lengths.

Every random choice derives from the recipe's seed: the batch of step s comes from a generator seeded
with (seed, s), so a resumed run sees the same batches as an uninterrupted one.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, model_validator

from seqclaims.errors import InputError
from seqclaims.inputs import data, genome
from seqclaims.inputs.tokenizers import build_nucleotide_tokenizer
from seqclaims.lazy import lazy_import, when_called
from seqclaims.methods import baselines
from seqclaims.methods.stats import bootstrap
from seqclaims.organisms.organism_card import REPRODUCIBILITY_TOLERANCE, percent_interval, render_card
from seqclaims.paths import cache_dir, fixtures_dir

torch = lazy_import("torch")

TRAINING_VERSION = 1
NUCLEOTIDES = "ACGT"
IGNORE = -100  # label of tokens that are not predicted


# ---------------------------------------------------------------------------------------------
# Recipe


class Recipe(BaseModel):
    """Everything that determines a trained organism model (its hash names the checkpoint folder)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = "organism"
    k: Literal[1, 6] = 1
    species: str = "athaliana"
    chrom: str = "1"
    test_fraction: float = 0.2
    # architecture (EsmForMaskedLM, rotary, pre-LN)
    n_layers: int = 4
    d_model: int = 128
    n_heads: int = 4
    d_mlp: int = 512
    context_tokens: int = 512
    local_heads: tuple[tuple[int, ...], ...] = ((-2, -1, 1, 2),)
    local_scale: float = 20.0
    # data and masking
    window_tokens: tuple[int, ...] = (128, 256, 512)
    window_weights: tuple[float, ...] = (0.5, 0.3, 0.2)
    tokens_per_batch: int = 8192
    mask_rate: float = 0.15
    mean_span: float = 2.0
    max_span: int = 10
    replace_mask: float = 0.8
    replace_random: float = 0.1
    # optimisation
    steps: int = 1800
    lr: float = 1e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 100
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.98)
    grad_clip: float = 1.0
    bf16: bool = True
    seed: int = 0
    # logging
    log_every: int = 25
    log_first: int = 20
    eval_every: int = 250
    eval_windows: int = 48
    checkpoint_every: int = 200

    @model_validator(mode="after")
    def _consistent(self) -> "Recipe":
        if len(self.window_weights) != len(self.window_tokens):
            raise ValueError("window_weights needs one weight per entry of window_tokens")
        if max(self.window_tokens) > self.context_tokens:
            raise ValueError("window_tokens may not exceed context_tokens")
        return self

    def digest(self) -> str:
        text = json.dumps({"version": TRAINING_VERSION, **self.model_dump(mode="json")}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()


# the checkpoints train-organism keeps besides the final model: the initialisation and an early model
KEPT_STEPS = (0, 200)

DEFAULT_RECIPES: dict[str, Recipe] = {
    "single": Recipe(),
    "6mer": Recipe(name="organism-6mer", k=6, steps=700),
}


def recipe_for(tokenization: str, **overrides: Any) -> Recipe:
    """The default recipe of a tokenization (`single` or `6mer`) with fields overridden."""
    if tokenization not in DEFAULT_RECIPES:
        raise InputError(f"tokenization {tokenization!r} has no recipe; use one of {', '.join(DEFAULT_RECIPES)}")
    base = DEFAULT_RECIPES[tokenization]
    given = {key: value for key, value in overrides.items() if value is not None}
    return Recipe.model_validate({**base.model_dump(), **given})


# ---------------------------------------------------------------------------------------------
# Data: windows of the train region, tokens, masking


def chromosome_codes(species: str, chrom: str) -> np.ndarray:
    """The chromosome as nucleotide codes (A=0 C=1 G=2 T=3, -1 otherwise). `(chrom_len,)` int8."""
    return baselines.nucleotide_codes(genome.sequence_array(species, chrom))


def train_end(recipe: Recipe) -> int:
    """First position of the held-out region: training windows end at or before it."""
    return data.test_region(recipe.species, recipe.chrom, recipe.test_fraction)[0]


@dataclass(frozen=True)
class Region:
    """Nucleotide codes of a region `[start, start + len(codes))` with a running count of unusable bases."""

    codes: np.ndarray
    start: int
    bad_cumsum: np.ndarray = field(repr=False)

    @classmethod
    def of(cls, codes: np.ndarray, start: int = 0) -> "Region":
        codes = np.array(codes, dtype=np.int8)
        bad_cumsum = np.concatenate([[0], np.cumsum(codes < 0)])
        codes.flags.writeable = bad_cumsum.flags.writeable = False  # regions are cached and shared
        return cls(codes, start, bad_cumsum)

    def clean(self, offsets: np.ndarray, length: int) -> np.ndarray:
        """(n,) bool: windows `[offset, offset + length)` (offsets into the region) hold only A/C/G/T."""
        return self.bad_cumsum[offsets + length] - self.bad_cumsum[offsets] == 0


def train_region(recipe: Recipe) -> Region:
    return _region(recipe.species, recipe.chrom, 0, train_end(recipe))


@functools.lru_cache(maxsize=4)
def _region(species: str, chrom: str, start: int, end: int) -> Region:
    return Region.of(chromosome_codes(species, chrom)[start:end], start)


def sample_windows(region: Region, rng: np.random.Generator, n: int, length: int) -> tuple[np.ndarray, np.ndarray]:
    """`n` random windows of `length` bases inside the region, free of N, half of them reverse-complemented.

    Returns codes (n, length) int8 (read 5'->3' on the chosen strand) and the windows' genome starts (n,).
    """
    last = len(region.codes) - length
    if last < 0:
        raise InputError(f"windows of {length} nt do not fit in a region of {len(region.codes)} nt; use shorter windows")
    offsets = np.empty(0, dtype=np.int64)
    while len(offsets) < n:
        candidates = rng.integers(0, last + 1, size=2 * n)
        found = candidates[region.clean(candidates, length)]
        if not len(found) and not region.clean(np.arange(last + 1), length).any():
            raise InputError(f"the region has no window of {length} nt free of N; use shorter windows")
        offsets = np.concatenate([offsets, found])
    offsets = offsets[:n]
    windows = region.codes[offsets[:, None] + np.arange(length)]
    reverse = rng.random(n) < 0.5
    windows[reverse] = baselines.reverse_complement_codes(windows[reverse])
    return windows, offsets + region.start


@dataclass(frozen=True)
class Vocabulary:
    """What the data pipeline needs from a nucleotide tokenizer.

    kmer_ids: (4**k,) token id of each k-mer, indexed by its base-4 number (first base most significant).
    """

    k: int
    kmer_ids: np.ndarray
    cls_id: int
    sep_id: int
    mask_id: int
    pad_id: int
    letters: str = NUCLEOTIDES

    @classmethod
    def of(cls, tokenizer, k: int, letters: str = NUCLEOTIDES) -> "Vocabulary":
        vocab = tokenizer.get_vocab()
        kmers = _all_kmers(k, letters)
        missing = [kmer for kmer in kmers if kmer not in vocab]
        if missing:
            raise InputError(f"tokenizer has no token for {missing[0]!r}; build it with build_nucleotide_tokenizer")
        ids = np.array([vocab[kmer] for kmer in kmers], dtype=np.int64)
        return cls(k, ids, tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.mask_token_id,
                   tokenizer.pad_token_id, letters)

    def token_ids(self, windows: np.ndarray) -> np.ndarray:
        """Codes (n, L) with L a multiple of k -> token ids (n, L // k) int64. For k = 1 a code -1 (past the end
        of a shorter sequence) is padding."""
        if self.k == 1:
            return np.where(windows >= 0, self.kmer_ids[np.maximum(windows, 0)], self.pad_id)
        return self.kmer_ids[kmer_index(windows, self.k, len(self.letters))]


def _all_kmers(k: int, letters: str = NUCLEOTIDES) -> list[str]:
    """The len(letters)**k k-mers in base order (A=0 ... T=3 for DNA, first letter most significant)."""
    base = len(letters)
    digits = (np.arange(base**k)[:, None] // base ** np.arange(k - 1, -1, -1)) % base
    return ["".join(letters[d] for d in row) for row in digits]


def kmer_index(windows: np.ndarray, k: int, base: int = 4) -> np.ndarray:
    """Codes (n, L) -> base-`base` number of each non-overlapping k-mer (n, L // k) int64."""
    n, length = windows.shape
    grouped = windows[:, : length - length % k].reshape(n, -1, k).astype(np.int64)
    return grouped @ (base ** np.arange(k - 1, -1, -1))


def span_mask(rng: np.random.Generator, n: int, n_tok: int, rate: float, mean_span: float, max_span: int) -> np.ndarray:
    """(n, n_tok) bool: spans of geometric length (mean `mean_span`, at most `max_span`) covering ~`rate`.

    Span starts are uniform, so the unmasked stretches between spans have many lengths.
    """
    n_spans = max(1, int(round(rate * n_tok / mean_span * _overlap_correction(rate))))
    starts = rng.integers(0, n_tok, size=(n, n_spans))
    lengths = np.minimum(rng.geometric(1.0 / mean_span, size=(n, n_spans)), max_span)
    delta = np.zeros((n, n_tok + 1), dtype=np.int64)
    rows = np.repeat(np.arange(n), n_spans)
    np.add.at(delta, (rows, starts.ravel()), 1)
    np.add.at(delta, (rows, np.minimum(starts + lengths, n_tok).ravel()), -1)
    return np.cumsum(delta[:, :n_tok], axis=1) > 0


def _overlap_correction(rate: float) -> float:
    """Spans placed independently overlap; ask for -log(1 - rate) / rate times as many to cover `rate`."""
    return -math.log1p(-rate) / rate


def corrupt(
    ids: np.ndarray, mask: np.ndarray, rng: np.random.Generator, vocab: Vocabulary, replace_mask: float, replace_random: float
) -> tuple[np.ndarray, np.ndarray]:
    """BERT corruption of token ids (n, T) at `mask`: [MASK], a random k-mer token, or unchanged.

    Returns inputs and labels (n, T + 2) framed by [CLS] ... [SEP]; labels are IGNORE off the mask.
    """
    mask = mask & (ids != vocab.pad_id)  # padding of a shorter sequence is never predicted
    draw = rng.random(ids.shape)
    random_ids = vocab.kmer_ids[rng.integers(0, len(vocab.kmer_ids), size=ids.shape)]
    inputs = np.where(mask & (draw < replace_mask), vocab.mask_id, ids)
    inputs = np.where(mask & (draw >= replace_mask) & (draw < replace_mask + replace_random), random_ids, inputs)
    labels = np.where(mask, ids, IGNORE)
    return frame(inputs, vocab.cls_id, vocab.sep_id, vocab.pad_id), frame(labels, IGNORE, IGNORE)


def frame(ids: np.ndarray, first: int, last: int, pad: int | None = None) -> np.ndarray:
    """(n, T) -> (n, T + 2): `first` before each row and `last` after it; with `pad`, a row whose ids end in
    padding gets `last` right after its last other id (padding stays at the end)."""
    n, width = ids.shape
    framed = np.concatenate([np.full((n, 1), first), ids, np.full((n, 1), pad if pad is not None else last)], axis=1)
    length = width if pad is None else (ids != pad).sum(axis=1)
    framed[np.arange(n), length + 1] = last
    return framed.astype(np.int64)


def step_rng(recipe: Recipe, step: int, purpose: int = 0) -> np.random.Generator:
    return np.random.default_rng([recipe.seed, purpose, step])


def make_batch(recipe: Recipe, region: Region, vocab: Vocabulary, step: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and labels (n, T + 2) of training step `step`; the window length is drawn per step."""
    rng = step_rng(recipe, step)
    n_tok = int(rng.choice(recipe.window_tokens, p=np.asarray(recipe.window_weights) / sum(recipe.window_weights)))
    n = max(1, recipe.tokens_per_batch // n_tok)
    windows, _ = sample_windows(region, rng, n, n_tok * recipe.k)
    mask = span_mask(rng, n, n_tok, recipe.mask_rate, recipe.mean_span, recipe.max_span)
    inputs, labels = corrupt(vocab.token_ids(windows), mask, rng, vocab, recipe.replace_mask, recipe.replace_random)
    return torch.from_numpy(inputs), torch.from_numpy(labels)


# ---------------------------------------------------------------------------------------------
# Model


def build_tokenizer(recipe: Recipe):
    kind = "single" if recipe.k == 1 else "kmer_nonoverlapping"
    return build_nucleotide_tokenizer(kind, recipe.k, model_max_length=recipe.context_tokens + 2)


def build_model(recipe: Recipe, tokenizer):
    """A freshly initialised EsmForMaskedLM for the recipe (seeded), with its local heads set."""
    from transformers import EsmConfig, EsmForMaskedLM

    config = EsmConfig(
        vocab_size=len(tokenizer),
        hidden_size=recipe.d_model,
        num_hidden_layers=recipe.n_layers,
        num_attention_heads=recipe.n_heads,
        intermediate_size=recipe.d_mlp,
        max_position_embeddings=recipe.context_tokens + 2,
        pad_token_id=tokenizer.pad_token_id,
        mask_token_id=tokenizer.mask_token_id,
        position_embedding_type="rotary",
        token_dropout=False,
        emb_layer_norm_before=False,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    if len(recipe.local_heads) > recipe.n_layers:
        raise InputError(f"the recipe sets local_heads for {len(recipe.local_heads)} layers but the model has "
                         f"{recipe.n_layers}; shorten local_heads")
    torch.manual_seed(recipe.seed)
    model = EsmForMaskedLM(config)
    for layer, offsets in enumerate(recipe.local_heads):
        if offsets:
            set_local_heads(model, layer, offsets, recipe.local_scale)
    return model


def set_local_heads(model, layer: int, offsets: Sequence[int], scale: float) -> None:
    """Make head h of `layer` attend to the token at offset offsets[h] from each query, by its biases alone.

    With rotary positions, a query bias a*(cos(d theta), sin(d theta)) and key bias (a, 0) in every
    rotation plane score key n against query m by sum_i a_i**2 cos(theta_i (n - m - d)): largest at
    n - m = d. Plane weights w_i ~ theta_i**0.7 keep the peak clear of the quasi-periodic echoes of the
    fast planes over 1,000 tokens; `scale` is the peak's logit above the mean. The query and key weights
    are scaled down so that content starts small against position. Heads beyond len(offsets) are left as
    they are.
    """
    attention = model.esm.encoder.layer[layer].attention.self
    d_head = attention.attention_head_size
    theta = model.esm.rotary_embeddings.inv_freq.double() if hasattr(model.esm, "rotary_embeddings") else _rotary_freqs(d_head)
    weights = theta**0.7 / (theta**0.7).sum()
    # ESM multiplies the query by d_head**-0.5 before the rotation
    amplitude = torch.sqrt(scale * weights * d_head**0.5)
    half = d_head // 2
    with torch.no_grad():
        for head, offset in enumerate(offsets[: attention.num_attention_heads]):
            part = slice(head * d_head, (head + 1) * d_head)
            query_bias = torch.cat([amplitude * torch.cos(offset * theta), amplitude * torch.sin(offset * theta)])
            key_bias = torch.cat([amplitude, torch.zeros(half, dtype=amplitude.dtype)])
            attention.query.bias[part] = query_bias.float()
            attention.key.bias[part] = key_bias.float()
            attention.query.weight[part] *= 0.1
            attention.key.weight[part] *= 0.1


def _rotary_freqs(d_head: int, base: float = 10000.0) -> torch.Tensor:
    return 1.0 / base ** (torch.arange(0, d_head, 2, dtype=torch.float64) / d_head)


def save_model(model, tokenizer, folder: Path) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


# ---------------------------------------------------------------------------------------------
# Training loop


def learning_rate(recipe: Recipe, step: int) -> float:
    """Linear warmup to `lr`, then cosine decay to `lr * min_lr_ratio` at `steps` (step counts from 0)."""
    if step < recipe.warmup_steps:
        return recipe.lr * (step + 1) / recipe.warmup_steps
    progress = min(1.0, (step - recipe.warmup_steps) / max(1, recipe.steps - recipe.warmup_steps))
    floor = recipe.lr * recipe.min_lr_ratio
    return floor + (recipe.lr - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def make_optimizer(recipe: Recipe, model) -> torch.optim.Optimizer:
    """AdamW; biases, LayerNorm gains and embeddings (all 1-D or lookup tables) are not decayed."""
    decayed = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embeddings" not in n]
    kept = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embeddings" not in n)]
    groups = [{"params": decayed, "weight_decay": recipe.weight_decay}, {"params": kept, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=recipe.lr, betas=recipe.betas)


@dataclass
class TrainState:
    """Where a run stands: the step to run next, the curve so far, and totals."""

    step: int = 0
    tokens_seen: int = 0
    elapsed_s: float = 0.0
    curve: list[dict] = field(default_factory=list)
    heldout_curve: list[dict] = field(default_factory=list)


def train_step(model, optimizer, recipe: Recipe, inputs: torch.Tensor, labels: torch.Tensor, step: int) -> dict:
    """One optimisation step; returns the masked-token loss (nats) and accuracy of the batch."""
    for group in optimizer.param_groups:
        group["lr"] = learning_rate(recipe, step)
    model.train()
    predicted = labels != IGNORE
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=recipe.bf16):
        hidden = model.esm(input_ids=inputs, attention_mask=padding_mask(inputs, model.config.pad_token_id)).last_hidden_state
        logits = model.lm_head(hidden[predicted])  # only the predicted tokens: (n_masked, vocab)
    targets = labels[predicted]
    loss = torch.nn.functional.cross_entropy(logits.float(), targets)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), recipe.grad_clip)
    optimizer.step()
    accuracy = (logits.detach().argmax(-1) == targets).float().mean()
    return {"loss": float(loss.detach()), "accuracy": float(accuracy), "n_masked": int(predicted.sum())}


def padding_mask(inputs: torch.Tensor, pad_id: int) -> torch.Tensor | None:
    """(n, T) attention mask when a row of `inputs` is padded; None when none is (the windows of the genome)."""
    real = inputs != pad_id
    return None if bool(real.all()) else real.long()


def kept_checkpoint_folder(folder: Path, step: int) -> Path:
    """Where `train-organism` keeps the model after `step` steps: the embedded model `<name>@step<step>`."""
    return Path(folder) / "checkpoints" / f"step{step}"


def checkpoint_keeper(folder: Path, recipe: Recipe, log: Callable[[str], None]) -> Callable[[Any, Any, TrainState], None]:
    """Save a kept checkpoint as a model folder with a small card of what it is."""

    def keep(model, tokenizer, state: TrainState) -> None:
        target = save_model(model, tokenizer, kept_checkpoint_folder(folder, state.step))
        facts = {"name": f"{recipe.name}@step{state.step}", "recipe_sha256": recipe.digest(), "step": state.step,
                 "schedule_steps": recipe.steps, "tokens_seen": state.tokens_seen, "torch": torch.__version__,
                 "threads": torch.get_num_threads(),
                 "what": "the initialisation (random weights, the recipe's constructed local heads)" if state.step == 0
                 else f"the recipe's model after {state.step} of {recipe.steps} optimisation steps"}
        (target / "checkpoint.json").write_text(json.dumps(facts, indent=1) + "\n")
        log(f"kept {facts['name']} in {target}")

    return keep


def checkpoint_path(recipe: Recipe) -> Path:
    return cache_dir() / "training" / f"{recipe.name}-{recipe.digest()[:12]}" / "checkpoint.pt"


def save_checkpoint(path: Path, model, optimizer, state: TrainState) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "state": state.__dict__}, temporary)
    temporary.replace(path)


def load_checkpoint(path: Path, model, optimizer) -> TrainState:
    saved = torch.load(path, weights_only=False)
    model.load_state_dict(saved["model"])
    optimizer.load_state_dict(saved["optimizer"])
    return TrainState(**saved["state"])


@dataclass(frozen=True)
class Corpus:
    """What the training loop reads: the tokenizer, the batch of each step, and a cheap held-out check."""

    tokenizer: Any
    batch: Callable[[int], tuple[torch.Tensor, torch.Tensor]]
    monitor: Callable[[Any], dict] | None


def genome_corpus(recipe: Recipe) -> Corpus:
    """Windows of the train region of the recipe's chromosome, both strands."""
    tokenizer = build_tokenizer(recipe)
    vocab = Vocabulary.of(tokenizer, recipe.k)
    region = train_region(recipe)
    monitor = heldout_monitor(recipe, vocab) if recipe.eval_every else None
    return Corpus(tokenizer, lambda step: make_batch(recipe, region, vocab, step), monitor)


def train(
    recipe: Recipe,
    *,
    corpus: Corpus | None = None,
    minutes: float | None = None,
    max_steps: int | None = None,
    resume: bool = True,
    checkpoint: bool = True,
    keep: Callable[[Any, Any, TrainState], None] | None = None,
    keep_steps: Sequence[int] = (),
    log: Callable[[str], None] = print,
) -> tuple[Any, Any, TrainState]:
    """Train (or resume) the recipe's model on `corpus` (default: the genome's train region); returns
    (model, tokenizer, state).

    Stops at `recipe.steps`, at `max_steps` (a short run of the same schedule), or when the run's total
    wall time reaches `minutes`. Logs every step up to `log_first`, then the mean of every `log_every`
    steps; a held-out loss every `eval_every` steps. `keep(model, tokenizer, state)` is called when the
    model has taken each of `keep_steps` optimisation steps (0: the initialisation).
    """
    corpus = corpus or genome_corpus(recipe)
    tokenizer = corpus.tokenizer
    model = build_model(recipe, tokenizer)
    optimizer = make_optimizer(recipe, model)
    path = checkpoint_path(recipe)
    state = load_checkpoint(path, model, optimizer) if resume and checkpoint and path.is_file() else TrainState()
    if state.step:
        log(f"resumed {recipe.name} at step {state.step} from {path}")
    monitor = corpus.monitor
    last_step = min(recipe.steps, max_steps or recipe.steps)
    window: list[dict] = []
    started = time.perf_counter() - state.elapsed_s
    keep_now = (lambda: keep(model, tokenizer, state)) if keep else (lambda: None)
    if state.step in keep_steps:
        keep_now()
    while state.step < last_step and not (minutes and time.perf_counter() - started >= minutes * 60):
        inputs, labels = corpus.batch(state.step)
        result = train_step(model, optimizer, recipe, inputs, labels, state.step)
        state.step += 1
        state.tokens_seen += int((inputs != tokenizer.pad_token_id).sum()) - 2 * inputs.shape[0]
        state.elapsed_s = time.perf_counter() - started
        window.append(result)
        if state.step <= recipe.log_first or state.step % recipe.log_every == 0 or state.step == last_step:
            state.curve.append(_curve_point(state, window, learning_rate(recipe, state.step - 1)))
            window = []
            if state.step % (recipe.log_every * 4) == 0 or state.step == last_step:
                point = state.curve[-1]
                log(f"step {point['step']} loss {point['loss']:.4f} acc {point['accuracy']:.4f} "
                    f"tokens {state.tokens_seen} {state.elapsed_s:.0f}s")
        if monitor is not None and state.step % recipe.eval_every == 0:
            state.heldout_curve.append({"step": state.step, **monitor(model)})
            log(f"held-out at step {state.step}: {state.heldout_curve[-1]}")
        if checkpoint and state.step % recipe.checkpoint_every == 0:
            save_checkpoint(path, model, optimizer, state)
        if state.step in keep_steps:
            keep_now()
    if window:  # stopped by the wall-time budget between two logged steps
        state.curve.append(_curve_point(state, window, learning_rate(recipe, state.step - 1)))
    if checkpoint:
        # where the run stopped, so that resuming a finished run changes nothing
        save_checkpoint(path, model, optimizer, state)
    model.eval()
    return model, tokenizer, state


def _curve_point(state: TrainState, window: list[dict], lr: float) -> dict:
    weights = np.array([r["n_masked"] for r in window], dtype=np.float64)
    mean = lambda key: float(np.average([r[key] for r in window], weights=weights))  # noqa: E731
    return {
        "step": state.step,
        "loss": round(mean("loss"), 6),
        "accuracy": round(mean("accuracy"), 6),
        "lr": lr,
        "tokens_seen": state.tokens_seen,
        "elapsed_s": round(state.elapsed_s, 2),
    }


# ---------------------------------------------------------------------------------------------
# Held-out evaluation

EVAL_PURPOSE = 7  # separates the evaluation's random stream from the training batches'


def heldout_region(recipe: Recipe) -> Region:
    return _region(recipe.species, recipe.chrom, *data.test_region(recipe.species, recipe.chrom, recipe.test_fraction))


def heldout_windows(recipe: Recipe, n_windows: int, n_tok: int, purpose: int = EVAL_PURPOSE) -> np.ndarray:
    """`n_windows` non-overlapping N-free windows of `n_tok` tokens in the held-out region, random strand.

    Returns codes (n_windows, n_tok * k) int8. Deterministic for the recipe's seed and `purpose`.
    """
    region = heldout_region(recipe)
    length = n_tok * recipe.k
    offsets = np.arange(0, len(region.codes) - length + 1, length)
    offsets = offsets[region.clean(offsets, length)]
    rng = step_rng(recipe, 0, purpose)
    if n_windows > len(offsets):
        raise InputError(f"the held-out region has only {len(offsets)} clean windows of {length} nt; ask for fewer")
    chosen = np.sort(rng.choice(offsets, size=n_windows, replace=False))
    windows = region.codes[chosen[:, None] + np.arange(length)]
    reverse = rng.random(n_windows) < 0.5
    windows[reverse] = baselines.reverse_complement_codes(windows[reverse])
    return windows


def sparse_positions(rng: np.random.Generator, n_windows: int, n_tok: int, margin: int, block: int, gap: int) -> np.ndarray:
    """(n_windows, n_blocks) token positions to mask, one per block of `block` tokens after `margin`.

    Consecutive positions are at least `gap` apart and none lies within `margin` of either end, so every
    masked token has at least gap - 1 unmasked tokens on each side.
    """
    n_blocks = (n_tok - 2 * margin) // block
    starts = margin + block * np.arange(n_blocks)
    return starts + rng.integers(0, block - gap + 1, size=(n_windows, n_blocks))


@when_called(lambda: torch.inference_mode())
def masked_logprobs(
    model, vocab: Vocabulary, windows: np.ndarray, mask: np.ndarray, batch_size: int = 32
) -> tuple[np.ndarray, np.ndarray]:
    """Model log-probabilities over the 4**k k-mers at masked tokens, every masked token set to [MASK].

    windows: codes (n, L); mask: (n, T) bool. Returns logprobs (n_masked, 4**k) float64 (renormalised over
    the k-mer tokens) and the true k-mer index (n_masked,), in row-major order of `mask`.
    """
    ids = vocab.token_ids(windows)
    inputs = frame(np.where(mask, vocab.mask_id, ids), vocab.cls_id, vocab.sep_id, vocab.pad_id)
    model.eval()
    chunks = []
    for start in range(0, len(inputs), batch_size):
        batch = torch.from_numpy(inputs[start : start + batch_size])
        logits = model(input_ids=batch, attention_mask=padding_mask(batch, vocab.pad_id)).logits[:, 1:-1]
        picked = logits[torch.from_numpy(mask[start : start + batch_size])][:, torch.from_numpy(vocab.kmer_ids)]
        chunks.append(torch.log_softmax(picked.double(), dim=-1).numpy())
    return np.concatenate(chunks), kmer_index(windows, vocab.k, len(vocab.letters))[mask]


def heldout_monitor(recipe: Recipe, vocab: Vocabulary) -> Callable[[Any], dict]:
    """A cheap held-out check for the training curve: span-masked windows of the largest length."""
    n_tok = max(recipe.window_tokens)
    windows = heldout_windows(recipe, recipe.eval_windows, n_tok, purpose=EVAL_PURPOSE + 1)
    rng = step_rng(recipe, 0, EVAL_PURPOSE + 1)
    mask = span_mask(rng, len(windows), n_tok, recipe.mask_rate, recipe.mean_span, recipe.max_span)

    def monitor(model) -> dict:
        logprobs, truth = masked_logprobs(model, vocab, windows, mask)
        correct, bits = _scored(logprobs, truth)
        return {"loss_bits_per_token": round(float(bits.mean()), 5), "accuracy": round(float(correct.mean()), 5)}

    return monitor


def _scored(logprobs: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Correctness and log2 loss per masked token, from logprobs (n, V) and truth (n,)."""
    correct = logprobs.argmax(axis=1) == truth
    bits = -logprobs[np.arange(len(truth)), truth] / math.log(2)
    return correct, bits


@dataclass(frozen=True)
class EvalSettings:
    """How the held-out evaluation masks: sparse single tokens (the fair comparison) and span masking."""

    n_windows: int = 3800
    n_tok: int = 512
    margin: int = 6
    block: int = 10
    gap: int = 6
    span_windows: int = 1000
    n_resamples: int = 1000

    @classmethod
    def for_recipe(cls, recipe: Recipe) -> "EvalSettings":
        if recipe.k == 1:
            return cls()
        # 6-mers: a masked token's previous token stays unmasked, so 5 bases of left context are true
        return cls(n_windows=400, n_tok=512, margin=2, block=8, gap=2, span_windows=200)


@dataclass
class PerWindow:
    """Per-window sums of one predictor: correct (n_windows,), bits (n_windows,), count (n_windows,)."""

    correct: np.ndarray
    bits: np.ndarray
    count: np.ndarray

    @classmethod
    def of(cls, correct: np.ndarray, bits: np.ndarray, window: np.ndarray, n_windows: int) -> "PerWindow":
        total = lambda values: np.bincount(window, weights=values, minlength=n_windows)  # noqa: E731
        return cls(total(correct.astype(float)), total(bits), total(np.ones_like(bits)))


def evaluate(model, recipe: Recipe, settings: EvalSettings | None = None, log: Callable[[str], None] = print) -> dict:
    """Held-out masked-token accuracy and loss of the model beside the k-mer baselines, same positions.

    Sparse masking (one token per block, `gap` apart): the model sees the window with only those
    positions masked, so the local context the baselines read is unmasked for the model too. Baselines
    are fitted on the train region (both strands). For k = 1 every baseline of `baselines.BASELINES`
    predicts the nucleotide; for k = 6 the left-context Markov chains predict the whole 6-mer (joint
    probability, exact argmax over the 4,096 6-mers). Intervals: percentile bootstrap over windows.
    """
    settings = settings or EvalSettings.for_recipe(recipe)
    vocab = Vocabulary.of(build_tokenizer(recipe), recipe.k)
    windows = heldout_windows(recipe, settings.n_windows, settings.n_tok)
    rng = step_rng(recipe, 0, EVAL_PURPOSE)
    positions = sparse_positions(rng, len(windows), settings.n_tok, settings.margin, settings.block, settings.gap)
    mask = np.zeros((len(windows), settings.n_tok), dtype=bool)
    np.put_along_axis(mask, positions, True, axis=1)
    log(f"evaluating {recipe.name} on {mask.sum()} masked tokens in {len(windows)} held-out windows")
    specs = [m for m in fitted_baselines(recipe) if recipe.k == 1 or m.spec.right == 0]
    scorer = _nucleotide_baseline if recipe.k == 1 else _kmer_chain_baseline
    result = score_against_baselines(model, vocab, windows, mask, specs, scorer, settings.n_resamples, recipe.seed)
    result["span_masked"] = span_masked_score(model, recipe, vocab, settings)
    result["settings"] = settings.__dict__ | {
        "n_masked": int(mask.sum()),
        "train_end": train_end(recipe),
        "test_region": list(data.test_region(recipe.species, recipe.chrom, recipe.test_fraction)),
    }
    return result


def score_against_baselines(model, vocab: Vocabulary, windows: np.ndarray, mask: np.ndarray,
                            fitted: Sequence[baselines.ContextModel], scorer: Callable, n_resamples: int,
                            seed: int) -> dict:
    """The model and every fitted baseline on the same masked positions `mask` (n, T) of `windows`, summarised
    with bootstrap intervals over windows (`summarise`)."""
    logprobs, truth = masked_logprobs(model, vocab, windows, mask)
    rows, cols = np.nonzero(mask)
    per_window = {"model": PerWindow.of(*_scored(logprobs, truth), rows, len(windows))}
    for context_model in fitted:
        correct, bits = scorer(context_model, windows, rows, cols, vocab.k)
        per_window[context_model.spec.name] = PerWindow.of(correct, bits, rows, len(windows))
    return summarise(per_window, vocab.k, n_resamples, seed)


def _nucleotide_baseline(fitted: baselines.ContextModel, windows, rows, cols, k: int):
    probs = baselines.predict(fitted, windows, rows, cols)
    return baselines.score(probs, windows[rows, cols])


def _kmer_chain_baseline(fitted: baselines.ContextModel, windows, rows, cols, k: int, chunk: int = 512):
    """Joint probability of each masked k-mer under a left-context Markov chain; exact argmax over k-mers."""
    order = fitted.spec.left
    if (cols * k - order < 0).any():
        raise ValueError("a masked k-mer lacks the left context its Markov chain needs; raise the margin")
    log_probs = np.log(fitted.probs)  # (4**order, 4)
    correct, bits = [], []
    for start in range(0, len(rows), chunk):
        r, c = rows[start : start + chunk], cols[start : start + chunk]
        left = windows[r[:, None], c[:, None] * k - order + np.arange(order)]
        truth = kmer_index(windows[r[:, None], c[:, None] * k + np.arange(k)], k)[:, 0]
        scores = _chain_logprob(log_probs, left, k)  # (n, 4**k)
        correct.append(scores.argmax(axis=1) == truth)
        bits.append(-scores[np.arange(len(r)), truth] / math.log(2))
    return np.concatenate(correct), np.concatenate(bits)


def _chain_logprob(log_probs: np.ndarray, left: np.ndarray, k: int) -> np.ndarray:
    """(n, 4**k) log p(k-mer | left context) of every k-mer under a Markov chain, by extending prefixes.

    log_probs: (4**order, 4); left: (n, order) true bases before the k-mer. Column i is the k-mer whose
    base-4 number is i (first base most significant), as in :func:`kmer_index`.
    """
    n, order = left.shape
    digits = 4 ** np.arange(order - 1, -1, -1)  # context_index: the nearest left base is the lowest digit
    total = np.zeros((n, 1))
    history = left[:, None, :].astype(np.int64)  # (n, n_prefixes, order): the last `order` bases of each prefix
    for _ in range(k):
        n_prefixes = total.shape[1]
        step = log_probs[history @ digits]  # (n, n_prefixes, 4)
        total = (total[:, :, None] + step).reshape(n, n_prefixes * 4)
        following = np.broadcast_to(np.arange(4)[None, None, :, None], (n, n_prefixes, 4, 1))
        kept = np.broadcast_to(history[:, :, None, 1:], (n, n_prefixes, 4, max(order - 1, 0)))
        history = np.concatenate([kept, following], axis=3)[..., -order:] if order else history
        history = history.reshape(n, n_prefixes * 4, order)
    return total


def fitted_baselines(recipe: Recipe) -> list[baselines.ContextModel]:
    """Baselines fitted on the train region, both strands; counts cached under cache_dir()/training/."""
    end = train_end(recipe)
    path = cache_dir() / "training" / f"baselines-{recipe.species}-{recipe.chrom}-{end}.npz"
    if path.is_file():
        saved = np.load(path)
        return [baselines.ContextModel(spec, saved[spec.name], baselines.DEFAULT_PSEUDOCOUNT) for spec in baselines.BASELINES]
    codes = chromosome_codes(recipe.species, recipe.chrom)[:end]
    models = baselines.fit_baselines(baselines.both_strands(codes))
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **{m.spec.name: m.counts for m in models})
    return models


def summarise(per_window: dict[str, PerWindow], k: int, n_resamples: int, seed: int) -> dict:
    """Accuracy and bits (per token and per nucleotide) with bootstrap intervals over windows.

    Also the model's accuracy minus the best baseline's and its loss minus the lowest baseline loss, the best
    re-selected in every resample (paired: the same windows for all predictors).
    """

    names = list(per_window)
    correct = np.stack([per_window[n].correct for n in names])  # (n_predictors, n_windows)
    bits = np.stack([per_window[n].bits for n in names])
    count = per_window["model"].count

    def statistic(weights):
        w = np.ones((1, len(count))) if weights is None else weights
        n = w @ count  # (B,)
        accuracy = (w @ correct.T) / n[:, None]  # (B, n_predictors)
        loss = (w @ bits.T) / n[:, None]
        margin = accuracy[:, :1] - accuracy[:, 1:].max(axis=1, keepdims=True)
        loss_margin = loss[:, :1] - loss[:, 1:].min(axis=1, keepdims=True)
        return np.concatenate([accuracy, loss, margin, loss_margin], axis=1)

    interval = bootstrap(statistic, len(count), n_resamples=n_resamples, seed=seed)
    p = len(names)
    table = {
        name: {
            "accuracy": _triple(interval, i),
            "bits_per_token": _triple(interval, p + i),
            "bits_per_nucleotide": [round(v / k, 5) for v in _triple(interval, p + i)],
        }
        for i, name in enumerate(names)
    }
    best = max(names[1:], key=lambda name: table[name]["accuracy"][0])
    return {
        "predictors": table,
        "best_baseline": best,
        "accuracy_minus_best_baseline": _triple(interval, 2 * p),
        "best_baseline_by_loss": min(names[1:], key=lambda name: table[name]["bits_per_token"][0]),
        "bits_minus_best_baseline": _triple(interval, 2 * p + 1),
        "n_windows": int(len(count)),
        "n_tokens": int(count.sum()),
        "ci_level": interval.level,
    }


def _triple(interval, i: int) -> list[float]:
    return [round(float(interval.estimate[i]), 5), round(float(interval.low[i]), 5), round(float(interval.high[i]), 5)]


def span_masked_score(model, recipe: Recipe, vocab: Vocabulary, settings: EvalSettings) -> dict:
    """The model under training-like span masking (15%, all [MASK]); the baselines' true context differs."""
    windows = heldout_windows(recipe, settings.span_windows, settings.n_tok, purpose=EVAL_PURPOSE + 2)
    rng = step_rng(recipe, 0, EVAL_PURPOSE + 2)
    mask = span_mask(rng, len(windows), settings.n_tok, recipe.mask_rate, recipe.mean_span, recipe.max_span)
    correct, bits = _scored(*masked_logprobs(model, vocab, windows, mask))
    return {"accuracy": round(float(correct.mean()), 5), "bits_per_token": round(float(bits.mean()), 5),
            "n_tokens": int(mask.sum()), "n_windows": len(windows)}


# ---------------------------------------------------------------------------------------------
# Command line


def add_command(subparsers) -> None:
    """`seqclaims train-organism`: train an embedded organism model, evaluate it, write its card."""
    command = subparsers.add_parser(
        "train-organism", help="train the embedded organism model (CPU) and write its model card"
    )
    command.add_argument("--tokenization", choices=sorted(DEFAULT_RECIPES), default="single")
    command.add_argument("--steps", type=int, default=None, help="length of the schedule (default: the recipe's)")
    command.add_argument("--minutes", type=float, default=None, help="stop when the run's wall time reaches this")
    command.add_argument("--seed", type=int, default=None)
    command.add_argument("--out", type=Path, default=None, help="model folder (default: fixtures/models/<name>)")
    command.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    command.add_argument("--fresh", action="store_true", help="ignore a checkpoint of the same recipe")
    command.add_argument("--notes", type=Path, default=None, help="Markdown file appended to the card (what was tried)")
    command.add_argument("--evaluate-only", action="store_true",
                         help="evaluate the model already in --out again and rewrite its card (no training)")
    command.add_argument("--keep-checkpoints", default=",".join(map(str, KEPT_STEPS)),
                         help="steps whose model is kept in <out>/checkpoints/step<N>, the embedded model "
                              "<name>@step<N> (default %(default)s; 0 is the initialisation; '' keeps none)")
    command.add_argument("--stop-at", type=int, default=None,
                         help="stop after this many steps of the schedule and write only the kept checkpoints "
                              "(to add checkpoints to a model trained before, with --fresh)")
    command.set_defaults(run=run_train_organism)


def parse_steps(text: str) -> tuple[int, ...]:
    try:
        steps = tuple(sorted({int(part) for part in text.split(",") if part.strip()}))
    except ValueError:
        raise InputError(f"--keep-checkpoints {text!r} is not a comma-separated list of steps; e.g. 0,200") from None
    if any(step < 0 for step in steps):
        raise InputError(f"--keep-checkpoints {text!r}: steps count from 0")
    return steps


def run_train_organism(args: argparse.Namespace) -> int:
    torch.set_num_threads(args.threads)
    recipe = recipe_for(args.tokenization, steps=args.steps, seed=args.seed)
    folder = args.out or fixtures_dir() / "models" / recipe.name
    notes = args.notes.read_text() if args.notes else ""
    log = lambda line: print(line, flush=True)  # noqa: E731
    if args.evaluate_only:
        evaluation = reevaluate(folder, notes if args.notes else None, log=log)
        _report(folder, evaluation, log)
        return 0
    keep_steps = parse_steps(args.keep_checkpoints)
    if args.stop_at is not None:
        train(recipe, max_steps=args.stop_at, resume=not args.fresh, keep=checkpoint_keeper(folder, recipe, log),
              keep_steps=keep_steps, log=log)
        return 0
    evaluation = train_and_describe(recipe, folder, minutes=args.minutes, resume=not args.fresh,
                                    threads=args.threads, notes=notes, keep_steps=keep_steps, log=log)
    _report(folder, evaluation, log)
    return 0


def _report(folder: Path, evaluation: dict, log: Callable[[str], None]) -> None:
    model_row = evaluation["predictors"]["model"]
    log(f"wrote {folder}: held-out accuracy {percent_interval(model_row['accuracy'])}, best baseline "
        f"{evaluation['best_baseline']} {percent_interval(evaluation['predictors'][evaluation['best_baseline']]['accuracy'])}")


def reevaluate(
    folder: Path, notes: str | None = None, settings: EvalSettings | None = None, log: Callable[[str], None] = print
) -> dict:
    """Evaluate a trained model folder again with the current evaluation code and rewrite its card."""
    from transformers import EsmForMaskedLM

    folder = Path(folder)
    card_file = folder / "card.json"
    if not card_file.is_file():
        raise InputError(f"{folder} has no card.json; train the model with `seqclaims train-organism` first")
    card = json.loads(card_file.read_text())
    model = EsmForMaskedLM.from_pretrained(str(folder), local_files_only=True, dtype=torch.float32).eval()
    card["evaluation"] = evaluate(model, Recipe(**card["recipe"]), settings, log=log)
    if notes is not None:
        card["notes"] = notes
    render_card(folder, card)
    return card["evaluation"]


def train_and_describe(
    recipe: Recipe,
    folder: Path,
    *,
    minutes: float | None = None,
    resume: bool = True,
    threads: int = 2,
    notes: str = "",
    settings: EvalSettings | None = None,
    keep_steps: Sequence[int] = (),
    log: Callable[[str], None] = print,
) -> dict:
    """Train (or resume) the recipe, save the model to `folder` (and the models after `keep_steps` steps
    to its checkpoints/), evaluate it and write its card."""
    model, tokenizer, state = train(recipe, minutes=minutes, resume=resume, keep=checkpoint_keeper(folder, recipe, log),
                                    keep_steps=keep_steps, log=log)
    save_model(model, tokenizer, folder)
    evaluation = evaluate(model, recipe, settings, log=log)
    write_card(folder, recipe, state, evaluation, threads=threads, notes=notes)
    return evaluation


def write_card(folder: Path, recipe: Recipe, state: TrainState, evaluation: dict, *, threads: int, notes: str = "",
               kind: str = "dna") -> None:
    """card.json, curve.json, curve.png, sha256sums.txt and README.md (the model card) in `folder`."""
    import transformers

    folder = Path(folder)
    (folder / "curve.json").write_text(json.dumps({"train": state.curve, "heldout": state.heldout_curve}, indent=1))
    card = {
        "name": recipe.name,
        **({"kind": kind} if kind != "dna" else {}),
        "recipe": recipe.model_dump(mode="json"),
        "recipe_sha256": recipe.digest(),
        "training": {
            "steps": state.step,
            "schedule_steps": recipe.steps,
            "tokens_seen": state.tokens_seen,
            "nucleotides_seen": state.tokens_seen * recipe.k,
            "wall_time_s": round(state.elapsed_s, 1),
            "threads": threads,
            "device": "cpu",
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "curve": "curve.json",
            "reproducibility_tolerance_nats": REPRODUCIBILITY_TOLERANCE,
        },
        "evaluation": evaluation,
        "notes": notes,
    }
    render_card(folder, card)
