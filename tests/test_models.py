"""Model adapters: model references, offline loading, tokenization offsets, hook shapes, interventions."""

from __future__ import annotations

import itertools
import json
import shutil
import socket
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from seqclaims.errors import HookInfidelity, InputError, Unavailable
from seqclaims.inputs import models
from seqclaims.inputs.models import (ModelRef, hook_names, hook_shape, load_model, mean_ablate_head, patch_every_head,
                                     patch_head, run_with_cache, run_with_interventions, save_random_model, set_neuron,
                                     zero_ablate_head)
from seqclaims.inputs.tokenizers import Tokenization, build_nucleotide_tokenizer, split_sequence, tokenize

SEQUENCES = ["ACGTACGTAAGCTTAGN", "ACGTA", "GGGTTTACAGATTACA"]
CORRUPTED = ["ACGTTCGTAAGCTTAGN", "ACCTA", "GGGTATACAGATTACA"]
ARCHITECTURES = ("bert", "roberta", "esm")
SHA = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="module", params=ARCHITECTURES)
def tiny(request, tmp_path_factory):
    """A 2-layer, d=32, 4-head masked LM (BERT, RoBERTa, ESM) with single-nucleotide tokens, loaded from its folder."""
    folder = tmp_path_factory.mktemp(f"tiny-{request.param}")
    save_random_model(folder, request.param, tokenizer=build_nucleotide_tokenizer("single", model_max_length=64))
    return load_model({"path": str(folder)})


@pytest.fixture(scope="module")
def batch(tiny):
    return tiny.tokenize(SEQUENCES)


@pytest.fixture(scope="module")
def clean(tiny, batch):
    return run_with_cache(tiny, batch, hook_names(tiny) + ["logits"], batch_size=2)


# ---------------------------------------------------------------------------------------------
# What a claim's model: says


def test_model_ref_accepts_a_name_a_path_and_a_pinned_hub_id():
    assert ModelRef.model_validate("organism").name == "organism"
    assert ModelRef.model_validate({"path": "/m"}).path == "/m"
    pinned = ModelRef.model_validate({"hf_id": "org/model", "revision": SHA, "tokenization": {"kind": "kmer_overlapping", "k": 6}})
    assert (pinned.hf_id, pinned.revision, pinned.tokenization.k) == ("org/model", SHA, 6)
    assert pinned.trust_remote_code is False and pinned.attn_implementation == "eager"
    assert pinned.describe() == f"org/model@{SHA}"


@pytest.mark.parametrize(
    "value",
    [
        {"path": "/m", "pth": 1},
        {"path": "/m", "hf_id": "a/b"},
        {"path": "/m", "revision": "abc"},
        {"hf_id": "a/b", "revision": SHA, "attn_implementation": "flash"},
        {"path": "/m", "trust_remote_code": "yes"},
        {"path": "/m", "trust_remote_code": 1},
        {"path": "/m", "tokenization": {"kind": "kmer_overlapping", "k": "6"}},
        {"path": "/m", "tokenization": {"kind": "kmer_overlapping", "k": 6.0}},
        {"path": "/m", "module_map": {"layers": 1, "attn_out_proj": "y", "mlp_out_proj": "z"}},
        {"path": 3},
        {"path": "/m", "tokenization": {"kind": "single", "k": 3}},
        {"path": "/m", "tokenization": {"kind": "bpe"}},
        {"path": "/m", "module_map": {"layers": "x", "attn_out_proj": "y"}},
        "../../outside",
        {},
    ],
)
def test_model_ref_is_strict(value):
    with pytest.raises(ValidationError):
        ModelRef.model_validate(value)


@pytest.mark.parametrize("revision", [None, "main", "v1.0", SHA[:12], SHA.upper(), SHA + "0"])
def test_hub_models_need_a_full_commit_sha(revision):
    value = {"hf_id": "org/model"} if revision is None else {"hf_id": "org/model", "revision": revision}
    with pytest.raises(ValidationError) as caught:
        ModelRef.model_validate(value)
    (error,) = caught.value.errors()
    assert "40-hex commit sha" in error["msg"] and "\n" not in error["msg"]


def test_tokenization_is_strict():
    assert Tokenization.model_validate({"kind": "kmer_overlapping", "k": 6}).k == 6
    for bad in ({"kind": "kmer_overlapping", "k": "6"}, {"kind": "kmer_overlapping", "k": True}):
        with pytest.raises(ValidationError):
            Tokenization.model_validate(bad)


def _one_line(error: Exception) -> str:
    message = str(error)
    assert "\n" not in message
    return message


