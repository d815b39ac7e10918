"""Top-k sparse autoencoders on cached token activations, trained once and cached by their inputs.

Architecture (Gao et al. 2024, "Scaling and evaluating sparse autoencoders"): inputs are centred and
scaled, x = (a - mean) / scale with scale = sqrt(E ||a - mean||^2), so a mean squared error on x is
the fraction of variance unexplained; codes z = ReLU(TopK_k(x W_enc + b_enc)); reconstruction
x_hat = z W_dec + b_dec, where the k active decoder rows are summed directly (`embedding_bag`) instead
of multiplying the mostly-zero code by the whole decoder.

Training: Adam on MSE(x, x_hat) + AUX_COEF * AuxK, batches drawn by a seeded permutation each
epoch; decoder rows (one per latent) are kept at unit norm: the gradient component parallel to each
row is removed before the step and the rows are renormalised after it. Dead latents are revived twice
over: a latent that has not fired in the last `dead_window(n)` training tokens is asked by AuxK (with the
top `aux_k` such latents) to reconstruct the main reconstruction's residual, and at the end of every
epoch but the last, a latent that did not fire during the epoch is re-initialised towards badly
reconstructed tokens (`_resample`; AuxK cannot move a latent whose pre-activation is negative on every
token). After training, latents that never fire on the training tokens are counted as dead.

Determinism: the initialisation and batches come from a `torch.Generator` seeded with the spec's
seed, and training runs under `torch.use_deterministic_algorithms`; the same inputs and spec give
the same weights on the same machine.

Cache: `cache_dir()/sae/<key[:2]>/<key>/` holds `sae.safetensors` and `manifest.json` (written last,
with the weights' sha256 and the training report); the key is the sha256 of the activation cache key,
the hook, the spec and SAE_CODE_VERSION. Processes training the same key serialise on a lock file.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import scipy.sparse as sp
from pydantic import Field, model_validator

from seqclaims.code_keys import code_digest
from seqclaims.core.evidence import Estimate
from seqclaims.core.schema import StrictModel
from seqclaims.fsutil import atomic_write_bytes, atomic_write_json, file_lock
from seqclaims.lazy import lazy_import, when_called
from seqclaims.methods.stats import bootstrap
from seqclaims.paths import cache_dir

torch = lazy_import("torch")
F = lazy_import("torch.nn.functional")
safetensors_torch = lazy_import("safetensors.torch")

SAE_CODE_VERSION = code_digest(__name__)
AUX_COEF = 1.0 / 32.0
DEAD_WINDOW_TOKENS = 50_000
RESAMPLE_PROBE_TOKENS = 8192
RESAMPLE_ENCODER_SCALE = 0.2
ENCODE_BATCH = 8192

log = logging.getLogger(__name__)


class SaeSpec(StrictModel):
    """A claim's `sae:` mapping: what to train. Every field is part of the cache key."""

    d_sae: int = Field(1024, ge=2, le=65536, description="number of latents (dictionary size)")
    k: int = Field(16, ge=1, description="active latents per token (top-k)")
    lr: float = Field(2e-3, gt=0, le=1, description="Adam learning rate")
    tokens: int = Field(200_000, ge=100, description="training tokens drawn (without replacement) from the "
                        "train split's content tokens; all of them if fewer")
    epochs: int = Field(5, ge=1, le=1000, description="passes over the training tokens")
    batch_size: int = Field(4096, ge=16, description="tokens per optimisation step")
    aux_k: int | None = Field(None, ge=1, description="dead latents used by AuxK (default: half the input width)")
    seed: int = Field(0, ge=0, description="seed of the initialisation, the token sample and the batch order")

    @model_validator(mode="after")
    def _k_fits(self) -> "SaeSpec":
        if self.k >= self.d_sae:
            raise ValueError(f"k ({self.k}) must be smaller than d_sae ({self.d_sae})")
        return self


