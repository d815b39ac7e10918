"""The architectures of the published models, as tiny random-initialised fixtures built offline.

DNABERT-2-like (MosaicBERT: BPE, fused Wqkv, ALiBi, unpadded encoder, gated MLP, no attention
probabilities returned) and NT-v2-like (ESM with rotary positions, SwiGLU without feed-forward biases,
6-mer tokens), each loaded through its own code with `trust_remote_code`, and a Caduceus-like bidirectional
Mamba (with a reverse-complement-equivariant option): every hook, attention patterns
equal to an eager recomputation, patching identity, hook fidelity, and MINTS's CTCF attention claims run
end to end.
"""

from __future__ import annotations

import math
from pathlib import Path

import claim_files
import numpy as np
import pytest
import torch
import yaml

from seqclaims.judging.judge import EVALUATED
from seqclaims.inputs import models
from seqclaims.inputs.architectures import (CADUCEUS_MODULE_MAP, DNABERT2_MODULE_MAP, RELEASED_CADUCEUS_MODULE_MAP,
                                            build_caduceus_like, build_dnabert2_like, build_nt_v2_like)
from seqclaims.inputs.datasets import build
from seqclaims.inputs.models import (folder_hash, load_model, patch_head, run_with_cache, run_with_interventions,
                                     zero_ablate_head)

REPO = Path(__file__).resolve().parents[1]
CTCF = {"dataset": "motif_sites", "matrix": "MA0139.1", "n": 400}


@pytest.fixture(scope="module")
def windows():
    return build(CTCF, seed=0).sequences


@pytest.fixture(scope="module")
def dnabert2_folder(tmp_path_factory, windows):
    return build_dnabert2_like(tmp_path_factory.mktemp("dnabert2-like"), sequences=windows[:100])


@pytest.fixture(scope="module")
def dnabert2(dnabert2_folder):
    return load_model(dnabert2_ref(dnabert2_folder))


def dnabert2_ref(folder: Path, **options) -> dict:
    return {"path": str(folder), "trust_remote_code": True, "module_map": DNABERT2_MODULE_MAP, **options}


def nt_v2_ref(folder: Path, **options) -> dict:
    return {"path": str(folder), "trust_remote_code": True, "tokenization": {"kind": "kmer_nonoverlapping", "k": 6},
            **options}


@pytest.fixture(scope="module")
def nt_v2_folder(tmp_path_factory):
    return build_nt_v2_like(tmp_path_factory.mktemp("nt-v2-like"))


@pytest.fixture(scope="module", params=["dnabert2-like", "nt-v2-like"])
def fixture_model(request, dnabert2_folder, nt_v2_folder):
    if request.param == "dnabert2-like":
        return load_model(dnabert2_ref(dnabert2_folder))
    return load_model(nt_v2_ref(nt_v2_folder))


def test_the_build_is_deterministic_and_needs_trust_remote_code(dnabert2_folder, tmp_path, windows):
    again = build_dnabert2_like(tmp_path / "again", sequences=windows[:100])
    assert folder_hash(again) == folder_hash(dnabert2_folder)
    with pytest.raises(models.InputError, match="trust_remote_code: true"):
        load_model({"path": str(again), "module_map": DNABERT2_MODULE_MAP})


def test_nt_v2_like_build_is_deterministic_with_a_gated_bias_free_mlp(nt_v2_folder, tmp_path):
    assert folder_hash(build_nt_v2_like(tmp_path / "again")) == folder_hash(nt_v2_folder)
    model = load_model(nt_v2_ref(nt_v2_folder))
    block = model.module(f"{model.module_map.layers}.0")
    assert block.intermediate.dense.bias is None and block.output.dense.bias is None
    assert block.intermediate.dense.out_features == 2 * model.d_mlp
    assert model.model.config.position_embedding_type == "rotary"


