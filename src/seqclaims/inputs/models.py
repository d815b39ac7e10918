"""Model adapters: load a masked LM from local files, name its hook points, run it with caches and interventions.

Hook points have one naming scheme for every architecture (in the spirit of TransformerLens):

==========================  ====================================  ==============================================
name                        shape                                 what
==========================  ====================================  ==============================================
``embed``                   (n_seq, n_tok, d_model)               output of the embedding module
``layer.{l}.resid_post``    (n_seq, n_tok, d_model)               output of block l (for ESM, before the
                                                                  encoder's final LayerNorm)
``layer.{l}.attn.pattern``  (n_seq, n_heads, n_tok_q, n_tok_k)    attention probabilities (rows sum to 1)
``layer.{l}.attn.head_out`` (n_seq, n_tok, n_heads, d_head)       per-head attention output before the
                                                                  attention output projection
``layer.{l}.mlp.post``      (n_seq, n_tok, d_mlp)                 MLP activations after the nonlinearity (the
                                                                  input of the MLP output projection)
``layer.{l}.mixer.out``     (n_seq, n_tok, d_model)               output of a state-space block's sequence
                                                                  mixer (Mamba, Caduceus), before the residual
==========================  ====================================  ==============================================

A model offers the sites its module map declares: a state-space model has no attention heads and no MLP
(`n_heads` and `d_mlp` are 0), and the families that need heads say so.

``logits`` (n_seq, n_tok, d_vocab) can be asked for beside the hooks. Positions past a sequence's end
are zero. ``head_out`` and ``mlp.post`` are read (and patched) with forward pre-hooks on the output
projections, which works whatever the attention implementation. ``attn.pattern`` is read from the
attention module's returned probabilities under eager attention; under any other implementation (sdpa,
or a model's own code, e.g. a fused QKV projection with an ALiBi bias) it is recomputed at the kernel: the
query, key, mask or bias and scale that the layer passes to ``torch.nn.functional.scaled_dot_product_attention``
are captured and softmax(q k^T scale + bias) is computed in float64 (equal to eager within 1e-5).

Architectures: BERT and RoBERTa (BertForMaskedLM, RobertaForMaskedLM) and ESM (EsmForMaskedLM:
Nucleotide Transformer v2, AgroNT, ESM-2) work out of the box. Any other masked LM (for example
DNABERT-2's MosaicBERT, with ``trust_remote_code: true``) works once its claim declares a ``module_map``.
Architectures that drop padding inside the encoder (MosaicBERT keeps tokens as (n_real_tokens, d)) are
handled: hook tensors are scattered back into (n_seq, n_tok, ...).
"""

from __future__ import annotations

import difflib
import hashlib
import inspect
import json
import os
import re
import weakref
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, Iterator, Literal, Sequence

from pydantic import ValidationError
from safetensors import SafetensorError

from seqclaims import fsutil
from seqclaims.core.input_specs import EMBEDDED_MODELS, ModelRef, ModuleMap
from seqclaims.errors import HookInfidelity, InputError, Unavailable
from seqclaims.inputs.tokenizers import (Batch, Tokenization, build_nucleotide_tokenizer, declared_scheme,
                                         sequence_alphabet, tokenize)
from seqclaims.lazy import lazy_import
from seqclaims.paths import cache_dir, fixtures_dir

torch = lazy_import("torch")


def as_model_ref(ref: ModelRef | str | dict) -> ModelRef:
    return ref if isinstance(ref, ModelRef) else ModelRef.model_validate(ref)


def resolve_folder(ref: ModelRef | str | dict) -> Path:
    """The local folder holding the model, or Unavailable with a message saying how to provide it."""
    ref = as_model_ref(ref)
    if ref.name:
        folder = embedded_folder(ref.name)
        if not (folder / "config.json").is_file():
            raise Unavailable(
                f"embedded model '{ref.name}' is not at {folder} (embedded models: {', '.join(EMBEDDED_MODELS)}); "
                "restore fixtures/models/ from the repository or point `model: {path: ...}` at a local folder"
            )
        return folder
    if ref.path:
        folder = Path(ref.path).expanduser()
        if not (folder / "config.json").is_file():
            raise Unavailable(
                f"model folder {folder} does not exist or has no config.json; point `model: {{path: ...}}` "
                "at a local Hugging Face model folder"
            )
        return folder
    return _hub_cache_folder(ref.hf_id, ref.revision)


def embedded_folder(name: str) -> Path:
    """fixtures/models/<name>, or for `<name>@step<N>` the checkpoint train-organism kept there."""
    base, _, step = name.partition("@")
    folder = fixtures_dir() / "models" / base
    return folder / "checkpoints" / step if step else folder


def _hub_cache_folder(hf_id: str, revision: str) -> Path:
    """The snapshot folder of a hub model in the local cache; never the network."""
    from huggingface_hub import constants, try_to_load_from_cache

    cache = os.environ.get("HF_HUB_CACHE") or constants.HF_HUB_CACHE
    found = try_to_load_from_cache(hf_id, "config.json", cache_dir=cache, revision=revision)
    if isinstance(found, str):
        return Path(found).parent
    raise Unavailable(
        f"model {hf_id}@{revision} is not in the local Hugging Face cache ({cache}); download it once "
        f"with `huggingface-cli download {hf_id} --revision {revision}` on a connected machine, or point "
        "`model: {path: ...}` at a local folder"
    )


# ---------------------------------------------------------------------------------------------
# A loaded model


@dataclass(eq=False)
class LoadedModel:
    """A masked LM in eval mode (float32) with its tokenizer and the modules its hook points read."""

    model: Any
    tokenizer: Any
    ref: ModelRef
    folder: Path
    module_map: ModuleMap
    n_heads: int
    d_model: int
    d_head: int
    d_mlp: int
    max_length: int
    device: str = "cpu"
    dtype: str = "float32"  # precision of the forward passes; hooks come back as float32 on the CPU
    _modules: dict[str, Any] = field(default_factory=dict, repr=False)
    _fidelity: dict[frozenset, float] = field(default_factory=dict, repr=False)  # hooks -> relative logit change

    @property
    def architecture(self) -> str:
        return type(self.model).__name__

    @property
    def n_layers(self) -> int:
        return len(self.module(self.module_map.layers))

    @property
    def tokenization(self) -> Tokenization | None:
        """The declared scheme (claim, else the folder's recorded one); None = the folder's tokenizer."""
        return self.ref.tokenization or declared_scheme(self.tokenizer)

    @cached_property
    def alphabet(self) -> str:
        """What the model reads: "dna" or "protein" (`tokenizers.sequence_alphabet`)."""
        return sequence_alphabet(self.tokenizer)

    @cached_property
    def takes_attention_mask(self) -> bool:
        """Whether the model and its base model accept an attention_mask (the released Caduceus does not)."""
        return all(_takes_argument(m, "attention_mask") for m in (self.model, self.model.base_model))

    @cached_property
    def model_hash(self) -> str:
        return folder_hash(self.folder)

    def tokenize(self, sequences: Sequence[str], tokenization: Tokenization | None = None) -> Batch:
        scheme = tokenization or self.tokenization
        kind, k = (scheme.kind, scheme.k) if scheme else (None, None)
        return tokenize(sequences, kind, k, tokenizer=self.tokenizer, max_length=self.max_length)

    def hook_names(self) -> list[str]:
        return hook_names(self)

    def module(self, path: str) -> torch.nn.Module:
        """A submodule by dotted path from the masked-LM model."""
        if path not in self._modules:
            try:
                self._modules[path] = self.model.get_submodule(path)
            except AttributeError:
                raise InputError(
                    f"model {self.ref.describe()} ({self.architecture}) has no module '{path}'; fix the "
                    "claim's `module_map`"
                ) from None
        return self._modules[path]

    def block_module(self, layer: int, relative: str) -> torch.nn.Module:
        return self.module(f"{self.module_map.layers}.{layer}.{relative}")


