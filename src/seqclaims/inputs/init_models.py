"""Randomly initialised copies of a model: the same architecture, config and tokenizer, weights freshly drawn.

The randomization control of DESIGN section 3 (Adebayo et al. 2018's model-parameter randomization test):
a statistic says something about what a model learned only if a copy that learned nothing does not reach it.
The copy is built from the model's own config by the model's own class (a remote-code model by its own code,
under the claim's `trust_remote_code`), its weights drawn by that class's initialisation under
`torch.manual_seed(seed)`, and saved as a model folder in the cache: every cache downstream (activations,
key scores, SAEs) keys it by its folder hash like any other model, so claims on the same model share it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from seqclaims.core.input_specs import EMBEDDED_MODELS, ModelRef
from seqclaims.inputs.models import DEFINING_FILES, _masked_lm_class, _read_config, as_model_ref, \
    folder_hash, resolve_folder
from seqclaims.lazy import lazy_import
from seqclaims.paths import cache_dir

torch = lazy_import("torch")


def init_copy(ref: ModelRef | str | dict, seed: int) -> ModelRef:
    """A reference to a randomly initialised copy of `ref` (seeded by `seed`), saved once in the cache."""
    ref = as_model_ref(ref)
    folder = resolve_folder(ref).resolve()
    target = cache_dir() / "init-models" / f"{folder_hash(folder)[:20]}-seed{seed}"
    if not (target / "config.json").is_file():
        _save_init_copy(ref, folder, seed, target)
    trusted = ref.trust_remote_code or ref.name in EMBEDDED_MODELS
    return ModelRef(path=str(target), trust_remote_code=trusted, tokenization=ref.tokenization,
                    attn_implementation=ref.attn_implementation, module_map=ref.module_map)


def _save_init_copy(ref: ModelRef, folder: Path, seed: int, target: Path) -> None:
    from transformers import AutoConfig

    config = _read_config(folder)
    trusted = ref.trust_remote_code or ref.name in EMBEDDED_MODELS
    model_class = _masked_lm_class(folder, config)
    model_config = AutoConfig.from_pretrained(str(folder), trust_remote_code=trusted, local_files_only=True)
    torch.manual_seed(seed)
    model = model_class._from_config(model_config)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        for path in folder.iterdir():  # tokenizer, config and model code; not the weights or the card
            if path.is_file() and (path.name in DEFINING_FILES or path.suffix in (".py", ".model")):
                shutil.copy2(path, staging / path.name)
        model.save_pretrained(staging)
        try:
            os.replace(staging, target)  # atomic; another worker that made the same copy first wins
        except OSError:
            pass
    finally:
        shutil.rmtree(staging, ignore_errors=True)