# ---------------------------------------------------------------------------------------------
# The model


@functools.cache
def topk_sae_class() -> type:
    """The top-k SAE, a torch module: defined on first use, since its base class would import torch with
    this module. `from seqclaims.methods.sae import TopKSAE` gives the same class."""

    class TopKSAE(torch.nn.Module):
        """Top-k sparse autoencoder on normalised inputs of width d_in.

        W_enc (d_sae, d_in), b_enc (d_sae,), W_dec (d_sae, d_in) with unit-norm rows, b_dec (d_in,): one row
        of each matrix per latent."""

        def __init__(self, d_in: int, d_sae: int, k: int, generator: torch.Generator | None = None):
            super().__init__()
            decoder = torch.randn(d_sae, d_in, generator=generator)
            decoder /= decoder.norm(dim=1, keepdim=True)
            self.W_dec = torch.nn.Parameter(decoder)
            self.W_enc = torch.nn.Parameter(decoder.clone())  # tied initialisation
            self.b_enc = torch.nn.Parameter(torch.zeros(d_sae))
            self.b_dec = torch.nn.Parameter(torch.zeros(d_in))
            self.k = k

        @property
        def d_sae(self) -> int:
            return self.W_dec.shape[0]

        def pre_activations(self, x: torch.Tensor) -> torch.Tensor:
            """(n, d_in) -> (n, d_sae). b_dec is a constant here (it learns from the reconstruction only), which
            spares the backward pass a second (n, d_sae) x (d_sae, d_in) product for the input's gradient."""
            return (x - self.b_dec.detach()) @ self.W_enc.T + self.b_enc

        def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            """(n, d_in) -> values (n, k) >= 0 and latent indices (n, k)."""
            values, indices = torch.topk(self.pre_activations(x), self.k, dim=1)
            return F.relu(values), indices

        def decode(self, values: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
            """Sum of the active decoder rows: values, indices (n, k) -> (n, d_in)."""
            return F.embedding_bag(indices, self.W_dec, per_sample_weights=values, mode="sum") + self.b_dec

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            values, indices = self.encode(x)
            return self.decode(values, indices), values, indices

        @torch.no_grad()
        def normalise_decoder(self) -> None:
            self.W_dec /= self.W_dec.norm(dim=1, keepdim=True).clamp(min=1e-12)

        @torch.no_grad()
        def remove_parallel_gradient(self) -> None:
            """Drop the part of each decoder row's gradient that would only change the row's norm."""
            if self.W_dec.grad is not None:
                parallel = (self.W_dec.grad * self.W_dec).sum(dim=1, keepdim=True)
                self.W_dec.grad -= parallel * self.W_dec

    TopKSAE.__qualname__ = "TopKSAE"  # pickled and shown under the name this module gives it
    return TopKSAE


def __getattr__(name: str) -> Any:
    if name == "TopKSAE":
        return topk_sae_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ---------------------------------------------------------------------------------------------
# A trained SAE


@dataclass
class TrainedSae:
    """An SAE with the normalisation of its inputs and its training report."""

    model: TopKSAE
    mean: np.ndarray  # (d_in,)
    scale: float
    spec: SaeSpec
    report: dict[str, Any] = field(default_factory=dict)
    key: str = ""
    source: str = "computed"  # computed | cache

    def normalise(self, activations: np.ndarray) -> torch.Tensor:
        return torch.from_numpy((np.asarray(activations, dtype=np.float32) - self.mean) / self.scale)

    @when_called(lambda: torch.no_grad())
    def batches(self, activations: np.ndarray) -> Iterator[tuple[slice, torch.Tensor, torch.Tensor, torch.Tensor]]:
        """(rows, normalised inputs, code values, code indices) for consecutive batches of (n, d_in) activations."""
        for lo in range(0, len(activations), ENCODE_BATCH):
            rows = slice(lo, min(lo + ENCODE_BATCH, len(activations)))
            x = self.normalise(activations[rows])
            values, indices = self.model.encode(x)
            yield rows, x, values, indices

    def codes(self, activations: np.ndarray) -> sp.csr_matrix:
        """(n, d_in) activations -> (n, d_sae) sparse non-negative codes (at most k per row)."""
        n, k = len(activations), self.model.k
        values = np.zeros((n, k), dtype=np.float32)
        indices = np.zeros((n, k), dtype=np.int64)
        with deterministic():
            for rows, _, v, i in self.batches(activations):
                values[rows], indices[rows] = v.numpy(), i.numpy()
        codes = sp.csr_matrix((values.ravel(), indices.ravel(), np.arange(0, n * k + 1, k)),
                              shape=(n, self.model.d_sae))
        codes.eliminate_zeros()
        return codes

    @when_called(lambda: torch.no_grad())
    def fit_per_token(self, activations: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Squared reconstruction error (in normalised units) and L0 of each token. Two (n,) arrays."""
        error = np.zeros(len(activations))
        l0 = np.zeros(len(activations))
        with deterministic():
            for rows, x, values, indices in self.batches(activations):
                error[rows] = ((x - self.model.decode(values, indices)) ** 2).sum(dim=1).numpy()
                l0[rows] = (values > 0).sum(dim=1).numpy()
        return error, l0

    def firing_counts(self, activations: np.ndarray) -> np.ndarray:
        """(d_sae,) number of tokens on which each latent is active."""
        return np.asarray(self.codes(activations).getnnz(axis=0))


# ---------------------------------------------------------------------------------------------
# Training


def dead_window(n_tokens: int) -> int:
    """Tokens without firing after which a latent counts as dead for AuxK."""
    return min(n_tokens, DEAD_WINDOW_TOKENS)


@contextlib.contextmanager
def deterministic() -> Iterator[None]:
    """Run torch single-threaded with deterministic algorithms, restoring the previous settings afterwards.

    One thread fixes the order of every floating-point reduction (so the same inputs give the same
    weights whatever the machine's core count), and on a busy machine it is also the faster setting."""
    before, warn_only = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    threads = torch.get_num_threads()
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(before, warn_only=warn_only)


def train_sae(activations: np.ndarray, spec: SaeSpec, *, dense: bool = False) -> TrainedSae:
    """Train a top-k SAE on (n, d_in) activations (all of them; sample tokens before calling).

    dense: reconstruct with the textbook dense product (see `_step`), the benchmark's baseline; the
    default sums the k active decoder rows."""
    started = time.perf_counter()
    activations = np.asarray(activations, dtype=np.float32)
    n, d_in = activations.shape
    mean = activations.mean(axis=0)
    scale = float(np.sqrt(((activations - mean) ** 2).sum(axis=1).mean())) or 1.0
    generator = torch.Generator().manual_seed(spec.seed)
    with deterministic():
        model = topk_sae_class()(d_in, spec.d_sae, spec.k, generator)
        x_all = torch.from_numpy((activations - mean) / scale)
        optimiser = torch.optim.Adam(model.parameters(), lr=spec.lr, betas=(0.9, 0.999), eps=6.25e-10)
        aux_k = min(spec.aux_k or max(d_in // 2, 1), spec.d_sae)
        since_fired = torch.zeros(spec.d_sae, dtype=torch.long)
        window = dead_window(n)
        curve = []
        for epoch in range(spec.epochs):
            order = torch.randperm(n, generator=generator)
            totals = np.zeros(3)
            fired_in_epoch = torch.zeros(spec.d_sae, dtype=torch.bool)
            for lo in range(0, n, spec.batch_size):
                x = x_all[order[lo: lo + spec.batch_size]]
                mse, aux, fired = _step(model, optimiser, x, since_fired >= window, aux_k, dense)
                since_fired += x.shape[0]
                since_fired[fired] = 0
                fired_in_epoch[fired] = True
                totals += (mse * x.shape[0], aux * x.shape[0], x.shape[0])
            last = epoch == spec.epochs - 1
            resampled = 0 if last else _resample(model, optimiser, x_all, ~fired_in_epoch, generator)
            if resampled:
                since_fired[~fired_in_epoch] = 0  # re-initialised latents start a new life
            curve.append({"epoch": epoch + 1, "fvu": round(totals[0] / totals[2], 6),
                          "aux": round(totals[1] / totals[2], 6), "silent": int((~fired_in_epoch).sum()),
                          "resampled": resampled})
    trained = TrainedSae(model.eval(), mean, scale, spec)
    never = trained.firing_counts(activations) == 0
    error, l0 = trained.fit_per_token(activations)
    trained.report = {"n_tokens": n, "d_in": d_in, "steps": spec.epochs * -(-n // spec.batch_size),
                      "seconds": round(time.perf_counter() - started, 3), "fvu_train": float(error.mean()),
                      "mean_l0_train": float(l0.mean()), "dead_fraction_train": float(never.mean()),
                      "aux_k": aux_k, "dead_window_tokens": window,
                      "resampled": sum(epoch["resampled"] for epoch in curve), "curve": curve}
    return trained


@when_called(lambda: torch.no_grad())
def _resample(model: TopKSAE, optimiser: torch.optim.Optimizer, x_all: torch.Tensor, silent: torch.Tensor,
              generator: torch.Generator) -> int:
    """Re-initialise latents that did not fire in an epoch towards badly reconstructed tokens.

    Tokens of a random probe are drawn with probability proportional to their squared error; each
    silent latent's decoder row becomes the unit residual of one of them, its encoder row that direction
    times RESAMPLE_ENCODER_SCALE of the live rows' mean norm, its bias 0, and its Adam moments 0.
    Returns the number of latents re-initialised."""
    ids = torch.nonzero(silent).ravel()
    if ids.numel() == 0 or ids.numel() == silent.numel():
        return 0
    probe = x_all[torch.randperm(x_all.shape[0], generator=generator)[:RESAMPLE_PROBE_TOKENS]]
    residual = probe - model(probe)[0]
    weight = (residual ** 2).sum(dim=1)
    if float(weight.sum()) <= 0:
        return 0
    picks = torch.multinomial(weight, ids.numel(), replacement=ids.numel() > probe.shape[0], generator=generator)
    directions = residual[picks] / residual[picks].norm(dim=1, keepdim=True).clamp(min=1e-12)
    encoder_norm = model.W_enc[~silent].norm(dim=1).mean()
    model.W_dec[ids] = directions
    model.W_enc[ids] = directions * encoder_norm * RESAMPLE_ENCODER_SCALE
    model.b_enc[ids] = 0.0
    for parameter in (model.W_dec, model.W_enc, model.b_enc):
        for moment in optimiser.state.get(parameter, {}).values():
            if torch.is_tensor(moment) and moment.dim() > 0:
                moment[ids] = 0.0
    return int(ids.numel())


def _step(model: TopKSAE, optimiser: torch.optim.Optimizer, x: torch.Tensor, dead: torch.Tensor, aux_k: int,
          dense: bool) -> tuple[float, float, torch.Tensor]:
    """One Adam step; returns (mse, aux loss, indices of latents that fired).

    dense: reconstruct with the textbook product of the code, scattered into a (batch, d_sae) matrix, and
    the whole decoder (the benchmark's baseline) instead of summing the k active decoder rows."""
    pre = model.pre_activations(x)
    values, indices = torch.topk(pre, model.k, dim=1)
    values = F.relu(values)
    if dense:
        recon = torch.zeros_like(pre).scatter(1, indices, values) @ model.W_dec + model.b_dec
    else:
        recon = model.decode(values, indices)
    mse = ((recon - x) ** 2).sum(dim=1).mean()
    loss = mse
    aux = torch.zeros(())
    if bool(dead.any()):
        aux = _auxk_loss(model, pre, x - recon.detach(), dead, aux_k)
        loss = loss + AUX_COEF * aux
    optimiser.zero_grad(set_to_none=True)
    loss.backward()
    model.remove_parallel_gradient()
    optimiser.step()
    model.normalise_decoder()
    fired = torch.unique(indices[values.detach() > 0])
    return float(mse.detach()), float(aux.detach()), fired


def _auxk_loss(model: TopKSAE, pre: torch.Tensor, residual: torch.Tensor, dead: torch.Tensor, aux_k: int) -> torch.Tensor:
    """Normalised error of the top `aux_k` dead latents reconstructing the residual (n, d_in)."""
    dead_ids = torch.nonzero(dead).ravel()
    values, local = torch.topk(pre[:, dead_ids], min(aux_k, dead_ids.numel()), dim=1)
    estimate = F.embedding_bag(dead_ids[local], model.W_dec, per_sample_weights=F.relu(values), mode="sum")
    scale = (residual ** 2).sum(dim=1).mean().clamp(min=1e-12)
    return ((estimate - residual) ** 2).sum(dim=1).mean() / scale


def sample_tokens(n_available: int, spec: SaeSpec) -> np.ndarray:
    """Indices of the training tokens: `spec.tokens` of n_available without replacement, ascending."""
    if spec.tokens >= n_available:
        return np.arange(n_available)
    rng = np.random.default_rng([spec.seed, 1])
    return np.sort(rng.choice(n_available, size=spec.tokens, replace=False))


# ---------------------------------------------------------------------------------------------
# Cache


def sae_key(activations_key: str, hook: str, spec: SaeSpec) -> str:
    payload = {"activations": activations_key, "hook": hook, "spec": spec.model_dump(),
               "code_version": SAE_CODE_VERSION, "torch": torch.__version__}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def sae_folder(key: str) -> Path:
    return cache_dir() / "sae" / key[:2] / key


def load_or_train(activations_key: str, hook: str, spec: SaeSpec, training_tokens: Any) -> TrainedSae:
    """The SAE for (activation cache entry, hook, spec): from the cache, or trained once and stored.

    training_tokens: a callable returning the (n, d_in) training activations (called only when training)."""
    key = sae_key(activations_key, hook, spec)
    folder = sae_folder(key)
    cached = _read(folder, spec)
    if cached is not None:
        return _keyed(cached, key, "cache")
    with file_lock(folder):
        cached = _read(folder, spec)
        if cached is not None:
            return _keyed(cached, key, "cache")
        trained = train_sae(training_tokens(), spec)
        _write(folder, trained, {"activations_key": activations_key, "hook": hook})
    return _keyed(trained, key, "computed")


def _keyed(trained: TrainedSae, key: str, source: str) -> TrainedSae:
    trained.key, trained.source = key, source
    return trained


def _write(folder: Path, trained: TrainedSae, inputs: dict[str, str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    manifest_path = folder / "manifest.json"
    manifest_path.unlink(missing_ok=True)
    tensors = {name: p.detach().contiguous() for name, p in trained.model.named_parameters()}
    tensors["input_mean"] = torch.from_numpy(trained.mean.astype(np.float32))
    payload = safetensors_torch.save(tensors)
    atomic_write_bytes(folder / "sae.safetensors", payload)
    atomic_write_json(manifest_path, {"spec": trained.spec.model_dump(), "scale": trained.scale,
                                      "sha256": hashlib.sha256(payload).hexdigest(), "inputs": inputs,
                                      "code_version": SAE_CODE_VERSION, "report": trained.report})


def _read(folder: Path, spec: SaeSpec) -> TrainedSae | None:
    """The cached SAE, or None when absent, incomplete or corrupt (it is then retrained)."""

    manifest_path = folder / "manifest.json"
    if not manifest_path.is_file():
        return None
    try:
        manifest = json.loads(manifest_path.read_text())
        payload = (folder / "sae.safetensors").read_bytes()
        if hashlib.sha256(payload).hexdigest() != manifest["sha256"]:
            raise ValueError("weights fail their checksum")
        tensors = safetensors_torch.load(payload)
        d_sae, d_in = tensors["W_dec"].shape
        model = topk_sae_class()(d_in, d_sae, spec.k)
        model.load_state_dict({name: tensors[name] for name in ("W_enc", "b_enc", "W_dec", "b_dec")})
        return TrainedSae(model.eval(), tensors["input_mean"].numpy(), float(manifest["scale"]), spec,
                          manifest["report"])
    except (OSError, ValueError, KeyError, RuntimeError) as problem:
        log.warning("SAE cache entry %s is unreadable (%s); retraining it", folder.name[:12], problem)
        return None


# ---------------------------------------------------------------------------------------------
# How well it fits held-out tokens


def fit_estimates(trained: TrainedSae, activations: np.ndarray, unit_of_token: np.ndarray, *, level: float,
                  resamples: int, seed: int, min_n: int) -> dict[str, Any]:
    """fvu, mean_l0 and dead_fraction as Estimates, the first two with intervals over resampling units.

    activations: (n, d_in) held-out tokens; unit_of_token: (n,) their resampling unit (sequence).
    fvu = sum ||x - x_hat||^2 / sum ||x - mean(x)||^2 over the tokens (means recomputed in every
    resample); mean_l0 = mean number of active latents per token; dead_fraction = share of latents that
    never fire on the SAE's training tokens (a property of the trained SAE: no interval)."""

    units, unit_index = np.unique(unit_of_token, return_inverse=True)
    error, l0 = trained.fit_per_token(activations)
    x = trained.normalise(activations).numpy().astype(np.float64)
    per_unit = {name: _sum_by(unit_index, values, units.size) for name, values in
                (("error", error), ("l0", l0), ("count", np.ones(len(error))), ("square", (x ** 2).sum(axis=1)))}
    first_moment = _sum_by(unit_index, x, units.size)  # (n_units, d_in)

    def statistic(counts: np.ndarray | None) -> np.ndarray:
        w = np.ones((1, units.size)) if counts is None else counts.astype(np.float64)
        n = w @ per_unit["count"]
        total = w @ per_unit["square"] - ((w @ first_moment) ** 2).sum(axis=1) / n
        return np.stack([(w @ per_unit["error"]) / total, (w @ per_unit["l0"]) / n], axis=1)

    interval = bootstrap(statistic, units.size, n_resamples=resamples, seed=seed, level=level)
    n_units = int(units.size)
    dead = float(trained.report["dead_fraction_train"])
    test_dead = float(np.mean(trained.firing_counts(activations) == 0))
    return {
        "fvu": Estimate(float(interval.estimate[0]), float(interval.low[0]), float(interval.high[0]), n_units,
                        min_n=min_n, detail={"n_tokens": int(len(error)), "fvu_train": trained.report["fvu_train"]}),
        "mean_l0": Estimate(float(interval.estimate[1]), float(interval.low[1]), float(interval.high[1]), n_units,
                            min_n=min_n, detail={"k": trained.spec.k}),
        "dead_fraction": Estimate(dead, dead, dead, n_units, min_n=min_n,
                                  detail={"never_fire_on_test_tokens": test_dead, "d_sae": trained.spec.d_sae}),
    }


def _sum_by(index: np.ndarray, values: np.ndarray, n_groups: int) -> np.ndarray:
    """Sum of (n,) or (n, d) values per group: (n_groups,) or (n_groups, d)."""
    if values.ndim == 1:
        return np.bincount(index, weights=values, minlength=n_groups)
    indicator = sp.csr_matrix((np.ones(len(index)), (index, np.arange(len(index)))), shape=(n_groups, len(index)))
    return np.asarray(indicator @ values)
