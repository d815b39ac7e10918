"""ov_alignment: does a head's OV circuit read or write along a probe's direction? (MINTS's OV readout audit,
restricted to singular vectors the circuit actually uses, and compared with random directions)

Evidence. The OV circuit of the named head (`ov.ov_matrix`): in residual coordinates and
row-vector convention, M = W_V[h] W_O[h] (the value projection's rows of head h, transposed, times the
output projection's columns of head h, transposed; the pre-attention LayerNorm's scale folded in where
the block has one, `fold_layernorm`). SVD M = U S V^T: the columns of U are read directions, those of V
write directions. Only singular vectors whose singular value is at least `floor` (default 1e-3) times the
largest are used: below it the circuit maps the direction to (numerically) nothing, and the singular
vectors there are an arbitrary basis of a null space, so a cosine with one of them is meaningless (MINTS
reported a cosine at sigma = 5e-8). The direction d: a probe (`probing.train_split_probe`, fitted on the
train split of the claim's dataset, on mean-pooled ``layer.{probe_layer}.resid_post``; by default the
residual the side concerns: the head's own layer's output for `side: write`, the residual the head reads for
`side: read`, i.e. the previous layer's output or the embeddings); by default its activation pattern (Cov(X) w / Var(X w), Haufe et al. 2014: the direction along
which the decoded signal varies in the residual stream, which is what a head that writes the feature
writes along), or its weight vector w (`direction: filter`, what MINTS used; a filter also cancels noise
and correlated features, so it can point well away from the signal).

Statistics (interval: percentile over `resamples` refits of the probe at the fitted C on train sequences
drawn with replacement, at the claim's ci_level; n = train sequences):

- ``write_cos`` / ``read_cos``: max over the kept write / read singular vectors of |cos(d, v)|.
- ``unfloored_write_cos`` / ``unfloored_read_cos``: the same over all singular vectors (MINTS's computation;
  for contrast only: any unit direction has |cos| >= 1/sqrt(d_model) with some vector of a full basis).
- ``self_gain``: d M d^T for the unit direction d (how much of d the circuit writes back along d).
- ``cos_percentile_vs_random``: percentage of null directions whose statistic (write_cos, or read_cos
  with `side: read`) is below d's (ties half). Null (`null_directions`): `random_directions` unit
  directions uniform on the sphere (seeded; the default), or `permuted_labels`: the directions of
  `null_permutations` probes fitted the same way on permuted train labels. Pattern directions lean
  towards the residual stream's high-variance directions whatever the labels, so for a head that writes
  there the uniform null is too easy to beat; the permuted-label null asks whether the probe's direction
  is closer than label noise would make it.
- ``self_gain_percentile_vs_random``: the same for self_gain.
- ``spectral_norm`` (largest singular value) and ``n_singular_kept``: facts of the circuit (no interval).

Minimum n: 40 train sequences.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field

from seqclaims.core.evidence import Card, Estimate, Evidence, Figure
from seqclaims.core.families import Family, Statistic
from seqclaims.core.schema import StrictModel
from seqclaims.errors import InputError
from seqclaims.methods import ov, probing
from seqclaims.methods.figures import figure_from_matplotlib
from seqclaims.methods.stats import percentile_interval, resample_indices

MIN_SEQUENCES = 40


class OVParams(StrictModel):
    layer: int = Field(ge=0, description="layer of the head whose OV circuit is examined")
    head: int = Field(ge=0, description="the head")
    probe_layer: int | None = Field(None, ge=0, description="the probe reads mean-pooled resid_post of this layer "
                                    "(default: the head's layer for side: write, the residual the head reads "
                                    "for side: read)")
    direction: Literal["pattern", "filter"] = Field(
        "pattern", description="the probe's activation pattern (default) or its weight vector (MINTS)")
    floor: float = Field(ov.DEFAULT_FLOOR, gt=0, lt=1, description="singular vectors with sigma >= floor * sigma_max "
                         "count")
    side: Literal["write", "read"] = Field("write", description="which cosine cos_percentile_vs_random ranks")
    random_directions: int = Field(10000, ge=100, le=1000000, description="random unit directions in the null")
    null_directions: Literal["uniform", "permuted_labels"] = Field(
        "uniform", description="uniform on the sphere (`random_directions` of them), or the directions of probes "
                               "fitted the same way on permuted train labels (`null_permutations` of them)")
    null_permutations: int = Field(200, ge=20, le=5000, description="probes on permuted labels, for "
                                                                    "null_directions: permuted_labels")
    fold_layernorm: bool = Field(True, description="fold the pre-attention LayerNorm scale into the value projection "
                                 "(pre-LayerNorm blocks only)")


def evaluate(claim, context) -> Evidence:
    params = claim.params
    inputs = context.inputs()
    model, dataset = inputs.model, inputs.dataset
    if params.probe_layer is not None and params.probe_layer >= model.n_layers:
        raise InputError(f"{claim.path}: params.probe_layer: {params.probe_layer} is not a layer of a "
                         f"{model.n_layers}-layer model")
    try:
        circuit = ov.ov_matrix(model, params.layer, params.head, fold_layernorm=params.fold_layernorm)
    except InputError as error:
        raise InputError(f"{claim.path}: {error}") from None
    spectrum = ov.ov_spectrum(circuit, params.floor)
    hook = probe_site(params)
    probe = probing.train_split_probe(inputs, hook, pooling="mean", seed=claim.seed)
    directions = np.vstack([probe_direction(probe, params.direction),
                            resampled_directions(inputs, hook, probe, params.direction, claim, context)])
    if params.null_directions == "permuted_labels":
        random = permuted_label_directions(inputs, hook, probe, params, context)
    else:
        random = ov.random_unit_directions(params.random_directions, model.d_model, context.rng("random-directions"))
    observed, null = measures(circuit, spectrum, directions), measures(circuit, spectrum, random)
    n_train = len(dataset.indices("train"))
    statistics = {name: interval_estimate(values, claim.ci_level, n_train) for name, values in observed.items()}
    side = f"{params.side}_cos"
    statistics["cos_percentile_vs_random"] = interval_estimate(
        ov.percentile_vs_random(observed[side], null[side]), claim.ci_level, n_train,
        detail={"side": params.side, "random_99th": float(np.percentile(null[side], 99))})
    statistics["self_gain_percentile_vs_random"] = interval_estimate(
        ov.percentile_vs_random(observed["self_gain"], null["self_gain"]), claim.ci_level, n_train,
        detail={"random_99th": float(np.percentile(null["self_gain"], 99))})
    kept = float(spectrum.kept)
    statistics["spectral_norm"] = Estimate(spectrum.spectral_norm, spectrum.spectral_norm, spectrum.spectral_norm,
                                           n_train, kind="count")
    statistics["n_singular_kept"] = Estimate(kept, kept, kept, n_train, kind="count",
                                             detail={"floor": params.floor, "sigma": _rounded_list(spectrum.sigma)})
    evidence = Evidence(statistics=statistics, figures=[spectrum_figure(claim, spectrum, directions[0], null[side])],
                        cards=[*inputs.cards, settings_card(claim, hook, probe, spectrum)])
    evidence.versions.update(inputs.versions)
    return evidence


def probe_site(params) -> str:
    """The pooled residual the probe reads: a named layer's output, else the residual on the side examined
    (a head writes into its own layer's output and reads the previous layer's output or the embeddings)."""
    if params.probe_layer is not None:
        return f"layer.{params.probe_layer}.resid_post"
    if params.side == "read":
        return "embed" if params.layer == 0 else f"layer.{params.layer - 1}.resid_post"
    return f"layer.{params.layer}.resid_post"


def probe_direction(probe: probing.LinearProbe, kind: str) -> np.ndarray:
    """(d_model,) unit direction of a fitted probe: its activation pattern or its weight vector."""
    vector = probe.pattern_ if kind == "pattern" else probe.coef_
    norm = np.linalg.norm(vector)
    return vector / norm if norm > 0 else vector


def train_activations(inputs, hook: str) -> np.ndarray:
    """(n_train, d_model) mean-pooled activations of the train sequences at `hook` (what the probe reads)."""
    dataset = inputs.dataset
    pooled, _ = probing.pooled_activations(inputs.model, dataset.sequences, dataset.content_hash,
                                           probing.probe_hooks(inputs.model), "mean")
    return pooled[hook][dataset.indices("train")]


def permuted_label_directions(inputs, hook: str, probe: probing.LinearProbe, params, context) -> np.ndarray:
    """(N, d_model) directions of probes fitted at the fitted C on the train activations with permuted labels.

    The residual stream's variance sits in a few directions; a probe's activation pattern leans towards them
    whatever its labels, and so do the writes of the heads that put the variance there. Against uniform
    random directions such a head can look aligned with any pattern (on the planted model, 27 of 30
    random-label probes pass `cos_percentile_vs_random >= 99` for the motif head, tests/test_ov_alignment.py);
    against permuted-label probes only a direction closer than label noise passes."""
    X, y = train_activations(inputs, hook), np.asarray(inputs.dataset.labels)[inputs.dataset.indices("train")]
    rng = context.rng("permuted-label-directions")
    return np.vstack([probe_direction(probing.fit_probe(X, rng.permutation(y), C=probe.C_), params.direction)
                      for _ in range(params.null_permutations)])


def resampled_directions(inputs, hook: str, probe: probing.LinearProbe, kind: str, claim, context) -> np.ndarray:
    """(B, d_model) directions of probes refitted at the fitted C on train sequences drawn with replacement."""
    X, y = train_activations(inputs, hook), np.asarray(inputs.dataset.labels)[inputs.dataset.indices("train")]
    draws = resample_indices(len(X), claim.resamples, context.seed_for("direction-bootstrap"))
    out = np.full((claim.resamples, X.shape[1]), np.nan)
    for b, rows in enumerate(draws):
        if len(np.unique(y[rows])) == 2:
            out[b] = probe_direction(probing.fit_probe(X[rows], y[rows], C=probe.C_), kind)
    return out


def measures(circuit: np.ndarray, spectrum: ov.Spectrum, directions: np.ndarray) -> dict[str, np.ndarray]:
    """Every per-direction statistic for directions (m, d): name -> (m,)."""
    floored = ov.alignment(spectrum, directions)
    unfloored = ov.alignment(spectrum, directions, floored=False)
    return {**floored, "unfloored_write_cos": unfloored["write_cos"], "unfloored_read_cos": unfloored["read_cos"],
            "self_gain": ov.self_gain(circuit, directions)}


def interval_estimate(values: np.ndarray, level: float, n: int, detail: dict | None = None) -> Estimate:
    """values (1 + B,): the fitted direction's statistic, then its resamples."""
    if not np.isfinite(values[0]):
        return Estimate.missing("the statistic is undefined (no singular value above the floor)", n=n)
    low, high = percentile_interval(values[1:], level)
    return Estimate(float(values[0]), float(low), float(high), n, min_n=MIN_SEQUENCES, detail=detail or {},
                    samples=values[1:])


