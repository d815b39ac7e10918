"""seqclaims.methods.sae: top-k SAE training, unit-norm decoder, dead latents, determinism, the cache and fit statistics."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from seqclaims.methods import sae as sae_module
from seqclaims.methods.sae import (SaeSpec, TopKSAE, fit_estimates, load_or_train, sae_folder, sae_key, sample_tokens,
                                   train_sae)

WIDTH, TRUE_FEATURES = 16, 12


def sparse_data(n: int = 6000, active: int = 2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(n, WIDTH) activations made of `active` of TRUE_FEATURES unit directions, and the directions."""
    rng = np.random.default_rng(seed)
    directions = np.linalg.qr(rng.normal(size=(WIDTH, WIDTH)))[0][:TRUE_FEATURES]  # orthonormal rows
    chosen = np.stack([rng.choice(TRUE_FEATURES, size=active, replace=False) for _ in range(n)])
    magnitude = rng.uniform(1.0, 3.0, size=(n, active))
    x = np.einsum("na,nad->nd", magnitude, directions[chosen]) + 0.01 * rng.normal(size=(n, WIDTH))
    return x.astype(np.float32) + 5.0, directions  # an offset the normalisation must remove


SMALL = SaeSpec(d_sae=24, k=2, lr=0.01, tokens=6000, epochs=15, batch_size=256, seed=0)


@pytest.fixture(scope="module")
def trained():
    x, directions = sparse_data()
    return train_sae(x, SMALL), x, directions


def test_decoder_rows_have_unit_norm(trained):
    model = trained[0].model
    assert torch.allclose(model.W_dec.norm(dim=1), torch.ones(model.d_sae), atol=1e-5)


def test_recovers_planted_dictionary(trained):
    sae, x, directions = trained
    cosines = np.abs(directions @ sae.model.W_dec.detach().numpy().T)  # (true features, latents)
    assert cosines.max(axis=1).min() > 0.9, cosines.max(axis=1)
    assert sae.report["fvu_train"] < 0.1
    assert sae.report["mean_l0_train"] <= SMALL.k


def test_codes_are_sparse_and_non_negative(trained):
    sae, x, _ = trained
    codes = sae.codes(x[:500])
    assert codes.shape == (500, SMALL.d_sae)
    assert (codes.getnnz(axis=1) <= SMALL.k).all()
    assert (codes.data > 0).all()


def test_same_seed_same_sae_and_other_seed_differs():
    x, _ = sparse_data(n=2000)
    spec = SMALL.model_copy(update={"epochs": 2})
    first, second = train_sae(x, spec), train_sae(x, spec)
    for name, value in first.model.state_dict().items():
        assert torch.equal(value, second.model.state_dict()[name]), name
    other = train_sae(x, spec.model_copy(update={"seed": 1}))
    assert not torch.equal(first.model.W_dec, other.model.W_dec)


def test_training_restores_torch_settings():
    threads = torch.get_num_threads()
    train_sae(sparse_data(n=500)[0], SMALL.model_copy(update={"epochs": 1}))
    assert torch.get_num_threads() == threads
    assert not torch.are_deterministic_algorithms_enabled()


def test_dead_latents_are_counted_and_resampled():
    """Data on 3 directions with 64 latents: most latents are silent, get re-initialised, and the report
    counts the ones that never fire on the training tokens."""
    rng = np.random.default_rng(0)
    x = (rng.uniform(1, 2, size=(3000, 1)) * np.eye(WIDTH)[:3][rng.integers(0, 3, size=3000)]).astype(np.float32)
    sae = train_sae(x, SaeSpec(d_sae=64, k=1, lr=0.01, tokens=3000, epochs=4, batch_size=200, seed=0))
    never_fire = float(np.mean(sae.firing_counts(x) == 0))
    assert sae.report["dead_fraction_train"] == never_fire > 0.5
    assert sae.report["resampled"] == sum(epoch["silent"] for epoch in sae.report["curve"][:-1]) > 0
    assert sae.report["curve"][-1]["resampled"] == 0  # nothing re-initialised after the last epoch


def test_resampling_points_silent_latents_at_badly_reconstructed_tokens():
    torch.manual_seed(0)
    model = TopKSAE(WIDTH, 6, 1)
    optimiser = torch.optim.Adam(model.parameters(), lr=0.01)
    x = torch.zeros(50, WIDTH)
    x[:, 0] = 1.0  # every token is the same direction
    sae_module._step(model, optimiser, x, torch.zeros(6, dtype=torch.bool), 2, False)
    silent = torch.tensor([False, True, True, False, False, False])
    resampled = sae_module._resample(model, optimiser, x, silent, torch.Generator().manual_seed(0))
    assert resampled == 2
    residual = x[0] - model(x[:1])[0][0]
    expected = residual / residual.norm()
    with torch.no_grad():
        for row in (1, 2):
            assert torch.allclose(model.W_dec[row], expected, atol=1e-5)
            assert float(model.b_enc[row]) == 0.0
            assert float(optimiser.state[model.W_dec]["exp_avg"][row].abs().sum()) == 0.0


