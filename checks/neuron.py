"""neuron: does a single MLP channel detect a per-token annotation (DNAtlas)?

Evidence: the per-token MLP activations after the nonlinearity (`layer.{l}.mlp.post`) of the claim's
layers, from the shared activation cache in float16 (ranking needs no more precision, and every layer's
channels of a few hundred windows fit in memory); every channel is a candidate. Each channel's activation is
scored against the annotation (`seqclaims.methods.features`), exactly as `sae_feature` scores SAE latents:

- auprc: test-split AUPRC of the claim's channel: `channel` when the claim names one, else the channel
  with the highest train-split AUPRC among every channel of the claim's layers. Interval: percentile
  bootstrap over test sequences.
- best_auprc: test-split AUPRC of the channel with the highest train-split AUPRC (always selected).
- chance: the expected AUPRC of a random ranking of the scored test tokens, (P - 1) / (N - 1) +
  H_N (N - P) / (N (N - 1)) for P annotated of N tokens (H_N harmonic). With many positives it is the
  prevalence (DNAtlas's "random chance rate"); with few it is larger, and a ratio to the prevalence would
  call random units "above chance" far more often than the interval's level allows.
- prevalence: the share of scored test tokens that are annotated.
- auprc_over_chance: auprc / chance, inside every resample; ceiling 1 / chance.
- pattern_auprc: test-split AUPRC of the k-mer baseline, a detector that fires on every occurrence of the
  annotated element's consensus (start codon ATG; stop codon TAA, TAG, TGA; donor GT; acceptor AG) at
  the same base and alignment: what knowing the k-mer alone achieves. Missing for other annotations.
- auprc_over_pattern: auprc / pattern_auprc, inside every resample; above 1 the channel tells annotated
  elements from other occurrences of their k-mer.
- composition_auprc: test-split AUPRC of the composition detector: each token scored by the train-split
  share of annotated tokens among tokens whose window has the same base composition (the window: the
  annotated element's length, or `composition_window` nt, placed as the annotation aligns). It is the
  best any reader of that window's composition alone can do: a channel that fires on AT-rich tokens
  "detects" AT-rich motif sites far above chance, but not above this.
- auprc_over_composition: auprc / composition_auprc, inside every resample; above 1 the channel knows more
  than the composition of the annotation's window.
- auprc_token_controlled: test-split AUPRC of the auprc channel's activation after removing what token
  identity explains: each token's activation minus the train-split mean activation of the tokens with the
  same identity (its token id, and the ids of the tokens at `token_offsets` from it; default [0], the token
  alone), divided by their train-split standard deviation (0 where they all have one value), over the test
  tokens whose identity has at least 2 train tokens, annotated and other ones (where the token decides the
  annotation, no unit can know more than the token). Scaled, because a channel that reads a token varies with
  context on that token and is near 0 on the others: centred alone, the upper half of its token would rank
  first and look like a detector of any annotation that token carries. The channel is chosen by raw train
  AUPRC, again in every resample, like auprc. A channel that only reads which token it sees (every A, say,
  when the annotation is the A of ATG) falls to chance; a detector of the longer pattern keeps its AUPRC.
  Where token identity decides the annotation itself (a k-mer token that holds the whole pattern) no
  identity qualifies: the statistic is missing, and a note says why.
- auprc_token_controlled_over_chance: auprc_token_controlled / the chance of its test tokens, inside every
  resample.
- token_identity_share: share of the auprc channel's activation variance that token identity explains,
  1 - sum (a - m_identity)^2 / sum (a - mean a)^2 over the test tokens of such an identity, with
  m_identity the train-split mean of the token's identity (out of sample, so that many rare identities do
  not inflate it); percentile bootstrap over test sequences. At 0.5 or more a note flags the channel as
  mostly a token-identity reader.
- motif_cosine: centred cosine across test sequences of the channel's mean activation with the share of
  annotated tokens (MINTS's ranking, for comparison); channel named or chosen on train.

A channel detects an annotation when it is *high* on annotated tokens. The resampling unit is the
sequence; n is the number of test sequences; min n 20.

Random-initialisation baseline: auprc, best_auprc and the ratios of the claim's channel (to chance, the
k-mer, the composition detector; token-controlled) are key statistics, also computed on a randomly
initialised copy of the model (`<name>_init`) and subtracted resample by resample (`<name>_minus_init`):
the copy reads the same sequences, draws the same resamples and chooses its own channel on its own train
split. A random network's channels already reach a few times chance; the template decides on auprc_minus_init.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from seqclaims.core.evidence import Evidence
from seqclaims.core.families import Family
from seqclaims.errors import InputError
from seqclaims.inputs.cache import extract
from seqclaims.inputs.models import require_part
from seqclaims.methods.features import UnitParams, label_tokens, score_units, unit_dashboards, unit_statistics

MIN_N = 20


class NeuronParams(UnitParams):
    layer: int | list[int] | Literal["all"] = Field(description="MLP layer (or list of layers, or all) whose "
                                                    "channels are the candidates")
    channel: int | None = Field(None, ge=0, description="score this channel of `layer` (a single layer) instead "
                                "of the best on the train split")

    @model_validator(mode="after")
    def _channel_needs_one_layer(self) -> "NeuronParams":
        if self.channel is not None and not isinstance(self.layer, int):
            raise ValueError("`channel` names a channel of one layer; give `layer` as a single number")
        return self


def evaluate(claim, context) -> Evidence:
    params: NeuronParams = claim.params
    inputs = context.inputs()
    require_part(inputs.model, "mlp", f"{claim.path}: family neuron")
    layers = _layers(claim, inputs.model, params)
    d_mlp = inputs.model.d_mlp
    if params.channel is not None and params.channel >= d_mlp:
        raise InputError(f"{claim.path}: params.channel: {params.channel} is not a channel of layer {params.layer} "
                         f"(d_mlp {d_mlp}); use 0..{d_mlp - 1}")
    dataset = inputs.dataset
    hooks = [f"layer.{layer}.mlp.post" for layer in layers]
    activations = extract(inputs.model, dataset.sequences, hooks, dataset_hash=dataset.content_hash, dtype="float16")
    tokens = label_tokens(claim, dataset, activations, params.annotation, context.seed_for("permuted-annotation"))
    blocks = (tokens.table.gather(activations[hook]) for hook in hooks)  # one layer's channels at a time
    names = [f"L{layer}.{channel}" for layer in layers for channel in range(d_mlp)]
    scored = score_units(blocks, tokens.table, names, named=params.channel, level=claim.ci_level,
                         resamples=claim.resamples, seed=context.seed_for("bootstrap"), min_n=MIN_N)
    evidence = Evidence(statistics=scored.statistics,
                        figures=unit_dashboards(scored, tokens, dataset, names, "MLP channel", params.annotation,
                                                params.top_windows),
                        cards=inputs.cards, notes=scored.notes)
    evidence.versions.update(inputs.versions)
    return evidence


def _layers(claim, model, params: NeuronParams) -> list[int]:
    n_layers = model.n_layers
    layers = list(range(n_layers)) if params.layer == "all" else \
        [params.layer] if isinstance(params.layer, int) else list(dict.fromkeys(params.layer))
    bad = [layer for layer in layers if not 0 <= layer < n_layers]
    if bad or not layers:
        raise InputError(f"{claim.path}: params.layer: {bad[0] if bad else 'an empty list'} is not a layer of "
                         f"model {model.ref.describe()} ({n_layers} layers); use 0..{n_layers - 1} or all")
    return layers


FAMILY = Family(
    name="neuron",
    alphabets=("dna", "protein"),
    summary="AUPRC of a single MLP channel against a per-token annotation, chosen on train and scored on test",
    params=NeuronParams,
    statistics=unit_statistics("channel", "channel named or chosen on train"),
    evaluate=evaluate,
    min_n=MIN_N,
    example={
        "model": "planted",
        "data": {"dataset": "motif_sites", "matrix": "MA0108.3", "n": 600, "window": [50, 49]},
        "params": {"layer": 1, "channel": 9, "annotation": {"pattern": "ATG", "base": 0, "align": "anchored"}},
        # the channel's test AUPRC at least 0.5 above that of the same channel of a randomly initialised copy
        "criteria": [{"statistic": "auprc_minus_init", "op": ">=", "threshold": 0.5}],
    },
)