def test_missing_folder_is_unavailable_with_how_to_provide_it(tmp_path):
    with pytest.raises(Unavailable) as caught:
        load_model({"path": str(tmp_path / "nowhere")})
    assert "point `model: {path: ...}`" in _one_line(caught.value)


def test_missing_hub_model_says_how_to_download_it(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(Unavailable) as caught:
        load_model({"hf_id": "zhihan1996/DNABERT-2-117M", "revision": "7bce263b15377fc15361f52cfab88f8b586abda0"})
    message = _one_line(caught.value)
    assert "huggingface-cli download zhihan1996/DNABERT-2-117M --revision 7bce263b15377fc15361f52cfab88f8b586abda0" in message
    assert "model: {path: ...}" in message


def test_missing_embedded_model_is_unavailable(tmp_path, monkeypatch):
    monkeypatch.setattr(models, "fixtures_dir", lambda: tmp_path)
    with pytest.raises(Unavailable) as caught:
        load_model("planted")
    message = _one_line(caught.value)
    assert "'planted'" in message and "organism" in message


def test_embedded_name_resolves_under_fixtures(tmp_path, monkeypatch):
    monkeypatch.setattr(models, "fixtures_dir", lambda: tmp_path)
    save_random_model(tmp_path / "models" / "organism", seed=3)
    assert load_model("organism").folder == (tmp_path / "models" / "organism").resolve()


def test_hub_model_resolves_from_the_local_cache_only(tmp_path, monkeypatch):
    revision = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "models--org--tiny"
    save_random_model(repo / "snapshots" / revision, seed=4)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    loaded = load_model({"hf_id": "org/tiny", "revision": revision})
    assert loaded.folder == (repo / "snapshots" / revision).resolve()


def test_loading_works_with_the_network_off(tmp_path, monkeypatch):
    def refuse(self, address, *args, **kwargs):
        raise OSError(f"no network ({address!r})")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    folder = save_random_model(tmp_path / "offline", "esm", seed=5)
    loaded = load_model({"path": str(folder)})
    assert run_with_cache(loaded, loaded.tokenize(["ACGT"]), ["logits"])["logits"].shape[0] == 1


def test_custom_code_needs_the_claim_to_opt_in(tmp_path):
    folder = save_random_model(tmp_path / "custom", seed=6)
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoModelForMaskedLM": "bert_layers.BertForMaskedLM"}
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(InputError) as caught:
        load_model({"path": str(folder)})
    assert "trust_remote_code: true" in _one_line(caught.value)


def _broken_copy(folder, tmp_path, name):
    broken = tmp_path / name
    shutil.copytree(folder, broken)
    return broken


def _break_config_json(folder):
    (folder / "config.json").write_text('{"model_type": "bert",')


def _break_sizes(folder):
    config = json.loads((folder / "config.json").read_text())
    config["intermediate_size"] = 48  # the saved MLP weights are 64 wide
    (folder / "config.json").write_text(json.dumps(config))


def _truncate_weights(folder):
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:5000])


def _garble_weights(folder):
    (folder / "model.safetensors").write_bytes(b"\0" * 64)


@pytest.mark.parametrize(
    "damage, fragment",
    [
        (_break_config_json, "config.json"),
        (_break_sizes, "size mismatch"),
        (_truncate_weights, "safetensors"),
        (_garble_weights, "safetensors"),
    ],
)
def test_a_damaged_model_folder_is_a_one_line_input_error(tmp_path, damage, fragment):
    folder = _broken_copy(save_random_model(tmp_path / "good", seed=7), tmp_path, damage.__name__)
    damage(folder)
    with pytest.raises(InputError) as caught:
        load_model({"path": str(folder)})
    message = _one_line(caught.value)
    assert str(folder) in message and fragment in message


def test_loaded_model_reports_its_dimensions(tiny):
    assert (tiny.n_layers, tiny.n_heads, tiny.d_model, tiny.d_head, tiny.d_mlp) == (2, 4, 32, 8, 64)
    assert tiny.max_length == 64
    assert tiny.architecture in ("BertForMaskedLM", "RobertaForMaskedLM", "EsmForMaskedLM")
    assert tiny.model.config._attn_implementation == "eager"
    assert not tiny.model.training and tiny.model.dtype == torch.float32


def test_model_hash_is_stable_and_follows_the_weights(tmp_path):
    first = save_random_model(tmp_path / "a", seed=1)
    same = save_random_model(tmp_path / "b", seed=1)
    other = save_random_model(tmp_path / "c", seed=2)
    hashes = [models.folder_hash(f) for f in (first, same, other)]
    assert hashes[0] == hashes[1] != hashes[2]
    assert len(hashes[0]) == 64