_LOADED: dict[tuple, LoadedModel] = {}
DTYPES = ("float32", "bfloat16", "float16")  # precisions of the forward passes, as torch names them


def run_device() -> str:
    """Where models run: $SEQCLAIMS_DEVICE (cpu, cuda, cuda:N), else cuda when available, else cpu."""
    wanted = os.environ.get("SEQCLAIMS_DEVICE", "").strip()
    if not wanted:
        return "cuda" if torch.cuda.is_available() else "cpu"
    if not re.fullmatch(r"cpu|cuda(:\d+)?", wanted):
        raise InputError(f"SEQCLAIMS_DEVICE / --claims-device {wanted!r} is not a device; use cpu, cuda or cuda:N")
    if wanted.startswith("cuda"):
        index = int(wanted.split(":")[1]) if ":" in wanted else 0
        if not torch.cuda.is_available() or index >= torch.cuda.device_count():
            raise InputError(f"device {wanted} is not available here ({torch.cuda.device_count()} CUDA devices); "
                             "use --claims-device cpu")
    return wanted


def torch_dtype(name: str) -> torch.dtype:
    """The torch dtype of one of `DTYPES`."""
    return getattr(torch, name)


def compute_dtype() -> str:
    """Precision of forward passes: $SEQCLAIMS_DTYPE (float32, bfloat16, float16), else float32."""
    wanted = os.environ.get("SEQCLAIMS_DTYPE", "").strip() or "float32"
    if wanted not in DTYPES:
        raise InputError(f"SEQCLAIMS_DTYPE / --claims-dtype {wanted!r} is not a precision; use {', '.join(DTYPES)}")
    return wanted


def load_model(ref: ModelRef | str | dict) -> LoadedModel:
    """Load (once per process and set of options) the masked LM a claim names."""
    ref = as_model_ref(ref)
    folder = resolve_folder(ref).resolve()
    device, dtype = run_device(), compute_dtype()
    key = (str(folder), ref.revision, ref.trust_remote_code, ref.attn_implementation, ref.tokenization, ref.module_map,
           device, dtype)
    if key not in _LOADED:
        _LOADED[key] = _load(ref, folder, device, dtype)
    return _LOADED[key]


def _load(ref: ModelRef, folder: Path, device: str = "cpu", dtype: str = "float32") -> LoadedModel:
    from transformers import AutoTokenizer

    config = _read_config(folder)
    embedded = ref.name in EMBEDDED_MODELS  # the repository's own fixtures: their code is part of the project
    if "auto_map" in config and not (ref.trust_remote_code or embedded):
        raise InputError(
            f"model {ref.describe()} ships its own code (auto_map in {folder / 'config.json'}); set "
            "`trust_remote_code: true` in the claim's model mapping if you trust it"
        )
    options = dict(local_files_only=True, trust_remote_code=ref.trust_remote_code or embedded)
    try:
        # attn_implementation is not saved in config.json: it must be passed at every load.
        model = _masked_lm_class(folder, config).from_pretrained(
            str(folder), attn_implementation=ref.attn_implementation, dtype=torch.float32, local_files_only=True
        )
        tokenizer = AutoTokenizer.from_pretrained(str(folder), **options)
    except (OSError, ValueError, KeyError, RuntimeError, ImportError, SafetensorError) as error:
        raise InputError(
            f"cannot load a masked LM with its tokenizer from {folder}: {_load_failure(error)}; check the "
            "folder's config, weights and tokenizer files"
        ) from None
    model.eval()
    model.to(device=device, dtype=torch_dtype(dtype))
    module_map = ref.module_map or folder_module_map(folder) or builtin_module_map(model, ref)
    loaded = LoadedModel(
        model=model,
        tokenizer=tokenizer,
        ref=ref,
        folder=folder,
        module_map=module_map,
        **_dimensions(model, ref, module_map),
        max_length=_context_length(model.config, tokenizer),
        device=device,
        dtype=dtype,
    )
    loaded.module(module_map.layers)  # a wrong path to the blocks fails at load, not at first use
    return loaded


def _masked_lm_class(folder: Path, config: dict):
    """The folder's masked-LM class, resolved without AutoModelForMaskedLM: that registers a remote class for
    its config type for the rest of the process, so that a later folder of the same config type with its
    own, different code would silently load with the first folder's class."""
    import transformers
    from transformers.dynamic_module_utils import get_class_from_dynamic_module
    from transformers.models.auto.modeling_auto import MODEL_FOR_MASKED_LM_MAPPING_NAMES

    remote = (config.get("auto_map") or {}).get("AutoModelForMaskedLM")
    if remote:
        return get_class_from_dynamic_module(remote, str(folder), local_files_only=True)
    name = MODEL_FOR_MASKED_LM_MAPPING_NAMES.get(config.get("model_type"))
    if name is None:
        raise InputError(f"model folder {folder} is a {config.get('model_type')!r} model with no masked-LM class in "
                         "transformers and no auto_map entry for AutoModelForMaskedLM; give a masked LM")
    return getattr(transformers, name)


def _read_config(folder: Path) -> dict:
    path = folder / "config.json"
    try:
        config = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputError(
            f"cannot read {path} of model folder {folder}: {_first_line(error)}; give a valid JSON config"
        ) from None
    if not isinstance(config, dict):
        raise InputError(f"{path} of model folder {folder} is not a JSON object; give a valid model config")
    return config


def _load_failure(error: Exception) -> str:
    """One line on why from_pretrained failed."""
    if isinstance(error, SafetensorError):
        return f"unreadable safetensors weights ({_first_line(error)})"
    if isinstance(error, RuntimeError) and "mismatch" in str(error).lower():
        return "the weights' shapes do not match config.json (size mismatch)"
    return _first_line(error)


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


MODULE_MAP_FILE = "seqclaims_module_map.json"


def folder_module_map(folder: Path) -> ModuleMap | None:
    """The hook map an embedded model folder declares for itself (`seqclaims_module_map.json`), if any."""
    path = Path(folder) / MODULE_MAP_FILE
    if not path.is_file():
        return None
    try:
        return ModuleMap.model_validate(json.loads(path.read_text()))
    except (ValueError, ValidationError) as error:
        raise InputError(f"{path} is not a valid hook map ({str(error).splitlines()[0]}); fix it or declare "
                         "`module_map` in the claim's model mapping") from None


def builtin_module_map(model, ref: ModelRef) -> ModuleMap:
    """Hook modules of BERT, RoBERTa and ESM masked LMs (checked against transformers' modeling files)."""
    if model.config.model_type not in ("bert", "roberta", "esm"):
        raise InputError(
            f"model {ref.describe()} is a {type(model).__name__}, which has no built-in hook map; declare "
            "`module_map: {layers, attn_out_proj, mlp_out_proj, embed, attn_probs}` in the claim's model mapping"
        )
    prefix = model.base_model_prefix
    return ModuleMap(
        layers=f"{prefix}.encoder.layer",
        embed=f"{prefix}.embeddings",
        attn_out_proj="attention.output.dense",
        mlp_out_proj="output.dense",
        attn_probs="attention.self",
    )


