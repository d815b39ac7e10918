"""OV circuits of attention heads: the matrix, its spectrum above a floor, alignment with directions.

OV circuits (`ov_matrix`, `ov_spectrum`): for head h of a layer, in residual coordinates and row-vector
convention (x -> x M), M = W_V[h] W_O[h] with W_V[h] (d_model, d_head) the value projection's rows of
head h (transposed) and W_O[h] (d_head, d_model) the output projection's columns of head h (transposed);
the pre-attention LayerNorm's scale is folded in where the block has one. M = U S V^T: the columns of U
are what the head reads, those of V what it writes. Only singular vectors whose singular value is at
least ``floor`` times the largest count: the rest span directions the circuit maps to (numerically)
nothing, and a cosine with them is meaningless.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from seqclaims.errors import InputError
from seqclaims.inputs.models import require_part
from seqclaims.lazy import lazy_import

torch = lazy_import("torch")

DEFAULT_FLOOR = 1e-3



def ov_matrix(model, layer: int, head: int, *, fold_layernorm: bool = True) -> np.ndarray:
    """(d_model, d_model) float64 OV circuit of `head` in row-vector convention: x -> x M."""

    require_part(model, "attn", "the OV circuit")
    if not (0 <= layer < model.n_layers and 0 <= head < model.n_heads):
        raise InputError(f"params: layer {layer} head {head} is not a head of this model "
                         f"({model.n_layers} layers x {model.n_heads} heads)")
    rows = slice(head * model.d_head, (head + 1) * model.d_head)
    value = _value_weight(model, layer)[rows].double()  # (d_head, d_model)
    output = model.block_module(layer, model.module_map.attn_out_proj).weight[:, rows].double()  # (d_model, d_head)
    circuit = value.T @ output.T
    scale = _pre_attention_layernorm_scale(model, layer) if fold_layernorm else None
    if scale is not None:
        circuit = scale[:, None] * circuit
    return circuit.detach().cpu().numpy()


def _value_weight(model, layer: int) -> torch.Tensor:
    """(d_model, d_model) value projection weight (out, in) of a block: BERT/RoBERTa/ESM `attention.self.value`,
    or the value third of MosaicBERT's fused `attention.self.Wqkv`."""
    block = model.module(f"{model.module_map.layers}.{layer}")
    for path, part in (("attention.self.value", None), ("attention.self.Wqkv", 2)):
        try:
            module = block.get_submodule(path)
        except AttributeError:
            continue
        weight = module.weight
        return weight if part is None else weight[part * model.d_model: (part + 1) * model.d_model]
    raise InputError(f"model {model.ref.describe()} ({model.architecture}) has no value projection this tool can "
                     "find (attention.self.value or attention.self.Wqkv); OV circuits are not available for it")


def _pre_attention_layernorm_scale(model, layer: int) -> torch.Tensor | None:
    """(d_model,) scale of the LayerNorm the attention reads through (pre-LayerNorm blocks, e.g. ESM), else None."""
    try:
        norm = model.module(f"{model.module_map.layers}.{layer}").get_submodule("attention.LayerNorm")
    except AttributeError:
        return None
    return norm.weight.detach().double() if getattr(norm, "weight", None) is not None else None


@dataclass(frozen=True)
class Spectrum:
    """SVD of an OV circuit M = U S V^T. read (d, d): columns of U; write (d, d): columns of V; sigma (d,)
    descending; kept: how many singular values are at least floor * sigma[0]."""

    read: np.ndarray
    write: np.ndarray
    sigma: np.ndarray
    floor: float
    kept: int

    @property
    def spectral_norm(self) -> float:
        return float(self.sigma[0])


def ov_spectrum(circuit: np.ndarray, floor: float = DEFAULT_FLOOR) -> Spectrum:
    u, sigma, vt = np.linalg.svd(np.asarray(circuit, dtype=np.float64))
    kept = int((sigma >= floor * sigma[0]).sum()) if sigma[0] > 0 else 0
    return Spectrum(u, vt.T, sigma, float(floor), kept)


def max_abs_cosine(directions: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """(m,) max over the columns of vectors (d, r) of |cos| with each row of directions (m, d); NaN if r = 0."""
    directions = np.atleast_2d(directions)
    if vectors.shape[1] == 0:
        return np.full(len(directions), np.nan)
    unit = directions / np.linalg.norm(directions, axis=1, keepdims=True)
    return np.abs(unit @ (vectors / np.linalg.norm(vectors, axis=0, keepdims=True))).max(axis=1)


def alignment(spectrum: Spectrum, directions: np.ndarray, *, floored: bool = True) -> dict[str, np.ndarray]:
    """read_cos, write_cos (m,): max |cos| of each direction with the read / write singular vectors above the
    floor (floored) or with all of them (MINTS's computation, floored=False)."""
    r = spectrum.kept if floored else spectrum.sigma.size
    return {"read_cos": max_abs_cosine(directions, spectrum.read[:, :r]),
            "write_cos": max_abs_cosine(directions, spectrum.write[:, :r])}


def self_gain(circuit: np.ndarray, directions: np.ndarray) -> np.ndarray:
    """(m,) d M d^T / |d|^2 for each row d of directions (m, d): how much of d the circuit writes back along d."""
    directions = np.atleast_2d(directions)
    return np.einsum("md,de,me->m", directions, circuit, directions) / (directions ** 2).sum(axis=1)


def random_unit_directions(n: int, d: int, rng: np.random.Generator) -> np.ndarray:
    """(n, d) directions uniform on the unit sphere."""
    x = rng.standard_normal((n, d))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def percentile_vs_random(observed: np.ndarray, random: np.ndarray) -> np.ndarray:
    """(m,) percentage of `random` (N,) values strictly below each observed value (ties count half)."""
    observed = np.atleast_1d(np.asarray(observed, dtype=np.float64))
    ordered = np.sort(random)
    below = np.searchsorted(ordered, observed, side="left")
    at_most = np.searchsorted(ordered, observed, side="right")
    return np.where(np.isnan(observed), np.nan, 100.0 * (below + at_most) / 2 / ordered.size)
