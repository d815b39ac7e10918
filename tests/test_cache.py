"""Activation cache: content-addressed keys, reuse, corruption recovery, and two processes on one key."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seqclaims.errors import InputError
from seqclaims.inputs import cache
from seqclaims.inputs.cache import CacheEntry, cache_key, extract
from seqclaims.inputs.models import load_model, run_with_cache, save_random_model
from seqclaims.inputs.tokenizers import build_nucleotide_tokenizer

SEQUENCES = ["ACGTACGTAAGCTTAGNACG", "ACGTAGG", "GGGTTTACAGATTACA", "TTTTAAAACCCCGGGG"]
HOOKS = ["layer.1.resid_post", "layer.0.attn.pattern", "layer.0.mlp.post"]


@pytest.fixture(autouse=True, scope="module")
def module_cache(tmp_path_factory):
    """A private cache from before the module's model fixtures load: nothing here writes to the shared one."""
    with pytest.MonkeyPatch.context() as patch:
        folder = tmp_path_factory.mktemp("module-cache")
        patch.setenv("SEQCLAIMS_CACHE", str(folder))
        yield folder


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch, module_cache):
    """A fresh cache per test, so that every test starts from cold entries."""
    monkeypatch.setenv("SEQCLAIMS_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_no_test_writes_to_the_shared_cache(private_cache, module_cache, tiny):
    from seqclaims.paths import cache_dir

    assert cache_dir() == private_cache
    extract(tiny, SEQUENCES, HOOKS[:1], dataset_hash="private")
    assert any((private_cache / "activations").iterdir())
    assert os.environ["SEQCLAIMS_CACHE"] != str(Path(__file__).resolve().parent.parent / ".cache" / "seqclaims")


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cache-model")
    return save_random_model(folder, "bert", tokenizer=build_nucleotide_tokenizer("kmer_nonoverlapping", 3, model_max_length=64))


@pytest.fixture(scope="module")
def tiny(model_folder):
    return load_model({"path": str(model_folder)})


def _equal(first: dict, second: dict) -> bool:
    return first.keys() == second.keys() and all(np.array_equal(first[k], second[k]) for k in first)


# ---------------------------------------------------------------------------------------------
# Keys

BASE = dict(model_hash="m" * 64, dataset_hash="d1", hooks=("layer.0.resid_post",), options={"reduce": None, "dtype": "float32"})


@settings(max_examples=50, deadline=None)
@given(
    field=st.sampled_from(["model_hash", "dataset_hash", "hooks", "options"]),
    change=st.text(min_size=1, max_size=8),
)
def test_key_changes_with_each_input(field, change):
    changed = dict(BASE)
    if field == "hooks":
        changed["hooks"] = (*BASE["hooks"], f"layer.{len(change)}.mlp.post")
    elif field == "options":
        changed["options"] = {**BASE["options"], "reduce": change}
    else:
        changed[field] = BASE[field] + change
    assert cache_key(**changed) != cache_key(**BASE)


def test_key_ignores_hook_order_and_repeats_but_not_the_code_version(monkeypatch):
    hooks = ["layer.1.resid_post", "embed"]
    key = cache_key("m", "d", hooks, {"reduce": None})
    assert cache_key("m", "d", hooks[::-1] + ["embed"], {"reduce": None}) == key
    assert len(key) == 64
    monkeypatch.setattr(cache, "CODE_VERSION", cache.CODE_VERSION + "-next")
    assert cache_key("m", "d", hooks, {"reduce": None}) != key


@pytest.mark.parametrize("library", ["torch", "transformers"])
def test_key_follows_the_torch_and_transformers_versions(monkeypatch, library):
    key = cache_key("m", "d", ["embed"], {})
    assert set(cache.RUNTIME_VERSIONS) == {"torch", "transformers"}
    monkeypatch.setitem(cache.RUNTIME_VERSIONS, library, "0.0.0-other")
    assert cache_key("m", "d", ["embed"], {}) != key


def test_code_version_is_a_hash_of_the_extraction_source():
    assert len(cache.CODE_VERSION) == 16 and int(cache.CODE_VERSION, 16) >= 0


def test_entry_key_follows_sequences_tokenization_reduction_and_dtype(tiny):
    keys = {
        extract(tiny, SEQUENCES, HOOKS[:1], dataset_hash="d").key,
        extract(tiny, SEQUENCES[::-1], HOOKS[:1], dataset_hash="d").key,  # same dataset hash, other content
        extract(tiny, SEQUENCES, HOOKS[:1], dataset_hash="d2").key,
        extract(tiny, SEQUENCES, HOOKS[:1], dataset_hash="d", tokenization={"kind": "single"}).key,
        extract(tiny, SEQUENCES, HOOKS[:1], dataset_hash="d", reduce="mean").key,
        extract(tiny, SEQUENCES, HOOKS[:1], dataset_hash="d", dtype="float16").key,
        extract(tiny, SEQUENCES, HOOKS[:2], dataset_hash="d").key,
    }
    assert len(keys) == 7


def test_entry_key_follows_the_module_map_and_the_attention_implementation(tiny, model_folder):
    builtin = tiny.module_map.model_dump()
    without_probs = load_model({"path": str(model_folder), "module_map": {**builtin, "attn_probs": None}})
    sdpa = load_model({"path": str(model_folder), "attn_implementation": "sdpa"})
    assert cache.attention_implementation(tiny) == "eager" and cache.attention_implementation(sdpa) == "sdpa"
    first = extract(tiny, SEQUENCES, HOOKS[:1], dataset_hash="d")
    keys = {first.key} | {extract(other, SEQUENCES, HOOKS[:1], dataset_hash="d").key for other in (without_probs, sdpa)}
    assert len(keys) == 3
    inputs = json.loads(CacheEntry(first.key).manifest_path.read_text())["inputs"]
    assert inputs["module_map"] == builtin and inputs["attn_implementation"] == "eager"


# ---------------------------------------------------------------------------------------------
# Extraction and reuse


def test_second_extraction_is_served_from_the_cache(tiny, private_cache):
    first = extract(tiny, SEQUENCES, HOOKS, dataset_hash="d", batch_size=3)
    second = extract(tiny, SEQUENCES, HOOKS[::-1], dataset_hash="d", batch_size=2)
    assert (first.source, second.source) == ("computed", "cache")
    assert first.key == second.key and _equal(first, second)
    folder = private_cache / "activations" / first.key[:2] / first.key
    assert (folder / "manifest.json").is_file()
    assert not [p for p in folder.iterdir() if p.name.endswith(".tmp")]
    second["layer.1.resid_post"][:] = 0  # arrays handed out are the caller's own
    assert _equal(extract(tiny, SEQUENCES, HOOKS, dataset_hash="d"), first)


def test_stored_arrays_match_a_direct_run_and_carry_the_tokenization(tiny):
    stored = extract(tiny, SEQUENCES, HOOKS, dataset_hash="d")
    batch = tiny.tokenize(SEQUENCES)
    direct = run_with_cache(tiny, batch, HOOKS)
    for name in HOOKS:
        assert stored[name].dtype == np.float32
        np.testing.assert_allclose(stored[name], direct[name].numpy(), atol=1e-5)
    assert np.array_equal(stored["tokens.offsets"], batch.offsets.numpy())
    assert np.array_equal(stored["tokens.special_mask"], batch.special_mask.numpy())
    assert stored["tokens.lengths"].tolist() == batch.lengths.tolist()


@pytest.mark.parametrize("reduce", ["mean", "max", "cls"])
def test_reduction_pools_content_tokens(tiny, reduce):
    per_token = extract(tiny, SEQUENCES, ["layer.1.resid_post"], dataset_hash="d")
    pooled = extract(tiny, SEQUENCES, ["layer.1.resid_post"], dataset_hash="d", reduce=reduce)
    values, content = per_token["layer.1.resid_post"], ~per_token["tokens.special_mask"]
    for row in range(len(SEQUENCES)):
        tokens = values[row][content[row]]
        expected = {"mean": tokens.mean(0), "max": tokens.max(0), "cls": values[row, 0]}[reduce]
        np.testing.assert_allclose(pooled["layer.1.resid_post"][row], expected, rtol=1e-5, atol=1e-6)
    assert pooled["layer.1.resid_post"].shape == (len(SEQUENCES), tiny.d_model)


def test_float16_storage(tiny):
    full = extract(tiny, SEQUENCES, ["layer.0.mlp.post"], dataset_hash="d")
    half = extract(tiny, SEQUENCES, ["layer.0.mlp.post"], dataset_hash="d", dtype="float16")
    assert half["layer.0.mlp.post"].dtype == np.float16
    np.testing.assert_allclose(half["layer.0.mlp.post"], full["layer.0.mlp.post"], rtol=2e-3, atol=2e-3)


def test_bad_requests_are_input_errors(tiny):
    with pytest.raises(InputError, match="attn.pattern without reduce"):
        extract(tiny, SEQUENCES, ["layer.0.attn.pattern"], dataset_hash="d", reduce="mean")
    with pytest.raises(InputError, match="did you mean"):
        extract(tiny, SEQUENCES, ["layer.0.resid"], dataset_hash="d")
    with pytest.raises(InputError, match="reduce must be"):
        extract(tiny, SEQUENCES, ["embed"], dataset_hash="d", reduce="median")


# ---------------------------------------------------------------------------------------------
# Damaged entries


def _damage_truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-7])