def test_model_identity_ignores_version_stamps_but_not_the_config(tmp_path):
    import json

    folder = save_random_model(tmp_path / "a", seed=1)
    before = models.folder_hash(folder)
    config = json.loads((folder / "config.json").read_text())
    restamped = {"transformers_version": "9.99.0", "_name_or_path": "/elsewhere", **config}
    (folder / "config.json").write_text(json.dumps(restamped, indent=4))  # other stamp, key order, layout
    assert models.folder_hash(folder) == before
    (folder / "config.json").write_text(json.dumps({**config, "layer_norm_eps": 1e-5}))
    assert models.folder_hash(folder) != before


def test_context_length_counts_learned_positions_from_the_padding_index():
    tokenizer = SimpleNamespace(model_max_length=10**30)
    esm_absolute = SimpleNamespace(model_type="esm", max_position_embeddings=1026, pad_token_id=1, position_embedding_type="absolute")
    bert = SimpleNamespace(model_type="bert", max_position_embeddings=512, pad_token_id=0)
    assert models._context_length(esm_absolute, tokenizer) == 1024
    assert models._context_length(bert, tokenizer) == 512
    assert models._context_length(bert, SimpleNamespace(model_max_length=128)) == 128


# ---------------------------------------------------------------------------------------------
# Tokenization with offsets


def _content(batch, row: int) -> tuple[np.ndarray, np.ndarray]:
    keep = ~batch.special_mask[row].numpy()
    return batch.input_ids[row].numpy()[keep], batch.offsets[row].numpy()[keep]


def test_single_nucleotide_offsets():
    tokenizer = build_nucleotide_tokenizer("single")
    batch = tokenize(["ACGTN", "AC"], "single", tokenizer=tokenizer)
    ids, spans = _content(batch, 0)
    assert spans.tolist() == [[i, i + 1] for i in range(5)]
    assert tokenizer.convert_ids_to_tokens(ids.tolist()) == list("ACGTN")
    assert batch.offsets[1].tolist()[0] == [0, 0] and batch.special_mask[1].tolist() == [True, False, False, True, True, True, True]
    assert batch.attention_mask[1].tolist() == [1, 1, 1, 1, 0, 0, 0]


def test_overlapping_kmer_offsets():
    tokenizer = build_nucleotide_tokenizer("kmer_overlapping", 3)
    batch = tokenize(["ACGTNAC"], "kmer_overlapping", 3, tokenizer=tokenizer)
    ids, spans = _content(batch, 0)
    assert spans.tolist() == [[i, i + 3] for i in range(5)]
    tokens = tokenizer.convert_ids_to_tokens(ids.tolist())
    assert tokens == ["ACG", "CGT", "[UNK]", "[UNK]", "[UNK]"]


def test_nonoverlapping_kmer_offsets_leave_leftovers_as_single_nucleotides():
    tokenizer = build_nucleotide_tokenizer("kmer_nonoverlapping", 3)
    batch = tokenize(["ACGTTNACGA"], "kmer_nonoverlapping", 3, tokenizer=tokenizer)
    ids, spans = _content(batch, 0)
    assert tokenizer.convert_ids_to_tokens(ids.tolist()) == ["ACG", "T", "T", "N", "ACG", "A"]
    assert spans.tolist() == [[0, 3], [3, 4], [4, 5], [5, 6], [6, 9], [9, 10]]


@settings(max_examples=60, deadline=None)
@given(
    sequence=st.text(alphabet="ACGTNacgt", min_size=6, max_size=40),
    scheme=st.sampled_from([("single", 1), ("kmer_overlapping", 2), ("kmer_overlapping", 6), ("kmer_nonoverlapping", 3), ("kmer_nonoverlapping", 6)]),
)
def test_token_spans_cover_the_characters_they_name(sequence, scheme):
    kind, k = scheme
    tokens, spans = split_sequence(sequence.upper(), Tokenization(kind=kind, k=k))
    assert all(sequence.upper()[s:e] == t for t, (s, e) in zip(tokens, spans))
    if kind == "kmer_overlapping":
        assert spans.tolist() == [[i, i + k] for i in range(len(sequence) - k + 1)]
    else:
        assert "".join(tokens) == sequence.upper()
        assert np.array_equal(spans[1:, 0], spans[:-1, 1]) and spans[0, 0] == 0


