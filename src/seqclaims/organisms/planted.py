"""The `planted` model: an ESM masked LM whose weights are set by construction.

Known mechanisms sit at known places, so that every check family can show that it finds a real
mechanism (and can pass) and that it does not find one where there is none (and can fail):

- a **motif head** (layer 0, head 2): every query has the same constant query vector and the key of
  token j reads the TBP (JASPAR MA0108.3, 7 bp) log-odds score of the window anchored at j, so the
  attention logit of key j is ``beta * score_j`` (bits, best of both strands) and attention is
  proportional to ``exp(beta * score_j)``;
- its OV circuit writes **motif present**: the value reads ``score_j - threshold`` and the output
  projection writes it to a dedicated residual direction, so every position receives the
  attention-weighted ("soft maximum") score of the sequence minus the threshold. The masked-LM head
  reads that direction: the logit of every token is ``score(token) * G(motif present)`` with G
  increasing, so the logit of the consensus token TATAAAA is the designated output;
- a **composition shortcut**: a residual direction holding the token's GC fraction minus 0.5, present
  from the embeddings on and never overwritten;
- an **ATG neuron** (layer 1, MLP channel 9): large (2.5 to 4) on tokens whose k-mer starts with ATG
  and about 0 (|x| < 1e-3) on every other token;
- a **composition head** (layer 0, head 3): the key of token j reads only the GC pair, so the attention
  logit of key j is ``composition_beta * (0.5 - GC fraction of the k-mer)``: it prefers AT-rich keys and
  knows no motif. TBP sites are AT-rich, so statistics that do not control composition call it a TBP
  detector; its value and output projections are random filler like every other head's;
- a **composition neuron** (layer 1, MLP channel 17): pre-activation ``composition_gain * (0.5 - GC
  fraction) + composition_bias``, so it fires on AT-rich k-mers and knows no motif (output: random filler).

Construction. Tokens are overlapping 7-mers (one per start position), so a token's identity fixes the
PSSM score of the window anchored at it. Every named feature f is stored as a pair of dimensions
(+f, -f), so every embedding has mean 0, and a norm-padding pair tops the norm up to sqrt(d_model):
the LayerNorm before layer 0's attention is then the identity, and later LayerNorms only rescale by a
factor near 1. Position embeddings are zero, so no mechanism depends on position. Every other head and
MLP channel has small random weights (seeded) that read and write only the *filler* subspace (the
dimensions after the named pairs, zero-mean), which carries random per-token features: they see
neither the motif, nor GC, nor ATG, and are the negative controls.

``build_planted(folder)`` writes the folder (weights, config, tokenizer, ``card.json``, ``README.md``,
``sha256``); ``python -m seqclaims.organisms.planted [--out DIR]`` rebuilds the embedded copy under
``fixtures/models/planted``. The same seed gives byte-identical weights.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from seqclaims.errors import InputError, Unavailable
from seqclaims.inputs.models import file_sha256, folder_hash, on_cpu, torch_dtype
from seqclaims.inputs.motifs import load_motif, scan, score_threshold
from seqclaims.inputs.tokenizers import build_nucleotide_tokenizer
from seqclaims.lazy import lazy_import
from seqclaims.paths import fixtures_dir

torch = lazy_import("torch")

MODEL_NAME = "planted"
WEIGHTS_FILE = "model.safetensors"


@dataclass(frozen=True)
class PlantedSpec:
    """Every constant of the construction; `card.json` records them all.

    Pair slots (``slots``): slot i occupies dimensions (2i, 2i + 1) holding (+value, -value); its unit
    direction is (e_2i - e_2i+1) / sqrt(2), so the projection of a residual on it is sqrt(2) * value.
    """

    motif_id: str = "MA0108.3"
    motif_release: str = "JASPAR2024"
    pseudocount: float = 0.8
    threshold_pvalue: float = 1e-3
    consensus: str = "TATAAAA"
    n_layers: int = 3
    d_model: int = 64
    n_heads: int = 4
    d_mlp: int = 128
    model_max_length: int = 1024
    motif_layer: int = 0
    motif_head: int = 2
    atg_layer: int = 1
    atg_neuron: int = 9
    control_head: tuple[int, int] = (0, 0)  # a named uninformative head of the motif head's layer
    composition_head: tuple[int, int] = (0, 3)  # reads only the GC pair: an AT-preferring head, no motif
    composition_beta: float = 14.0  # attention logit per unit of (0.5 - GC fraction): 2 nats per G/C base
    composition_neuron: tuple[int, int] = (1, 17)  # fires on AT-rich k-mers, no motif
    composition_gain: float = 8.0
    composition_bias: float = -1.0
    beta: float = 1.0  # attention logit per bit of motif score
    score_scale: float = 0.1  # pair value per bit of motif score
    motif_present_scale: float = 0.25  # pair value per bit of (soft maximum score - threshold)
    atg_gain: float = 8.0  # ATG neuron pre-activation = atg_gain * starts_with_atg + atg_bias
    atg_bias: float = -4.0
    atg_out_scale: float = 0.25  # pair value written per unit of ATG neuron activation
    head_offset: float = 2.5  # LM head: hidden unit = motif present (pair value) + head_offset
    head_reference: float = 3.0  # LM head: constant hidden unit the LayerNorm compares against
    head_gain: float = 2.0  # LM head: LayerNorm weight on the unit that the logits read
    filler_std: float = 0.4  # random per-token features in the filler subspace
    qk_std: float = 0.15  # random weights of every other head and MLP channel
    ov_std: float = 0.15
    mlp_in_std: float = 0.3
    mlp_out_std: float = 0.05
    slots: dict[str, int] = field(
        default_factory=lambda: {
            "score": 0,
            "gc": 1,
            "atg": 2,
            "motif_present": 3,
            "atg_out": 4,
            "norm_padding": 5,
        }
    )

    @property
    def k(self) -> int:
        return len(self.consensus)

    @property
    def d_head(self) -> int:
        return self.d_model // self.n_heads

    @property
    def filler_dims(self) -> np.ndarray:
        return np.arange(2 * len(self.slots), self.d_model)

    def pair(self, name: str) -> tuple[int, int]:
        slot = self.slots[name]
        return 2 * slot, 2 * slot + 1

    def direction(self, name: str) -> np.ndarray:
        """(d_model,) unit vector of a named feature."""
        plus, minus = self.pair(name)
        unit = np.zeros(self.d_model)
        unit[plus], unit[minus] = 1 / math.sqrt(2), -1 / math.sqrt(2)
        return unit


SPEC = PlantedSpec()


# ---------------------------------------------------------------------------------------------
# Token features


@dataclass(frozen=True)
class TokenFeatures:
    """Per-token features of the vocabulary (special tokens first, then the 4**k k-mers).

    tokens: (V,) token strings; score: (V,) motif score in bits of the k-mer (best of both strands;
    special tokens get the lowest k-mer score); gc: (V,) GC fraction (0.5 for special tokens, so their
    centred value is 0); atg: (V,) 1.0 where the k-mer starts with ATG; content: (V,) bool, k-mer tokens.
    """

    tokens: list[str]
    score: np.ndarray
    gc: np.ndarray
    atg: np.ndarray
    content: np.ndarray


def token_features(tokenizer, spec: PlantedSpec = SPEC) -> TokenFeatures:
    """Features of every token id of `tokenizer` (a k-mer tokenizer from `build_nucleotide_tokenizer`)."""

    vocab = tokenizer.get_vocab()
    tokens = [token for token, _ in sorted(vocab.items(), key=lambda item: item[1])]
    content = np.array([len(t) == spec.k and set(t) <= set("ACGT") for t in tokens])
    kmers = [t for t, is_kmer in zip(tokens, content) if is_kmer]
    motif = load_motif(spec.motif_id, spec.motif_release, spec.pseudocount)
    if motif.length != spec.k:
        raise InputError(f"motif {spec.motif_id} has length {motif.length}, not k = {spec.k}; set k to its length")
    # windows that start at multiples of k in the concatenation are exactly the k-mers
    kmer_scores = scan("".join(kmers), motif)[:: spec.k].astype(np.float64)
    score = np.full(len(tokens), kmer_scores.min())
    score[content] = kmer_scores
    gc = np.full(len(tokens), 0.5)
    gc[content] = [(t.count("G") + t.count("C")) / spec.k for t in kmers]
    atg = np.array([float(t.startswith("ATG")) for t in tokens])
    return TokenFeatures(tokens, score, gc, atg, content)


def motif_threshold(spec: PlantedSpec = SPEC) -> float:
    """The score (bits) at which the motif head's value crosses zero: P(window >= t) <= threshold_pvalue."""

    motif = load_motif(spec.motif_id, spec.motif_release, spec.pseudocount)
    return float(score_threshold(motif, pvalue=spec.threshold_pvalue))