def test_auxk_gradient_reaches_only_dead_latents():
    torch.manual_seed(0)
    model = TopKSAE(WIDTH, 10, 2)
    x = torch.randn(32, WIDTH)
    dead = torch.zeros(10, dtype=torch.bool)
    dead[[3, 7]] = True
    pre = model.pre_activations(x)
    loss = sae_module._auxk_loss(model, pre, torch.randn(32, WIDTH), dead, aux_k=2)
    loss.backward()
    touched = model.W_dec.grad.abs().sum(dim=1) > 0
    assert touched[[3, 7]].all() and not touched[~dead].any()


@given(n=st.integers(1, 500), tokens=st.integers(100, 600), seed=st.integers(0, 5))
@settings(max_examples=30, deadline=None)
def test_sample_tokens_without_replacement(n, tokens, seed):
    spec = SMALL.model_copy(update={"tokens": tokens, "seed": seed})
    picked = sample_tokens(n, spec)
    assert picked.size == min(n, tokens)
    assert np.unique(picked).size == picked.size and (np.diff(picked) > 0).all()
    assert np.array_equal(picked, sample_tokens(n, spec))


def test_spec_rejects_k_not_below_d_sae():
    with pytest.raises(ValidationError, match="k"):
        SaeSpec(d_sae=8, k=8)


def test_cache_round_trip_and_corrupt_entry(tmp_path, monkeypatch):
    monkeypatch.setenv("SEQCLAIMS_CACHE", str(tmp_path))
    x, _ = sparse_data(n=1500)
    spec = SMALL.model_copy(update={"epochs": 2})
    calls = []

    def tokens():
        calls.append(1)
        return x

    first = load_or_train("activations-key", "layer.0.resid_post", spec, tokens)
    second = load_or_train("activations-key", "layer.0.resid_post", spec, tokens)
    assert (first.source, second.source, len(calls)) == ("computed", "cache", 1)
    assert (first.codes(x[:200]) != second.codes(x[:200])).nnz == 0
    assert np.allclose(first.mean, second.mean) and first.scale == second.scale
    folder = sae_folder(sae_key("activations-key", "layer.0.resid_post", spec))
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["inputs"]["hook"] == "layer.0.resid_post" and "fvu_train" in manifest["report"]
    (folder / "sae.safetensors").write_bytes(b"not weights")
    third = load_or_train("activations-key", "layer.0.resid_post", spec, tokens)
    assert third.source == "computed" and len(calls) == 2


def test_key_depends_on_every_input():
    base = sae_key("a", "layer.0.resid_post", SMALL)
    assert base != sae_key("b", "layer.0.resid_post", SMALL)
    assert base != sae_key("a", "layer.1.resid_post", SMALL)
    for change in ({"d_sae": 32}, {"k": 3}, {"lr": 0.02}, {"tokens": 5000}, {"epochs": 3}, {"seed": 1}):
        assert base != sae_key("a", "layer.0.resid_post", SMALL.model_copy(update=change)), change


def test_fit_estimates_match_direct_computation(trained):
    sae, x, _ = trained
    held_out = sparse_data(n=800, seed=1)[0]
    units = np.repeat(np.arange(40), 20)
    fit = fit_estimates(sae, held_out, units, level=0.95, resamples=200, seed=0, min_n=5)
    normalised = sae.normalise(held_out).numpy().astype(np.float64)
    with torch.no_grad():
        recon = sae.model(torch.from_numpy(normalised.astype(np.float32)))[0].numpy()
    direct = ((normalised - recon) ** 2).sum() / ((normalised - normalised.mean(axis=0)) ** 2).sum()
    assert fit["fvu"].estimate == pytest.approx(direct, rel=1e-4)
    assert fit["fvu"].ci_low <= fit["fvu"].estimate <= fit["fvu"].ci_high
    assert fit["mean_l0"].estimate <= SMALL.k and fit["fvu"].n == 40
    with torch.no_grad():  # dead: latents that are active on none of the training tokens, counted directly
        _, values, indices = sae.model(sae.normalise(x))
    fired = np.unique(indices.numpy()[values.numpy() > 0])
    assert fit["dead_fraction"].estimate == pytest.approx(1 - len(fired) / SMALL.d_sae)


def test_a_randomly_initialised_copy_of_the_model_gets_its_own_sae():
    """The SAE cache is keyed by the activation entry, whose key holds the model folder's hash: the copy that
    `_minus_init` evaluates (same config, other weights, another folder) gets an SAE of its own, never the
    model's."""
    from seqclaims.inputs.cache import extract
    from seqclaims.inputs.init_models import init_copy
    from seqclaims.inputs.models import load_model

    sequences, hook, spec = ["ACGTTATAAAAGGCATGCC" * 3] * 2, "layer.0.resid_post", SaeSpec()
    keys = [extract(load_model(ref), sequences, [hook], dataset_hash="sae-init-test").key
            for ref in ("planted", init_copy("planted", seed=3))]
    assert keys[0] != keys[1]
    assert sae_key(keys[0], hook, spec) != sae_key(keys[1], hook, spec)