@pytest.mark.parametrize("kind,k", [("single", 1), ("kmer_nonoverlapping", 3), ("kmer_overlapping", 3)])
def test_saved_nucleotide_tokenizer_loads_offline_and_keeps_its_scheme(tmp_path, kind, k):
    from transformers import AutoTokenizer

    build_nucleotide_tokenizer(kind, k, model_max_length=99).save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(str(tmp_path), local_files_only=True)
    assert loaded.model_max_length == 99
    direct = tokenize(SEQUENCES, kind, k, tokenizer=loaded)
    through_folder = tokenize(SEQUENCES, tokenizer=loaded)  # the recorded scheme
    assert torch.equal(direct.input_ids, through_folder.input_ids) and torch.equal(direct.offsets, through_folder.offsets)
    if kind != "kmer_overlapping":  # the tokenizer's own pre-tokenizer splits raw sequences the same way
        own = loaded(SEQUENCES, return_offsets_mapping=True, padding=True, return_tensors="pt")
        assert torch.equal(own["input_ids"], direct.input_ids)
        assert torch.equal(own["offset_mapping"], direct.offsets)


def test_fast_tokenizer_without_a_scheme_gives_its_own_offsets():
    from tokenizers import Regex, Tokenizer
    from tokenizers import models as tk_models
    from tokenizers import pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "AAA", "CG", "A", "C", "G", "T", "N"])}
    backend = Tokenizer(tk_models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex("AAA|CG|."), behavior="isolated")
    backend.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]")
    batch = tokenize(["aaacgTAAAA"], tokenizer=tokenizer)
    ids, spans = _content(batch, 0)
    assert tokenizer.convert_ids_to_tokens(ids.tolist()) == ["AAA", "CG", "T", "AAA", "A"]
    assert spans.tolist() == [[0, 3], [3, 5], [5, 6], [6, 9], [9, 10]]


def test_slow_tokenizer_offsets_are_aligned_from_token_strings(tmp_path):
    from transformers import EsmTokenizer

    kmers = ["".join(p) for p in itertools.product("ACGT", repeat=3)]
    (tmp_path / "vocab.txt").write_text("\n".join(["<unk>", "<pad>", "<mask>", "<cls>", "<eos>", *kmers, *"ACGTN"]))
    tokenizer = EsmTokenizer(str(tmp_path / "vocab.txt"))
    batch = tokenize(["ACGTACGTA", "ACNGTTAC"], tokenizer=tokenizer)
    assert _content(batch, 0)[1].tolist() == [[0, 3], [3, 6], [6, 9]]
    assert _content(batch, 1)[1].tolist() == [[0, 1], [1, 2], [2, 3], [3, 6], [6, 7], [7, 8]]


def test_a_sequence_longer_than_the_context_names_its_index_and_lengths(tiny):
    with pytest.raises(InputError) as caught:
        tiny.tokenize(["ACGT", "A" * 100])
    message = _one_line(caught.value)
    assert "sequence 1 (100 characters)" in message and "102 tokens" in message and "64 tokens" in message


def test_empty_and_too_short_sequences_are_input_errors():
    with pytest.raises(InputError, match="sequence 1 is empty"):
        tokenize(["ACGT", ""], "single", tokenizer=build_nucleotide_tokenizer("single"))
    with pytest.raises(InputError, match="fewer than k = 6"):
        tokenize(["ACG"], "kmer_overlapping", 6, tokenizer=build_nucleotide_tokenizer("kmer_overlapping", 6))
    for kind in ("single", None):
        with pytest.raises(InputError, match="no sequences to tokenize") as caught:
            tokenize([], kind, tokenizer=build_nucleotide_tokenizer("single"))
        _one_line(caught.value)


class _SpecialOnlyTokenizer:
    """A tokenizer that drops every nucleotide, leaving only [CLS] [SEP]."""

    pad_token_id, unk_token_id = 0, 1

    def get_vocab(self):
        return {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, "A": 4}

    def __call__(self, text, return_special_tokens_mask=False):
        return {"input_ids": [2, 3], "special_tokens_mask": [1, 1]}


def test_a_tokenizer_that_keeps_no_content_token_is_an_input_error():
    with pytest.raises(InputError, match="special tokens only") as caught:
        tokenize(["AAAA"], "single", tokenizer=_SpecialOnlyTokenizer())
    _one_line(caught.value)


# ---------------------------------------------------------------------------------------------
# Hooks


def test_every_named_hook_has_its_documented_shape(tiny, batch, clean):
    names = hook_names(tiny)
    assert names[0] == "embed" and len(names) == 1 + 4 * tiny.n_layers
    assert set(clean) == set(names) | {"logits"}
    for name, value in clean.items():
        assert tuple(value.shape) == hook_shape(tiny, name, len(batch), batch.n_tok), name
    assert clean["layer.1.attn.head_out"].shape[-2:] == (tiny.n_heads, tiny.d_head)