# ---------------------------------------------------------------------------------------------
# Weights


def _set_pair(matrix: np.ndarray, spec: PlantedSpec, name: str, values) -> None:
    """Write (+values, -values) into a named pair of columns of `matrix` (..., d_model)."""
    plus, minus = spec.pair(name)
    matrix[..., plus] = values
    matrix[..., minus] = -np.asarray(values)


def _zero_mean_over(rows: np.ndarray, dims: np.ndarray, axis: int) -> np.ndarray:
    """Subtract, along `axis`, the mean over the filler `dims` (so writes keep the residual zero-mean)."""
    picked = np.take(rows, dims, axis=axis)
    return picked - picked.mean(axis=axis, keepdims=True)


def embedding_matrix(features: TokenFeatures, rng: np.random.Generator, spec: PlantedSpec = SPEC) -> np.ndarray:
    """(V, d_model) token embeddings: named pairs + random filler + norm padding; [PAD] is zero.

    Every non-padding row has mean 0 and norm sqrt(d_model), so LayerNorm (weight 1, bias 0) leaves it
    unchanged.
    """
    n_tokens, d = len(features.tokens), spec.d_model
    embed = np.zeros((n_tokens, d))
    filler = rng.normal(0.0, spec.filler_std, (n_tokens, spec.filler_dims.size))
    embed[:, spec.filler_dims] = filler - filler.mean(axis=1, keepdims=True)
    _set_pair(embed, spec, "score", spec.score_scale * features.score)
    _set_pair(embed, spec, "gc", features.gc - 0.5)
    _set_pair(embed, spec, "atg", features.atg)
    room = d - (embed**2).sum(axis=1)
    if room.min() < 0:
        raise ValueError("named features exceed the embedding norm budget; lower the feature scales")
    _set_pair(embed, spec, "norm_padding", np.sqrt(room / 2))
    embed[features.tokens.index("[PAD]")] = 0.0
    return embed