def test_every_hook_has_its_documented_shape(fixture_model, windows):
    batch = fixture_model.tokenize([*windows[:4], windows[4][:50]])  # a shorter one: padding
    hooks = fixture_model.hook_names() + ["logits"]
    out = run_with_cache(fixture_model, batch, hooks)
    n_seq, n_tok = len(batch), batch.n_tok
    for hook in hooks:
        assert tuple(out[hook].shape) == models.hook_shape(fixture_model, hook, n_seq, n_tok), hook
    padding = ~batch.attention_mask.bool()
    assert padding.any() and out["layer.1.resid_post"][padding].abs().max() == 0  # unpadded inside, padded out


def test_nt_v2_like_patterns_at_the_sdpa_kernel_equal_eager_within_1e_5(nt_v2_folder, windows):
    eager, sdpa = load_model(nt_v2_ref(nt_v2_folder)), load_model(nt_v2_ref(nt_v2_folder, attn_implementation="sdpa"))
    assert sdpa.model.config._attn_implementation == "sdpa"
    batch = eager.tokenize(windows[:6])
    hooks = [f"layer.{layer}.attn.pattern" for layer in range(eager.n_layers)] + ["logits"]
    expected, got = run_with_cache(eager, batch, hooks), run_with_cache(sdpa, batch, hooks)
    for hook in hooks:
        assert torch.allclose(got[hook], expected[hook], atol=1e-5), hook


def test_a_module_map_qkv_that_is_not_a_fused_projection_is_one_line(dnabert2_folder, windows):
    from seqclaims.methods.key_scores import extract_key_scores

    wrong = load_model(dnabert2_ref(dnabert2_folder, module_map={**DNABERT2_MODULE_MAP, "qkv": "attention.self"}))
    with pytest.raises(models.InputError, match="module_map.qkv: attention.self .* is not a linear layer"):
        extract_key_scores(wrong, windows[:2], dataset_hash="qkv-test", key_score="qk_weights")


def test_remote_code_that_needs_a_missing_package_is_one_line(nt_v2_folder, tmp_path):
    import shutil

    broken = Path(shutil.copytree(nt_v2_folder, tmp_path / "needs-mamba-ssm"))
    code = broken / "nt_v2_like.py"
    code.write_text("import mamba_ssm_not_installed_here\n" + code.read_text())
    with pytest.raises(models.InputError, match="cannot load a masked LM"):
        load_model(nt_v2_ref(broken))


def test_patterns_equal_an_eager_recomputation_from_wqkv_and_alibi(dnabert2, windows):
    batch = dnabert2.tokenize(windows[:6])
    out = run_with_cache(dnabert2, batch, ["embed", "layer.0.resid_post", "layer.0.attn.pattern", "layer.1.attn.pattern"])
    real = batch.attention_mask.bool()
    slopes = 2.0 ** (-8.0 * torch.arange(1, dnabert2.n_heads + 1) / dnabert2.n_heads)
    distance = (torch.arange(batch.n_tok)[None, :] - torch.arange(batch.n_tok)[:, None]).abs()
    for layer, hidden in ((0, out["embed"]), (1, out["layer.0.resid_post"])):
        wqkv = dnabert2.block_module(layer, "attention.self.Wqkv")
        with torch.no_grad():
            q, k, _ = wqkv(hidden).unflatten(-1, (3, dnabert2.n_heads, dnabert2.d_head)).permute(2, 0, 3, 1, 4)
        scores = q @ k.transpose(-2, -1) / math.sqrt(dnabert2.d_head) - slopes[:, None, None] * distance
        expected = torch.softmax(scores.masked_fill(~real[:, None, None, :], float("-inf")), dim=-1)
        pair = real[:, None, :, None] & real[:, None, None, :]
        assert torch.allclose(out[f"layer.{layer}.attn.pattern"][pair.expand_as(expected)],
                              expected[pair.expand_as(expected)], atol=1e-5)


