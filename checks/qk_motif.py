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

Token-identity controls (`seqclaims.methods.token_controls`). In randomly initialised DNA encoders the key
token's identity explains most of the attention a token receives, and a motif's anchored score is driven by
the key token's own base (TBP's starts with a T), so a head that prefers T keys correlates with TBP:
- r_token_controlled: the partial correlation of key score and motif score given the one-hot identities of
  the tokens at `token_offsets` from the key (default [0], the key token; [-1, 0, 1] adds its neighbours):
  per offset the `token_classes` (16) most frequent identities get an indicator each, rarer ones share an
  "other" indicator, the most frequent is the reference; "none" where the offset leaves the tokens.
  Covariates centred within sequences with the tracks, as the composition covariates; the same partial
  correlation (`composition.partial_from_sums`), named head and max_r_token_controlled (selected on train,
  scored on test, selection redone in every resample); ceiling: the ideal detector under the same control.
  With tokens as long as the motif (k-mer tokens), the token fixes its anchored motif window, so even the
  ideal detector has no partial r left: the ceiling then makes the criterion unreachable, not failed. With
  more identities than `token_classes` (large vocabularies) only the frequent identities are regressed out.
- token_identity_share: R^2 of the regression of the head's (sequence-centred) key score on the key token's
  identity indicators (offset 0 only), over the pooled tokens of all sequences, interval by the same
  sequence bootstrap; per head in the per-head table (and the ideal detector's in the detail, a reference).
  A named head or a head a max_ statistic selects whose share is at least 0.5 is flagged in the evidence
  notes as mostly a token-identity reader.

Recovered-matrix similarity (`seqclaims.methods.recovered_matrix`, whose docstring holds the exact
definition). The head's key score (as pooled for r) is regressed on the one-hot bases of the motif window
the alignment credits to the token (4 x L columns; overlap_max: the window starting at the token's first
base), both centred within sequences, by ridge regression (penalty 1e-3); each position's four coefficients
are centred and the 4 x L matrix compared with the PSSM (each position centred) by the Pearson correlation
over positions and bases weighted by each position's information content, the larger of that with the PSSM
and with its reverse complement. A single-base reader recovers one column, a true detector the matrix.
- matrix_similarity: the named head fitted on the train split; interval by bootstrap over train sequences
  (the regression redone per resample); ceiling: the ideal detector fitted on the same sequences.
- max_matrix_similarity: the head with the largest similarity fitted on the (resampled) train split, its
  similarity fitted on the (resampled) test split, the selection redone in every resample; ceiling: the
  ideal detector on the test split.
- What it does not tell: the similarity is of the recovered matrix's shape, whatever share of the key score
  the window's bases explain (a head whose r is 0.02 can recover a similar shape from that little signal;
  pair it with r or r_token_controlled); and a reader of the window's AT (or GC) content recovers an AT-rich
  matrix that correlates with any AT-rich motif's (measured 0.77 for TBP on the planted composition head),
  which r_minus_shuffled and r_partial_composition catch.