def _dimensions(model, ref: ModelRef, module_map: ModuleMap) -> dict[str, int]:
    """n_heads, d_model, d_head, d_mlp from the config; 0 for what the module map declares absent (a
    state-space model has neither heads nor an MLP)."""
    config = model.config
    wanted = {"hidden_size": True, "num_attention_heads": bool(module_map.attn_out_proj),
              "intermediate_size": bool(module_map.mlp_out_proj)}
    missing = [key for key, needed in wanted.items() if needed and not hasattr(config, key)]
    if missing:
        raise InputError(
            f"model {ref.describe()}'s config lacks {missing[0]}; it is not an encoder this tool can read without "
            "a module_map that leaves that part out"
        )
    n_heads = config.num_attention_heads if module_map.attn_out_proj else 0
    d_model = config.hidden_size
    return dict(n_heads=n_heads, d_model=d_model, d_head=d_model // n_heads if n_heads else 0,
                d_mlp=config.intermediate_size if module_map.mlp_out_proj else 0)


_UNBOUNDED = 10**6  # tokenizers without a limit report a huge model_max_length


def _context_length(config, tokenizer) -> int:
    """Tokens the model takes, special tokens included.

    RoBERTa and ESM with learned absolute positions number positions from pad_token_id + 1.
    """
    limits = []
    positions = getattr(config, "max_position_embeddings", None)
    if positions:
        offset = 0
        if config.model_type in ("roberta", "esm") and getattr(config, "position_embedding_type", "absolute") == "absolute":
            offset = (config.pad_token_id or 0) + 1
        limits.append(positions - offset)
    if 0 < getattr(tokenizer, "model_max_length", _UNBOUNDED) < _UNBOUNDED:
        limits.append(int(tokenizer.model_max_length))
    return min(limits) if limits else _UNBOUNDED


