"""Tiny, random-initialised models of the architectures the published studies use, built offline.

Each builder writes a local model folder (config, weights, tokenizer, and the model's own code where the
original needs `trust_remote_code`), deterministic for a seed, so that tests and claims can exercise an
architecture without its weights:

- ``build_dnabert2_like``: DNABERT-2's MosaicBERT (`seqclaims/remote_code/dnabert2_like.py`): BPE tokens,
  fused Wqkv, ALiBi, padding removed inside the encoder, gated-linear-unit MLP, no attention
  probabilities returned. Its claims declare ``DNABERT2_MODULE_MAP`` (the real model's module names).
- ``build_nt_v2_like``: Nucleotide Transformer v2's ESM (`seqclaims/remote_code/nt_v2_like.py`): rotary
  positions, pre-LN, non-overlapping 6-mer tokens, SwiGLU MLP without feed-forward biases; ESM's module
  names, so the built-in map reads it.
- ``build_caduceus_like``: a Caduceus-like bidirectional Mamba (`seqclaims/remote_code/caduceus_like.py`):
  single-nucleotide tokens, no attention, BiMamba mixers from transformers' Mamba blocks. Its claims
  declare ``CADUCEUS_MODULE_MAP`` (hooks `layer.{l}.resid_post`, `layer.{l}.mixer.out`); with
  `released_layout=True` the released code's layout, read with ``RELEASED_CADUCEUS_MODULE_MAP``.
- ``build_codon_reader``: a planted codon-phase reader (`seqclaims/remote_code/planted_reader.py`), weights set
  by construction, for the gram family's known answers; with ``reads="position"`` its adversary, a
  representation of position mod 3. ``build_circuit_reader``: a planted two-layer circuit (a TATA latent,
  then a TATA-nearby latent, then the T logit) for feature_circuit. Read with ``READER_MODULE_MAP``.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path
from typing import Sequence

import numpy as np

from seqclaims.inputs.models import MODULE_MAP_FILE
from seqclaims.inputs.tokenizers import build_nucleotide_tokenizer
from seqclaims.lazy import lazy_import
from seqclaims.paths import PACKAGE_DIR

torch = lazy_import("torch")

REMOTE_CODE = PACKAGE_DIR / "remote_code"

DNABERT2_MODULE_MAP = {
    "layers": "bert.encoder.layer",
    "attn_out_proj": "attention.output.dense",
    "mlp_out_proj": "mlp.wo",
    "embed": "bert.embeddings",
    "attn_probs_input": "attention.self.dropout",
    "qkv": "attention.self.Wqkv",
}

CADUCEUS_MODULE_MAP = {"layers": "caduceus.layers", "mixer": "mixer", "embed": "caduceus.embeddings"}
# the released Caduceus / PlantCAD2 layout (and `build_caduceus_like(released_layout=True)`)
RELEASED_CADUCEUS_MODULE_MAP = {"layers": "caduceus.backbone.layers", "mixer": "mixer",
                                "embed": "caduceus.backbone.embeddings", "block_output": "hidden_plus_residual"}

READER_MODULE_MAP = {"layers": "reader.layers", "mixer": "mixer", "embed": "reader.embed"}


def train_bpe_tokenizer(sequences: Sequence[str], vocab_size: int, *, model_max_length: int = 512):
    """A DNABERT-2-style BPE tokenizer ([CLS] ... [SEP], offsets) trained on `sequences`."""
    from tokenizers import Tokenizer, models, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    backend = Tokenizer(models.BPE(unk_token="[UNK]"))
    backend.train_from_iterator(list(sequences), trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=specials, initial_alphabet=list("ACGTN"), show_progress=False))
    ids = {token: backend.token_to_id(token) for token in specials}
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]",
        special_tokens=[("[CLS]", ids["[CLS]"]), ("[SEP]", ids["[SEP]"])])
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                   sep_token="[SEP]", mask_token="[MASK]", model_max_length=model_max_length)


def build_dnabert2_like(folder: Path | str, *, sequences: Sequence[str], seed: int = 0, n_layers: int = 2,
                        d_model: int = 64, n_heads: int = 4, d_mlp: int = 128, vocab_size: int = 256) -> Path:
    """Write a DNABERT-2-like model folder (random weights from `seed`, BPE trained on `sequences`)."""
    from transformers import BertConfig

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = train_bpe_tokenizer(sequences, vocab_size)
    tokenizer.save_pretrained(folder)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=d_model, num_hidden_layers=n_layers,
                        num_attention_heads=n_heads, intermediate_size=d_mlp, hidden_dropout_prob=0.0,
                        attention_probs_dropout_prob=0.0, max_position_embeddings=512,
                        pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False)
    return _write_remote_model(folder, "dnabert2_like", "BertForMaskedLM", config, seed)


def build_nt_v2_like(folder: Path | str, *, seed: int = 0, n_layers: int = 2, d_model: int = 64, n_heads: int = 4,
                     d_mlp: int = 128, k: int = 6) -> Path:
    """Write an NT-v2-like model folder (random weights from `seed`, non-overlapping k-mer tokens)."""
    from transformers import EsmConfig


    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = build_nucleotide_tokenizer("kmer_nonoverlapping", k, model_max_length=512)
    tokenizer.save_pretrained(folder)
    config = EsmConfig(vocab_size=len(tokenizer), hidden_size=d_model, num_hidden_layers=n_layers,
                       num_attention_heads=n_heads, intermediate_size=d_mlp, hidden_dropout_prob=0.0,
                       attention_probs_dropout_prob=0.0, max_position_embeddings=512,
                       position_embedding_type="rotary", emb_layer_norm_before=False, token_dropout=False,
                       pad_token_id=tokenizer.pad_token_id, mask_token_id=tokenizer.mask_token_id,
                       add_bias_fnn=False, tie_word_embeddings=True)
    return _write_remote_model(folder, "nt_v2_like", "EsmForMaskedLM", config, seed)


def build_caduceus_like(folder: Path | str, *, seed: int = 0, n_layers: int = 2, d_model: int = 32,
                        d_state: int = 8, bidirectional_weight_tie: bool = True, released_layout: bool = False,
                        rc_equivariant: bool = False) -> Path:
    """Write a Caduceus-like model folder (random weights from `seed`, single-nucleotide tokens).

    rc_equivariant: Caduceus-PS's reverse-complement equivariance by parameter sharing (d_model channels as two
    strands of d_model / 2); every layer's hidden states of the reverse complement are those of the sequence,
    positions and channels reversed.

    released_layout: the released code's layout instead (blocks return (hidden, residual), a backbone under
    `caduceus.backbone`, no attention_mask argument); read it with RELEASED_CADUCEUS_MODULE_MAP."""
    from transformers import MambaConfig


    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = build_nucleotide_tokenizer("single", model_max_length=1024)
    tokenizer.save_pretrained(folder)
    config = MambaConfig(vocab_size=len(tokenizer), hidden_size=d_model, num_hidden_layers=n_layers,
                         state_size=d_state, expand=2, conv_kernel=4, pad_token_id=tokenizer.pad_token_id,
                         bidirectional_weight_tie=bidirectional_weight_tie, use_cache=False, tie_word_embeddings=False)
    if rc_equivariant:
        if released_layout or d_model % 2:
            raise ValueError("rc_equivariant needs the own layout and an even d_model")
        config.rcps, config.complement_map = True, complement_map(tokenizer)
    name = "ReleasedLayoutCaduceusForMaskedLM" if released_layout else "CaduceusForMaskedLM"
    return _write_remote_model(folder, "caduceus_like", name, config, seed)


def build_codon_reader(folder: Path | str, *, codon_log_odds, reads: str = "codon", window: int = 30,
                       scale: float = 2.0) -> Path:
    """Write the planted codon-phase reader (or, with reads="position", the position-mod-3 adversary).

    codon_log_odds: (4, 3) log P(base | codon position) - log P(base), bases in ACGT order (see
    `codon_position_log_odds`)."""
    return _write_reader(folder, reads=reads, window=window, scale=scale,
                         codon_log_odds=[[float(v) for v in row] for row in codon_log_odds])


def build_circuit_reader(folder: Path | str, *, window: int = 30, scale: float = 3.0) -> Path:
    """Write the planted two-layer circuit: TATA here (layer 0), a TATA within `window` bases (layer 1), the
    logit of T = `scale` x that. The folder declares its hook map, so that it loads as the embedded model
    `planted-circuit` (`python -m seqclaims.inputs.architectures` rebuilds fixtures/models/planted-circuit)."""

    folder = _write_reader(folder, reads="circuit", window=window, scale=scale)
    (folder / MODULE_MAP_FILE).write_text(json.dumps(READER_MODULE_MAP, indent=1, sort_keys=True) + "\n")
    return folder


def _write_reader(folder: Path | str, **settings) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = build_nucleotide_tokenizer("single", model_max_length=1024)
    tokenizer.save_pretrained(folder)
    module = _import_remote(REMOTE_CODE / "planted_reader.py")
    vocab = tokenizer.get_vocab()
    config = module.PlantedReaderConfig(vocab_size=len(tokenizer), base_ids=[vocab[b] for b in "ACGT"],
                                        pad_token_id=tokenizer.pad_token_id, **settings)
    config.auto_map = {"AutoConfig": "planted_reader.PlantedReaderConfig",
                       "AutoModelForMaskedLM": "planted_reader.PlantedReaderForMaskedLM"}
    shutil.copyfile(REMOTE_CODE / "planted_reader.py", folder / "planted_reader.py")
    config.save_pretrained(folder)
    module.PlantedReaderForMaskedLM(config).save_pretrained(folder)
    _restore_auto_map(folder, config.auto_map)
    return folder


def codon_position_log_odds(sequences: Sequence[str], phases: Sequence) -> list[list[float]]:
    """(4, 3) log P(base | codon position) - log P(base) over the CDS bases of `sequences` (phase >= 0),
    with one pseudocount per cell."""

    counts = np.ones((4, 3))
    lookup = {b: i for i, b in enumerate("ACGT")}
    for sequence, phase in zip(sequences, phases):
        phase = np.asarray(phase)
        for position in np.flatnonzero(phase >= 0):
            base = lookup.get(sequence[position])
            if base is not None:
                counts[base, phase[position]] += 1
    conditional = counts / counts.sum(axis=0, keepdims=True)
    overall = counts.sum(axis=1, keepdims=True) / counts.sum()
    return np.log(conditional / overall).tolist()


def complement_map(tokenizer) -> list[int]:
    """Token id -> the id of its complement (A<->T, C<->G, case kept, and [CLS]<->[SEP]: one strand's start is
    the other's end, so the tokens of rc(x) are those of x reversed and complemented); others map to themselves."""
    pairs = {"A": "T", "T": "A", "C": "G", "G": "C", "a": "t", "t": "a", "c": "g", "g": "c",
             "[CLS]": "[SEP]", "[SEP]": "[CLS]"}
    vocab = tokenizer.get_vocab()
    by_id = {index: token for token, index in vocab.items()}
    return [vocab.get(pairs.get(by_id[i], by_id[i]), i) for i in range(len(vocab))]


def _write_remote_model(folder: Path, module_name: str, class_name: str, config, seed: int) -> Path:
    """Copy the model's code into the folder, map AutoModelForMaskedLM to it, save random weights."""

    shutil.copyfile(REMOTE_CODE / f"{module_name}.py", folder / f"{module_name}.py")
    config.auto_map = {"AutoModelForMaskedLM": f"{module_name}.{class_name}"}
    config.architectures = [class_name]
    config.save_pretrained(folder)
    module = _import_remote(folder / f"{module_name}.py")
    torch.manual_seed(seed)
    getattr(module, class_name)(config).save_pretrained(folder)
    _restore_auto_map(folder, config.auto_map)
    return folder


def _import_remote(path: Path):
    spec = importlib.util.spec_from_file_location(f"seqclaims_remote_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _restore_auto_map(folder: Path, auto_map: dict) -> None:
    """save_pretrained of a class outside transformers may drop auto_map; the folder needs it to load."""
    path = folder / "config.json"
    config = json.loads(path.read_text())
    config["auto_map"] = auto_map
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    from seqclaims.paths import fixtures_dir

    print(build_circuit_reader(fixtures_dir() / "models" / "planted-circuit"))