def spectrum_figure(claim, spectrum: ov.Spectrum, direction: np.ndarray, null_side: np.ndarray) -> Figure:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3))
    index = np.arange(1, spectrum.sigma.size + 1)
    left.semilogy(index, np.maximum(spectrum.sigma, 1e-30), "o-", markersize=3)
    left.axhline(spectrum.floor * spectrum.sigma[0], color="red", linestyle="--", label=f"floor {spectrum.floor:g} x max")
    left.set_xlabel("singular vector")
    left.set_ylabel("singular value")
    left.legend(fontsize=7)
    cos_write = np.abs(direction @ spectrum.write)
    cos_read = np.abs(direction @ spectrum.read)
    colours = np.where(index <= spectrum.kept, "#4878a8", "#c0c0c0")
    right.bar(index - 0.2, cos_write, width=0.4, color=colours, label="write |cos| (grey: below floor)")
    right.bar(index + 0.2, cos_read, width=0.4, color=colours, alpha=0.5, label="read |cos|")
    right.axhline(np.percentile(null_side, 99), color="black", linestyle=":", label="99th pct, random directions")
    right.set_xlabel("singular vector")
    right.set_ylabel("|cos| with the probe direction")
    right.legend(fontsize=6)
    title = f"{claim.id}: OV spectrum of L{claim.params.layer}H{claim.params.head}"
    fig.suptitle(title, fontsize=9)
    return figure_from_matplotlib(fig, title, "Left: singular values with the floor. Right: |cos| of the probe "
                                  "direction with each singular vector; only those above the floor count.")


