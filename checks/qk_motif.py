"""qk_motif: does some attention head score keys by a motif? (MINTS's QK-to-motif test, fixed.)

Evidence: the key scores of every head of every tested layer (one cached pass, `key_scores.extract_key_scores`)
and the motif's both-strand PSSM scores aligned to the same tokens.

Definitions (per head, K heads tested):
- key score x[s, j] of key token j in sequence s, on `scale`:
  `attention_received` (default): from the real attention probabilities P[i, j] (biases and positions
  included): probability = mean over real queries i of P[i, j]; log_probability = log of that;
  logit = mean over queries of log P[i, j] (the attention logit up to a per-sequence constant).
  `qk_weights`: MINTS's weight-only reconstruction L[i, j] = (x_i W_Q)(x_j W_K)/sqrt(d_head) from the
  projections' input, no positional term, biases unless `qk_biases: false` (MINTS had none):
  logit = mean over queries of L[i, j]; probability = mean over queries of softmax_j L[i, j].
  Default scale: log_probability, centred within each sequence. Raw mean probabilities are heavy
  tailed, so a real detector can look no better than unrelated heads on that scale.
- motif score y[s, j]: `motifs.token_motif_scores` of the both-strand window scores under `alignment`
  (default anchored: the window starting at the token's first base; overlap_max: max over windows
  overlapping the token, as MINTS did; centred: the window centred on the token).
- r = Pearson correlation of x and y over the tokens of all sequences pooled (special tokens and
  tokens without a motif score left out); with `centre` (default) both are centred within each
  sequence first.
- intervals: percentile bootstrap over sequences (`resamples`, `ci_level`).
- p-values: one-sided (r > 0), permuting motif tracks between sequences of equal length
  (`permutations`), +1-corrected, then corrected over all heads tested with `correction` (Holm when
  the claim declares none). The smallest attainable corrected p, K / (permutations + 1), is the
  p-value's ceiling: a p threshold below it is an unreachable criterion, not a failure.
- r / r_p: the head named by `layer`, `head`, on all sequences.
- max_r: the head with the largest r on the train split, scored on the test split; the selection is
  redone in every resample (train and test sequences resampled within their split). max_r_p: that
  head's test-split p-value corrected over all heads. max_r_selects_named: share of resamples whose
  selection is the named head (Wilson interval over resamples).
- ideal_r (the ceiling, DESIGN section 3): r of an ideal detector under the same settings, whose logit
  at a key is the PSSM score (bits, both strands) of the motif window anchored in that key as the
  alignment anchors it (overlap_max: best window starting at any base of the token; anchored: window
  starting at its first base; centred: window centred on it), attention proportional to
  exp(ideal_beta * score), turned into a key score exactly as the claim's key score and scale say.
  Attached as the ceiling of r (all sequences) and max_r (test split): a threshold above the ideal's
  whole interval makes the criterion inconclusive (`unreachable criterion`). When the model is not
  available locally, the claim is skipped and the reason reports ideal_r computed with the claim's
  declared tokenization or `surrogate_tokens`.
- n_sequences, n_tokens: sequences and tokens pooled. Minimum n: 20 sequences.

Composition controls (`seqclaims.methods.composition`). A head that reads only the base composition around its
keys correlates with every motif whose sites share that composition (a GC-reading head "detects" any
GC-rich matrix), so r alone cannot tell a motif detector from a composition reader:
- r_partial_composition: the partial correlation of key score and motif score given the `composition`
  of the window the motif track credits to the token (the motif-length window placed by `alignment`;
  for overlap_max every base an overlapping window reaches): GC; A, C, G fractions (default); or those
  and the 16 dinucleotide fractions; covariates centred within sequences with the tracks. A key score
  that composition explains entirely (residual variance below 1e-9 of its variance) has partial r 0;
  undefined (missing) when composition fixes the motif score.
- r_minus_shuffled: r with the motif minus the `shuffled_quantile` (0.95) of r with `shuffles` (20)
  copies of the matrix whose columns are permuted (the same base preferences, so the same composition
  of high-scoring windows, but not the motif). Above 0, the head prefers the motif's arrangement of
  bases to every arrangement but a few.
- both for the named head (all sequences) and as max_ statistics: the head with the largest value on the
  train split, scored on the test split, the selection redone in every resample. Intervals from the same
  sequence bootstrap as r; ceilings from the ideal detector under the same control.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field

from seqclaims.core.evidence import Card, Ceiling, Estimate, Evidence, rounded
from seqclaims.core.families import Family, Statistic
from seqclaims.core.schema import StrictModel
from seqclaims.errors import InputError, SeqclaimsError, Unavailable
from seqclaims.methods import attention as att, key_scores
from seqclaims.methods import composition as comp
from seqclaims.methods.figures import HeadMarks, head_heatmap
from seqclaims.methods.stats import correct_pvalues, percentile_interval

MIN_SEQUENCES = 20
NAMED = ("r", "r_p", "max_r_selects_named", "r_partial_composition", "r_minus_shuffled")


class SurrogateTokens(StrictModel):
    kind: Literal["single", "kmer_overlapping", "kmer_nonoverlapping", "random_lengths"] = Field(
        "single", description="how to cut sequences into tokens without the model's tokenizer")
    k: int = Field(1, ge=1, le=12, description="k of the k-mer kinds")
    min_length: int = Field(1, ge=1, description="random_lengths: shortest token (nt)")
    max_length: int = Field(8, ge=1, description="random_lengths: longest token (nt)")


class QkMotifParams(comp.ShuffledMotifParams):
    matrix: str | None = Field(None, description="JASPAR matrix ID of the motif (default: the dataset's `matrix`)")
    release: str | None = Field(None, description="JASPAR release (default: the dataset's, else JASPAR2024)")
    pseudocount: float = Field(0.8, ge=0, description="PSSM pseudocount, split by the uniform background")
    layer: int | None = Field(None, ge=0, description="layer of the named head (statistics r, r_p)")
    head: int | None = Field(None, ge=0, description="head of the named head (statistics r, r_p)")
    layers: list[int] | None = Field(None, description="layers whose heads are tested (default: all)")
    key_score: Literal["attention_received", "qk_weights"] = Field(
        "attention_received", description="attention_received: real attention probabilities averaged over "
        "queries; qk_weights: MINTS's weight-only QK reconstruction (no positions)")
    qk_biases: bool = Field(True, description="qk_weights: include the query/key projection biases (MINTS: false)")
    scale: Literal["probability", "log_probability", "logit"] = Field(
        "log_probability", description="key-score scale: mean probability, its log, or the mean logit")
    centre: bool = Field(True, description="centre key score and motif score within each sequence before pooling")
    alignment: Literal["overlap_max", "anchored", "centred"] = Field(
        "anchored", description="motif window credited to a token: anchored at its first base, centred on it, "
        "or the max over windows overlapping it (MINTS)")
    permutations: int | None = Field(None, ge=99, le=100000, description="motif-track permutations for p-values "
                                     "(default: max(999, 20 x heads tested), so that a corrected p can go below 0.05)")
    ideal_beta: float = Field(1.0, gt=0, description="ideal detector: attention logit per bit of motif score")
    composition: Literal["gc", "bases", "dinucleotides"] = Field(
        "bases", description="r_partial_composition: covariates of the motif window regressed out: GC; A, C, G "
        "fractions; or those and the 16 dinucleotide fractions")
    surrogate_tokens: SurrogateTokens | None = Field(
        None, description="tokenization for the ceiling when the model is unavailable (default: the claim's "
        "declared tokenization, else single nucleotides)")


def evaluate(claim, context) -> Evidence:
    att.require_named_head(claim, NAMED)
    try:
        inputs = context.inputs()
    except Unavailable as missing:
        raise Unavailable(offline_ceiling(claim, context, missing)) from None
    params, dataset, model = claim.params, inputs.dataset, inputs.model
    motif = att.claim_motif(claim, dataset)
    heads, named = att.claim_heads(claim, model)
    table = key_scores.extract_key_scores(model, dataset.sequences, dataset_hash=dataset.content_hash,
                                   key_score=params.key_score)
    scores = att.window_scores(dataset.sequences, motif)
    motif_score = att.motif_tracks(scores, table.offsets, motif.length, params.alignment)
    tracks = att.paired_tracks(head_scores(table, heads, params.scale, params), motif_score, centre=params.centre)
    ideal = ideal_tracks(scores, table.offsets, motif, motif_score, params)
    lengths = np.array([len(s) for s in dataset.sequences])
    controls = composition_controls(dataset.sequences, table.offsets, motif, tracks, ideal, params,
                                    context.seed_for("shuffled-motifs"))
    analysis = Analysis(claim, context, tracks, ideal, lengths, dataset.split, heads, named, controls)
    statistics = analysis.statistics()
    statistics["n_sequences"] = count(analysis.n_sequences)
    statistics["n_tokens"] = count(tracks.n_tokens, analysis.n_sequences)
    table_rows = per_head_table(analysis, table, heads, motif_score)
    for name in ("r", "max_r"):
        if not statistics[name].is_missing:
            statistics[name].detail["per_head"] = table_rows
    evidence = Evidence(statistics=statistics, figures=[r_heatmap(claim, analysis, model, heads)],
                        cards=[*inputs.cards, motif_card(motif, params, table)])
    evidence.versions.update(inputs.versions)
    return evidence


def head_scores(table: key_scores.KeyScoreTable, heads: list[tuple[int, int]], scale: str, params) -> np.ndarray:
    """(K, n_seq, n_tok) key scores of the tested heads."""
    values = key_scores.key_score_values(table, scale, qk_biases=params.qk_biases)
    layers, indices = np.array(heads).T
    return values[layers, indices]


def ideal_tracks(scores, offsets, motif, motif_score, params) -> att.PairedTracks:
    logits = att.ideal_logits(scores, offsets, motif.length, params.alignment)
    key = att.ideal_key_scores(logits, params.scale, params.key_score, params.ideal_beta)
    return att.paired_tracks(key[None], motif_score, centre=params.centre)


class Control:
    """A composition-controlled statistic: per-sequence sums of the heads and of the ideal detector, and
    the function that finishes summed sums into the statistic."""

    def __init__(self, moments: np.ndarray, ideal_moments: np.ndarray, finish, detail: dict):
        self.moments, self.ideal_moments, self.finish, self.detail = moments, ideal_moments, finish, detail


def composition_controls(sequences, offsets, motif, tracks, ideal, params, seed: int) -> dict[str, Control]:
    """r_partial_composition and r_minus_shuffled for every head and for the ideal detector."""
    lengths = [len(s) for s in sequences]
    spans = comp.window_spans(offsets, lengths, motif.length, params.alignment)
    covariates = comp.composition_features(sequences, spans, params.composition)
    z, z_ideal = (comp.prepared_covariates(covariates, t.mask, centre=params.centre) for t in (tracks, ideal))
    partial = Control(comp.partial_moments(tracks.x, tracks.y, z, tracks.mask),
                      comp.partial_moments(ideal.x, ideal.y, z_ideal, ideal.mask), comp.partial_from_sums,
                      {"composition": params.composition, "covariates": comp.covariate_names(params.composition),
                       "window": f"{motif.length} nt, {params.alignment}"})
    shuffled = comp.shuffled_motifs(motif, params.shuffles, seed)
    motif_tracks = [att.motif_tracks(att.window_scores(sequences, m), offsets, motif.length, params.alignment)
                    for m in shuffled]

    def with_shuffles(paired: att.PairedTracks) -> np.ndarray:
        moments = [att.sequence_moments(paired)]
        for track in motif_tracks:
            y = att.prepared_track(track[None], paired.mask, centre=params.centre)[0]
            moments.append(att.sequence_moments(att.PairedTracks(paired.x, y, paired.mask)))
        stacked = np.stack(moments, axis=2)  # (n_seq, K, S + 1, 6)
        return stacked.reshape(*stacked.shape[:2], -1)

    quantile = params.shuffled_quantile
    minus = Control(with_shuffles(tracks), with_shuffles(ideal),
                    lambda sums: comp.minus_shuffled_from_sums(sums, quantile),
                    {"shuffles": params.shuffles, "shuffled_quantile": quantile,
                     "shuffled_columns": "permutations of the matrix's columns (seeded)"})
    return {"r_partial_composition": partial, "r_minus_shuffled": minus}


class Analysis(att.HeadCorrelation):
    """r of every head and of the ideal detector, with intervals, permutation p-values and selection."""

    def __init__(self, claim, context, tracks, ideal, lengths, split, heads, named, controls=None):
        super().__init__(claim, context, tracks, lengths, split, heads, named)
        self.ideal = ideal
        self.controls: dict[str, Control] = controls or {}
        self.ideal_moments = att.sequence_moments(ideal)
        self.ideal_r = self.interval(self.ideal_moments, self.counts)
        self.control_values = {name: self.interval(c.moments, self.counts, c.finish) for name, c in self.controls.items()}

    def statistics(self) -> dict[str, Estimate]:
        out = dict(self.named_statistics())
        out.update(self.selected_statistics())
        for name, control in self.controls.items():
            out.update(self.controlled_statistics(name, control))
        out["ideal_r"] = self.estimate(self.ideal_r[0][0], self.ideal_r[1][0], self.ideal_r[2][0], self.n_sequences,
                                       detail={"alignment": self.claim.params.alignment})
        return out

    def estimate(self, value, low, high, n, **kwargs) -> Estimate:
        if n == 0 or not np.isfinite(value):
            return Estimate.missing("no sequence with scored tokens" if n == 0 else "r undefined (no variance)", n=n)
        return Estimate(float(value), float(low), float(high), n, min_n=MIN_SEQUENCES, **kwargs)

    def controlled_statistics(self, name: str, control: Control) -> dict[str, Estimate]:
        """A composition control of the named head (all sequences) and of the head selected on train."""
        values = self.control_values[name]
        ideal = Ceiling(*(float(v[0]) for v in self.interval(control.ideal_moments, self.counts, control.finish)))
        out = {}
        if self.named is None:
            out[name] = Estimate.missing("the claim names no head (params.layer, params.head)")
        else:
            k = self.named
            out[name] = self.estimate(values[0][k], values[1][k], values[2][k], self.n_sequences, ceiling=ideal,
                                      detail={"layer": self.heads[k][0], "head": self.heads[k][1], **control.detail})
        out[f"max_{name}"] = self.selected_control(name, control)
        return out

    def selected_control(self, name: str, control: Control) -> Estimate:
        chosen = att.select_head(control.moments, control.finish, self.train, self.test, self.claim, self.context,
                                 statistic=name)
        if isinstance(chosen, str):
            return Estimate.missing(chosen, n=len(self.test))
        detail = {**att.selection_detail(self.heads, chosen, len(self.train), len(self.test), by=name), **control.detail}
        return self.estimate(chosen.estimate, chosen.low, chosen.high, len(self.test),
                             ceiling=self.test_ceiling(control.ideal_moments, control.finish), detail=detail)

    def test_ceiling(self, ideal_moments, finish=att.pearson_from_sums) -> Ceiling:
        """The ideal detector's statistic on the test split, with its interval (the ceiling of a max_ statistic)."""
        counts = att.split_counts(len(self.test), self.claim.resamples, self.context.seed_for("bootstrap-test"))
        return Ceiling(*(float(v[0]) for v in self.interval(ideal_moments[self.test], counts, finish)))

    def named_statistics(self) -> dict[str, Estimate]:
        if self.named is None:
            missing = Estimate.missing("the claim names no head (params.layer, params.head)")
            return {"r": missing, "r_p": missing}
        k = self.named
        ceiling = Ceiling(*(float(v[0]) for v in self.ideal_r))
        r = self.estimate(self.r[k], self.low[k], self.high[k], self.n_sequences, p=float(self.p[k]), ceiling=ceiling,
                          detail={"layer": self.heads[k][0], "head": self.heads[k][1], "p_uncorrected": float(self.p_raw[k]),
                                  "correction": self.correction, "n_heads_tested": len(self.heads)})
        return {"r": r, "r_p": self.pvalue(self.p[k], self.n_sequences, self.heads[k])}

    def pvalue(self, p: float, n: int, head: tuple[int, int]) -> Estimate:
        """A corrected p-value whose ceiling is the smallest corrected p the permutations can give."""
        floor = Ceiling(self.smallest_p, self.smallest_p, self.smallest_p)
        return Estimate.pvalue(float(p), n, min_n=MIN_SEQUENCES, ceiling=floor,
                               detail={"layer": head[0], "head": head[1], "permutations": self.n_permutations,
                                       "correction": self.correction, "smallest_attainable_p": self.smallest_p})

    def selected_statistics(self) -> dict[str, Estimate]:
        chosen = att.select_head(self.moments, att.pearson_from_sums, self.train, self.test, self.claim, self.context)
        if isinstance(chosen, str):
            missing = Estimate.missing(chosen, n=len(self.test))
            return {"max_r": missing, "max_r_p": missing, "max_r_selects_named": missing}
        p_test = correct_pvalues(self.pvalues(self.test, "permutation-test"), self.correction)
        n_test = len(self.test)
        detail = {**att.selection_detail(self.heads, chosen, len(self.train), n_test), "correction": self.correction}
        out = {"max_r": self.estimate(chosen.estimate, chosen.low, chosen.high, n_test, p=float(p_test[chosen.index]),
                                      ceiling=self.test_ceiling(self.ideal_moments), detail=detail),
               "max_r_p": self.pvalue(p_test[chosen.index], n_test, self.heads[chosen.index])}
        out["max_r_selects_named"] = att.selects_named(chosen, self.named, self.claim, len(self.train), MIN_SEQUENCES)
        return out


