"""K-mer context baselines for masked-letter prediction (nucleotides, or amino acids).

A context model predicts the nucleotide at a position from a fixed neighbourhood of true
nucleotides: `left` bases before it and `right` bases after it. Counts come from training
sequences (both strands when the caller passes both); probabilities are additively smoothed.

- ``markov-k`` (k = 0..5): left context of k bases, i.e. a Markov chain of order k.
- ``symmetric-s`` (s = 1..4): s bases on each side.

Nucleotides are coded A=0, C=1, G=2, T=3; any other symbol is -1 and makes every context that
touches it (and every target at it) unusable. Context index of position p:
``sum_j code[p - j] * 4**(j - 1)`` over j = 1..left, then ``code[p + j] * 4**(left + j - 1)``
over j = 1..right. Over amino acids (`PROTEIN_BASELINES`, `size` 20) the codes are the
20 letters in `tokenizers.AMINO_ACIDS` order and 20 replaces 4.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

CODE_OF_BYTE = np.full(256, -1, dtype=np.int8)
for _code, _base in enumerate(b"ACGT"):
    CODE_OF_BYTE[_base] = _code
    CODE_OF_BYTE[_base + 32] = _code  # lower case (soft-masked) bases count as the same base

DEFAULT_PSEUDOCOUNT = 0.5


@dataclass(frozen=True)
class ContextSpec:
    """Which neighbours a context model reads: `left` bases before the target, `right` after."""

    name: str
    left: int
    right: int
    size: int = 4  # letters of the alphabet: 4 nucleotides, or 20 amino acids

    @property
    def n_contexts(self) -> int:
        return self.size ** (self.left + self.right)


BASELINES: tuple[ContextSpec, ...] = (
    *(ContextSpec(f"markov-{k}", k, 0) for k in range(6)),
    *(ContextSpec(f"symmetric-{s}", s, s) for s in range(1, 5)),
)
# over 20 amino acids the contexts grow 5x faster per letter: orders that stay well populated on a proteome
PROTEIN_BASELINES: tuple[ContextSpec, ...] = (
    *(ContextSpec(f"markov-{k}", k, 0, 20) for k in range(3)),
    *(ContextSpec(f"symmetric-{s}", s, s, 20) for s in range(1, 3)),
)


@dataclass(frozen=True)
class ContextModel:
    """A fitted context model: probs (n_contexts, size) of each letter given each context."""

    spec: ContextSpec
    counts: np.ndarray
    pseudocount: float

    @property
    def probs(self) -> np.ndarray:
        smoothed = self.counts + self.pseudocount
        return smoothed / smoothed.sum(axis=1, keepdims=True)


def nucleotide_codes(ascii_codes: np.ndarray) -> np.ndarray:
    """ASCII bytes (any shape, uint8) -> int8 codes A=0 C=1 G=2 T=3, -1 for anything else."""
    return CODE_OF_BYTE[np.asarray(ascii_codes, dtype=np.uint8)]


def reverse_complement_codes(codes: np.ndarray) -> np.ndarray:
    """Reverse complement of nucleotide codes along the last axis (-1 stays -1). `(..., L)` int8."""
    flipped = codes[..., ::-1]
    return np.where(flipped >= 0, 3 - flipped, -1).astype(np.int8)


def context_index(codes: np.ndarray, rows: np.ndarray, cols: np.ndarray, spec: ContextSpec) -> np.ndarray:
    """Context index of positions (rows[i], cols[i]) of `codes` (n_seq, L); -1 where unusable.

    A context is unusable when it runs past either end of its row or covers a non-ACGT symbol.
    rows, cols: (n,) int. Returns (n,) int64.
    """
    codes = np.atleast_2d(codes)
    rows, cols = np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64)
    length = codes.shape[1]
    offsets = [-j for j in range(1, spec.left + 1)] + [j for j in range(1, spec.right + 1)]
    index = np.zeros(len(cols), dtype=np.int64)
    usable = (cols - spec.left >= 0) & (cols + spec.right < length)
    for power, offset in enumerate(offsets):
        neighbour = codes[rows, np.clip(cols + offset, 0, length - 1)].astype(np.int64)
        usable &= neighbour >= 0
        index += neighbour * spec.size**power
    return np.where(usable, index, -1)


def count_contexts(sequences: Iterable[np.ndarray], spec: ContextSpec) -> np.ndarray:
    """(n_contexts, size) counts of each letter after each context over 1-D code arrays."""
    counts = np.zeros(spec.n_contexts * spec.size, dtype=np.int64)
    for codes in sequences:
        codes = np.asarray(codes, dtype=np.int8).reshape(1, -1)
        cols = np.arange(codes.shape[1])
        index = context_index(codes, np.zeros_like(cols), cols, spec)
        target = codes[0].astype(np.int64)
        keep = (index >= 0) & (target >= 0)
        counts += np.bincount(index[keep] * spec.size + target[keep], minlength=spec.n_contexts * spec.size)
    return counts.reshape(spec.n_contexts, spec.size)


def fit_context_model(
    sequences: Sequence[np.ndarray], spec: ContextSpec, pseudocount: float = DEFAULT_PSEUDOCOUNT
) -> ContextModel:
    return ContextModel(spec, count_contexts(sequences, spec), pseudocount)


def both_strands(codes: np.ndarray) -> list[np.ndarray]:
    """A 1-D code array and its reverse complement, for counting on both strands."""
    return [codes, reverse_complement_codes(codes)]


def fit_baselines(
    sequences: Sequence[np.ndarray], specs: Sequence[ContextSpec] = BASELINES, pseudocount: float = DEFAULT_PSEUDOCOUNT
) -> list[ContextModel]:
    return [fit_context_model(sequences, spec, pseudocount) for spec in specs]


def predict(model: ContextModel, codes: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """(n, size) letter probabilities at positions (rows, cols) of `codes` (n_seq, L).

    Positions whose context is unusable get the order-0 (context-free) distribution of the counts.
    """
    index = context_index(codes, rows, cols, model.spec)
    probs = model.probs
    marginal = (model.counts.sum(axis=0) + model.pseudocount) / (model.counts.sum() + model.spec.size * model.pseudocount)
    return np.where((index >= 0)[:, None], probs[np.maximum(index, 0)], marginal)


def score(probs: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-position correctness (argmax == truth) and log2 loss, each (n,), from probs (n, size)."""
    truth = np.asarray(truth, dtype=np.int64)
    correct = probs.argmax(axis=1) == truth
    bits = -np.log2(probs[np.arange(len(truth)), truth])
    return correct, bits