def settings_card(claim, hook: str, probe: probing.LinearProbe, spectrum: ov.Spectrum) -> Card:
    params = claim.params
    return Card("ov_alignment settings", {
        "head": f"layer {params.layer} head {params.head}", "circuit": "M = W_V[h] W_O[h] (row vectors)",
        "fold_layernorm": params.fold_layernorm, "floor": params.floor, "kept": spectrum.kept,
        "probe": f"{hook}, mean over content tokens, C = {probe.C_:g}, train split", "direction": params.direction,
        "null directions": (f"{params.null_permutations} probes on permuted train labels"
                            if params.null_directions == "permuted_labels"
                            else f"{params.random_directions} uniform random unit directions")})


def _rounded_list(values: np.ndarray) -> list[float]:
    return [float(f"{v:.4g}") for v in values]


FAMILY = Family(
    name="ov_alignment",
    whole_sequences=True,
    summary="cosine between a probe direction and a head's OV singular vectors above a floor, self-gain, "
            "both ranked against random directions",
    params=OVParams,
    statistics={
        "write_cos": Statistic("max |cos| of the probe direction with write singular vectors above the floor",
                               init=True),
        "read_cos": Statistic("max |cos| of the probe direction with read singular vectors above the floor",
                              init=True),
        "unfloored_write_cos": Statistic("write_cos over all singular vectors (MINTS's computation; contrast only)"),
        "unfloored_read_cos": Statistic("read_cos over all singular vectors (MINTS's computation; contrast only)"),
        "self_gain": Statistic("d M d^T for the unit probe direction d"),
        "cos_percentile_vs_random": Statistic("percentile of the `side` cosine among random unit directions",
                                              control=True),
        "self_gain_percentile_vs_random": Statistic("percentile of self_gain among random unit directions"),
        "spectral_norm": Statistic("largest singular value of the OV circuit", kind="count"),
        "n_singular_kept": Statistic("singular values at or above floor * the largest", kind="count"),
    },
    evaluate=evaluate,
    min_n=MIN_SEQUENCES,
    example={"model": "planted",
             "data": {"dataset": "motif_sites", "matrix": "MA0108.3", "n": 1000},
             "params": {"layer": 0, "head": 2, "probe_layer": 0},
             "criteria": [{"statistic": "cos_percentile_vs_random", "op": ">=", "threshold": 99},
                          {"statistic": "write_cos_minus_init", "op": ">", "threshold": 0.0}]},
)
