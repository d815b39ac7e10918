"""sae_feature: does a sparse-autoencoder latent detect a per-token annotation (MINTS, PLM_interpretability,
Plant-DnaGemma)?

Evidence: the claim's per-token activations at `hook` (from the shared activation cache), and a top-k
sparse autoencoder trained on the train split's content tokens of that hook (`seqclaims.methods.sae`; cached by
its inputs, so every claim asking for the same SAE on the same activations reuses it, whatever its
annotation). Each latent's code is scored against the annotation (`seqclaims.methods.features`):

- auprc: test-split AUPRC of the claim's latent: `feature` when the claim names one, else the latent
  with the highest train-split AUPRC. Interval: percentile bootstrap over test sequences.
- best_auprc: test-split AUPRC of the latent with the highest train-split AUPRC (always selected).
- chance: the expected AUPRC of a random ranking of the scored test tokens, (P - 1) / (N - 1) +
  H_N (N - P) / (N (N - 1)) for P annotated of N tokens (H_N harmonic). With many positives it is the
  prevalence (DNAtlas's "random chance rate"); with few it is larger, and a ratio to the prevalence would
  call random units "above chance" far more often than the interval's level allows.
- prevalence: the share of scored test tokens that are annotated.
- auprc_over_chance: auprc / chance, computed inside every resample; its ceiling is 1 / chance (a perfect
  detector), so a threshold above it is an unreachable criterion.
- pattern_auprc: test-split AUPRC of the k-mer baseline, a detector that fires on every occurrence of the
  annotated element's consensus (start codon ATG; stop codon TAA, TAG, TGA; donor GT; acceptor AG) at
  the same base and alignment: what knowing the k-mer alone achieves. Missing for other annotations.
- auprc_over_pattern: auprc / pattern_auprc, inside every resample; above 1 the latent tells annotated
  elements from other occurrences of their k-mer.
- composition_auprc: test-split AUPRC of the composition detector: each token scored by the train-split
  share of annotated tokens among tokens whose window has the same base composition (the window: the
  annotated element's length, or `composition_window` nt, placed as the annotation aligns). It is the
  best any reader of that window's composition alone can do: a latent that fires on AT-rich tokens
  "detects" AT-rich motif sites far above chance, but not above this.
- auprc_over_composition: auprc / composition_auprc, inside every resample; above 1 the latent knows more
  than the composition of the annotation's window.
- auprc_token_controlled: test-split AUPRC of the auprc latent's activation after removing what token
  identity explains: each token's activation minus the train-split mean activation of the tokens with the
  same identity (its token id, and the ids of the tokens at `token_offsets` from it; default [0], the token
  alone), divided by their train-split standard deviation (0 where they all have one value), over the test
  tokens whose identity has at least 2 train tokens, annotated and other ones (where the token decides the
  annotation, no unit can know more than the token). Scaled, because a latent that reads a token varies with
  context on that token and is near 0 on the others: centred alone, the upper half of its token would rank
  first and look like a detector of any annotation that token carries. The latent is chosen by raw train
  AUPRC, again in every resample, like auprc. A latent that only reads which token it sees (every A, say,
  when the annotation is the A of ATG) falls to chance; a detector of the longer pattern keeps its AUPRC.
  Where token identity decides the annotation itself (a k-mer token that holds the whole pattern) no
  identity qualifies: the statistic is missing, and a note says why.
- auprc_token_controlled_over_chance: auprc_token_controlled / the chance of its test tokens, inside every
  resample.
- token_identity_share: share of the auprc latent's activation variance that token identity explains,
  1 - sum (a - m_identity)^2 / sum (a - mean a)^2 over the test tokens of such an identity, with
  m_identity the train-split mean of the token's identity (out of sample, so that many rare identities do
  not inflate it); percentile bootstrap over test sequences. At 0.5 or more a note flags the latent as
  mostly a token-identity reader.
- motif_cosine: MINTS's feature ranking, for comparison: the cosine across test sequences between the
  latent's per-sequence mean activation and the sequence's share of annotated tokens, both centred; the
  latent is `feature` or the one with the highest train cosine.
- fvu, mean_l0, dead_fraction: how the SAE fits held-out (test-split) tokens; dead_fraction is the share
  of latents that never fire on the SAE's training tokens.

The resampling unit is the sequence (windows cut from one sequence move together); n is the number of
test sequences; min n 20. Selection on the train split and scoring on the test split keeps the
best-of-d_sae maximum honest (no winner's curse in the reported AUPRC).

Random-initialisation baseline: auprc, best_auprc and the ratios of the claim's latent (to chance, the
k-mer, the composition detector; token-controlled) are key statistics, also computed on a randomly
initialised copy of the model (`<name>_init`) and subtracted resample by resample (`<name>_minus_init`).
The copy gets its own SAE, trained with the same settings on its own activations (the SAE cache is keyed
by the activation entry, whose key holds the model folder's hash), and its latent is chosen on its own
train split. The template decides on auprc_over_chance_minus_init.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field, model_validator

from seqclaims.core.evidence import Card, Evidence
from seqclaims.core.families import Family, Statistic
from seqclaims.errors import InputError
from seqclaims.methods.features import UnitParams, label_tokens, score_units, unit_dashboards, unit_statistics
from seqclaims.methods.sae import SaeSpec, fit_estimates, load_or_train, sample_tokens

MIN_N = 20


class SaeFeatureParams(UnitParams):
    hook: str = Field(description="per-token hook the SAE reads, e.g. layer.0.resid_post or layer.2.mlp.post")
    sae: SaeSpec = Field(default_factory=SaeSpec, description="the SAE: d_sae, k, lr, tokens, epochs, "
                         "batch_size, aux_k, seed")
    feature: int | None = Field(None, ge=0, description="score this latent instead of the best on the train "
                                "split (a latent of the SAE these settings train)")

    @model_validator(mode="after")
    def _feature_exists(self) -> "SaeFeatureParams":
        if self.feature is not None and self.feature >= self.sae.d_sae:
            raise ValueError(f"feature {self.feature} is not a latent of an SAE with d_sae {self.sae.d_sae}; "
                             f"use 0..{self.sae.d_sae - 1} or leave it out")
        return self


def evaluate(claim, context) -> Evidence:
    params: SaeFeatureParams = claim.params
    inputs = context.inputs()
    hook = _checked_hook(claim, inputs.model, params)
    activations = inputs.activations([hook])
    dataset = inputs.dataset
    tokens = label_tokens(claim, dataset, activations, params.annotation, context.seed_for("permuted-annotation"))
    per_token = np.asarray(activations[hook])
    per_token = per_token.reshape(*per_token.shape[:2], -1)  # head_out: (n_seq, n_tok, heads * d_head)
    train_content = _split_content(dataset, activations, "train")
    sample = sample_tokens(int(train_content.sum()), params.sae)
    trained = load_or_train(activations.key, hook, params.sae, lambda: per_token[train_content][sample])
    codes = trained.codes(tokens.table.gather(per_token))
    names = [f"f{j}" for j in range(params.sae.d_sae)]
    seed = context.seed_for("bootstrap")
    scored = score_units([codes], tokens.table, names, named=params.feature, level=claim.ci_level,
                         resamples=claim.resamples, seed=seed, min_n=MIN_N)
    test_content = _split_content(dataset, activations, "test")
    units = np.asarray(dataset.source)[np.nonzero(test_content)[0]]
    fit = fit_estimates(trained, per_token[test_content], units, level=claim.ci_level, resamples=claim.resamples,
                        seed=seed + 2, min_n=MIN_N)
    evidence = Evidence(statistics={**scored.statistics, **fit},
                        figures=unit_dashboards(scored, tokens, dataset, names, "SAE latent", params.annotation,
                                                params.top_windows),
                        cards=[*inputs.cards, _sae_card(trained, hook, fit)],
                        notes=[_fit_note(trained, fit), *scored.notes])
    evidence.versions.update(inputs.versions)
    evidence.versions["sae_key"] = trained.key
    return evidence


def _checked_hook(claim, model, params: SaeFeatureParams) -> str:
    from seqclaims.inputs.models import parse_hook

    point = parse_hook(model, params.hook)
    if point.site in ("attn.pattern", "logits"):
        raise InputError(f"{claim.path}: params.hook: {params.hook} is not a per-token activation; use "
                         "layer.{l}.resid_post, layer.{l}.mlp.post, layer.{l}.attn.head_out or embed")
    return params.hook


def _split_content(dataset, activations, split: str) -> np.ndarray:
    """(n_seq, n_tok) bool: content tokens (neither special nor padding) of the split's sequences."""
    in_split = np.asarray(dataset.split) == split
    return ~np.asarray(activations["tokens.special_mask"], dtype=bool) & in_split[:, None]