def test_patching_a_head_with_its_own_output_changes_nothing_and_ablating_it_does(fixture_model, windows):
    batch = fixture_model.tokenize(windows[:4])
    clean = run_with_cache(fixture_model, batch, ["layer.0.attn.head_out", "logits"])
    own = clean["layer.0.attn.head_out"][:, :, 1]
    same = run_with_interventions(fixture_model, batch, [patch_head(0, 1, own)], ["logits"])
    ablated = run_with_interventions(fixture_model, batch, [zero_ablate_head(0, 1)], ["logits"])
    real = batch.attention_mask.bool()
    assert torch.allclose(same["logits"][real], clean["logits"][real], atol=1e-5)
    assert (ablated["logits"][real] - clean["logits"][real]).abs().max() > 1e-4


def test_reading_every_hook_leaves_the_logits_as_a_plain_forward_gives_them(fixture_model, windows):
    fixture_model._fidelity.clear()
    run_with_cache(fixture_model, fixture_model.tokenize(windows[:3]), fixture_model.hook_names())
    assert fixture_model._fidelity and max(fixture_model._fidelity.values()) < models.FIDELITY_TOLERANCE


def mints_claim(name: str, model: dict, tmp_path: Path) -> Path:
    """MINTS's claim file with its data, settings and criteria, reading a fixture instead of the real model."""
    claim = yaml.safe_load((REPO / "claims" / "mints" / f"{name}.yaml").read_text())
    shared = yaml.safe_load((REPO / "claims" / "mints" / "_ctcf-attention.yaml").read_text())
    claim.pop("include")
    claim.update({key: value for key, value in shared.items() if key not in claim})
    claim["model"] = model
    claim["id"] = f"{name}-fixture"
    path = tmp_path / "claims" / "mints" / f"{claim['id']}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(claim, sort_keys=False))
    return path


@pytest.mark.parametrize("name", ["mints-dnabert2-ctcf-qk-strict", "mints-dnabert2-ctcf-enrichment-strict",
                                  "mints-nt-v2-ctcf-qk-strict", "mints-nt-v2-ctcf-enrichment-strict"])
def test_mints_ctcf_attention_claims_run_end_to_end_on_the_fixtures(name, dnabert2_folder, nt_v2_folder, tmp_path):
    model = dnabert2_ref(dnabert2_folder) if "dnabert2" in name else nt_v2_ref(nt_v2_folder)
    result = claim_files.evaluate(mints_claim(name, model, tmp_path))
    assert result.status == EVALUATED, result.reason
    # a random-initialised model detects no CTCF site: the claims' expectation (refuted) holds here too
    assert result.verdict == "refuted", [(c.statistic, c.estimate, c.ci_low, c.ci_high, c.verdict) for c in result.criteria]
    for criterion in result.criteria:
        assert np.isfinite(criterion.estimate), criterion


# ---------------------------------------------------------------------------------------------
# A state-space model: no attention heads


@pytest.fixture(scope="module")
def caduceus_folder(tmp_path_factory):
    return build_caduceus_like(tmp_path_factory.mktemp("caduceus-like"))


def caduceus_ref(folder: Path) -> dict:
    return {"path": str(folder), "trust_remote_code": True, "module_map": CADUCEUS_MODULE_MAP}


