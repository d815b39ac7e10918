"""attention_association: is the attention a head's keys receive associated with a genome annotation
(the attention-heads study), and more so in the trained model than at initialisation?

Evidence: every tested head's attention received by each key (mean over real queries of the attention
probability; one cached pass, `key_scores.extract_key_scores`) and a per-token annotation (`annotation`:
start/stop codons, splice sites, TSS, codon phase, a motif or a pattern, as in `neuron`).

Definitions (per head, K heads tested):
- association: Spearman correlation of attention received and annotation over the tokens of all windows
  pooled (special tokens left out): both ranked over the pooled tokens (ties averaged), then Pearson r of
  the ranks (with `centre`, ranks centred within each window first). Intervals: percentile bootstrap over
  windows, the ranks fixed.
- p-values: one-sided (association > 0), the annotation tracks permuted between windows of equal length
  (`permutations`): a block permutation whose blocks are whole windows, so the annotation's local
  autocorrelation and its position within the window are kept (a circular shift would keep the first but
  not the second, so a head that attends to the window's centre would look associated with any annotation
  anchored there). Corrected over all heads tested with the claim's `correction` (Holm when it declares
  none; the study corrected for nothing).
- association_z: (association - mean of the null) / its standard deviation, the study's z-score.
- association, association_p, association_z: the head named by `layer`, `head`.
- max_association: the head with the largest association on the train split, scored on the test split, the
  selection redone in every resample; max_association_p: its corrected p on the test split.
- share_associated: share of the tested heads whose corrected p is below 0.05 (a count over heads; its
  interval is the point; n is the windows it rests on).
- A content token the annotation cannot score (a motif window running off the window) counts as not
  annotated, so that windows of one length pool the same tokens and the permutation is exact.
- `compare_to: <model>` (e.g. `organism@step0`, the initialisation): association_minus_compared (named head,
  paired bootstrap over the same windows), max_association_minus_compared (each model's own selection on
  train, scored on test, paired) and share_associated_minus_compared.
- Randomisation baseline: association and max_association are key statistics; association_init,
  max_association_init and their _minus_init differences (`judging.init_baseline`) compare them with
  `init_seeds` randomly initialised copies of the model, paired over the same window resamples (each copy's
  selection made on its own train split). The template decides on max_association_minus_init; `compare_to` stays for a
  comparison with a particular checkpoint (e.g. an early pre-training step).
Minimum n: 20 windows.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field

from seqclaims.core.evidence import Estimate, Evidence, rounded
from seqclaims.core.families import Family, Statistic
from seqclaims.core.schema import StrictModel
from seqclaims.inputs.models import ModelRef
from seqclaims.methods import attention as att, key_scores
from seqclaims.methods.features import Annotation, permute_labels, token_labels
from seqclaims.methods.figures import HeadMarks, head_heatmap
from seqclaims.methods.stats import correct_pvalues

MIN_SEQUENCES = 20
ALPHA = 0.05
NAMED = ("association", "association_p", "association_z", "association_minus_compared")


class AssociationParams(StrictModel):
    annotation: Annotation = Field(description="the per-token annotation (as in `neuron`)")
    layer: int | None = Field(None, ge=0, description="layer of the named head")
    head: int | None = Field(None, ge=0, description="head of the named head")
    layers: list[int] | None = Field(None, description="layers whose heads are tested (default: all)")
    scale: Literal["probability", "logit"] = Field(
        "probability", description="attention received as the mean probability, or the mean log probability "
        "(ranks differ)")
    centre: bool = Field(False, description="centre the ranks within each window before pooling")
    permutations: int | None = Field(None, ge=99, le=100000, description="annotation-track permutations (default "
                                     "max(999, 20 x heads tested))")
    compare_to: ModelRef | None = Field(None, description="a second model (e.g. organism@step0) for the "
                                        "_minus_compared statistics")


def pooled_ranks(values: np.ndarray) -> np.ndarray:
    """(K, n_seq, n_tok) -> ranks of each row over its finite entries (ties averaged), NaN elsewhere."""
    from scipy.stats import rankdata  # SciPy's stats take a second to import: only when a claim is judged

    out = np.full(values.shape, np.nan)
    for k, row in enumerate(values):
        finite = np.isfinite(row)
        out[k][finite] = rankdata(row[finite])
    return out


class Association(att.HeadCorrelation):
    """Spearman association of every tested head of one model with the annotation."""

    def __init__(self, claim, context, model, dataset):
        params = claim.params
        heads, named = att.claim_heads(claim, model)
        table = key_scores.extract_key_scores(model, dataset.sequences, dataset_hash=dataset.content_hash,
                                       key_score="attention_received")
        values = key_scores.key_score_values(table, params.scale)
        layers, indices = np.array(heads).T
        labels = token_labels(dataset, table.offsets, params.annotation, f"{claim.path}: params.annotation")
        if params.annotation.permuted:
            labels = permute_labels(labels, table.special, dataset, context.seed_for("permuted-annotation"))
        # a content token the annotation cannot score (a motif window off the window's end) is not annotated:
        # every window of a length then pools the same tokens, which the permutation null requires
        labels = np.where(table.special, np.nan, np.nan_to_num(labels, nan=0.0))
        tracks = att.paired_tracks(pooled_ranks(values[layers, indices]), pooled_ranks(labels[None])[0],
                                   centre=params.centre)
        lengths = np.array([len(s) for s in dataset.sequences])
        super().__init__(claim, context, tracks, lengths, np.asarray(dataset.split), heads, named)
        self.model = model
        observed, null = self.null(np.arange(len(lengths)), "permutation")
        with np.errstate(invalid="ignore", divide="ignore"):
            self.z = (observed - np.nanmean(null, axis=0)) / np.nanstd(null, axis=0)
        self.selected = att.select_head(self.moments, att.pearson_from_sums, self.train, self.test, claim, context,
                                        units="windows", statistic="association")
        self.share = float(np.mean(self.p < ALPHA))

    def estimate(self, value, low, high, n, **kwargs) -> Estimate:
        if n == 0 or not np.isfinite(value):
            return Estimate.missing("no window with scored tokens" if n == 0 else "association undefined (no variance)", n=n)
        return Estimate(float(value), float(low), float(high), n, min_n=MIN_SEQUENCES, **kwargs)

    def named_statistics(self) -> dict[str, Estimate]:
        if self.named is None:
            missing = Estimate.missing("the claim names no head (params.layer, params.head)")
            return {name: missing for name in NAMED[:3]}
        k = self.named
        where = {"layer": self.heads[k][0], "head": self.heads[k][1]}
        p_detail = {**where, "p_uncorrected": float(self.p_raw[k]), "correction": self.correction,
                    "permutations": self.n_permutations, "n_heads_tested": len(self.heads)}
        return {"association": self.estimate(self.r[k], self.low[k], self.high[k], self.n_sequences,
                                             p=float(self.p[k]), samples=self.samples[:, k], detail=p_detail),
                "association_p": Estimate.pvalue(float(self.p[k]), self.n_sequences, min_n=MIN_SEQUENCES, detail=p_detail),
                "association_z": self.estimate(self.z[k], self.z[k], self.z[k], self.n_sequences, detail=where)}

    def selected_statistics(self) -> dict[str, Estimate]:
        chosen = self.selected
        if isinstance(chosen, str):
            missing = Estimate.missing(chosen, n=len(self.test))
            return {"max_association": missing, "max_association_p": missing}
        p_test = correct_pvalues(self.pvalues(self.test, "permutation-test"), self.correction)
        detail = {**att.selection_detail(self.heads, chosen, len(self.train), len(self.test)),
                  "correction": self.correction}
        return {"max_association": self.estimate(chosen.estimate, chosen.low, chosen.high, len(self.test),
                                                 p=float(p_test[chosen.index]), samples=chosen.samples,
                                                 detail=detail),
                "max_association_p": Estimate.pvalue(float(p_test[chosen.index]), len(self.test),
                                                     min_n=MIN_SEQUENCES, detail=detail)}

    def share_statistic(self) -> Estimate:
        return Estimate(self.share, self.share, self.share, self.n_sequences, min_n=MIN_SEQUENCES,
                        detail={"alpha": ALPHA, "correction": self.correction, "heads": len(self.heads)})


def evaluate(claim, context) -> Evidence:
    att.require_named_head(claim, NAMED)
    inputs = context.inputs()
    ours = Association(claim, context, inputs.model, inputs.dataset)
    statistics = {**ours.named_statistics(), **ours.selected_statistics(), "share_associated": ours.share_statistic()}
    statistics.update(comparison(claim, context, ours, inputs.dataset))
    figures = [association_heatmap(claim, ours)]
    statistics_rows = per_head_rows(ours)
    for name in ("association", "max_association"):
        if not statistics[name].is_missing:
            statistics[name].detail["per_head"] = statistics_rows
    evidence = Evidence(statistics=statistics, figures=figures, cards=inputs.cards)
    evidence.versions.update(inputs.versions)
    return evidence


def comparison(claim, context, ours: Association, dataset) -> dict[str, Estimate]:
    """The _minus_compared statistics: this model minus `compare_to`, paired over the same windows."""
    names = ("association_minus_compared", "max_association_minus_compared", "share_associated_minus_compared")
    if claim.params.compare_to is None:
        return {name: Estimate.missing("the claim compares with no model (params.compare_to)") for name in names}
    from seqclaims.inputs.models import load_model

    other = Association(claim, context, load_model(claim.params.compare_to), dataset)
    compared = {"compared": other.model.ref.describe()}
    level = claim.ci_level
    out = {}
    if ours.named is None:
        out[names[0]] = Estimate.missing("the claim names no head (params.layer, params.head)")
    else:
        k = ours.named
        out[names[0]] = paired(ours.r[k] - other.r[k], ours.samples[:, k] - other.samples[:, k], ours.n_sequences,
                               level, compared)
    if isinstance(ours.selected, str) or isinstance(other.selected, str):
        out[names[1]] = Estimate.missing("no head could be selected in one of the models", n=len(ours.test))
    else:
        out[names[1]] = paired(ours.selected.estimate - other.selected.estimate,
                               ours.selected.samples - other.selected.samples, len(ours.test), level, compared)
    difference = ours.share - other.share
    out[names[2]] = Estimate(difference, difference, difference, ours.n_sequences, min_n=MIN_SEQUENCES,
                             detail={**compared, "heads": len(ours.heads)})
    return out


def paired(estimate: float, samples: np.ndarray, n: int, level: float, detail: dict) -> Estimate:
    from seqclaims.methods.stats import percentile_interval

    low, high = percentile_interval(samples, level)
    if not np.isfinite(estimate) or not np.isfinite(low):
        return Estimate.missing("undefined in one of the models", n=n)
    return Estimate(float(estimate), float(low), float(high), n, min_n=MIN_SEQUENCES, detail=detail)


def association_heatmap(claim, ours: Association):
    grid, low, high, p = (att.head_grid(values, ours.heads, ours.model) for values in (ours.r, ours.low, ours.high, ours.p))
    caption = (f"Spearman association of attention received with {claim.params.annotation.describe()} per head, "
               f"all {ours.n_sequences} windows; corrected p ({ours.correction}) from {ours.n_permutations} "
               "permutations of the annotation between windows.")
    marks = HeadMarks(("association", "max_association"), low, high, p, p_statistics=("association_p", "max_association_p"))
    return head_heatmap(grid, title=f"{claim.id}: association per head", label="Spearman", caption=caption,
                        marks=marks)


def per_head_rows(ours: Association) -> list[dict]:
    return [{"layer": layer, "head": head, "association": rounded(ours.r[k], 4), "ci_low": rounded(ours.low[k], 4),
             "ci_high": rounded(ours.high[k], 4), "z": rounded(ours.z[k], 3), "p_uncorrected": rounded(ours.p_raw[k], 4),
             "p": rounded(ours.p[k], 4)} for k, (layer, head) in enumerate(ours.heads)]


FAMILY = Family(
    name="attention_association",
    whole_sequences=True,
    alphabets=("dna", "protein"),
    summary="Spearman association of each head's attention received with a per-token annotation, against "
            "annotation tracks permuted between windows, corrected over heads; trained minus another model",
    params=AssociationParams,
    statistics={
        "association": Statistic("Spearman association of the named head, all windows", init=True),
        "association_p": Statistic("its permutation p-value corrected over heads", kind="pvalue"),
        "association_z": Statistic("its z-score against the permutation null"),
        "max_association": Statistic("the head selected on train, scored on test", selection=True, init=True),
        "max_association_p": Statistic("that head's corrected test-split p-value", kind="pvalue", selection=True),
        "share_associated": Statistic("share of tested heads with corrected p < 0.05"),
        "association_minus_compared": Statistic("named head: this model minus compare_to, paired", control=True),
        "max_association_minus_compared": Statistic("max_association minus compare_to's, paired", control=True),
        "share_associated_minus_compared": Statistic("share_associated minus compare_to's", control=True),
    },
    evaluate=evaluate,
    min_n=MIN_SEQUENCES,
    example={
        "model": "organism",
        "data": {"dataset": "splice_donors", "n": 400},
        "params": {"annotation": {"track": "donor"}},
        "criteria": [{"statistic": "max_association_minus_init", "op": ">", "threshold": 0.0}],
    },
)