def count(value: int, n: int | None = None) -> Estimate:
    return Estimate(float(value), float(value), float(value), int(value if n is None else n), kind="count")


def per_head_table(analysis: Analysis, table, heads, motif_score) -> list[dict]:
    """One row per head: r under the claim's settings with interval and p-values, and r of the raw mean
    probability (uncentred) and of the centred log mean probability, for comparison."""
    params = analysis.claim.params
    compare = {}
    for name, scale, centre in (("r_probability_raw", "probability", False),
                                ("r_log_probability_centred", "log_probability", True)):
        tracks = att.paired_tracks(head_scores(table, heads, scale, params), motif_score, centre=centre)
        compare[name] = att.pearson_from_sums(att.sequence_moments(tracks).sum(axis=0))
    compare.update({name: values[0] for name, values in analysis.control_values.items()})
    return [{"layer": layer, "head": head, "r": rounded(analysis.r[k], 4), "ci_low": rounded(analysis.low[k], 4),
             "ci_high": rounded(analysis.high[k], 4), "p_uncorrected": rounded(analysis.p_raw[k], 4),
             "p": rounded(analysis.p[k], 4), **{name: rounded(values[k], 4) for name, values in compare.items()}}
            for k, (layer, head) in enumerate(heads)]



def r_heatmap(claim, analysis: Analysis, model, heads):
    grid, low, high, p = (att.head_grid(values, heads, model) for values in
                          (analysis.r, analysis.low, analysis.high, analysis.p))
    caption = (f"Pearson r per head on all {analysis.n_sequences} sequences ({claim.params.key_score}, "
               f"{claim.params.scale}{', centred' if claim.params.centre else ''}, alignment "
               f"{claim.params.alignment}); ideal detector r = {analysis.ideal_r[0][0]:.3f}.")
    marks = HeadMarks(("r", "max_r"), low, high, p, p_statistics=("r_p", "max_r_p"))
    return head_heatmap(grid, title=f"{claim.id}: r per head", label="r", caption=caption, marks=marks)


