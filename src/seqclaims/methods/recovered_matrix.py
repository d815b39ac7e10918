"""Recovered-matrix similarity: does a head's key score read the motif's matrix, or one base of it?

A head that prefers T keys correlates with the TATA box's score, and so does a TBP detector; what tells them
apart is the matrix each one reads. Regressing the key score on the bases of the motif window recovers it:
a single-base reader recovers one column, a true detector the whole matrix.

Definition (per head, on a set of sequences):
- Tokens: those the correlation pools (special tokens and tokens without a motif score left out) that have
  a whole motif window, the L-long window the alignment credits to the token: anchored at its first base
  (`anchored`), centred on it (`centred`, as `composition.window_spans` places it), or, for `overlap_max`,
  the window starting at its first base (where the windows the ideal detector reads begin; the max over
  overlapping windows has no single window).
- Design: per token the one-hot bases of its window, 4 x L columns (base b at window position l; a non-ACGT
  base is all zeros at its position). Key score x as pooled by the correlation (standardised).
- Both x and the design are centred within each sequence when the claim centres (else over all tokens).
- Recovered matrix: the ridge regression beta = (X'X / n + RIDGE I)^-1 X'x / n with RIDGE = 1e-3 (x has unit
  variance and a centred one-hot column variance at most 0.25: the penalty shrinks little and fixes the
  directions the design cannot see, the four bases of a position summing to 1), as a 4 x L matrix with each
  position's four coefficients centred.
- Reference: the claim's PSSM (log2-odds, rows A, C, G, T), each position centred over its four bases (a
  -inf entry, possible only with pseudocount 0, is taken as the matrix's smallest finite entry).
- Similarity: the weighted Pearson correlation over the 4 x L entries of recovered matrix and reference,
  every entry of position l weighted by its information content IC_l = sum_b p_bl log2(p_bl / q_b), where
  p_bl = q_b 2^pssm_bl are the matrix's probabilities (with its pseudocount) and q its background; the
  larger of the correlation with the PSSM and with its reverse complement (bases complemented, positions
  reversed), since the motif track scores both strands. In [-1, 1]; NaN when the key score does not vary.
  A reader of one base recovers one column (similarity about that column's share of the weighted matrix); the
  ideal detector recovers the whole matrix (below 1 only because the both-strand maximum is not additive).

Everything comes from per-sequence sums (`MatrixSums`), so a bootstrap resample or a split is a weighted sum
of them and the regression is redone in every resample.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from seqclaims.inputs.motifs import _reverse_complement_pssm, encode
from seqclaims.methods.attention import weighted_sums
from seqclaims.methods.composition import window_spans
from seqclaims.methods.weighted import pearson_weighted

RIDGE = 1e-3
N_BASES = 4


@dataclass(frozen=True)
class MatrixSums:
    """Per-sequence sums of the regression of K key scores on the D = 4 x L window one-hots.

    n: (n_seq,) tokens; design: (n_seq, D) sum of design rows; gram: (n_seq, D, D) sum of their outer
    products; key: (n_seq, K) sum of key scores; cross: (n_seq, K, D) sum of key score times design row.
    When centred within sequences, design and key are 0 and gram, cross are the centred sums."""

    n: np.ndarray
    design: np.ndarray
    gram: np.ndarray
    key: np.ndarray
    cross: np.ndarray

    @property
    def width(self) -> int:
        return self.design.shape[1] // N_BASES

    def take(self, rows: np.ndarray) -> "MatrixSums":
        return MatrixSums(self.n[rows], self.design[rows], self.gram[rows], self.key[rows], self.cross[rows])


def window_starts(offsets: np.ndarray, lengths: Sequence[int], width: int, alignment: str) -> np.ndarray:
    """(n_seq, n_tok) first base of each token's motif window (module docstring); -1 where there is none."""
    window = "anchored" if alignment == "overlap_max" else alignment
    return window_spans(offsets, lengths, width, window)[..., 0]


