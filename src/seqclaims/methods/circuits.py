"""Sparse feature circuits (PLM_interpretability, Marks et al.): SAE latents at several layers spliced into the
model, their effects on a target metric and on each other, and how much of the metric a circuit of them
carries.

The splice. At each circuit layer the residual stream x is replaced by decode(encode(x)) + error, where
error = x - decode(encode(x)): the model's output is unchanged, and latents can then be ablated (replaced by
their mean code over the train split's tokens) or read. Every quantity below is a function of the target
metric f of each sequence (`interventions.TargetMetric`).

- node score of latent i (its attribution): the first-order estimate of f(full) - f(i mean-ablated),
  sum over tokens of (z_i - m_i) d f / d z_i, from one forward and one backward pass.
- edge weight i -> j (i upstream, j at a later circuit layer): the same estimate of how much mean-ablating
  i changes j's code summed over the sequence, sum over tokens of (z_i - m_i) d (sum z_j) / d z_i.
- faithfulness of a set C of latents: (f(C) - f(none)) / (f(all) - f(none)), where f(C) keeps the latents
  of C and mean-ablates every other latent of the circuit layers (error terms kept), f(none) mean-ablates
  them all; summed over sequences before the ratio.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from seqclaims.inputs.models import _forward, _metric_source, parse_hook, run_with_interventions
from seqclaims.lazy import lazy_import
from seqclaims.methods.sae import TrainedSae

torch = lazy_import("torch")


@dataclass
class SaeSplice:
    """An edit of ``layer.{l}.resid_post``: the SAE's reconstruction plus its error, with the latents outside
    `keep` replaced by `means`; records the (dense) codes it used. grad: the codes become a leaf requiring
    grad (for node and edge attributions)."""

    hook: str
    sae: TrainedSae
    means: torch.Tensor  # (d_sae,)
    keep: torch.Tensor | None = None  # (d_sae,) bool; None: every latent kept
    grad: bool = False
    codes: list = field(default_factory=list)  # (n * n_tok, d_sae) per forward pass
    leaves: list = field(default_factory=list)  # with grad: a zero (n * n_tok, d_sae) leaf added to the codes
    index: int = 0

    def edit(self, x: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        model = self.sae.model
        n, t, d = x.shape
        mean = torch.as_tensor(self.sae.mean, dtype=x.dtype, device=x.device)
        normalised = (x.reshape(-1, d) - mean) / self.sae.scale
        with torch.no_grad():
            _, indices = model.encode(normalised.detach())
            active = torch.zeros(n * t, model.d_sae, dtype=torch.bool, device=x.device).scatter(1, indices, True)
        weights = {name: value.detach() for name, value in model.named_parameters()}
        pre = (normalised - weights["b_dec"]) @ weights["W_enc"].T + weights["b_enc"]
        dense = torch.where(active, torch.relu(pre), torch.zeros_like(pre))  # the top-k codes, differentiable in x
        # the error keeps its gradient, so that the splice's Jacobian is the identity (a pass-through in both
        # directions); an ablation then changes the output by (ablated - original codes) W_dec only
        error = normalised - (dense @ weights["W_dec"] + weights["b_dec"])
        if self.keep is not None:
            dense = torch.where(self.keep.to(x.device), dense, self.means.to(x.device, x.dtype))
        if self.grad:
            leaf = torch.zeros_like(dense, requires_grad=True)
            self.leaves.append(leaf)
            dense = dense + leaf
        self.codes.append(dense)
        reconstruction = dense @ weights["W_dec"] + weights["b_dec"]
        return ((reconstruction + error) * self.sae.scale + mean).reshape(n, t, d)


def splices(hooks: Sequence[str], saes: Sequence[TrainedSae], means: Sequence[torch.Tensor],
            keep: Sequence[torch.Tensor | None] | None = None, grad: bool = False) -> list[SaeSplice]:
    keep = keep or [None] * len(hooks)
    return [SaeSplice(hook, sae, mean, kept, grad) for hook, sae, mean, kept in zip(hooks, saes, means, keep)]


def spliced_metric(model, prepared, target, edits: list[SaeSplice], batch_size: int = 16) -> np.ndarray:
    """(n,) the metric of each sequence with the splices in place."""

    out = run_with_interventions(model, prepared.batch, edits, metric=prepared.metric,
                                 metric_input=target.metric_input, batch_size=batch_size)
    return out["metric"].to(torch.float64).numpy()


@dataclass
class Attributions:
    """node: per circuit layer (n_seq, d_sae) node scores per sequence; edges[(a, b)]: (n_seq, n_up, n_down) edge
    weights per sequence from the listed upstream to downstream latents."""

    node: list[np.ndarray]
    edges: dict[tuple[int, int], np.ndarray] = field(default_factory=dict)


def node_attributions(model, prepared, target, hooks, saes, means, batch_size: int = 8) -> list[np.ndarray]:
    """Per circuit layer, (n_seq, d_sae): sum over the sequence's content tokens of (z - m) d f / d z."""

    reads = _metric_source(model, prepared.metric, target.metric_input)
    batch = prepared.batch
    scores = [np.zeros((len(batch), sae.model.d_sae)) for sae in saes]
    for start in range(0, len(batch), batch_size):
        seq_index = torch.arange(start, min(start + batch_size, len(batch)))
        rows = batch.select(slice(start, int(seq_index[-1]) + 1))
        edits = splices(hooks, saes, means, grad=True)
        out = _forward(model, rows, [], edits, seq_index, prepared.metric, reads, grad=True)
        leaves = [edit.leaves[0] for edit in edits]
        grads = torch.autograd.grad(out["metric"].sum(), leaves, allow_unused=True)
        content = rows.content_mask.reshape(-1, 1).to(torch.float64)
        n_rows, n_tok = rows.input_ids.shape
        for k, (edit, gradient) in enumerate(zip(edits, grads)):
            if gradient is None:
                continue
            codes = edit.codes[0].detach()
            effect = ((codes - means[k].to(codes.device)) * gradient).to(torch.float64).cpu() * content
            scores[k][seq_index.numpy()] = effect.reshape(n_rows, n_tok, -1).sum(dim=1).numpy()
    return scores