def motif_card(motif, params, table) -> Card:
    return Card("qk_motif settings", {
        "motif": f"{motif.matrix_id} {motif.name} ({motif.length} bp, {motif.release}, pseudocount {motif.pseudocount})",
        "key_score": params.key_score + ("" if params.key_score != "qk_weights" or params.qk_biases else " (no biases)"),
        "scale": params.scale, "centred": params.centre, "alignment": params.alignment,
        "ideal_beta": params.ideal_beta,
        "activations": table.source})


# ---------------------------------------------------------------------------------------------
# The ceiling when the model is not here


def offline_ceiling(claim, context, missing: Unavailable) -> str:
    """The skip reason, with ideal_r computed on the claim's data with a tokenization made without the
    model (the claim's declared `model.tokenization`, else `surrogate_tokens`, else single nucleotides)."""
    from seqclaims.inputs.datasets import build

    params = claim.params
    try:
        dataset = build(claim.data.model_dump(exclude_none=True), seed=claim.seed, base_dir=claim.path.parent)
        motif = att.claim_motif(claim, dataset)
    except SeqclaimsError:
        return missing.message
    surrogate, described = surrogate_scheme(claim)
    offsets = att.surrogate_offsets(dataset.sequences, surrogate.kind, k=surrogate.k, min_length=surrogate.min_length,
                                    max_length=surrogate.max_length, rng=context.rng("surrogate-tokens"))
    scores = att.window_scores(dataset.sequences, motif)
    motif_score = att.motif_tracks(scores, offsets, motif.length, params.alignment)
    ideal = ideal_tracks(scores, offsets, motif, motif_score, params)
    counts = att.split_counts(len(dataset.sequences), claim.resamples, context.seed_for("bootstrap"))
    controls = composition_controls(dataset.sequences, offsets, motif, ideal, ideal, params,
                                    context.seed_for("shuffled-motifs"))
    ceilings = {"r": (att.sequence_moments(ideal), att.pearson_from_sums)}
    ceilings.update({name: (c.ideal_moments, c.finish) for name, c in controls.items()})
    described_ceilings, verdicts = [], []
    for name, (moments, finish) in ceilings.items():
        value = finish(att.weighted_sums(moments, None))[0, 0]
        low, high = percentile_interval(finish(att.weighted_sums(moments, counts))[:, 0], claim.ci_level)
        described_ceilings.append(f"ideal_{name} = {value:.3f} [{low:.3f}, {high:.3f}]")
        verdicts += [reachability(c, low, high) for c in claim.criteria if c.statistic in (name, f"max_{name}")]
    return (f"{missing.message}; ceiling computed without the model: {', '.join(described_ceilings)} on "
            f"{int(ideal.mask.any(axis=1).sum())} sequences of {dataset.name} ({described}, {motif.matrix_id}, "
            f"alignment {params.alignment}, {params.scale}{' centred' if params.centre else ''})"
            + "".join(f"; {v}" for v in verdicts))