def matrix_sums(sequences: Sequence[str], starts: np.ndarray, x: np.ndarray, mask: np.ndarray, width: int,
                *, centre: bool) -> MatrixSums:
    """`MatrixSums` of key scores x (K, n_seq, n_tok) over the tokens of `mask` that have a window."""
    n_seq, k, d = len(sequences), x.shape[0], N_BASES * width
    n, design, gram = np.zeros(n_seq), np.zeros((n_seq, d)), np.zeros((n_seq, d, d))
    key, cross = np.zeros((n_seq, k)), np.zeros((n_seq, k, d))
    positions = np.arange(width)
    for i, sequence in enumerate(sequences):
        rows = np.flatnonzero(mask[i] & (starts[i] >= 0))
        if rows.size == 0:
            continue
        codes = encode(sequence).astype(np.int64)[starts[i, rows, None] + positions]  # (m, L)
        onehot = (codes[..., None] == np.arange(N_BASES)).reshape(rows.size, d).astype(np.float64)
        values = x[:, i, rows]  # (K, m)
        n[i], design[i], gram[i] = rows.size, onehot.sum(axis=0), onehot.T @ onehot
        key[i], cross[i] = values.sum(axis=1), values @ onehot
        if centre:
            gram[i] -= np.outer(design[i], design[i]) / rows.size
            cross[i] -= np.outer(key[i], design[i]) / rows.size
            design[i], key[i] = 0.0, 0.0
    return MatrixSums(n, design, gram, key, cross)


def recovered_matrices(sums: MatrixSums, counts: np.ndarray | None = None, ridge: float = RIDGE) -> np.ndarray:
    """(B, K, 4, L) recovered matrices (module docstring) from the sums weighted by (B, n_seq) counts
    (None: all sequences once, B = 1); NaN where no token is summed."""
    n = weighted_sums(sums.n, counts)  # (B,)
    design, gram = weighted_sums(sums.design, counts), weighted_sums(sums.gram, counts)
    key, cross = weighted_sums(sums.key, counts), weighted_sums(sums.cross, counts)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_design = design / n[:, None]
        covariance = gram / n[:, None, None] - mean_design[:, :, None] * mean_design[:, None, :]
        covariance_xd = cross / n[:, None, None] - (key / n[:, None])[..., None] * mean_design[:, None, :]
    d = covariance.shape[-1]
    system = np.nan_to_num(covariance) + ridge * np.eye(d)
    beta = np.linalg.solve(system[:, None], np.nan_to_num(covariance_xd)[..., None])[..., 0]  # (B, K, D)
    beta = beta.reshape(*beta.shape[:2], d // N_BASES, N_BASES)
    beta = beta - beta.mean(axis=-1, keepdims=True)
    beta[n <= 0] = np.nan
    return np.swapaxes(beta, -1, -2)


def information_content(motif) -> np.ndarray:
    """(L,) bits of each position: sum_b p_bl log2(p_bl / q_b), with p_bl = q_b 2^pssm_bl."""
    background = np.asarray(motif.background, dtype=np.float64)[:, None]
    pssm = finite_pssm(motif.pssm)
    probabilities = background * np.exp2(pssm)
    return np.maximum((probabilities * pssm).sum(axis=0), 0.0)


def finite_pssm(pssm: np.ndarray) -> np.ndarray:
    """The PSSM with -inf entries (pseudocount 0) set to its smallest finite entry."""
    pssm = np.asarray(pssm, dtype=np.float64)
    finite = np.isfinite(pssm)
    return np.where(finite, pssm, pssm[finite].min() if finite.any() else 0.0)


def similarity(recovered: np.ndarray, motif) -> tuple[np.ndarray, np.ndarray]:
    """(...) information-weighted Pearson correlation of (..., 4, L) recovered matrices with the centred
    PSSM or its reverse complement, whichever is larger, and (...) bool: True where the reverse is."""
    pssm = finite_pssm(motif.pssm)
    weights = np.broadcast_to(information_content(motif), pssm.shape).ravel()[None]
    shape = recovered.shape[:-2]
    flat = recovered.reshape(-1, pssm.size)
    defined = np.isfinite(flat).all(axis=1)
    by_strand = []
    for reference in (pssm, _reverse_complement_pssm(pssm)):
        centred = reference - reference.mean(axis=0, keepdims=True)
        r = np.full(flat.shape[0], np.nan)
        if defined.any():
            r[defined] = pearson_weighted(flat[defined], centred.ravel(), weights)[0]
        by_strand.append(r)
    forward, reverse = by_strand
    use_reverse = np.nan_to_num(reverse, nan=-np.inf) > np.nan_to_num(forward, nan=-np.inf)
    return np.where(use_reverse, reverse, forward).reshape(shape), use_reverse.reshape(shape)


def similarity_from_sums(sums: MatrixSums, motif, counts: np.ndarray | None = None) -> np.ndarray:
    """(B, K) matrix similarity of every head under (B, n_seq) counts (None: all sequences, B = 1)."""
    return similarity(recovered_matrices(sums, counts), motif)[0]