def edge_attributions(model, prepared, target, hooks, saes, means, upstream: int, downstream: int,
                      up_nodes: Sequence[int], down_nodes: Sequence[int], batch_size: int = 8) -> np.ndarray:
    """(n_seq, n_up, n_down): per sequence, sum over tokens of (z_i - m_i) d (sum over tokens of z_j) / d z_i
    for upstream latents i at circuit layer `upstream` and downstream latents j at `downstream`."""

    batch = prepared.batch
    weights = np.zeros((len(batch), len(up_nodes), len(down_nodes)))
    up_index = torch.as_tensor(list(up_nodes))
    for start in range(0, len(batch), batch_size):
        seq_index = torch.arange(start, min(start + batch_size, len(batch)))
        rows = batch.select(slice(start, int(seq_index[-1]) + 1))
        edits = splices(hooks[: downstream + 1], saes[: downstream + 1], means[: downstream + 1], grad=True)
        points = [parse_hook(model, hooks[downstream])]
        _forward(model, rows, points, edits, seq_index, None, None, grad=True)
        up, leaf, down = edits[upstream].codes[0], edits[upstream].leaves[0], edits[downstream].codes[0]
        content = rows.content_mask.reshape(-1).to(down.dtype).to(down.device)
        n_rows, n_tok = rows.input_ids.shape
        shift = (up.detach() - means[upstream].to(up.device))[:, up_index]  # (n_rows * n_tok, n_up)
        for j, latent in enumerate(down_nodes):
            total = (down[:, latent] * content).reshape(n_rows, n_tok).sum(dim=1)  # (n_rows,)
            (gradient,) = torch.autograd.grad(total.sum(), [leaf], retain_graph=j + 1 < len(down_nodes),
                                              allow_unused=True)
            if gradient is None:  # the latent's code does not depend on the upstream codes
                continue
            effect = (shift * gradient[:, up_index]).reshape(n_rows, n_tok, -1).sum(dim=1)
            weights[seq_index.numpy(), :, j] = effect.to(torch.float64).cpu().numpy()
    return weights


def faithfulness_sums(f_kept: np.ndarray, f_none: np.ndarray, f_all: np.ndarray) -> np.ndarray:
    """(n_seq, 2) per-sequence numerator and denominator of faithfulness."""
    return np.stack([f_kept - f_none, f_all - f_none], axis=1)


def ratio_of_sums(sums: np.ndarray) -> np.ndarray:
    """(B, 2) summed faithfulness_sums -> (B,) numerator / denominator (NaN for a zero denominator)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(sums[:, 1] != 0, sums[:, 0] / sums[:, 1], np.nan)