def surrogate_scheme(claim) -> tuple[SurrogateTokens, str]:
    declared = getattr(claim.model, "tokenization", None) if not isinstance(claim.model, str) else None
    if declared is not None:
        scheme = SurrogateTokens(kind=declared.kind, k=declared.k)
    else:
        scheme = claim.params.surrogate_tokens or SurrogateTokens()
    if scheme.kind == "random_lengths":
        if scheme.min_length > scheme.max_length:
            raise InputError(f"{claim.path}: params.surrogate_tokens: min_length exceeds max_length")
        return scheme, f"tokens of {scheme.min_length}-{scheme.max_length} nt at random"
    return scheme, scheme.kind if scheme.kind == "single" else f"{scheme.kind} k={scheme.k}"


def reachability(criterion, low: float, high: float) -> str:
    from seqclaims.core.verdicts import FAIL, interval_verdict

    where = f"{criterion.statistic} {criterion.op} {criterion.threshold:g}"
    if interval_verdict(low, high, criterion.op, criterion.threshold) == FAIL:
        return f"{where} is unreachable: even an ideal detector fails it"
    return f"{where} is reachable by an ideal detector"


FAMILY = Family(
    name="qk_motif",
    whole_sequences=True,
    summary="per-head Pearson r between a per-token key score and the per-token motif score, "
            "with sequence-level intervals, permutation p-values and the ideal detector's ceiling",
    params=QkMotifParams,
    statistics={
        "r": Statistic("Pearson r of the named head (layer, head) pooled over tokens of all sequences; "
                       "bootstrap interval over sequences; ceiling ideal_r"),
        "r_p": Statistic("permutation p-value of the named head's r (motif tracks permuted between sequences), "
                         "corrected over all heads tested", kind="pvalue"),
        "max_r": Statistic("r of the head selected on the train split, scored on the test split; selection "
                           "redone in every resample; the head is in the detail"),
        "max_r_p": Statistic("test-split permutation p-value of the selected head, corrected over all heads tested",
                             kind="pvalue", selection=True),
        "max_r_selects_named": Statistic("share of resamples whose selection is the named head"),
        "r_partial_composition": Statistic("partial r of the named head given the composition (params.composition) "
                                           "of the motif window each token is credited with; ceiling: the ideal "
                                           "detector's"),
        "max_r_partial_composition": Statistic("r_partial_composition of the head with the largest one on the train "
                                               "split, scored on the test split; selection redone in every resample",
                                               selection=True),
        "r_minus_shuffled": Statistic("r of the named head minus the shuffled_quantile of its r with column-permuted "
                                      "copies of the matrix (same base preferences); above 0: motif-specific"),
        "max_r_minus_shuffled": Statistic("r_minus_shuffled of the head with the largest one on the train split, "
                                          "scored on the test split; selection redone in every resample",
                                          selection=True),
        "ideal_r": Statistic("r of an ideal detector (logit = PSSM score of the motif window anchored in the "
                             "key) under the claim's tokenization, alignment, key score and scale"),
        "n_sequences": Statistic("sequences with pooled tokens", kind="count"),
        "n_tokens": Statistic("tokens pooled over all sequences", kind="count"),
    },
    evaluate=evaluate,
    min_n=MIN_SEQUENCES,
    example={"model": "planted",
             "data": {"dataset": "motif_sites", "matrix": "MA0108.3", "n": 400},
             "params": {"layer": 0, "head": 2, "key_score": "attention_received", "scale": "log_probability",
                        "alignment": "anchored"},
             "criteria": [{"statistic": "r", "op": ">=", "threshold": 0.5},
                          {"statistic": "r_p", "op": "<", "threshold": 0.05},
                          {"statistic": "r_partial_composition", "op": ">=", "threshold": 0.3},
                          {"statistic": "r_minus_shuffled", "op": ">", "threshold": 0}]},
)