def _filler_reader(rng: np.random.Generator, n_out: int, std: float, spec: PlantedSpec) -> np.ndarray:
    """(n_out, d_model) random weights that read the filler dimensions only."""
    weight = np.zeros((n_out, spec.d_model))
    weight[:, spec.filler_dims] = rng.normal(0.0, std, (n_out, spec.filler_dims.size))
    return weight


def _filler_writer(rng: np.random.Generator, n_in: int, std: float, spec: PlantedSpec) -> np.ndarray:
    """(d_model, n_in) random weights that write zero-mean vectors into the filler dimensions only."""
    weight = np.zeros((spec.d_model, n_in))
    raw = rng.normal(0.0, std, (spec.filler_dims.size, n_in))
    weight[spec.filler_dims] = raw - raw.mean(axis=0, keepdims=True)
    return weight


def _head_rows(spec: PlantedSpec, head: int) -> slice:
    return slice(head * spec.d_head, (head + 1) * spec.d_head)


def attention_weights(layer: int, threshold: float, rng: np.random.Generator, spec: PlantedSpec = SPEC) -> dict:
    """Q, K, V (out, in) and output projection (d_model, d_model) weights and biases of one layer.

    Random filler heads everywhere; in the motif layer, the motif head replaces its head's rows:
    query = constant (bias) q0 on head dimension 0, key dimension 0 = score_scale * score, value
    dimension 0 = score_scale * (score - threshold), output column 0 -> motif_present pair. The ESM
    attention scales queries by d_head**-0.5, so q0 = beta * sqrt(d_head) / score_scale gives
    logit = beta * score.
    """
    d = spec.d_model
    weights = {name: _filler_reader(rng, d, spec.qk_std if name != "value" else spec.ov_std, spec)
               for name in ("query", "key", "value")}
    biases = {name: np.zeros(d) for name in ("query", "key", "value")}
    output = _filler_writer(rng, d, spec.ov_std, spec)
    if layer == spec.motif_layer:
        rows = _head_rows(spec, spec.motif_head)
        first = rows.start
        for name in ("query", "key", "value"):
            weights[name][rows] = 0.0
        reads_score = np.zeros(d)
        _set_pair(reads_score, spec, "score", 0.5)  # (x_plus - x_minus) / 2 = the pair's value
        weights["key"][first] = reads_score
        weights["value"][first] = reads_score
        biases["query"][first] = spec.beta * math.sqrt(spec.d_head) / spec.score_scale
        biases["value"][first] = -spec.score_scale * threshold
        output[:, rows] = 0.0
        _set_pair(output[:, first], spec, "motif_present", spec.motif_present_scale / spec.score_scale)
    if layer == spec.composition_head[0]:
        _plant_composition_head(weights, biases, spec)
    return {"weights": weights, "biases": biases, "output": output}