def test_attention_rows_sum_to_one_and_ignore_padding(tiny, batch, clean):
    mask = batch.attention_mask.bool()
    for layer in range(tiny.n_layers):
        pattern = clean[f"layer.{layer}.attn.pattern"]  # (n_seq, n_heads, q, k)
        row_sums = pattern.sum(-1).permute(0, 2, 1)  # (n_seq, q, n_heads)
        assert torch.allclose(row_sums[mask], torch.ones_like(row_sums[mask]), atol=1e-5)
        assert pattern.masked_select(~mask[:, None, None, :]).abs().max() == 0


def test_padding_positions_are_zero_whatever_the_batch_size(tiny, batch, clean):
    one_by_one = run_with_cache(tiny, batch, ["layer.1.resid_post", "layer.0.mlp.post"], batch_size=1)
    for name, value in one_by_one.items():
        assert torch.allclose(value, clean[name], atol=1e-5), name
    assert clean["layer.1.resid_post"][1, batch.lengths[1]:].abs().max() == 0


def test_head_out_is_the_attention_weighted_values(tiny, batch, clean):
    """head_out of layer 0, head h = pattern_h @ V_h, with V from the block's value projection of its input."""
    attention = tiny.block_module(0, "attention")
    block_input = clean["embed"]
    if tiny.architecture.startswith("Esm"):  # pre-LayerNorm blocks
        block_input = attention.LayerNorm(block_input)
    with torch.inference_mode():
        values = attention.self.value(block_input).unflatten(-1, (tiny.n_heads, tiny.d_head))
    expected = torch.einsum("nhqk,nkhd->nqhd", clean["layer.0.attn.pattern"], values)
    real = batch.attention_mask.bool()
    assert torch.allclose(clean["layer.0.attn.head_out"][real], expected[real], atol=1e-5)


def test_unknown_hook_suggests_the_closest_name(tiny, batch):
    with pytest.raises(InputError, match="did you mean 'layer.0.resid_post'"):
        run_with_cache(tiny, batch, ["layer.0.resid_pst"])
    with pytest.raises(InputError, match="2 layers"):
        run_with_cache(tiny, batch, ["layer.7.resid_post"])


ORIGINAL_SDPA = torch.nn.functional.scaled_dot_product_attention


def test_attention_from_an_sdpa_model_is_recovered_at_the_kernel(tiny, batch, clean):
    sdpa = load_model({"path": str(tiny.folder), "attn_implementation": "sdpa"})
    assert sdpa.model.config._attn_implementation == "sdpa"
    got = run_with_cache(sdpa, batch, ["layer.1.attn.pattern", "logits"])
    assert torch.allclose(got["layer.1.attn.pattern"], clean["layer.1.attn.pattern"], atol=1e-5)
    assert torch.allclose(got["logits"], clean["logits"], atol=1e-4)
    assert sdpa.model.config._attn_implementation == "sdpa"  # never switched
    assert torch.nn.functional.scaled_dot_product_attention is ORIGINAL_SDPA  # the kernel is restored after the run


@pytest.mark.parametrize("name", ["planted", "organism", "organism-6mer"])
def test_sdpa_patterns_of_the_embedded_models_equal_eager_within_1e_5(name):
    from seqclaims.inputs.datasets import build

    eager, sdpa = load_model(name), load_model({"name": name, "attn_implementation": "sdpa"})
    batch = eager.tokenize(build({"dataset": "motif_sites", "matrix": "MA0108.3", "n": 20}, seed=0).sequences[:4])
    hooks = [f"layer.{layer}.attn.pattern" for layer in range(eager.n_layers)]
    expected, got = run_with_cache(eager, batch, hooks), run_with_cache(sdpa, batch, hooks)
    for hook in hooks:
        assert torch.allclose(got[hook], expected[hook], atol=1e-5), (name, hook)


@pytest.mark.parametrize("case", ["bool_mask", "float_bias", "causal", "grouped_query"])
def test_kernel_probabilities_reproduce_scaled_dot_product_attention(case):
    """softmax(q k^T scale + mask) @ v equals torch's own kernel output, for every mask form it takes."""
    generator = torch.Generator().manual_seed(0)
    q = torch.randn(2, 4, 9, 8, generator=generator)
    k = torch.randn(2, 2 if case == "grouped_query" else 4, 9, 8, generator=generator)
    v = torch.randn(*k.shape, generator=generator)
    options = {"scale": 0.3}
    if case == "bool_mask":
        options["attn_mask"] = torch.rand(2, 1, 9, 9, generator=generator) > 0.3
        options["attn_mask"][..., 0] = True
    elif case == "float_bias":  # e.g. ALiBi: a per-head linear penalty on distance
        distance = (torch.arange(9)[None, :] - torch.arange(9)[:, None]).abs()
        options["attn_mask"] = -torch.tensor([0.5, 0.25, 0.125, 0.0625])[:, None, None] * distance
    elif case == "causal":
        options["is_causal"] = True
    else:
        options["enable_gqa"] = True
    expected = torch.nn.functional.scaled_dot_product_attention(q, k, v, **options)
    probabilities = models.attention_probabilities(q, k, options.get("attn_mask"), is_causal=options.get("is_causal", False),
                                                   scale=0.3, gqa=case == "grouped_query")
    values = v.repeat_interleave(2, dim=1) if case == "grouped_query" else v
    assert torch.allclose(probabilities @ values, expected, atol=1e-5)
    assert torch.allclose(probabilities.sum(-1), torch.ones(2, 4, 9), atol=1e-6)


