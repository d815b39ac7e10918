"""Per-token key scores of every attention head, from one cached pass over the sequences.

Key scores. For every head of every layer and every key token j, one pass over the sequences stores
(``extract_key_scores``, content-addressed cache, shared by every claim on the same model and data):

- ``attention_received``: from the model's real attention probabilities P[i, j] (biases, positions
  and masking included): ``probability`` = mean over real queries i of P[i, j], and
  ``mean_log_probability`` = mean over real queries of log P[i, j] (floored at 1e-30), which equals
  the mean attention logit of key j up to a per-sequence constant.
- ``qk_weights``: MINTS's weight-only reconstruction. From the input of the layer's query and key
  projections (the hidden states after the block's own pre-attention LayerNorm, if any), logits
  ``L[i, j] = q_i . k_j / sqrt(d_head)`` with ``q = x W_Q (+ b_Q)``, ``k = x W_K (+ b_K)`` and no
  positional term (rotary, relative or ALiBi terms are left out); stored with and without the
  projection biases: ``logit`` = mean over real queries of L[i, j], ``probability`` = mean over real
  queries of softmax_j L[i, j].

Scales (``key_score_values``): ``probability``; ``log_probability`` = log of the mean probability;
``logit`` = ``mean_log_probability`` (attention_received) or the mean reconstructed logit
(qk_weights). Special tokens and padding are NaN.
"""


from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Sequence

import numpy as np

from seqclaims.code_keys import code_digest
from seqclaims.errors import InputError
from seqclaims.fsutil import file_lock
from seqclaims.inputs.cache import CacheEntry, attention_implementation, cache_key, forward_precision, sequences_hash
from seqclaims.inputs.models import iter_run, on_cpu, padded_tokens, require_part
from seqclaims.lazy import lazy_import

torch = lazy_import("torch")

KeyScore = Literal["attention_received", "qk_weights"]
Scale = Literal["probability", "log_probability", "logit"]
KEY_SCORES = ("attention_received", "qk_weights")
SCALES = ("probability", "log_probability", "logit")
PROBABILITY_FLOOR = 1e-30  # log of a probability that underflowed to 0 in float32
PATTERN_BYTES = 32 * 2**20  # attention patterns held per sub-batch, all layers together (cache-sized)
PASS_THREADS = 1  # torch threads of the key-score pass: on the shared 2-core machine one thread ran the
# organism's pass 4x faster than two (threads contend with pytest -n 2 workers and other processes)
CODE_VERSION = code_digest(__name__)


# ---------------------------------------------------------------------------------------------
# Key scores of every head: one cached pass


@dataclass(frozen=True)
class KeyScoreTable:
    """Per-token key-side scores of every head of every layer, from one pass over the sequences.

    values: name -> (n_seq, n_layers, n_heads, n_tok) float32 (names in the module docstring);
    offsets: (n_seq, n_tok, 2) int character spans; special: (n_seq, n_tok) bool, True for special
    tokens and padding; key_score: which pass made it; source: "computed" or "cache".
    """

    values: dict[str, np.ndarray]
    offsets: np.ndarray
    special: np.ndarray
    key_score: str
    source: str

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return next(iter(self.values.values())).shape


def extract_key_scores(model, sequences: Sequence[str], *, dataset_hash: str, key_score: KeyScore,
                       batch_size: int | None = None) -> KeyScoreTable:
    """Key scores of all heads of all layers on `sequences`, from the activation cache or one pass.

    model: a `models.LoadedModel`. The entry is keyed like every activation (model hash, dataset hash,
    sequences, tokenization, module map, attention implementation, library versions) plus this
    module's code version.
    """

    if key_score not in KEY_SCORES:
        raise InputError(f"unknown key score {key_score!r}; use one of {', '.join(KEY_SCORES)}")

    require_part(model, "attn", "attention key scores")
    scheme = model.tokenization
    options = {
        "sequences": sequences_hash(sequences),
        "tokenization": scheme.model_dump() if scheme else "folder",
        "module_map": model.module_map.model_dump(),
        "attn_implementation": attention_implementation(model),
        "derived": f"key_scores/{CODE_VERSION}",
        **forward_precision(model),
    }
    entry = CacheEntry(cache_key(model.model_hash, dataset_hash, [f"key_scores.{key_score}"], options))
    arrays, _ = entry.read()
    source = "cache"
    if arrays is None:
        with file_lock(entry.folder):
            arrays, _ = entry.read()
            if arrays is None:
                arrays = _compute_key_scores(model, sequences, key_score, batch_size)
                entry.write(arrays, {"model_hash": model.model_hash, "dataset_hash": dataset_hash,
                                     "key_score": key_score, **options})
                source = "computed"
    values = {name.split(".", 1)[1]: array for name, array in arrays.items() if name.startswith("scores.")}
    return KeyScoreTable(values, arrays["tokens.offsets"], arrays["tokens.special_mask"], key_score, source)