def test_caduceus_like_offers_residual_and_mixer_hooks_independent_of_padding(caduceus_folder, tmp_path, windows):
    assert folder_hash(build_caduceus_like(tmp_path / "again")) == folder_hash(caduceus_folder)
    model = load_model(caduceus_ref(caduceus_folder))
    assert model.n_heads == 0 and model.d_mlp == 0
    assert model.hook_names() == ["embed", "layer.0.resid_post", "layer.0.mixer.out", "layer.1.resid_post",
                                  "layer.1.mixer.out"]
    short = windows[1][:120]
    batch = model.tokenize([windows[0], short])
    out = run_with_cache(model, batch, model.hook_names() + ["logits"])
    for hook in model.hook_names():
        assert tuple(out[hook].shape) == models.hook_shape(model, hook, len(batch), batch.n_tok)
    alone = run_with_cache(model, model.tokenize([short]), ["layer.1.resid_post"])["layer.1.resid_post"][0]
    assert torch.allclose(out["layer.1.resid_post"][1, : alone.shape[0]], alone, atol=1e-5)  # reverse pass too
    model._fidelity.clear()
    run_with_cache(model, batch, model.hook_names())
    assert max(model._fidelity.values()) < models.FIDELITY_TOLERANCE


def test_families_that_need_heads_say_a_state_space_model_has_none(caduceus_folder, tmp_path):
    model = load_model(caduceus_ref(caduceus_folder))
    with pytest.raises(models.InputError, match="has no attention heads .a state-space model.; hook 'layer.0.attn.pattern' needs them"):
        run_with_cache(model, model.tokenize(["ACGT" * 10]), ["layer.0.attn.pattern"])
    for check, params in (("qk_motif", {"matrix": "MA0108.3"}), ("attention_enrichment", {"matrix": "MA0108.3"})):
        path = claim_files.write_claim(tmp_path, f"ssm-{check.replace('_', '-')}", check=check, model=caduceus_ref(caduceus_folder),
                                       data={"dataset": "motif_sites", "matrix": "MA0108.3", "n": 40}, params=params,
                                       criteria=[{"statistic": "max_r" if check == "qk_motif" else "max_rho", "op": ">=",
                                                  "threshold": 0.5}])
        result = claim_files.evaluate(path)
        assert result.status == "error" and "has no attention heads (a state-space model)" in result.reason
        assert "\n" not in result.reason


def test_a_probe_claim_runs_on_the_state_space_model(caduceus_folder, tmp_path):
    path = claim_files.write_claim(tmp_path, "ssm-probe", check="probe", model=caduceus_ref(caduceus_folder),
                                   data={"dataset": "motif_sites", "matrix": "MA0108.3", "n": 200, "gc_match": False},
                                   params={"layer": 1, "pooling": "mean"},
                                   criteria=[{"statistic": "auroc", "op": ">=", "threshold": 0.5}])
    result = claim_files.evaluate(path)
    assert result.status == EVALUATED, result.reason
    assert np.isfinite(result.criteria[0].estimate)


# ---------------------------------------------------------------------------------------------
# Every family on every fixture, where it means something


HEADLESS = {"qk_motif", "attention_enrichment", "activation_patching", "head_ablation", "ov_alignment", "neuron",
            "attention_association"}


@pytest.mark.parametrize("family", sorted(claim_files.FAMILIES.families))
@pytest.mark.parametrize("architecture", ["dnabert2-like", "nt-v2-like", "caduceus-like"])
def test_every_family_runs_on_every_fixture_or_says_in_one_line_why_not(family, architecture, dnabert2_folder,
                                                                       nt_v2_folder, caduceus_folder, tmp_path):
    model = {"dnabert2-like": lambda: dnabert2_ref(dnabert2_folder), "nt-v2-like": lambda: nt_v2_ref(nt_v2_folder),
             "caduceus-like": lambda: caduceus_ref(caduceus_folder)}[architecture]()
    result = claim_files.evaluate(claim_files.fixture_claim(family, model, tmp_path))
    if architecture == "caduceus-like" and family in HEADLESS:
        assert result.status == "error" and "\n" not in result.reason, result.reason
        assert "has no attention heads (a state-space model)" in result.reason or "has no MLP" in result.reason, result.reason
    else:
        assert result.status == EVALUATED, result.reason
        assert result.verdict in ("supported", "refuted", "inconclusive")