def _fit_note(trained, fit) -> str:
    return (f"SAE ({trained.source}): fraction of variance unexplained {fit['fvu'].estimate:.3f} on test tokens, "
            f"mean L0 {fit['mean_l0'].estimate:.2f}, dead fraction {fit['dead_fraction'].estimate:.3f}")


def _sae_card(trained, hook: str, fit) -> Card:
    report = {key: value for key, value in trained.report.items() if key != "curve"}
    return Card("sparse autoencoder", {
        "hook": hook, **trained.spec.model_dump(), "cache_key": trained.key[:16], "source": trained.source,
        "fvu_test": round(fit["fvu"].estimate, 4), "mean_l0_test": round(fit["mean_l0"].estimate, 3),
        "dead_fraction": round(fit["dead_fraction"].estimate, 4), "training": report,
        "curve": trained.report.get("curve", []),
    })


FAMILY = Family(
    name="sae_feature",
    alphabets=("dna", "protein"),
    summary="AUPRC of a top-k SAE latent against a per-token annotation, chosen on train and scored on test",
    params=SaeFeatureParams,
    statistics={
        **unit_statistics("latent", "latent chosen on train"),
        "fvu": Statistic("fraction of variance unexplained on test tokens"),
        "mean_l0": Statistic("mean active latents per test token"),
        "dead_fraction": Statistic("share of latents that never fire on the SAE's training tokens"),
    },
    evaluate=evaluate,
    min_n=MIN_N,
    example={
        "model": "planted",
        "data": {"dataset": "motif_sites", "matrix": "MA0108.3", "n": 600, "window": [50, 49]},
        "params": {"hook": "layer.0.resid_post",
                   "annotation": {"motif": "MA0108.3", "pvalue": 0.001, "align": "anchored"},
                   "sae": {"d_sae": 256, "k": 8, "lr": 0.002, "tokens": 200000, "epochs": 5, "batch_size": 1024,
                           "seed": 0}},
        # the latent's AUPRC over chance at least 3 above that of the best latent of an SAE trained the same way on a
        # randomly initialised copy of the model (which reaches about 13x chance here by reading token identity)
        "criteria": [{"statistic": "auprc_over_chance_minus_init", "op": ">=", "threshold": 3}],
    },
)