def _compute_key_scores(model, sequences: Sequence[str], key_score: str, batch_size: int | None) -> dict:
    batch = model.tokenize(list(sequences))
    n_seq, n_tok, n_layers = len(batch), batch.n_tok, model.n_layers
    rows = batch_size or max(1, PATTERN_BYTES // (4 * n_layers * model.n_heads * n_tok * n_tok))
    names = ("probability", "mean_log_probability") if key_score == "attention_received" else (
        "probability", "logit", "probability_nobias", "logit_nobias")
    out = {name: np.zeros((n_seq, n_layers, model.n_heads, n_tok), dtype=np.float32) for name in names}
    captured: dict[int, torch.Tensor] = {}
    handles = [] if key_score == "attention_received" else _capture_projection_inputs(model, captured)
    threads = torch.get_num_threads()
    torch.set_num_threads(min(threads, PASS_THREADS))
    # the qk pass asks for the last layer's head outputs only so that the forward runs through every layer
    hooks = ([f"layer.{l}.attn.pattern" for l in range(n_layers)] if key_score == "attention_received"
             else [f"layer.{n_layers - 1}.attn.head_out"])
    try:
        for seq_index, outputs in iter_run(model, batch, hooks, batch_size=rows):
            lo, hi = int(seq_index[0]), int(seq_index[-1]) + 1
            real = batch.attention_mask[lo:hi].bool()  # (b, n_tok)
            for layer in range(n_layers):
                with torch.inference_mode():
                    if key_score == "attention_received":
                        parts = _received_from_pattern(outputs[f"layer.{layer}.attn.pattern"], real)
                    else:
                        parts = _received_from_weights(model, layer, captured.pop(layer), real)
                for name, value in parts.items():
                    out[name][lo:hi, layer, :, : value.shape[-1]] = value.numpy()
    finally:
        torch.set_num_threads(threads)
        for handle in handles:
            handle.remove()
    arrays = {f"scores.{name}": value for name, value in out.items()}
    arrays.update({"tokens.offsets": batch.offsets.numpy().astype(np.int32),
                   "tokens.special_mask": batch.special_mask.numpy(),
                   "tokens.lengths": batch.lengths.numpy().astype(np.int32)})
    return arrays


def _received_from_pattern(pattern, real) -> dict:
    """pattern: (b, n_heads, q, k) probabilities; real: (b, n_tok) -> mean over real queries, (b, n_heads, k)."""

    queries = real[:, None, : pattern.shape[2], None].to(pattern.dtype)
    count = queries.sum(2)
    log_p = torch.log(pattern.clamp_min(PROBABILITY_FLOOR))
    return {"probability": (pattern * queries).sum(2) / count,
            "mean_log_probability": (log_p * queries).sum(2) / count}


def _capture_projection_inputs(model, captured: dict) -> list:
    """Forward pre-hooks that keep the input of each layer's query (or fused qkv) projection: (b, n_tok,
    d_model), or (n_real_tokens, d_model) for models that remove padding."""
    handles = []
    for layer in range(model.n_layers):
        module, _, _ = _query_key_projections(model, layer)

        def keep(module, args, layer=layer):
            captured[layer] = args[0].detach()

        handles.append(module.register_forward_pre_hook(keep))
    return handles


def _query_key_projections(model, layer: int):
    """(module whose input is read, (W_Q, b_Q), (W_K, b_K)): separate `<attn_probs>.query` / `.key`
    projections, or the first two thirds of a declared fused `qkv` projection."""

    fused = model.module_map.qkv
    if fused:
        module = model.block_module(layer, fused)
        d = model.d_model
        if not isinstance(module, torch.nn.Linear) or module.weight.shape[0] != 3 * d:
            raise InputError(f"module_map.qkv: {fused} of model {model.ref.describe()} is not a linear layer with "
                             f"3 x d_model = {3 * d} outputs (query, key, value); name the fused projection")
        bias = module.bias if module.bias is not None else None
        return module, (module.weight[:d], None if bias is None else bias[:d]), \
            (module.weight[d:2 * d], None if bias is None else bias[d:2 * d])
    relative = model.module_map.attn_probs
    try:
        query = model.block_module(layer, f"{relative}.query")
        key = model.block_module(layer, f"{relative}.key")
    except InputError:
        query = key = None
    if relative is None or query is None or not hasattr(query, "weight") or not hasattr(key, "weight"):
        raise InputError(f"key_score qk_weights needs separate query and key projections "
                         f"(`<attn_probs>.query` / `.key`) or a fused one (`module_map.qkv`), which model "
                         f"{model.ref.describe()} ({model.architecture}) lacks; use key_score: attention_received")
    return query, (query.weight, query.bias), (key.weight, key.bias)


def _received_from_weights(model, layer: int, hidden, real) -> dict:
    """Weight-only logits of every head from the projection input hidden (b, t, d_model), or (n_real,
    d_model) for unpadded models; real (b, n_tok).

    Returns mean over real queries of the logits and of their softmax over real keys, with and
    without the projection biases; each (b, n_heads, t)."""


    hidden = padded_tokens(hidden, real.to(hidden.device)).float()  # float32 on the model's device
    _, (w_q, b_q), (w_k, b_k) = _query_key_projections(model, layer)
    w_q, b_q, w_k, b_k = (None if v is None else v.float() for v in (w_q, b_q, w_k, b_k))
    b, t, _ = hidden.shape
    mask = real[:, :t].to(hidden.device)
    queries = mask[:, None, :, None].to(hidden.dtype)  # (b, 1, q, 1)
    parts = {}
    for suffix, with_bias in (("", True), ("_nobias", False)):
        q = _heads(torch.nn.functional.linear(hidden, w_q, b_q if with_bias else None), model)
        k = _heads(torch.nn.functional.linear(hidden, w_k, b_k if with_bias else None), model)
        logits = torch.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(model.d_head)
        count = queries.sum(2)
        parts[f"logit{suffix}"] = (logits * queries).sum(2) / count
        masked = logits.masked_fill(~mask[:, None, None, :], float("-inf"))
        parts[f"probability{suffix}"] = (torch.softmax(masked, dim=-1) * queries).sum(2) / count
    return {name: on_cpu(value) for name, value in parts.items()}


def _heads(x, model):
    return x.unflatten(-1, (model.n_heads, model.d_head))


def key_score_values(table: KeyScoreTable, scale: Scale, *, qk_biases: bool = True) -> np.ndarray:
    """(n_layers, n_heads, n_seq, n_tok) float64 key scores on `scale`, NaN at special tokens and padding."""
    if scale not in SCALES:
        raise InputError(f"unknown key-score scale {scale!r}; use one of {', '.join(SCALES)}")
    suffix = "" if qk_biases or table.key_score == "attention_received" else "_nobias"
    probability = table.values[f"probability{suffix}"].astype(np.float64)
    if scale == "probability":
        values = probability
    elif scale == "log_probability":
        values = np.log(np.maximum(probability, PROBABILITY_FLOOR))
    else:
        name = "mean_log_probability" if table.key_score == "attention_received" else f"logit{suffix}"
        values = table.values[name].astype(np.float64)
    values = np.moveaxis(values, 0, 2)  # (n_layers, n_heads, n_seq, n_tok)
    return np.where(table.special[None, None], np.nan, values)