def test_a_layer_without_the_kernel_says_how_to_get_its_probabilities(tiny, batch, monkeypatch):
    sdpa = load_model({"path": str(tiny.folder), "attn_implementation": "sdpa"})
    monkeypatch.setattr(models, "kernel_patterns", lambda model, wanted, store: _no_switch())
    with pytest.raises(InputError, match="without torch.nn.functional.scaled_dot_product_attention"):
        run_with_cache(sdpa, batch, ["layer.0.attn.pattern"])


class _no_switch:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_a_capture_that_alters_the_model_makes_its_claims_inconclusive(tiny, batch, monkeypatch, tmp_path):
    """Reading hooks must not change what the model computes; a capture that does is caught once per model."""
    def altering_capture(point, token_mask, store, pair_sum=False):
        def hook(module, args, output):
            value = output[0] if isinstance(output, (tuple, list)) else output
            value.neg_()  # an in-place edit: what a careless hook does
            store[point.name] = value
        return hook

    fresh = load_model({"path": str(tiny.folder), "attn_implementation": "sdpa", "tokenization": None})
    fresh._fidelity.clear()
    monkeypatch.setattr(models, "_output_capture", altering_capture)
    with pytest.raises(HookInfidelity, match="changes the logits"):
        run_with_cache(fresh, batch, ["layer.0.resid_post"])
    with pytest.raises(HookInfidelity, match="changes the logits"):  # and every later run with these hooks
        run_with_cache(fresh, batch, ["layer.0.resid_post"])
    monkeypatch.undo()
    fresh._fidelity.clear()
    run_with_cache(fresh, batch, ["layer.0.resid_post", "layer.1.attn.pattern"])  # faithful hooks pass
    assert max(fresh._fidelity.values()) < models.FIDELITY_TOLERANCE


def test_declared_module_map_reads_the_same_hooks(tiny, batch, clean):
    declared = tiny.module_map.model_dump()
    remapped = load_model({"path": str(tiny.folder), "module_map": declared})
    got = run_with_cache(remapped, batch, ["layer.1.attn.head_out", "layer.0.mlp.post"])
    for name, value in got.items():
        assert torch.equal(value, clean[name])
    broken = load_model({"path": str(tiny.folder), "module_map": {**declared, "mlp_out_proj": "mlp.wo"}})
    with pytest.raises(InputError, match="no module .*mlp.wo"):
        run_with_cache(broken, batch, ["layer.0.mlp.post"])


@settings(max_examples=30, deadline=None)
@given(lengths=st.lists(st.integers(1, 7), min_size=1, max_size=5), width=st.integers(1, 4))
def test_unpadded_layout_round_trips(lengths, width):
    """Architectures that drop padding inside the encoder keep (n_real_tokens, d); hooks see (n_seq, n_tok, d)."""
    n_tok = max(lengths)
    token_mask = torch.arange(n_tok)[None, :] < torch.tensor(lengths)[:, None]
    unpadded = torch.randn(int(token_mask.sum()), width)
    padded = models.padded_tokens(unpadded, token_mask)
    assert padded.shape == (len(lengths), n_tok, width)
    assert padded[~token_mask].abs().sum() == 0
    assert torch.equal(models._module_layout(padded, unpadded, token_mask), unpadded)


# ---------------------------------------------------------------------------------------------
# Interventions


def test_patching_a_head_with_its_own_value_changes_nothing(tiny, batch, clean):
    own = clean["layer.1.attn.head_out"][:, :, 2]
    patched = run_with_interventions(tiny, batch, [patch_head(1, 2, own)], batch_size=2)
    assert (patched["logits"] - clean["logits"]).abs().max() < 1e-6


def test_zero_ablating_a_head_changes_the_logits(tiny, batch, clean):
    ablated = run_with_interventions(tiny, batch, [zero_ablate_head(0, 1)], hooks=["layer.0.attn.head_out"])
    assert ablated["layer.0.attn.head_out"][:, :, 1].abs().max() == 0
    assert torch.equal(ablated["layer.0.attn.head_out"][:, :, 0], clean["layer.0.attn.head_out"][:, :, 0])
    assert (ablated["logits"] - clean["logits"]).abs().max() > 1e-4