def test_the_released_caduceus_layout_reads_the_residual_stream_and_never_the_padding(tmp_path, windows):
    """Blocks that return (hidden, residual), a forward without attention_mask: resid_post is their sum, and
    sequences of unequal length run one at a time, so a short one gives what it gives alone."""
    folder = build_caduceus_like(tmp_path / "released", released_layout=True)
    model = load_model({"path": str(folder), "trust_remote_code": True, "module_map": RELEASED_CADUCEUS_MODULE_MAP})
    assert not model.takes_attention_mask
    short = windows[1][:120]
    batch = model.tokenize([windows[0], short])
    out = run_with_cache(model, batch, ["embed", "layer.0.mixer.out", "layer.0.resid_post", "layer.1.resid_post"])
    assert torch.allclose(out["layer.0.resid_post"], out["embed"] + out["layer.0.mixer.out"], atol=1e-6)
    alone = run_with_cache(model, model.tokenize([short]), ["layer.1.resid_post"])["layer.1.resid_post"][0]
    assert torch.allclose(out["layer.1.resid_post"][1, : alone.shape[0]], alone, atol=1e-6)
    model._fidelity.clear()
    run_with_cache(model, batch, model.hook_names())
    assert max(model._fidelity.values()) < models.FIDELITY_TOLERANCE


def strand_flipped(hidden: torch.Tensor, length: int) -> torch.Tensor:
    """What the reverse complement's hidden states are under RC-PS: real positions and channels reversed."""
    return hidden[:length].flip(0).flip(-1)


def test_the_rc_equivariant_option_makes_every_layer_equivariant_to_the_reverse_complement(tmp_path, windows):
    """Caduceus-PS: h(rc(x))[i] = flip(h(x)[L-1-i]) at every hook, padding included, and the logits of rc(x)
    at i are the complement's logits of x at L-1-i; the default build is not equivariant."""
    from seqclaims.inputs.architectures import complement_map
    from seqclaims.inputs.genome import reverse_complement

    equivariant = load_model(caduceus_ref(build_caduceus_like(tmp_path / "rcps", rc_equivariant=True)))
    plain = load_model(caduceus_ref(build_caduceus_like(tmp_path / "plain")))
    assert folder_hash(build_caduceus_like(tmp_path / "rcps-again", rc_equivariant=True)) == folder_hash(tmp_path / "rcps")
    sequences = [windows[0], windows[1][:120]]
    hooks = equivariant.hook_names()
    assert hooks == plain.hook_names()
    complement = torch.tensor(complement_map(equivariant.tokenizer))
    for model, should_hold in ((equivariant, True), (plain, False)):
        batch = model.tokenize(sequences)
        forward = run_with_cache(model, batch, hooks + ["logits"])
        reverse = run_with_cache(model, model.tokenize([reverse_complement(s) for s in sequences]), hooks + ["logits"])
        for row, n in enumerate(batch.attention_mask.sum(dim=1).tolist()):
            for hook in hooks:
                holds = torch.allclose(reverse[hook][row, :n], strand_flipped(forward[hook][row], n), atol=1e-5)
                assert holds == should_hold, (hook, row)
            logits = reverse["logits"][row, :n]
            assert torch.allclose(logits, forward["logits"][row, :n].flip(0)[:, complement], atol=1e-5) == should_hold


def test_two_folders_with_their_own_code_for_one_config_type_each_load_their_own_class(caduceus_folder, tmp_path):
    """AutoModelForMaskedLM registers the first remote class for its config type (MambaConfig here), and a
    second folder of that type would then load with the first folder's class."""
    first = load_model(caduceus_ref(caduceus_folder))
    released = build_caduceus_like(tmp_path / "released-after", released_layout=True)
    second = load_model({"path": str(released), "trust_remote_code": True, "module_map": RELEASED_CADUCEUS_MODULE_MAP})
    assert (first.architecture, second.architecture) == ("CaduceusForMaskedLM", "ReleasedLayoutCaduceusForMaskedLM")