Randomisation baseline. r, max_r and the controls above (not the p-values, counts or token_identity_share)
are key statistics: `<name>_init` and `<name>_minus_init` (`judging.init_baseline`) compare them with
`init_seeds` randomly initialised copies of the model, paired over resamples (every Estimate carries its
resamples; a max_ statistic's copy selects its own head on its own train split).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field, field_validator

from seqclaims.core.evidence import Card, Ceiling, Estimate, Evidence, rounded
from seqclaims.core.families import Family, Statistic
from seqclaims.core.schema import StrictModel
from seqclaims.errors import InputError, SeqclaimsError, Unavailable
from seqclaims.methods import attention as att, key_scores
from seqclaims.methods import composition as comp, recovered_matrix as rm, token_controls as tc
from seqclaims.methods.figures import HeadMarks, head_heatmap
from seqclaims.methods.stats import correct_pvalues, percentile_interval, select_and_score

MIN_SEQUENCES = 20
NAMED = ("r", "r_p", "max_r_selects_named", "r_partial_composition", "r_minus_shuffled", "r_token_controlled",
         "token_identity_share", "matrix_similarity")
TOKEN_READER_SHARE = 0.5  # a head whose key token's identity explains at least this share is flagged
MAX_TOKEN_OFFSET = 16


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
    token_offsets: list[int] = Field(
        [0], description="r_token_controlled: offsets (in tokens) from the key whose token identities are regressed "
        "out; 0 is the key token itself and must be listed, -1 the token before it, 1 the one after")
    token_classes: int = Field(16, ge=2, le=256, description="token controls: the most frequent token identities "
                               "per offset that get a covariate each; rarer ones share an 'other' covariate")

    @field_validator("token_offsets")
    @classmethod
    def _offsets_hold_the_key_token(cls, offsets: list[int]) -> list[int]:
        if 0 not in offsets or len(set(offsets)) != len(offsets) or any(abs(o) > MAX_TOKEN_OFFSET for o in offsets):
            raise ValueError(f"list distinct offsets within +-{MAX_TOKEN_OFFSET} that include 0 (the key token), "
                             "e.g. [0] or [-1, 0, 1]")
        return offsets


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
    token_control, share = token_identity_controls(dataset.sequences, table.offsets, tracks, ideal, params)
    controls["r_token_controlled"] = token_control
    matrix = matrix_control(dataset.sequences, table.offsets, motif, tracks, ideal, params)
    analysis = Analysis(claim, context, tracks, ideal, lengths, dataset.split, heads, named, controls,
                        share=share, matrix=matrix)
    statistics = analysis.statistics()
    statistics["n_sequences"] = count(analysis.n_sequences)
    statistics["n_tokens"] = count(tracks.n_tokens, analysis.n_sequences)
    table_rows = per_head_table(analysis, table, heads, motif_score)
    for name in ("r", "max_r", "token_identity_share"):
        if not statistics[name].is_missing:
            statistics[name].detail["per_head"] = table_rows
    evidence = Evidence(statistics=statistics, figures=[r_heatmap(claim, analysis, model, heads)],
                        cards=[*inputs.cards, motif_card(motif, params, table)],
                        notes=token_identity_notes(analysis, statistics))
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


def token_identity_controls(sequences, offsets, tracks, ideal, params) -> tuple[Control, Control]:
    """r_token_controlled (the partial r given the identities of the tokens at `token_offsets` from the key) and
    token_identity_share (the share of the key score's variance the key token's own identity explains) for
    every head and for the ideal detector, as per-sequence sums (`token_controls`, `composition.partial_moments`)."""
    codes, names = tc.identity_codes(sequences, offsets)

    def moments(token_offsets: list[int]) -> tuple[np.ndarray, np.ndarray, list[str]]:
        covariates, labels = tc.identity_covariates(codes, names, token_offsets, params.token_classes)
        sums = [comp.partial_moments(t.x, t.y, comp.prepared_covariates(covariates, t.mask, centre=params.centre),
                                     t.mask) for t in (tracks, ideal)]
        return sums[0], sums[1], labels

    heads, ideal_sums, labels = moments(params.token_offsets)
    detail = {"token_offsets": params.token_offsets, "token_classes": params.token_classes, "covariates": len(labels)}
    controlled = Control(heads, ideal_sums, comp.partial_from_sums, detail)
    key_only = (heads, ideal_sums, labels) if params.token_offsets == [0] else moments([0])
    share = Control(key_only[0], key_only[1], comp.explained_share_from_sums,
                    {"token_classes": params.token_classes, "covariates": len(key_only[2])})
    return controlled, share


class MatrixControl:
    """Recovered-matrix sums of the heads and of the ideal detector (`recovered_matrix`), and the motif."""

    def __init__(self, sums: rm.MatrixSums, ideal_sums: rm.MatrixSums, motif, detail: dict):
        self.sums, self.ideal_sums, self.motif, self.detail = sums, ideal_sums, motif, detail

    def similarity(self, rows: np.ndarray, counts: np.ndarray | None = None, *, ideal: bool = False) -> np.ndarray:
        """(B, K) similarity of the heads (or (B, 1) of the ideal detector) fitted on the sequences `rows`."""
        return rm.similarity_from_sums((self.ideal_sums if ideal else self.sums).take(rows), self.motif, counts)


def matrix_control(sequences, offsets, motif, tracks, ideal, params) -> MatrixControl:
    """The sums behind matrix_similarity for every head and for the ideal detector."""
    starts = rm.window_starts(offsets, [len(s) for s in sequences], motif.length, params.alignment)
    sums = [rm.matrix_sums(sequences, starts, t.x, t.mask, motif.length, centre=params.centre) for t in (tracks, ideal)]
    window = "anchored" if params.alignment == "overlap_max" else params.alignment
    return MatrixControl(*sums, motif, {"window": f"{motif.length} nt, {window}", "ridge": rm.RIDGE,
                                        "weights": "information content per position",
                                        "compared_with": "the PSSM or its reverse complement, whichever is closer"})


class Analysis(att.HeadCorrelation):
    """r of every head and of the ideal detector, with intervals, permutation p-values and selection; the
    controls (composition, shuffled motifs, token identity), the token-identity share and the recovered-matrix
    similarity when given."""

    def __init__(self, claim, context, tracks, ideal, lengths, split, heads, named, controls=None, *,
                 share: Control | None = None, matrix: MatrixControl | None = None):
        super().__init__(claim, context, tracks, lengths, split, heads, named)
        self.ideal = ideal
        self.controls: dict[str, Control] = controls or {}
        self.share, self.matrix = share, matrix
        self.ideal_moments = att.sequence_moments(ideal)
        self.ideal_r = self.interval(self.ideal_moments, self.counts)
        self.control_values = {name: self.resampled(c.moments, self.counts, c.finish) for name, c in self.controls.items()}
        self.share_values = None if share is None else self.resampled(share.moments, self.counts, share.finish)
        self.train_counts = att.split_counts(len(self.train), claim.resamples, context.seed_for("bootstrap-train"))
        self.matrix_values = None if matrix is None else self.matrix_on_train()

    def statistics(self) -> dict[str, Estimate]:
        out = dict(self.named_statistics())
        out.update(self.selected_statistics())
        for name, control in self.controls.items():
            out.update(self.controlled_statistics(name, control))
        if self.share is not None:
            out["token_identity_share"] = self.token_identity_share()
        if self.matrix is not None:
            out["matrix_similarity"] = self.named_matrix_similarity()
            out["max_matrix_similarity"] = self.selected_matrix_similarity()
        out["ideal_r"] = self.estimate(self.ideal_r[0][0], self.ideal_r[1][0], self.ideal_r[2][0], self.n_sequences,
                                       detail={"alignment": self.claim.params.alignment})
        return out

    def estimate(self, value, low, high, n, **kwargs) -> Estimate:
        if n == 0 or not np.isfinite(value):
            return Estimate.missing("no sequence with scored tokens" if n == 0 else "r undefined (no variance)", n=n)
        return Estimate(float(value), float(low), float(high), n, min_n=MIN_SEQUENCES, **kwargs)

    def head_detail(self, k: int) -> dict:
        return {"layer": self.heads[k][0], "head": self.heads[k][1]}

    def named_missing(self) -> Estimate:
        return Estimate.missing("the claim names no head (params.layer, params.head)")

    def controlled_statistics(self, name: str, control: Control) -> dict[str, Estimate]:
        """A control of the named head (all sequences) and of the head selected on train."""
        point, low, high, samples = self.control_values[name]
        ideal = Ceiling(*(float(v[0]) for v in self.interval(control.ideal_moments, self.counts, control.finish)))
        out = {}
        if self.named is None:
            out[name] = self.named_missing()
        else:
            k = self.named
            out[name] = self.estimate(point[k], low[k], high[k], self.n_sequences, ceiling=ideal, samples=samples[:, k],
                                      detail={**self.head_detail(k), **control.detail})
        out[f"max_{name}"] = self.selected_control(name, control)
        return out

    def selected_control(self, name: str, control: Control) -> Estimate:
        chosen = att.select_head(control.moments, control.finish, self.train, self.test, self.claim, self.context,
                                 statistic=name)
        if isinstance(chosen, str):
            return Estimate.missing(chosen, n=len(self.test))
        detail = {**att.selection_detail(self.heads, chosen, len(self.train), len(self.test), by=name), **control.detail}
        return self.estimate(chosen.estimate, chosen.low, chosen.high, len(self.test), samples=chosen.samples,
                             ceiling=self.test_ceiling(control.ideal_moments, control.finish), detail=detail)

    def test_ceiling(self, ideal_moments, finish=att.pearson_from_sums) -> Ceiling:
        """The ideal detector's statistic on the test split, with its interval (the ceiling of a max_ statistic)."""
        counts = att.split_counts(len(self.test), self.claim.resamples, self.context.seed_for("bootstrap-test"))
        return Ceiling(*(float(v[0]) for v in self.interval(ideal_moments[self.test], counts, finish)))

    def token_identity_share(self) -> Estimate:
        """The named head's token_identity_share, with the ideal detector's beside it (a reference, not a ceiling)."""
        if self.named is None:
            return self.named_missing()
        k = self.named
        point, low, high, samples = self.share_values
        ideal = float(self.share.finish(att.weighted_sums(self.share.ideal_moments, None))[0, 0])
        detail = {**self.head_detail(k), **self.share.detail, "ideal_detector_share": rounded(ideal, 4),
                  "token_identity_reader": bool(point[k] >= TOKEN_READER_SHARE)}
        if not np.isfinite(point[k]):
            return Estimate.missing("the key score does not vary", n=self.n_sequences)
        return self.estimate(point[k], low[k], high[k], self.n_sequences, samples=samples[:, k], detail=detail)

    def matrix_on_train(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """matrix_similarity of every head fitted on the train split: point, interval and (B, K) resamples
        (bootstrap over train sequences)."""
        samples = self.matrix.similarity(self.train, self.train_counts)
        low, high = percentile_interval(samples, self.claim.ci_level)
        return self.matrix.similarity(self.train)[0], np.atleast_1d(low), np.atleast_1d(high), samples

    def named_matrix_similarity(self) -> Estimate:
        if self.named is None:
            return self.named_missing()
        if len(self.train) == 0:
            return Estimate.missing("matrix_similarity is fitted on the train split, which has no sequences")
        k = self.named
        point, low, high, samples = self.matrix_values
        ideal = self.matrix.similarity(self.train, self.train_counts, ideal=True)[:, 0]
        ceiling = Ceiling(float(self.matrix.similarity(self.train, ideal=True)[0, 0]),
                          *(float(v) for v in percentile_interval(ideal, self.claim.ci_level)))
        recovered = rm.recovered_matrices(self.matrix.sums.take(self.train))[0, k]
        reverse = bool(rm.similarity(recovered, self.matrix.motif)[1])
        detail = {**self.head_detail(k), **self.matrix.detail, "fitted_on": f"train ({len(self.train)} sequences)",
                  "closer_strand": "reverse complement" if reverse else "forward",
                  "recovered_matrix": {base: [rounded(v, 4) for v in row] for base, row in zip("ACGT", recovered)}}
        if not np.isfinite(point[k]):
            return Estimate.missing("matrix similarity undefined (the key score does not vary)", n=len(self.train))
        return self.estimate(point[k], low[k], high[k], len(self.train), ceiling=ceiling, samples=samples[:, k],
                             detail=detail)

    def selected_matrix_similarity(self) -> Estimate:
        """The head with the largest matrix_similarity fitted on (resampled) train sequences, its similarity fitted
        on (resampled) test sequences; the selection redone in every resample."""
        if len(self.train) == 0 or len(self.test) == 0:
            return Estimate.missing("selection needs sequences in both the train and the test split", n=len(self.test))
        seeds = (self.context.seed_for("bootstrap-train"), self.context.seed_for("bootstrap-test"))
        chosen = select_and_score(lambda counts: self.matrix.similarity(self.train, counts),
                                  lambda counts: self.matrix.similarity(self.test, counts), len(self.train),
                                  len(self.test), seeds=seeds, n_resamples=self.claim.resamples,
                                  level=self.claim.ci_level)
        if chosen.index < 0:
            return Estimate.missing("no head has a defined matrix_similarity on the train split", n=len(self.test))
        counts = att.split_counts(len(self.test), self.claim.resamples, seeds[1])
        ideal = self.matrix.similarity(self.test, counts, ideal=True)[:, 0]
        ceiling = Ceiling(float(self.matrix.similarity(self.test, ideal=True)[0, 0]),
                          *(float(v) for v in percentile_interval(ideal, self.claim.ci_level)))
        detail = {**att.selection_detail(self.heads, chosen, len(self.train), len(self.test), by="matrix_similarity"),
                  **self.matrix.detail}
        return self.estimate(chosen.estimate, chosen.low, chosen.high, len(self.test), samples=chosen.samples,
                             ceiling=ceiling, detail=detail)

    def named_statistics(self) -> dict[str, Estimate]:
        if self.named is None:
            missing = self.named_missing()
            return {"r": missing, "r_p": missing}
        k = self.named
        ceiling = Ceiling(*(float(v[0]) for v in self.ideal_r))
        r = self.estimate(self.r[k], self.low[k], self.high[k], self.n_sequences, p=float(self.p[k]), ceiling=ceiling,
                          samples=self.samples[:, k],
                          detail={**self.head_detail(k), "p_uncorrected": float(self.p_raw[k]),
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
                                      ceiling=self.test_ceiling(self.ideal_moments), samples=chosen.samples,
                                      detail=detail),
               "max_r_p": self.pvalue(p_test[chosen.index], n_test, self.heads[chosen.index])}
        out["max_r_selects_named"] = att.selects_named(chosen, self.named, self.claim, len(self.train), MIN_SEQUENCES)
        return out


def token_identity_notes(analysis: Analysis, statistics: dict[str, Estimate]) -> list[str]:
    """One note per head that the claim names or a max_ statistic selects whose key token's identity explains
    at least TOKEN_READER_SHARE of its key score's variance (all sequences)."""
    if analysis.share_values is None:
        return []
    shares = analysis.share_values[0]
    about: dict[int, list[str]] = {}
    if analysis.named is not None:
        about.setdefault(analysis.named, []).append("named")
    for name, estimate in statistics.items():
        if name.startswith("max_") and estimate.kind != "pvalue" and not estimate.is_missing and "layer" in estimate.detail:
            k = analysis.heads.index((estimate.detail["layer"], estimate.detail["head"]))
            about.setdefault(k, []).append(f"selected by {name}")
    return [f"{att.head_label(analysis.heads[k])} ({', '.join(roles)}) is mostly a token-identity reader: its key "
            f"token's identity explains {shares[k]:.0%} of its sequence-centred key score variance "
            f"(token_identity_share >= {TOKEN_READER_SHARE}); see r_token_controlled and matrix_similarity"
            for k, roles in about.items() if np.isfinite(shares[k]) and shares[k] >= TOKEN_READER_SHARE]


def count(value: int, n: int | None = None) -> Estimate:
    return Estimate(float(value), float(value), float(value), int(value if n is None else n), kind="count")


def per_head_table(analysis: Analysis, table, heads, motif_score) -> list[dict]:
    """One row per head: r under the claim's settings with interval and p-values, r of the raw mean
    probability (uncentred) and of the centred log mean probability, for comparison, and the controls,
    token_identity_share and matrix_similarity (fitted on train) of every head."""
    params = analysis.claim.params
    compare = {}
    for name, scale, centre in (("r_probability_raw", "probability", False),
                                ("r_log_probability_centred", "log_probability", True)):
        tracks = att.paired_tracks(head_scores(table, heads, scale, params), motif_score, centre=centre)
        compare[name] = att.pearson_from_sums(att.sequence_moments(tracks).sum(axis=0))
    compare.update({name: values[0] for name, values in analysis.control_values.items()})
    if analysis.share_values is not None:
        compare["token_identity_share"] = analysis.share_values[0]
    if analysis.matrix_values is not None:
        compare["matrix_similarity"] = analysis.matrix_values[0]
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
    controls["r_token_controlled"] = token_identity_controls(dataset.sequences, offsets, ideal, ideal, params)[0]
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


def _selected_control(name: str) -> Statistic:
    """The max_ statistic of a control: its value for the head selected on train by it, scored on test."""
    return Statistic(f"{name} of the head with the largest one on the train split, scored on the test split; "
                     "selection redone in every resample", selection=True, init=True, control=True)


FAMILY = Family(
    name="qk_motif",
    whole_sequences=True,
    summary="per-head Pearson r between a per-token key score and the per-token motif score, "
            "with sequence-level intervals, permutation p-values and the ideal detector's ceiling",
    params=QkMotifParams,
    statistics={
        "r": Statistic("Pearson r of the named head (layer, head) pooled over tokens of all sequences; "
                       "bootstrap interval over sequences; ceiling ideal_r", init=True),
        "r_p": Statistic("permutation p-value of the named head's r (motif tracks permuted between sequences), "
                         "corrected over all heads tested", kind="pvalue"),
        "max_r": Statistic("r of the head selected on the train split, scored on the test split; selection "
                           "redone in every resample; the head is in the detail", init=True),
        "max_r_p": Statistic("test-split permutation p-value of the selected head, corrected over all heads tested",
                             kind="pvalue", selection=True),
        "max_r_selects_named": Statistic("share of resamples whose selection is the named head"),
        "r_partial_composition": Statistic("partial r of the named head given the composition (params.composition) "
                                           "of the motif window each token is credited with; ceiling: the ideal "
                                           "detector's", init=True, control=True),
        "max_r_partial_composition": _selected_control("r_partial_composition"),
        "r_minus_shuffled": Statistic("r of the named head minus the shuffled_quantile of its r with column-permuted "
                                      "copies of the matrix (same base preferences); above 0: motif-specific",
                                      init=True, control=True),
        "max_r_minus_shuffled": _selected_control("r_minus_shuffled"),
        "r_token_controlled": Statistic("partial r of the named head given the one-hot identities of the tokens at "
                                        "params.token_offsets from the key (default the key token), centred within "
                                        "sequences; ceiling: the ideal detector's", init=True, control=True),
        "max_r_token_controlled": _selected_control("r_token_controlled"),
        "token_identity_share": Statistic("R^2 of the named head's sequence-centred key score on the one-hot identity "
                                          "of the key token; per head in the detail; >= 0.5 is flagged in the notes"),
        "matrix_similarity": Statistic("information-weighted Pearson r of the 4 x L matrix recovered by a ridge "
                                       "regression of the named head's key score on the motif window's one-hot bases "
                                       "(train split) with the PSSM (either strand); ceiling: the ideal detector's",
                                       init=True, control=True),
        "max_matrix_similarity": Statistic("matrix_similarity (fitted on the test split) of the head with the largest "
                                           "one fitted on the train split; selection redone in every resample",
                                           selection=True, init=True, control=True),
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
             # the head's r beyond what its key token's identity explains at least 0.1 above that of the same head
             # of randomly initialised copies; a preference for the motif over column-shuffled copies of the
             # matrix (not a composition reader); and the matrix its key score recovers
             # correlated at least 0.5 with the PSSM (a reader of the key token's base recovers one column,
             # about 0.15 for TBP; a reader of AT content recovers an AT-rich matrix, hence the shuffled control)
             "criteria": [{"statistic": "r_token_controlled_minus_init", "op": ">=", "threshold": 0.1},
                          {"statistic": "r_minus_shuffled", "op": ">", "threshold": 0},
                          {"statistic": "matrix_similarity", "op": ">=", "threshold": 0.5}]},
)