def test_mean_ablation_writes_the_mean_at_the_chosen_positions(tiny, batch, clean):
    mean = clean["layer.0.attn.head_out"][:, :, 3].mean(dim=(0, 1))  # (d_head,)
    positions = [1, 2]
    run = run_with_interventions(tiny, batch, [mean_ablate_head(0, 3, mean, positions)], hooks=["layer.0.attn.head_out"])
    head = run["layer.0.attn.head_out"][:, :, 3]
    assert torch.allclose(head[:, positions], mean.expand(len(batch), 2, -1))
    assert torch.equal(head[:, 3:], clean["layer.0.attn.head_out"][:, 3:, 3])


def test_patching_only_masked_positions(tiny, batch, clean):
    corrupted = tiny.tokenize(CORRUPTED)
    where = torch.zeros(len(batch), batch.n_tok, dtype=torch.bool)
    where[0, 5] = where[2, 9] = True
    values = clean["layer.0.attn.head_out"][:, :, 0]
    run = run_with_interventions(tiny, corrupted, [patch_head(0, 0, values, where)], hooks=["layer.0.attn.head_out"])
    plain = run_with_cache(tiny, corrupted, ["layer.0.attn.head_out"])
    head, before = run["layer.0.attn.head_out"][:, :, 0], plain["layer.0.attn.head_out"][:, :, 0]
    assert torch.equal(head[where], values[where])
    assert torch.equal(head[~where], before[~where])


def test_setting_a_neuron_overwrites_only_that_channel(tiny, batch, clean):
    run = run_with_interventions(tiny, batch, [set_neuron(1, 5, 3.0, positions=[1])], hooks=["layer.1.mlp.post"])
    post = run["layer.1.mlp.post"]
    assert torch.all(post[:, 1, 5] == 3.0)
    assert torch.equal(post[:, 2:, 5], clean["layer.1.mlp.post"][:, 2:, 5])
    assert torch.equal(post[:, :, :5], clean["layer.1.mlp.post"][:, :, :5])


def test_patching_every_head_at_once_matches_patching_each_in_turn(tiny, batch, clean):
    corrupted = tiny.tokenize(CORRUPTED)
    values = clean["layer.1.attn.head_out"]

    def masked_token_logit(logits, rows):  # (n_rows, n_tok, d_vocab) -> (n_rows,)
        return logits[:, 2, 5]

    every = patch_every_head(tiny, corrupted, 1, values, hooks=["layer.1.attn.head_out"], batch_size=8)
    metric = patch_every_head(tiny, corrupted, 1, values, metric=masked_token_logit, batch_size=8)
    assert every["logits"].shape[:2] == (tiny.n_heads, len(batch))
    for head in range(tiny.n_heads):
        single = run_with_interventions(tiny, corrupted, [patch_head(1, head, values[:, :, head])])
        assert torch.allclose(every["logits"][head], single["logits"], atol=1e-5)
        assert torch.allclose(metric["metric"][head], single["logits"][:, 2, 5], atol=1e-5)
        assert torch.equal(every["layer.1.attn.head_out"][head][:, :, head], values[:, :, head])


def test_interventions_are_checked(tiny, batch):
    with pytest.raises(InputError, match="out of range"):
        run_with_interventions(tiny, batch, [zero_ablate_head(0, 9)])
    with pytest.raises(InputError, match="not a hook"):
        run_with_interventions(tiny, batch, [set_neuron(5, 0, 1.0)])


def test_negative_token_positions_are_rejected_not_wrapped(tiny, batch, clean):
    for intervention in (zero_ablate_head(0, 1, positions=[1, -1]), set_neuron(1, 3, 0.0, positions=torch.tensor([-2]))):
        with pytest.raises(InputError, match="non-negative token indices") as caught:
            run_with_interventions(tiny, batch, [intervention])
        _one_line(caught.value)
    with pytest.raises(InputError, match="non-negative token indices"):
        patch_every_head(tiny, batch, 0, clean["layer.0.attn.head_out"], positions=[-1])
    mask = torch.zeros(batch.n_tok, dtype=torch.bool)
    mask[-1] = True  # a bool mask may be built with negative indexing; it is not an index list
    run_with_interventions(tiny, batch, [zero_ablate_head(0, 1, positions=mask)])