def _plant_composition_head(weights: dict, biases: dict, spec: PlantedSpec) -> None:
    """Query = constant, key dimension 0 = the GC pair's value (GC - 0.5): logit = composition_beta * (0.5 - GC).
    Only the query and key rows change (after every random draw), so every other weight is as before."""
    rows = _head_rows(spec, spec.composition_head[1])
    for name in ("query", "key"):
        weights[name][rows] = 0.0
    reads_gc = np.zeros(spec.d_model)
    _set_pair(reads_gc, spec, "gc", 0.5)
    weights["key"][rows.start] = reads_gc
    biases["query"][rows.start] = -spec.composition_beta * math.sqrt(spec.d_head)


def mlp_weights(layer: int, rng: np.random.Generator, spec: PlantedSpec = SPEC) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(d_mlp, d_model) input weights, (d_mlp,) biases, (d_model, d_mlp) output weights of one MLP.

    In the ATG layer, channel `atg_neuron` reads the ATG pair (pre-activation atg_gain * atg + atg_bias
    when the LayerNorm scale is 1) and writes the atg_out pair.
    """
    w_in = _filler_reader(rng, spec.d_mlp, spec.mlp_in_std, spec)
    b_in = np.zeros(spec.d_mlp)
    w_out = _filler_writer(rng, spec.d_mlp, spec.mlp_out_std, spec)
    if layer == spec.atg_layer:
        n = spec.atg_neuron
        w_in[n] = 0.0
        _set_pair(w_in[n], spec, "atg", spec.atg_gain / 2)
        b_in[n] = spec.atg_bias
        w_out[:, n] = 0.0
        _set_pair(w_out[:, n], spec, "atg_out", spec.atg_out_scale)
    if layer == spec.composition_neuron[0]:
        n = spec.composition_neuron[1]
        w_in[n] = 0.0
        _set_pair(w_in[n], spec, "gc", -spec.composition_gain / 2)
        b_in[n] = spec.composition_bias
    return w_in, b_in, w_out


def lm_head_weights(spec: PlantedSpec = SPEC) -> dict[str, np.ndarray]:
    """The masked-LM head (dense -> gelu -> LayerNorm -> tied decoder + bias), built to read motif present.

    Hidden unit u (the score pair's + dimension) = motif present pair value + head_offset; hidden unit r
    (the score pair's - dimension) = head_reference, a constant; all other units are 0. The LayerNorm
    then gives u a value that increases with u / r, and only u has a non-zero LayerNorm weight, so with
    the decoder tied to the embeddings, logit(token) = score_scale * score(token) * head_gain * n(u)
    (+ bias 0): the consensus token's logit increases with motif present.
    """
    d = spec.d_model
    u, r = spec.pair("score")
    mp_plus, mp_minus = spec.pair("motif_present")
    dense = np.zeros((d, d))
    dense[u, mp_plus], dense[u, mp_minus] = 0.5, -0.5
    dense_bias = np.zeros(d)
    dense_bias[u], dense_bias[r] = spec.head_offset, spec.head_reference
    norm_weight = np.zeros(d)
    norm_weight[u] = spec.head_gain
    return {
        "lm_head.dense.weight": dense,
        "lm_head.dense.bias": dense_bias,
        "lm_head.layer_norm.weight": norm_weight,
        "lm_head.layer_norm.bias": np.zeros(d),
    }


def planted_state(tokenizer, seed: int = 0, spec: PlantedSpec = SPEC) -> tuple[dict[str, np.ndarray], TokenFeatures, float]:
    """Every designed or seeded parameter by name (numpy arrays), the token features and the threshold.

    Parameters not named here (position embeddings, LM bias, contact head) are zero; LayerNorm weights 1.
    The random draws happen in a fixed order, so a seed fixes every array.
    """
    rng = np.random.default_rng(seed)
    features = token_features(tokenizer, spec)
    threshold = motif_threshold(spec)
    state = {"esm.embeddings.word_embeddings.weight": embedding_matrix(features, rng, spec)}
    for layer in range(spec.n_layers):
        prefix = f"esm.encoder.layer.{layer}."
        attention = attention_weights(layer, threshold, rng, spec)
        for name in ("query", "key", "value"):
            state[f"{prefix}attention.self.{name}.weight"] = attention["weights"][name]
            state[f"{prefix}attention.self.{name}.bias"] = attention["biases"][name]
        state[f"{prefix}attention.output.dense.weight"] = attention["output"]
        w_in, b_in, w_out = mlp_weights(layer, rng, spec)
        state[f"{prefix}intermediate.dense.weight"] = w_in
        state[f"{prefix}intermediate.dense.bias"] = b_in
        state[f"{prefix}output.dense.weight"] = w_out
    state.update(lm_head_weights(spec))
    return state, features, threshold


# ---------------------------------------------------------------------------------------------
# Building the folder


def planted_tokenizer(spec: PlantedSpec = SPEC):
    return build_nucleotide_tokenizer("kmer_overlapping", spec.k, model_max_length=spec.model_max_length)


def planted_config(tokenizer, spec: PlantedSpec = SPEC):
    from transformers import EsmConfig

    return EsmConfig(
        vocab_size=len(tokenizer),
        hidden_size=spec.d_model,
        num_hidden_layers=spec.n_layers,
        num_attention_heads=spec.n_heads,
        intermediate_size=spec.d_mlp,
        # absolute positions are numbered from pad_token_id + 1
        max_position_embeddings=spec.model_max_length + tokenizer.pad_token_id + 1,
        pad_token_id=tokenizer.pad_token_id,
        mask_token_id=tokenizer.mask_token_id,
        bos_token_id=tokenizer.cls_token_id,
        eos_token_id=tokenizer.sep_token_id,
        position_embedding_type="absolute",
        token_dropout=False,
        emb_layer_norm_before=False,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        layer_norm_eps=1e-12,
        tie_word_embeddings=True,
    )


def _assemble(config, state: dict[str, np.ndarray]):
    """An EsmForMaskedLM holding `state`; every other parameter zero, every LayerNorm weight one."""
    from transformers import EsmForMaskedLM

    torch.manual_seed(0)
    model = EsmForMaskedLM(config).eval()
    unknown = set(state) - set(dict(model.named_parameters()))
    if unknown:
        raise KeyError(f"planted parameters the architecture lacks: {sorted(unknown)}")
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name in state:
                value = torch.from_numpy(np.ascontiguousarray(state[name], dtype=np.float32))
            elif name.endswith("LayerNorm.weight") or name.endswith("layer_norm_after.weight"):
                value = torch.ones_like(parameter)
            else:
                value = torch.zeros_like(parameter)
            if value.shape != parameter.shape:
                raise ValueError(f"{name}: planted shape {tuple(value.shape)} != {tuple(parameter.shape)}")
            parameter.copy_(value)
    return model


def build_planted(folder: Path | str, *, seed: int = 0, spec: PlantedSpec = SPEC) -> dict:
    """Write the planted model to `folder` (created if needed) and return its card.

    Files: model.safetensors, config.json, tokenizer files, card.json (every mechanism, its place and
    the statistic each check family should measure on it), README.md (the same, for people), sha256
    (``sha256sum`` format, of the weights). The same seed gives byte-identical weights.
    """

    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise InputError(f"{folder} is a file, not a folder; give `--out` a folder to write the planted model to")
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = planted_tokenizer(spec)
    state, features, threshold = planted_state(tokenizer, seed, spec)
    model = _assemble(planted_config(tokenizer, spec), state)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    weights = folder / WEIGHTS_FILE
    card = planted_card_contents(spec, seed, tokenizer, features, threshold)
    card["weights_sha256"] = file_sha256(weights)
    card["folder_hash"] = folder_hash(folder)
    text = json.dumps(card, indent=2) + "\n"
    card = json.loads(text)  # the card as read back (tuples become lists)
    (folder / "card.json").write_text(text)
    (folder / "README.md").write_text(card_markdown(card))
    (folder / "sha256").write_text(f"{card['weights_sha256']}  {WEIGHTS_FILE}\n")
    return card


# ---------------------------------------------------------------------------------------------
# The card


def planted_card_contents(spec: PlantedSpec, seed: int, tokenizer, features: TokenFeatures, threshold: float) -> dict:
    """The machine-readable card: places, constants, directions and expected statistics."""
    vocab = tokenizer.get_vocab()
    layer, head = spec.motif_layer, spec.motif_head
    control_layer, control_head = spec.control_head
    consensus_id = vocab[spec.consensus]
    return {
        "name": MODEL_NAME,
        "architecture": "EsmForMaskedLM",
        "seed": seed,
        "dimensions": {
            "n_layers": spec.n_layers,
            "d_model": spec.d_model,
            "n_heads": spec.n_heads,
            "d_head": spec.d_head,
            "d_mlp": spec.d_mlp,
            "vocab_size": len(tokenizer),
            "max_tokens": spec.model_max_length,
        },
        "tokenization": {"kind": "kmer_overlapping", "k": spec.k, "tokens_per_sequence": "n - k + 1 plus [CLS] and [SEP]"},
        "positions": "absolute position embeddings, all zero: no mechanism depends on position",
        "motif": {
            "matrix_id": spec.motif_id,
            "name": "TBP",
            "release": spec.motif_release,
            "length": spec.k,
            "pseudocount": spec.pseudocount,
            "background": "uniform",
            "score": "log2-odds (bits), best of both strands (seqclaims.inputs.motifs.scan)",
            "alignment": "anchored (the window [i, i + k) of the token starting at base i)",
            "threshold_bits": round(threshold, 6),
            "threshold_pvalue": spec.threshold_pvalue,
            "consensus": spec.consensus,
            "max_score_bits": round(float(features.score.max()), 6),
            "special_token_score_bits": round(float(features.score.min()), 6),
        },
        "directions": {
            name: {
                "dims": list(spec.pair(name)),
                "unit_vector": f"(e_{spec.pair(name)[0]} - e_{spec.pair(name)[1]}) / sqrt(2)",
                "value": value,
            }
            for name, value in _direction_values(spec).items()
        },
        "filler_dims": [int(spec.filler_dims[0]), int(spec.filler_dims[-1]) + 1],
        "mechanisms": {
            "motif_head": {
                "layer": layer,
                "head": head,
                "hook": f"layer.{layer}.attn.pattern",
                "beta": spec.beta,
                "attention_logit": "beta * score (bits) of the window anchored at the key; the query is the same "
                "constant for every position, so every query row is the same softmax over keys",
                "key_score": "attention_received, log of the mean over queries, centred within each sequence",
                "value": f"score_scale * (score - threshold) on head dimension 0 (score_scale {spec.score_scale})",
            },
            "motif_present": {
                "written_by": {"layer": layer, "head": head},
                "direction": "motif_present",
                "value": f"{spec.motif_present_scale} * (sum_j attention_j * score_j - threshold): the soft maximum of "
                "the sequence's anchored scores minus the threshold; the same at every position",
                "readable_from": f"layer.{layer}.resid_post onwards (mean-pooled or per token)",
            },
            "composition": {
                "direction": "gc",
                "value": "GC fraction of the token's k-mer - 0.5 (0 for special tokens)",
                "readable_from": "embed onwards",
            },
            "atg_neuron": {
                "layer": spec.atg_layer,
                "neuron": spec.atg_neuron,
                "hook": f"layer.{spec.atg_layer}.mlp.post",
                "fires_on": "tokens whose k-mer starts with ATG",
                "pre_activation": f"{spec.atg_gain} * starts_with_atg {spec.atg_bias:+} (LayerNorm scale ~1)",
                "writes": "atg_out",
            },
            "output": {
                "designated": "masked-LM logit of the consensus token at every content position "
                "(reduce by the mean over content tokens)",
                "token": spec.consensus,
                "token_id": consensus_id,
                "logit": "score_scale * score(token) * head_gain * LayerNorm(motif present + head_offset vs "
                "head_reference): increases with motif present; every token's logit is proportional to its score",
                "also": "mean-pooled final-layer residual projected on the motif_present direction",
                "function": "seqclaims.organisms.planted.designated_output(model, final_resid)",
            },
            "composition_head": {
                "layer": spec.composition_head[0],
                "head": spec.composition_head[1],
                "hook": f"layer.{spec.composition_head[0]}.attn.pattern",
                "attention_logit": f"{spec.composition_beta} * (0.5 - GC fraction of the key's k-mer): prefers "
                "AT-rich keys, knows no motif",
                "fools": "qk_motif r and attention_enrichment rho matched on the token's GC in 5 bins (TBP sites "
                "are AT-rich); not r_partial_composition, r_minus_shuffled, rho matched on the window's GC, "
                "rho_over_shuffled",
            },
            "composition_neuron": {
                "layer": spec.composition_neuron[0],
                "neuron": spec.composition_neuron[1],
                "hook": f"layer.{spec.composition_neuron[0]}.mlp.post",
                "pre_activation": f"{spec.composition_gain} * (0.5 - GC fraction) {spec.composition_bias:+} "
                "(LayerNorm scale ~1)",
                "fools": "neuron auprc_over_chance for TBP sites; not auprc_over_composition",
            },
            "negative_controls": {
                "other_heads": "every head but the motif and composition heads reads and writes only the filler "
                "subspace",
                "other_neurons": "every MLP channel but the ATG and composition neurons reads and writes only the "
                "filler subspace",
                "control_head": {"layer": control_layer, "head": control_head},
            },
        },
        "expected": {
            "qk_motif": f"alignment anchored, key score log-mean attention received centred per sequence: r of "
            f"layer {layer} head {head} >= 0.9 (about 1.0), |r| < 0.2 for every other head",
            "attention_enrichment": f"rho of layer {layer} head {head} >= 2",
            "probe": f"motif-present label decoded from layer.{layer}.resid_post on and beating GC; "
            "a GC-only label decoded but auroc_minus_gc not above 0",
            "activation_patching": f"pm of layer {layer} head {head} about 1; pm of layer {control_layer} "
            f"head {control_head} about 0",
            "head_ablation": f"ablating layer {layer} head {head} moves the designated output more than "
            f"ablating layer {control_layer} head {control_head}",
            "ov_alignment": f"the top output singular vector of layer {layer} head {head}'s OV circuit is the "
            "motif_present direction (cosine with a motif-present probe direction high)",
            "neuron": f"layer {spec.atg_layer} neuron {spec.atg_neuron}: AUPRC >= 0.9 for 'token starts with ATG', "
            "above the composition detector; the composition neuron far above chance for TBP sites but not above "
            "the composition detector",
            "composition_controls": f"layer {spec.composition_head[0]} head {spec.composition_head[1]}: qk_motif r "
            "and rho (token GC) pass for TBP; r_partial_composition, r_minus_shuffled, rho (window GC) and "
            "rho_over_shuffled do not; the motif head passes all of them",
        },
        "constants": {key: value for key, value in asdict(spec).items() if key != "slots"},
    }


def _direction_values(spec: PlantedSpec) -> dict[str, str]:
    return {
        "score": f"{spec.score_scale} * motif score (bits) of the token's k-mer",
        "gc": "GC fraction of the k-mer - 0.5",
        "atg": "1 if the k-mer starts with ATG, else 0",
        "motif_present": "written by the motif head (0 in the embeddings)",
        "atg_out": "written by the ATG neuron (0 in the embeddings)",
        "norm_padding": "tops every embedding's norm up to sqrt(d_model)",
    }


def card_markdown(card: dict) -> str:
    """README.md of the folder: the card for people."""
    mech = card["mechanisms"]
    motif = card["motif"]
    dims = card["dimensions"]
    lines = [
        "# planted: a masked LM with mechanisms set by construction",
        "",
        f"{card['architecture']}, {dims['n_layers']} layers, d_model {dims['d_model']}, {dims['n_heads']} heads "
        f"(d_head {dims['d_head']}), d_mlp {dims['d_mlp']}, vocabulary {dims['vocab_size']}; overlapping "
        f"{card['tokenization']['k']}-mers (one token per start position). {card['positions'].capitalize()}. Built by "
        f"`python -m seqclaims.organisms.planted` with seed {card['seed']}; nothing in it is trained.",
        "",
        "## Mechanisms",
        "",
        f"- **Motif head**: layer {mech['motif_head']['layer']}, head {mech['motif_head']['head']}. "
        f"Attention logit = {mech['motif_head']['beta']} x score of {motif['matrix_id']} ({motif['name']}, "
        f"{motif['length']} bp, {motif['release']}, pseudocount {motif['pseudocount']}, uniform background) "
        f"in bits, best of both strands, of the window anchored at the key. Every query is the same constant, "
        f"so attention is proportional to exp(score). Special tokens score {motif['special_token_score_bits']} "
        "bits (the lowest k-mer).",
        f"- **Motif present**: the head's value is {card['constants']['score_scale']} x (score - "
        f"{motif['threshold_bits']}) (threshold: "
        f"p = {motif['threshold_pvalue']} per window); its output projection writes it to the `motif_present` "
        f"direction, so every position holds {mech['motif_present']['value']}.",
        f"- **Composition shortcut**: the `gc` direction holds {mech['composition']['value']}, from the "
        "embeddings on.",
        f"- **ATG neuron**: layer {mech['atg_neuron']['layer']}, MLP channel {mech['atg_neuron']['neuron']} "
        f"(`{mech['atg_neuron']['hook']}`): pre-activation {mech['atg_neuron']['pre_activation']}; 2.5 to 4 on "
        "tokens whose k-mer starts with ATG (later LayerNorms rescale slightly), |x| < 1e-3 elsewhere.",
        f"- **Composition head**: layer {mech['composition_head']['layer']}, head {mech['composition_head']['head']}. "
        f"Attention logit = {mech['composition_head']['attention_logit']}. Fools {mech['composition_head']['fools']}.",
        f"- **Composition neuron**: layer {mech['composition_neuron']['layer']}, MLP channel "
        f"{mech['composition_neuron']['neuron']} (`{mech['composition_neuron']['hook']}`): pre-activation "
        f"{mech['composition_neuron']['pre_activation']}: fires on AT-rich k-mers. Fools "
        f"{mech['composition_neuron']['fools']}.",
        f"- **Designated output**: the masked-LM logit of `{mech['output']['token']}` (id "
        f"{mech['output']['token_id']}) at content positions; {mech['output']['logit']}. Also: "
        f"{mech['output']['also']}.",
        f"- **Negative controls**: {mech['negative_controls']['other_heads']}; "
        f"{mech['negative_controls']['other_neurons']}. Named control head: layer "
        f"{mech['negative_controls']['control_head']['layer']}, head {mech['negative_controls']['control_head']['head']}.",
        "",
        "## Residual directions",
        "",
        "Each named feature is a pair of dimensions holding (+v, -v), so embeddings are zero-mean and "
        "LayerNorm acts on them linearly; every embedding has norm sqrt(d_model).",
        "",
        "| direction | dims | unit vector | value |",
        "|---|---|---|---|",
    ]
    for name, entry in card["directions"].items():
        lines.append(f"| `{name}` | {entry['dims'][0]}, {entry['dims'][1]} | {entry['unit_vector']} | {entry['value']} |")
    lines += [
        f"| filler | {card['filler_dims'][0]}-{card['filler_dims'][1] - 1} | | random per-token features; the "
        "only subspace other heads and channels read and write |",
        "",
        "## What each check family should measure",
        "",
    ]
    lines += [f"- **{family}**: {expected}" for family, expected in card["expected"].items()]
    lines += [
        "",
        "## Hashes",
        "",
        f"- `{WEIGHTS_FILE}` sha256: `{card['weights_sha256']}`",
        f"- folder hash (`seqclaims.inputs.models.folder_hash`): `{card['folder_hash']}`",
        "",
    ]
    return "\n".join(lines)


def load_card(folder: Path | str | None = None) -> dict:
    """The card of a planted model folder (default: the embedded one)."""

    folder = Path(folder) if folder is not None else fixtures_dir() / "models" / MODEL_NAME
    path = folder / "card.json"
    if not path.is_file():
        raise Unavailable(f"no planted model card at {path}; rebuild it with `python -m seqclaims.organisms.planted --out {folder}`")
    return json.loads(path.read_text())


def direction(card: dict, name: str) -> np.ndarray:
    """(d_model,) unit vector of a named residual direction of a planted model's card."""
    if name not in card["directions"]:
        raise InputError(f"the planted model has no direction {name!r}; use one of {', '.join(card['directions'])}")
    plus, minus = card["directions"][name]["dims"]
    unit = np.zeros(card["dimensions"]["d_model"])
    unit[plus], unit[minus] = 1 / math.sqrt(2), -1 / math.sqrt(2)
    return unit


def designated_output(model, final_resid, token: str | None = None):
    """(n_seq, n_tok) masked-LM logit of `token` (default: the card's consensus) from the last resid_post.

    final_resid: (n_seq, n_tok, d_model), hook ``layer.{n_layers - 1}.resid_post`` (before the encoder's
    final LayerNorm). Equals ``logits[..., token_id]`` of a full run, without computing the other
    vocabulary logits; model: a LoadedModel of a planted folder.
    """
    from transformers.models.esm.modeling_esm import gelu

    token = token or SPEC.consensus
    token_id = model.tokenizer.get_vocab().get(token)
    if token_id is None:
        raise InputError(f"token {token!r} is not in the vocabulary of {model.ref.describe()}; use a {SPEC.k}-mer of A, C, G, T")

    esm, head = model.model.esm, model.model.lm_head
    final_resid = final_resid.to(device=model.device, dtype=torch_dtype(model.dtype))
    with torch.inference_mode():
        hidden = head.layer_norm(gelu(head.dense(esm.encoder.emb_layer_norm_after(final_resid))))
        return on_cpu(hidden @ head.decoder.weight[token_id] + head.bias[token_id])


# ---------------------------------------------------------------------------------------------
# Command line


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m seqclaims.organisms.planted", description="Build the planted model folder.")
    parser.add_argument("--out", type=Path, default=None, help="folder to write (default: fixtures/models/planted)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    folder = args.out or fixtures_dir() / "models" / MODEL_NAME
    card = build_planted(folder, seed=args.seed)
    print(f"wrote {folder} (weights sha256 {card['weights_sha256']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