def save_random_model(
    folder: Path | str,
    architecture: Literal["bert", "roberta", "esm"] = "bert",
    *,
    tokenizer=None,
    n_layers: int = 2,
    d_model: int = 32,
    n_heads: int = 4,
    d_mlp: int = 64,
    seed: int = 0,
) -> Path:
    """Save a randomly initialised masked LM and its tokenizer to `folder`; returns the folder.

    architecture: BERT or RoBERTa (learned absolute positions, post-LayerNorm) or ESM (rotary
    positions, pre-LayerNorm, as in Nucleotide Transformer v2). tokenizer: default single-nucleotide; its model_max_length sets the
    context. Dropout is 0. For tests, benchmarks, and as the starting point of trained or constructed
    models.
    """
    from transformers import BertConfig, BertForMaskedLM, EsmConfig, EsmForMaskedLM, RobertaConfig, RobertaForMaskedLM


    tokenizer = tokenizer or build_nucleotide_tokenizer("single")
    common = dict(
        vocab_size=len(tokenizer),
        hidden_size=d_model,
        num_hidden_layers=n_layers,
        num_attention_heads=n_heads,
        intermediate_size=d_mlp,
        max_position_embeddings=int(tokenizer.model_max_length),
        pad_token_id=tokenizer.pad_token_id,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    torch.manual_seed(seed)
    if architecture == "bert":
        model = BertForMaskedLM(BertConfig(**common))
    elif architecture == "roberta":  # positions are numbered from pad_token_id + 1
        common["max_position_embeddings"] += tokenizer.pad_token_id + 1
        model = RobertaForMaskedLM(RobertaConfig(**common, bos_token_id=tokenizer.cls_token_id, eos_token_id=tokenizer.sep_token_id))
    else:
        config = EsmConfig(
            **common,
            mask_token_id=tokenizer.mask_token_id,
            position_embedding_type="rotary",
            token_dropout=False,
            emb_layer_norm_before=False,
        )
        model = EsmForMaskedLM(config)
    folder = Path(folder)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


# ---------------------------------------------------------------------------------------------
# Content hash of a model folder

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
DEFINING_FILES = (
    "seqclaims_module_map.json",
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
)


# Stamps that tools write into a folder's JSON files: which library version saved it, where it was
# loaded from. They say nothing about the model, so they must not change its identity.
VOLATILE_JSON_KEYS = frozenset({"transformers_version", "_name_or_path", "_commit_hash"})


def folder_hash(folder: Path) -> str:
    """sha256 over the files that define a model: weights, config, tokenizer files and custom code.

    JSON files count by their parsed content without VOLATILE_JSON_KEYS (key order and formatting do not
    count either), so re-saving a folder with another transformers release keeps its identity."""
    files = sorted(
        p
        for p in Path(folder).iterdir()
        if p.is_file() and (p.suffix in WEIGHT_SUFFIXES + (".py", ".model") or p.name in DEFINING_FILES)
    )
    digest = hashlib.sha256()
    for path in files:
        content = canonical_json_sha256(path) if path.suffix == ".json" else file_sha256(path)
        digest.update(f"{path.name}\0{content}\0".encode())
    return digest.hexdigest()


def canonical_json_sha256(path: Path) -> str:
    """sha256 of a JSON file's content, keys sorted, without the top-level VOLATILE_JSON_KEYS; the raw
    bytes' sha256 when the file is not JSON. Remembered like file_sha256."""
    return _remembered_digest(path, "canonical-json", _canonical_json_digest)


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes, remembered on disk by (path, mtime, size) so big weights hash once."""
    return _remembered_digest(path, "bytes", fsutil.file_sha256)


def _canonical_json_digest(path: Path) -> str:
    try:
        content = json.loads(Path(path).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return fsutil.file_sha256(path)
    if isinstance(content, dict):
        content = {key: value for key, value in content.items() if key not in VOLATILE_JSON_KEYS}
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _remembered_digest(path: Path, kind: str, compute: Callable[[Path], str]) -> str:
    real = Path(path).resolve()
    stat = real.stat()
    stamp = f"{real}|{stat.st_mtime_ns}|{stat.st_size}" + ("" if kind == "bytes" else f"|{kind}")
    memo = cache_dir() / "file_hashes" / hashlib.sha256(stamp.encode()).hexdigest()
    if memo.is_file():
        remembered = memo.read_text().strip()
        if re.fullmatch(r"[0-9a-f]{64}", remembered):
            return remembered
    value = compute(real)
    fsutil.atomic_write_text(memo, value)
    return value


# ---------------------------------------------------------------------------------------------
# Hook names

_SITES = ("resid_post", "attn.pattern", "attn.head_out", "mlp.post", "mixer.out")
_HOOK_PATTERN = re.compile(r"layer\.(\d+)\.(resid_post|attn\.pattern|attn\.head_out|mlp\.post|mixer\.out)")


@dataclass(frozen=True)
class HookPoint:
    """A parsed hook name: site is 'embed', 'logits' or one of the per-layer sites."""

    name: str
    site: str
    layer: int | None = None


def hook_names(model: LoadedModel) -> list[str]:
    """Every hook point the model offers, in forward order."""
    sites = [s for s in _SITES if _site_offered(model, s)]
    per_layer = [f"layer.{l}.{site}" for l in range(model.n_layers) for site in sites]
    return (["embed"] if model.module_map.embed else []) + per_layer


def _site_offered(model: LoadedModel, site: str) -> bool:
    """Whether the model's module map declares the modules a per-layer site is read from."""
    declared = {"attn": model.module_map.attn_out_proj, "mlp": model.module_map.mlp_out_proj,
                "mixer": model.module_map.mixer}
    return site == "resid_post" or bool(declared[site.split(".")[0]])


_PARTS = {"attn": "attention heads", "mlp": "MLP", "mixer": "state-space mixer"}


def require_part(model: LoadedModel, part: str, needed_by: str) -> None:
    """InputError, one line, when the model lacks a part ("attn", "mlp", "mixer") that `needed_by` reads."""
    if not _site_offered(model, f"{part}.x"):
        offered = sorted({n.split(".", 2)[-1] for n in hook_names(model) if n.startswith("layer.")})
        kind = " (a state-space model)" if model.module_map.mixer else ""
        raise InputError(f"model {model.ref.describe()} ({model.architecture}) has no {_PARTS[part]}{kind}; "
                         f"{needed_by} needs them: its layers offer {', '.join(offered)} (probe, sae_feature)")


def parse_hook(model: LoadedModel, name: str) -> HookPoint:
    """Validate a hook name against the model; InputError with the closest valid name otherwise."""
    if name == "logits":
        return HookPoint(name, "logits")
    if name in hook_names(model):
        if name == "embed":
            return HookPoint(name, "embed")
        layer, site = _HOOK_PATTERN.fullmatch(name).groups()
        return HookPoint(name, site, int(layer))
    matched = _HOOK_PATTERN.fullmatch(name)
    if matched and matched.group(2).split(".")[0] in _PARTS:
        require_part(model, matched.group(2).split(".")[0], f"hook '{name}'")
    close = difflib.get_close_matches(name, hook_names(model) + ["logits"], n=1)
    hint = f"did you mean '{close[0]}'? " if close else ""
    raise InputError(
        f"'{name}' is not a hook of model {model.ref.describe()} ({model.n_layers} layers); {hint}"
        "hooks are embed and layer.{l}.{resid_post, attn.pattern, attn.head_out, mlp.post, mixer.out}"
    )


def hook_shape(model: LoadedModel, name: str, n_seq: int, n_tok: int) -> tuple[int, ...]:
    """Shape of a hook's tensor for a batch of n_seq sequences padded to n_tok tokens."""
    site = parse_hook(model, name).site
    if site == "attn.pattern":
        return (n_seq, model.n_heads, n_tok, n_tok)
    trailing = {
        "embed": (model.d_model,),
        "resid_post": (model.d_model,),
        "mixer.out": (model.d_model,),
        "attn.head_out": (model.n_heads, model.d_head),
        "mlp.post": (model.d_mlp,),
        "logits": (model.model.config.vocab_size,),
    }[site]
    return (n_seq, n_tok, *trailing)


# ---------------------------------------------------------------------------------------------
# Interventions


@dataclass(frozen=True)
class Intervention:
    """Overwrite one head's output (before the output projection) or one MLP channel, at chosen tokens.

    hook: ``layer.{l}.attn.head_out`` or ``layer.{l}.mlp.post``; index: the head or the channel.
    values: the replacement, one of (n_seq, n_tok, d_head) | (n_tok, d_head) | (d_head,) | () for a head,
        (n_seq, n_tok) | (n_tok,) | () for a channel; n_seq and n_tok those of the batch it is run on.
    positions: where to write: None (every token), a bool mask (n_seq, n_tok) or (n_tok,), or token
        indices (n_pos,) applied to every sequence.
    """

    hook: str
    index: int
    values: torch.Tensor
    positions: torch.Tensor | None = None

    @property
    def channel_ndim(self) -> int:
        return 1 if self.hook.endswith("attn.head_out") else 0

    def edit(self, x: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """x: (n_rows, n_tok, n_heads, d_head) or (n_rows, n_tok, d_mlp); rows: (n_rows,) sequence indices."""
        n_tok = x.shape[1]
        values = _rows_of(self.values, rows, n_tok, self.values.ndim - self.channel_ndim).to(x.device, x.dtype)
        where = _positions_mask(self.positions, rows, n_tok).reshape(len(rows), n_tok, *[1] * self.channel_ndim)
        where = where.to(x.device)
        edited = x.clone()
        edited[:, :, self.index] = torch.where(where, values, x[:, :, self.index])
        return edited


def patch_head(layer: int, head: int, values: torch.Tensor, positions=None) -> Intervention:
    """Replace head `head` of `layer` by `values` (usually its head_out from a clean run)."""
    return Intervention(f"layer.{layer}.attn.head_out", head, torch.as_tensor(values), _as_positions(positions))


def zero_ablate_head(layer: int, head: int, positions=None) -> Intervention:
    return Intervention(f"layer.{layer}.attn.head_out", head, torch.tensor(0.0), _as_positions(positions))


def mean_ablate_head(layer: int, head: int, mean: torch.Tensor, positions=None) -> Intervention:
    """Replace the head's output by a supplied mean: (d_head,) or per position (n_tok, d_head)."""
    return Intervention(f"layer.{layer}.attn.head_out", head, torch.as_tensor(mean), _as_positions(positions))


def set_neuron(layer: int, neuron: int, value, positions=None) -> Intervention:
    """Overwrite MLP channel `neuron` of `layer` after the nonlinearity with `value`."""
    return Intervention(f"layer.{layer}.mlp.post", neuron, torch.as_tensor(value, dtype=torch.float32), _as_positions(positions))


def _as_positions(positions) -> torch.Tensor | None:
    return None if positions is None else torch.as_tensor(positions)


def _rows_of(tensor: torch.Tensor, rows: torch.Tensor, n_tok: int, lead_ndim: int) -> torch.Tensor:
    """The part of a per-sequence / per-token / constant tensor that a sub-batch's rows need."""
    if lead_ndim == 2:
        return tensor[rows, :n_tok]
    if lead_ndim == 1:
        return tensor[:n_tok].unsqueeze(0)
    return tensor


def _positions_mask(positions: torch.Tensor | None, rows: torch.Tensor, n_tok: int) -> torch.Tensor:
    """(n_rows, n_tok) bool: where an intervention writes."""
    if positions is None:
        return torch.ones(len(rows), n_tok, dtype=torch.bool)
    if positions.dtype == torch.bool:
        return _rows_of(positions, rows, n_tok, positions.ndim).expand(len(rows), n_tok)
    mask = torch.zeros(n_tok, dtype=torch.bool)
    mask[positions[positions < n_tok]] = True
    return mask.expand(len(rows), n_tok)


@dataclass(frozen=True)
class _EveryHeadPatch:
    """Batched patching: the rows hold n_heads copies of the batch, and copy h has head h patched."""

    hook: str
    values: torch.Tensor  # (n_seq, n_tok, n_heads, d_head)
    positions: torch.Tensor | None

    def edit(self, x: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        n_heads = x.shape[2]
        n_seq = len(rows) // n_heads
        originals, n_tok = rows[:n_seq], x.shape[1]
        values = self.values[originals, :n_tok].to(x.device, x.dtype)  # (n_seq, n_tok, n_heads, d_head)
        where = _positions_mask(self.positions, originals, n_tok).to(x.device)  # (n_seq, n_tok)
        own_head = torch.eye(n_heads, dtype=torch.bool, device=x.device)  # (copy, head)
        mask = own_head[:, None, None, :, None] & where[None, :, :, None, None]
        copies = x.reshape(n_heads, n_seq, *x.shape[1:])
        return torch.where(mask, values.unsqueeze(0), copies).reshape(x.shape)


# ---------------------------------------------------------------------------------------------
# Running


Metric = Callable[["torch.Tensor", "torch.Tensor"], "torch.Tensor"]


def run_with_cache(
    model: LoadedModel, batch: Batch, hooks: Sequence[str], batch_size: int = 32
) -> dict[str, torch.Tensor]:
    """Run the model on `batch` and return the named hooks (and `logits` if named), shapes as documented above."""
    return _collect(iter_run(model, batch, hooks, batch_size=batch_size))


def run_with_interventions(
    model: LoadedModel,
    batch: Batch,
    interventions: Sequence[Intervention],
    hooks: Sequence[str] = (),
    *,
    metric: Metric | None = None,
    metric_input: str = "logits",
    logits: bool = True,
    batch_size: int = 32,
) -> dict[str, torch.Tensor]:
    """Run with interventions; returns `logits` (or `metric` when given) and the named hooks as patched.

    metric(value, rows (n_rows,) sequence indices) -> (n_rows, ...) reduces, batch by batch, the output
    named by `metric_input`, so that the full outputs never need to be held: ``logits`` (n_rows, n_tok,
    d_vocab); ``hidden``, the final hidden states the masked-LM head reads (n_rows, n_tok, d_model; see
    `masked_lm_logits`); or a hook name (its tensor as documented above). logits=False leaves the logits
    out when no metric is given. The masked-LM output layer runs only when logits are asked for, and the
    forward pass stops after the deepest hook needed when neither logits nor ``hidden`` are.
    """
    return _collect(iter_run(model, batch, [*_outputs(metric, logits), *hooks], interventions,
                             batch_size=batch_size, metric=metric, metric_input=metric_input))


@dataclass
class _GradientProbe:
    """An edit that adds a zero leaf requiring grad to a head_out or mlp.post value, so that the gradient of
    the metric with respect to the value can be read off the leaf."""

    hook: str
    leaves: list = field(default_factory=list)
    index: int = 0

    def edit(self, x: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        leaf = torch.zeros_like(x, requires_grad=True)
        self.leaves.append(leaf)
        return x + leaf


def metric_gradients(
    model: LoadedModel,
    batch: Batch,
    hooks: Sequence[str],
    *,
    metric: Metric,
    metric_input: str = "logits",
    batch_size: int = 16,
) -> dict[str, torch.Tensor]:
    """The metric, the values of `hooks` (``attn.head_out`` / ``mlp.post``) and d metric / d value, from one
    forward and one backward pass per sub-batch (each sequence's metric depends on its own row only, so the
    gradient of their sum is every row's own). Returns "metric" (n_seq,), each hook (n_seq, n_tok, ...) and
    "<hook>.grad" of the same shape. No weight gradient is computed."""
    points = [parse_hook(model, name) for name in dict.fromkeys(hooks)]
    for point in points:
        if point.site not in ("attn.head_out", "mlp.post"):
            raise InputError(f"gradients are taken at attn.head_out and mlp.post hooks, not '{point.name}'")
    reads = _metric_source(model, metric, metric_input)
    if not model.takes_attention_mask and len(set(batch.lengths.tolist())) > 1:
        batch_size = 1

    def parts():
        for start in range(0, len(batch), batch_size):
            seq_index = torch.arange(start, min(start + batch_size, len(batch)))
            rows = batch.select(slice(start, seq_index[-1] + 1))
            probes = [_GradientProbe(p.name) for p in points]
            outputs = _forward(model, rows, points, probes, seq_index, metric, reads, grad=True)
            leaves = [leaf for probe in probes for leaf in probe.leaves]
            grads = torch.autograd.grad(outputs["metric"].sum(), leaves, allow_unused=True)
            token_mask = rows.attention_mask.bool()
            result = {"metric": outputs["metric"].detach()}
            for probe, gradient in zip(probes, grads):
                value = outputs[probe.hook].detach()
                gradient = torch.zeros_like(value) if gradient is None else on_cpu(gradient)
                result[probe.hook] = _to_batch_layout(value, probe.hook, token_mask, batch.n_tok)
                result[f"{probe.hook}.grad"] = _to_batch_layout(gradient, probe.hook, token_mask, batch.n_tok)
            yield seq_index, result

    return _collect(parts())


def patch_every_head(
    model: LoadedModel,
    batch: Batch,
    layer: int,
    values: torch.Tensor,
    positions=None,
    hooks: Sequence[str] = (),
    *,
    metric: Metric | None = None,
    metric_input: str = "logits",
    logits: bool = True,
    batch_size: int = 32,
) -> dict[str, torch.Tensor]:
    """Patch each head of `layer` in turn, all in one pass per batch (the batch is expanded n_heads times).

    values: (n_seq, n_tok, n_heads, d_head) replacement head outputs, e.g. head_out of the clean run
    (zeros give zero-ablation). Returns `logits` (or `metric`) and the named hooks with a leading head
    axis: out[name][h] (n_seq, ...) is the run with head h patched. metric, metric_input and logits as
    in `run_with_interventions`.
    """
    parse_hook(model, f"layer.{layer}.attn.head_out")
    edit = _EveryHeadPatch(f"layer.{layer}.attn.head_out", torch.as_tensor(values), _as_positions(positions))
    rows_per_pass = max(1, batch_size // model.n_heads)
    shared = _shares_prefix(model, layer, hooks, metric, metric_input)
    return _collect(
        iter_run(model, batch, [*_outputs(metric, logits), *hooks], [edit], batch_size=rows_per_pass, metric=metric,
                 metric_input=metric_input, copies=model.n_heads,
                 around=(lambda plain: _replayed_prefix(model, layer, plain, model.n_heads)) if shared else None),
        seq_axis=1,
    )


# Every copy of a sub-batch computes the same thing up to the patched layer's attention: the blocks before
# it and the attention itself (queries, keys, probabilities, their weighted values). That part is computed
# once, on the plain sub-batch, and replayed to the copies, which then start at the output projection.


def _shares_prefix(model: LoadedModel, layer: int, hooks: Sequence[str], metric: Metric | None, metric_input: str) -> bool:
    """Whether the copies can replay the shared part: nothing is read inside it, and there is one."""
    reads = [name for name in hooks if name not in ("logits", "metric")]
    if metric is not None and metric_input not in ("logits", _HIDDEN):
        reads.append(metric_input)
    for name in reads:
        point = parse_hook(model, name)
        if point.layer is None or point.layer < layer or (point.layer == layer and point.site == "attn.pattern"):
            return False
    return layer > 0 or model.module_map.attn_probs is not None


@contextmanager
def _replayed_prefix(model: LoadedModel, layer: int, plain: Batch, copies: int):
    """While active, the blocks before `layer` and the attention of `layer` return, for `copies` stacked
    copies of `plain`, what they computed on `plain` itself (forward replaced; hooks still run)."""
    recorded = _record_prefix(model, layer, plain)
    replaced = []
    try:
        for module, output in recorded:
            replaced.append((module, module.__dict__.get("forward")))
            module.forward = _replay(_repeat_rows(output, copies))
        yield
    finally:
        for module, previous in replaced:
            if previous is None:
                del module.forward
            else:
                module.forward = previous


def _record_prefix(model: LoadedModel, layer: int, plain: Batch) -> list[tuple[torch.nn.Module, Any]]:
    """[(module, its output on `plain`)] for every block before `layer` (each replays the last one's
    output) and the attention of `layer` (when the module map names it); the pass stops there."""
    blocks = [model.module(f"{model.module_map.layers}.{l}") for l in range(layer)]
    attention = model.block_module(layer, model.module_map.attn_probs) if model.module_map.attn_probs else None
    last = attention if attention is not None else blocks[-1]
    seen: dict[str, Any] = {}

    def keep(name):
        def hook(module, args, output):
            seen[name] = output
            if module is last:
                raise _EnoughComputed

        return hook

    handles = [m.register_forward_hook(keep(name)) for name, m in
               ((("block", blocks[-1]),) if blocks else ()) + ((("attention", attention),) if attention is not None else ())]
    try:
        with torch.inference_mode():
            model.model.base_model(**model_inputs(model, plain))
    except _EnoughComputed:
        pass
    finally:
        for handle in handles:
            handle.remove()
    out = [(block, seen["block"]) for block in blocks]
    return out + ([(attention, seen["attention"])] if attention is not None else [])


def _repeat_rows(value: Any, copies: int) -> Any:
    """Tensors (rows first, padded or unpadded) stacked `copies` times copy-major; containers kept."""
    if isinstance(value, torch.Tensor):
        return value.repeat(copies, *([1] * (value.ndim - 1)))
    if isinstance(value, (tuple, list)):
        return type(value)(_repeat_rows(v, copies) for v in value)
    return value


def _replay(output: Any):
    def forward(*args, **kwargs):
        return output

    return forward


def _outputs(metric: Metric | None, logits: bool) -> list[str]:
    return ["metric"] if metric else (["logits"] if logits else [])


def iter_run(
    model: LoadedModel,
    batch: Batch,
    hooks: Sequence[str],
    interventions: Sequence = (),
    *,
    batch_size: int = 32,
    metric: Metric | None = None,
    metric_input: str = "logits",
    copies: int = 1,
    around: Callable[[Batch], Any] | None = None,
) -> Iterator[tuple[torch.Tensor, dict[str, torch.Tensor]]]:
    """Yield (seq_index (b,), outputs) per sub-batch; outputs padded to the batch's n_tok.

    With copies > 1 the sub-batch is repeated copy-major and outputs have shape (copies, b, ...).
    around(plain sub-batch) -> a context manager active while the sub-batch runs.
    """
    points = [parse_hook(model, name) for name in dict.fromkeys(hooks) if name != "metric"]
    reads = _metric_source(model, metric, metric_input)
    for intervention in interventions:
        _check_intervention(model, intervention)
    check_hook_fidelity(model, batch, [p for p in points if p.site != "logits"])
    if not model.takes_attention_mask and len(set(batch.lengths.tolist())) > 1:
        batch_size = 1  # the model would read the padding of the shorter sequences
    start, size = 0, batch_size
    while start < len(batch):
        stop = min(start + size, len(batch))
        seq_index = torch.arange(start, stop)
        plain = batch.select(slice(start, stop))
        rows = plain.repeated(copies) if copies > 1 else plain
        try:
            with around(plain) if around is not None else nullcontext():
                outputs = _forward(model, rows, points, interventions, seq_index.repeat(copies), metric, reads)
        except out_of_memory():
            size = _smaller_batch(model, stop - start)
            continue
        token_mask = rows.attention_mask.bool()
        yield seq_index, {
            name: _unstack(_to_batch_layout(value, name, token_mask, batch.n_tok), copies)
            for name, value in outputs.items()
        }
        start = stop


def out_of_memory() -> type[Exception]:
    """The error a device raises when a batch does not fit (torch.OutOfMemoryError from torch 2.5 on)."""
    return getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)


def _smaller_batch(model: LoadedModel, size: int) -> int:
    """Half the sub-batch after an out-of-memory error; InputError when one sequence does not fit."""
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    if size <= 1:
        raise InputError(f"model {model.ref.describe()} runs out of memory on {model.device} even one sequence at a "
                         "time; use shorter sequences, --claims-dtype bfloat16 or a device with more memory")
    return size // 2


FIDELITY_TOLERANCE = 1e-4  # largest logit change, relative to the largest logit, that reading hooks may cause
_FIDELITY_ROWS = 2


def check_hook_fidelity(model: LoadedModel, batch: Batch, points: list[HookPoint]) -> None:
    """HookInfidelity when reading `points` changes the model's logits on a few sequences by more than
    FIDELITY_TOLERANCE of their largest magnitude (a capture that alters what it observes). Checked once
    per model and set of hooks in a process."""
    key = frozenset(p.name for p in points)
    if not key or len(batch) == 0:
        return
    if key in model._fidelity:
        _raise_if_unfaithful(model, key, model._fidelity[key])
        return
    rows = batch.select(slice(0, min(_FIDELITY_ROWS, len(batch))))
    with torch.inference_mode():
        plain = model.model(**model_inputs(model, rows))
    plain = on_cpu(plain.logits if hasattr(plain, "logits") else plain[0])
    hooked = _forward(model, rows, [*points, HookPoint("logits", "logits")], (), torch.arange(len(rows)), None)
    real = rows.attention_mask.bool()
    change = float((hooked["logits"][real] - plain[real]).abs().max())
    scale = max(float(plain[real].abs().max()), 1e-12)
    model._fidelity[key] = change / scale  # remembered, so that every later run with these hooks fails too
    _raise_if_unfaithful(model, key, change / scale)


def _raise_if_unfaithful(model: LoadedModel, key: frozenset, relative_change: float) -> None:
    if relative_change > FIDELITY_TOLERANCE:
        raise HookInfidelity(
            f"reading hooks {', '.join(sorted(key)[:3])}{' ...' if len(key) > 3 else ''} changes the logits of model "
            f"{model.ref.describe()} by {relative_change:.3g} of their largest magnitude (tolerance "
            f"{FIDELITY_TOLERANCE:g}): its hooks do not observe the model faithfully"
        )


_HIDDEN = "hidden"  # the final hidden states: the input of the masked-LM head


def _metric_source(model: LoadedModel, metric: Metric | None, metric_input: str) -> HookPoint | None:
    """What the metric reads: logits, the final hidden states, or a hook (validated); None without a metric."""
    if metric is None:
        return None
    if metric_input == _HIDDEN:
        return HookPoint(_HIDDEN, _HIDDEN)
    return parse_hook(model, metric_input)


class _EnoughComputed(Exception):
    """Raised by a forward hook once every requested output is recorded, to skip the rest of the model."""


def masked_lm_logits(model: LoadedModel, hidden: torch.Tensor, token_ids=None) -> torch.Tensor:
    """The masked-LM head on final hidden states: (..., d_model) -> (..., d_vocab), or (..., n_ids) for the
    vocabulary entries `token_ids` (n_ids,) only.

    hidden: what ``metric_input="hidden"`` hands a metric (the base model's output, e.g. after ESM's final
    LayerNorm). With token_ids the head runs up to its output projection, which then computes only the
    requested rows; the output bias is derived once per model from one full evaluation of the head, so
    any head whose last step is ``logits = projection(x) + bias`` is served without model-specific code.
    """
    head = _lm_head(model)
    hidden = hidden.to(device=model.device, dtype=torch_dtype(model.dtype))
    with nullcontext() if hidden.requires_grad else torch.inference_mode():  # a gradient passes through
        if token_ids is None:
            return on_cpu(head(hidden))
        ids = torch.as_tensor(token_ids, dtype=torch.long, device=model.device)
        decoder = model.model.get_output_embeddings()
        return on_cpu(_decoder_input(head, decoder, hidden) @ decoder.weight[ids].T) + _output_bias(model)[ids.cpu()]


class _DecoderInput(Exception):
    """Carries the input of the masked-LM head's output projection out of the head, which stops there."""

    def __init__(self, value: torch.Tensor):
        self.value = value


def _decoder_input(head: torch.nn.Module, decoder: torch.nn.Module, hidden: torch.Tensor) -> torch.Tensor:
    def hook(module, args):
        raise _DecoderInput(args[0])

    handle = decoder.register_forward_pre_hook(hook)
    try:
        head(hidden)
    except _DecoderInput as captured:
        return captured.value
    finally:
        handle.remove()
    raise InputError(f"the masked-LM head {type(head).__name__} never calls its output projection; it is not "
                     "a head this tool can slice")


def _lm_head(model: LoadedModel) -> torch.nn.Module:
    """The masked-LM head: the top-level child of the model that holds the output projection."""
    decoder = model.model.get_output_embeddings()
    base = model.model.base_model
    for _, child in model.model.named_children():
        if child is not base and any(module is decoder for module in child.modules()):
            return child
    raise InputError(f"model {model.ref.describe()} ({model.architecture}) has no masked-LM head holding its output "
                     "embeddings; use a masked-LM model")


_OUTPUT_BIAS: "weakref.WeakKeyDictionary[LoadedModel, torch.Tensor]" = weakref.WeakKeyDictionary()


def _output_bias(model: LoadedModel) -> torch.Tensor:
    """(d_vocab,) what the head adds after its output projection: full logits minus the projection alone."""
    if model not in _OUTPUT_BIAS:
        head, decoder = _lm_head(model), model.model.get_output_embeddings()
        probe = torch.zeros(1, model.d_model, device=model.device, dtype=torch_dtype(model.dtype))
        with torch.inference_mode():
            x = _decoder_input(head, decoder, probe)
            _OUTPUT_BIAS[model] = on_cpu((head(probe) - torch.nn.functional.linear(x, decoder.weight))[0])
    return _OUTPUT_BIAS[model]


def _check_intervention(model: LoadedModel, intervention) -> None:
    point = parse_hook(model, intervention.hook)
    if point.site not in ("attn.head_out", "mlp.post", "resid_post"):
        raise InputError(f"interventions apply to attn.head_out, mlp.post and resid_post hooks, not '{intervention.hook}'")
    limit = {"attn.head_out": model.n_heads, "mlp.post": model.d_mlp}.get(point.site, model.d_model)
    index = getattr(intervention, "index", 0)
    if not 0 <= index < limit:
        raise InputError(f"index {index} is out of range for '{intervention.hook}' (0..{limit - 1})")
    positions = getattr(intervention, "positions", None)
    if positions is not None and positions.dtype != torch.bool and bool((positions < 0).any()):
        raise InputError(
            f"token positions of the intervention on '{intervention.hook}' include {int(positions.min())}; "
            "give non-negative token indices (0 is the first token, a special token included) or a bool mask"
        )


def _forward(
    model: LoadedModel,
    rows: Batch,
    points: list[HookPoint],
    interventions: Sequence,
    row_index: torch.Tensor,
    metric: Metric | None,
    reads: HookPoint | None = None,
    grad: bool = False,
) -> dict[str, torch.Tensor]:
    """One forward pass of a sub-batch. grad: keep the autograd graph (for `metric_gradients`); otherwise
    inference mode."""
    store: dict[str, torch.Tensor] = {}
    token_mask = rows.attention_mask.bool().to(model.device)
    reads_hook = reads is not None and reads.site not in ("logits", _HIDDEN)
    captured = [*points, *([reads] if reads_hook else [])]
    wanted = {p.site for p in captured} | ({reads.site} if reads is not None else set())
    wants_logits = "logits" in wanted
    handles = _install_hooks(model, captured, interventions, token_mask, row_index, store)
    if not wanted & {"logits", _HIDDEN}:
        handles.append(_stop_after(model, captured))
    output = None
    try:
        with (torch.enable_grad() if grad else torch.inference_mode()), _attention_for(model, captured, store):
            network = model.model if wants_logits else model.model.base_model
            output = network(**model_inputs(model, rows))
    except _EnoughComputed:
        pass
    finally:
        for handle in handles:
            handle.remove()
    _require_patterns(model, captured, store)
    if wants_logits:
        store["logits"] = output.logits if hasattr(output, "logits") else output[0]
    if reads is not None:
        if reads.site == _HIDDEN:
            value = padded_tokens(output[0], token_mask)
        else:
            value = store["logits"] if reads.site == "logits" else store[reads.name]
        store["metric"] = metric(on_cpu(value), row_index)
        if reads_hook and reads.name not in {p.name for p in points}:
            del store[reads.name]
        if reads.site == "logits" and not any(p.site == "logits" for p in points):
            del store["logits"]
    return {name: on_cpu(value) for name, value in store.items()}


def model_inputs(model: LoadedModel, rows: Batch) -> dict[str, torch.Tensor]:
    """The batch's input tensors on the model's device (without attention_mask for a model whose forward
    takes none; `iter_run` then runs unequal lengths one at a time, so that no padding is read)."""
    inputs = {name: value.to(model.device) for name, value in rows.model_inputs().items()}
    if not model.takes_attention_mask:
        inputs.pop("attention_mask")
    return inputs


def _takes_argument(module: torch.nn.Module, name: str) -> bool:
    parameters = inspect.signature(module.forward).parameters.values()
    return any(p.name == name or p.kind == p.VAR_KEYWORD for p in parameters)


def on_cpu(value: torch.Tensor) -> torch.Tensor:
    """float32 on the CPU (statistics are computed there; reduced-precision runs come back as float32)."""
    value = value.cpu()
    return value.float() if value.is_floating_point() and value.dtype != torch.float64 else value


def _stop_after(model: LoadedModel, points: list[HookPoint]):
    """A forward hook on the module that computes the deepest requested point, raising once it has run."""
    layers = [p.layer for p in points if p.layer is not None]
    if layers:
        module = model.module(f"{model.module_map.layers}.{max(layers)}")
    elif model.module_map.embed:
        module = model.module(model.module_map.embed)
    else:
        return _NoHandle()

    def hook(module, args, output):
        raise _EnoughComputed

    return module.register_forward_hook(hook)


class _NoHandle:
    def remove(self) -> None:
        pass


def _install_hooks(model, points, interventions, token_mask, row_index, store) -> list:
    handles = []
    captured = {p.name: p for p in points if p.site != "logits"}
    residual_edits = {}
    for intervention in interventions:
        if parse_hook(model, intervention.hook).site == "resid_post":
            residual_edits.setdefault(intervention.hook, []).append(intervention)
    for name in residual_edits:
        point = parse_hook(model, name)
        if model.module_map.block_output == "hidden_plus_residual":
            raise InputError(f"editing {name} is not supported for blocks that return (hidden, residual) pairs")
        module = model.module(f"{model.module_map.layers}.{point.layer}")
        handles.append(module.register_forward_hook(
            _output_edit(point, residual_edits[name], name in captured, token_mask, row_index, store)))
    for point in captured.values():
        if point.name in residual_edits:
            continue
        if point.site in ("embed", "resid_post", "mixer.out"):
            module = model.module(model.module_map.embed) if point.site == "embed" else \
                model.block_module(point.layer, model.module_map.mixer) if point.site == "mixer.out" else \
                model.module(f"{model.module_map.layers}.{point.layer}")
            pair_sum = point.site == "resid_post" and model.module_map.block_output == "hidden_plus_residual"
            handles.append(module.register_forward_hook(_output_capture(point, token_mask, store, pair_sum)))
        elif point.site == "attn.pattern" and model.module_map.attn_probs_input:
            module = model.block_module(point.layer, model.module_map.attn_probs_input)
            handles.append(module.register_forward_pre_hook(_pattern_input_capture(point, store)))
        elif point.site == "attn.pattern" and _eager(model):
            module = model.block_module(point.layer, model.module_map.attn_probs)
            handles.append(module.register_forward_hook(_pattern_capture(model, point, store)))
    projections = {p.name for p in captured.values() if p.site in ("attn.head_out", "mlp.post")}
    projections |= {i.hook for i in interventions if i.hook not in residual_edits}
    for name in projections:
        point = parse_hook(model, name)
        relative = model.module_map.attn_out_proj if point.site == "attn.head_out" else model.module_map.mlp_out_proj
        edits = [i for i in interventions if i.hook == name]
        hook = _projection_input_hook(model, point, edits, name in captured, token_mask, row_index, store)
        handles.append(model.block_module(point.layer, relative).register_forward_pre_hook(hook))
    return handles


def _output_capture(point: HookPoint, token_mask: torch.Tensor, store: dict, pair_sum: bool = False):
    """Record a module's output; pair_sum: the output is (hidden, residual) and the value is their sum."""
    def hook(module, args, output):
        value = output[0] if isinstance(output, (tuple, list)) else output
        if pair_sum and isinstance(output, (tuple, list)) and output[1] is not None:
            value = value + output[1]
        store[point.name] = padded_tokens(value, token_mask)

    return hook


def _output_edit(point: HookPoint, edits, capture: bool, token_mask: torch.Tensor, row_index, store: dict):
    """Edit a block's output (the residual stream after it), then record it."""
    def hook(module, args, output):
        given = output[0] if isinstance(output, (tuple, list)) else output
        value = padded_tokens(given, token_mask)
        for edit in edits:
            value = edit.edit(value, row_index)
        if capture:
            store[point.name] = value
        edited = _module_layout(value, given, token_mask)
        return (edited, *output[1:]) if isinstance(output, (tuple, list)) else edited

    return hook


def _pattern_capture(model: LoadedModel, point: HookPoint, store: dict):
    def hook(module, args, output):
        weights = output[1] if isinstance(output, (tuple, list)) and len(output) > 1 else None
        if weights is None:
            raise InputError(
                f"layer {point.layer} of model {model.ref.describe()} returned no attention probabilities "
                f"({model.model.config._attn_implementation} attention); load it with attn_implementation: eager"
            )
        store[point.name] = weights

    return hook


def _pattern_input_capture(point: HookPoint, store: dict):
    def hook(module, args):
        store[point.name] = args[0]

    return hook


def _projection_input_hook(model, point, edits, capture: bool, token_mask, row_index, store):
    """Forward pre-hook on an output projection: apply edits to its input, then record it."""
    per_head = point.site == "attn.head_out"

    def hook(module, args):
        given = args[0]
        padded = padded_tokens(given, token_mask)
        value = padded.unflatten(-1, (model.n_heads, model.d_head)) if per_head else padded
        for edit in edits:
            value = edit.edit(value, row_index)
        if capture:
            store[point.name] = value
        if edits:
            return (_module_layout(value.flatten(-2) if per_head else value, given, token_mask), *args[1:])
        return None

    return hook


def padded_tokens(x: torch.Tensor, token_mask: torch.Tensor) -> torch.Tensor:
    """(n_seq, n_tok, ...) from a module tensor that may be unpadded (n_real_tokens, ...)."""
    if x.ndim >= 3:
        return x
    padded = x.new_zeros((*token_mask.shape, *x.shape[1:]))
    padded[token_mask] = x
    return padded


def _module_layout(padded: torch.Tensor, like: torch.Tensor, token_mask: torch.Tensor) -> torch.Tensor:
    """Back to the layout the module uses (inverse of `padded_tokens`)."""
    return padded if like.ndim >= 3 else padded[token_mask]


def _eager(model: LoadedModel) -> bool:
    """Whether the attention modules return their probabilities (eager attention with a declared module)."""
    return bool(model.module_map.attn_probs) and getattr(model.model.config, "_attn_implementation", None) == "eager"


@contextmanager
def _attention_for(model: LoadedModel, points: list[HookPoint], store: dict):
    """Attention probabilities at the kernel while a run asks for them from a model that is not eager."""
    wanted = {p.layer: p.name for p in points if p.site == "attn.pattern"}
    if not wanted or _eager(model) or model.module_map.attn_probs_input:
        yield
        return
    with kernel_patterns(model, wanted, store):
        yield


def _require_patterns(model: LoadedModel, points: list[HookPoint], store: dict) -> None:
    """InputError when a layer's attention probabilities were asked for and could not be recovered."""
    missing = [p.name for p in points if p.site == "attn.pattern" and p.name not in store]
    if missing:
        raise InputError(
            f"model {model.ref.describe()} computed {missing[0].rsplit('.attn', 1)[0]}'s attention without "
            "torch.nn.functional.scaled_dot_product_attention, so its probabilities cannot be recovered; load it "
            "with attn_implementation: eager and declare module_map.attn_probs"
        )


@contextmanager
def kernel_patterns(model: LoadedModel, wanted: dict[int, str], store: dict):
    """Record softmax(q k^T scale + mask) of every scaled_dot_product_attention call made inside block l
    under store[wanted[l]] (the last call of the block counts)."""
    functional = torch.nn.functional
    original = functional.scaled_dot_product_attention
    current: list[int | None] = [None]

    def entering(layer: int):
        def hook(module, args):
            current[0] = layer
        return hook

    def leaving(module, args, output):
        current[0] = None

    handles = []
    for layer in wanted:
        block = model.module(f"{model.module_map.layers}.{layer}")
        handles += [block.register_forward_pre_hook(entering(layer)), block.register_forward_hook(leaving)]

    def recording(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, **options):
        if current[0] in wanted:
            store[wanted[current[0]]] = attention_probabilities(query, key, attn_mask, is_causal=is_causal,
                                                                scale=scale, gqa=options.get("enable_gqa", False))
        return original(query, key, value, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal,
                        scale=scale, **options)

    functional.scaled_dot_product_attention = recording
    try:
        yield
    finally:
        functional.scaled_dot_product_attention = original
        for handle in handles:
            handle.remove()


def attention_probabilities(query: torch.Tensor, key: torch.Tensor, mask: torch.Tensor | None = None, *,
                            is_causal: bool = False, scale: float | None = None, gqa: bool = False) -> torch.Tensor:
    """(n_seq, n_heads, n_q, n_k) float32 probabilities of scaled_dot_product_attention's inputs, computed in
    float64: softmax(q k^T scale + mask); a bool mask keeps True entries; rows with no key allowed are 0."""
    q, k = query.double(), key.double()
    if gqa and k.shape[-3] != q.shape[-3]:
        k = k.repeat_interleave(q.shape[-3] // k.shape[-3], dim=-3)
    scores = q @ k.transpose(-2, -1) * (scale if scale is not None else q.shape[-1] ** -0.5)
    if is_causal:
        allowed = torch.ones(scores.shape[-2:], dtype=torch.bool, device=scores.device).tril()
        scores = scores.masked_fill(~allowed, float("-inf"))
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else scores + mask.double()
    return torch.nan_to_num(torch.softmax(scores, dim=-1), nan=0.0).float()


def _to_batch_layout(value: torch.Tensor, name: str, token_mask: torch.Tensor, n_tok: int) -> torch.Tensor:
    """Zero the padding positions of a sub-batch output and pad its token axes to the batch's n_tok.

    token_mask: (n_rows, n_tok_sub) bool. Sub-batches are trimmed to their longest sequence, so without
    this the values at padding positions would depend on how the batch was split.
    """
    if name == "metric":
        return value
    missing = n_tok - token_mask.shape[1]
    if name.endswith("attn.pattern"):
        pair_mask = token_mask[:, None, :, None] & token_mask[:, None, None, :]
        return torch.nn.functional.pad(value * pair_mask, (0, missing, 0, missing))
    per_token = token_mask.reshape(*token_mask.shape, *[1] * (value.ndim - 2))
    widths = [0, 0] * (value.ndim - 2) + [0, missing]
    return torch.nn.functional.pad(value * per_token, widths)


def _unstack(value: torch.Tensor, copies: int) -> torch.Tensor:
    return value.reshape(copies, -1, *value.shape[1:]) if copies > 1 else value


def _collect(parts: Iterator[tuple[torch.Tensor, dict[str, torch.Tensor]]], seq_axis: int = 0) -> dict[str, torch.Tensor]:
    gathered: dict[str, list[torch.Tensor]] = {}
    for _, outputs in parts:
        for name, value in outputs.items():
            gathered.setdefault(name, []).append(value)
    return {name: torch.cat(values, dim=seq_axis) for name, values in gathered.items()}