def test_hook_infidelity_is_an_inconclusive_verdict_with_its_reason(tmp_path, monkeypatch):
    import claim_files

    def unfaithful(model, batch, points):
        raise HookInfidelity("reading hooks layer.0.resid_post changes the logits of model planted by 0.5")

    monkeypatch.setattr(models, "check_hook_fidelity", unfaithful)
    path = claim_files.write_claim(tmp_path, "planted-infidelity", check="neuron",
                                   data={"dataset": "motif_sites", "matrix": "MA0108.3", "n": 60},
                                   params={"layer": 1, "channel": 9, "annotation": {"pattern": "ATG"}},
                                   criteria=[{"statistic": "auprc", "op": ">=", "threshold": 0.9}])
    result = claim_files.evaluate(path)
    assert result.status == "evaluated" and result.verdict == "inconclusive"
    assert "changes the logits" in result.reason


# ---------------------------------------------------------------------------------------------
# Device, precision and out-of-memory backoff (run on the CPU here; a GPU uses the same paths)


def test_a_device_that_is_not_one_or_not_here_is_one_line(monkeypatch):
    monkeypatch.setenv("SEQCLAIMS_DEVICE", "gpu0")
    with pytest.raises(InputError, match="is not a device; use cpu, cuda or cuda:N"):
        models.run_device()
    monkeypatch.setenv("SEQCLAIMS_DEVICE", f"cuda:{torch.cuda.device_count()}")
    with pytest.raises(InputError, match="is not available here"):
        models.run_device()
    monkeypatch.setenv("SEQCLAIMS_DEVICE", "cpu")
    assert models.run_device() == "cpu"
    monkeypatch.setenv("SEQCLAIMS_DTYPE", "float8")
    with pytest.raises(InputError, match="is not a precision"):
        models.compute_dtype()


def test_bfloat16_forward_passes_come_back_as_float32_near_float32_and_cache_apart(tiny, batch, clean, monkeypatch, tmp_path):
    from seqclaims.inputs.cache import extract

    monkeypatch.setenv("SEQCLAIMS_DTYPE", "bfloat16")
    half = load_model({"path": str(tiny.folder)})
    assert half is not tiny and half.dtype == "bfloat16"
    assert next(half.model.parameters()).dtype == torch.bfloat16
    got = run_with_cache(half, batch, ["layer.1.resid_post", "layer.1.attn.pattern"])
    for name, value in got.items():
        assert value.dtype == torch.float32 and value.device.type == "cpu"
        scale = clean[name].abs().max()
        assert (value - clean[name]).abs().max() < 0.05 * scale, name  # bfloat16 keeps about 3 digits
    monkeypatch.setenv("SEQCLAIMS_CACHE", str(tmp_path / "cache"))
    keys = {extract(m, SEQUENCES, ["layer.0.resid_post"], dataset_hash="d").key for m in (tiny, half)}
    assert len(keys) == 2


def test_weight_only_key_scores_run_in_bfloat16_and_come_back_as_float32(monkeypatch):
    from seqclaims.methods.key_scores import extract_key_scores

    sequences = ["ACGTTATAAAAGGCATCGATTACG" * 3, "TTGACCATATAAAAGCGC" * 4]
    full = extract_key_scores(load_model("planted"), sequences, dataset_hash="bf16-test", key_score="qk_weights")
    monkeypatch.setenv("SEQCLAIMS_DTYPE", "bfloat16")
    half = extract_key_scores(load_model("planted"), sequences, dataset_hash="bf16-test", key_score="qk_weights")
    for name, value in half.values.items():
        assert value.dtype == np.float32
        assert np.allclose(value, full.values[name], atol=0.05 * np.abs(full.values[name]).max()), name


def test_out_of_memory_halves_the_sub_batch_and_gives_the_same_results(tiny, batch, monkeypatch):
    expected = run_with_cache(tiny, batch, ["layer.1.resid_post"], batch_size=2)
    forward, sizes = models._forward, []

    def small_memory(model, rows, *args, **kwargs):
        sizes.append(len(rows))
        if len(rows) > 2:
            raise models.out_of_memory()("CUDA out of memory (simulated)")
        return forward(model, rows, *args, **kwargs)

    monkeypatch.setattr(models, "_forward", small_memory)
    got = run_with_cache(tiny, batch, ["layer.1.resid_post"], batch_size=8)
    # other sub-batches pad differently, which moves float32 results by rounding only
    assert torch.allclose(got["layer.1.resid_post"], expected["layer.1.resid_post"], atol=1e-5)
    assert sizes[0] == min(8, len(batch)) and max(sizes[1:]) <= 2

    def no_memory(model, rows, *args, **kwargs):
        raise models.out_of_memory()("CUDA out of memory (simulated)")

    monkeypatch.setattr(models, "_forward", no_memory)
    with pytest.raises(InputError, match="runs out of memory on cpu even one sequence at a time"):
        run_with_cache(tiny, batch, ["layer.0.resid_post"])