def _damage_flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


def _damage_remove(path: Path) -> None:
    path.unlink()


@pytest.mark.parametrize("damage", [_damage_truncate, _damage_flip_a_byte, _damage_remove])
def test_damaged_array_is_detected_and_recomputed(tiny, damage):
    first = extract(tiny, SEQUENCES, HOOKS, dataset_hash="d")
    damage(CacheEntry(first.key).folder / "layer.1.resid_post.npy")
    again = extract(tiny, SEQUENCES, HOOKS, dataset_hash="d")
    assert again.source == "computed" and _equal(first, again)
    assert extract(tiny, SEQUENCES, HOOKS, dataset_hash="d").source == "cache"


def test_unreadable_manifest_is_recomputed(tiny):
    first = extract(tiny, SEQUENCES, HOOKS[:1], dataset_hash="d")
    manifest = CacheEntry(first.key).manifest_path
    manifest.write_text(manifest.read_text()[:40])
    again = extract(tiny, SEQUENCES, HOOKS[:1], dataset_hash="d")
    assert again.source == "computed" and _equal(first, again)
    assert json.loads(manifest.read_text())["key"] == first.key


# ---------------------------------------------------------------------------------------------
# Two processes on one key

CHILD = textwrap.dedent(
    """
    import sys, numpy as np
    from seqclaims.inputs.cache import extract
    from seqclaims.inputs.models import load_model
    folder, out = sys.argv[1], sys.argv[2]
    sequences = {sequences!r}
    result = extract(load_model({{"path": folder}}), sequences, {hooks!r}, dataset_hash="two-processes")
    np.savez(out, **result)
    print(result.source)
    """
)


def test_two_processes_on_one_key_compute_once_and_read_identical_arrays(model_folder, private_cache, tmp_path):
    script = CHILD.format(sequences=SEQUENCES * 8, hooks=HOOKS)
    env = {**os.environ, "SEQCLAIMS_CACHE": str(private_cache), "HF_HUB_OFFLINE": "1", "SEQCLAIMS_PROGRESS": "0"}
    outputs = [tmp_path / f"child{i}.npz" for i in range(2)]
    children = [
        subprocess.Popen([sys.executable, "-c", script, str(model_folder), str(out)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for out in outputs
    ]
    results = [child.communicate(timeout=300) for child in children]
    assert all(child.returncode == 0 for child in children), [err[-2000:] for _, err in results]
    sources = sorted(out.strip().splitlines()[-1] for out, _ in results)
    assert sources == ["cache", "computed"]
    first, second = (dict(np.load(out)) for out in outputs)
    assert _equal(first, second)
