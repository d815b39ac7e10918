"""gram: structure of the Gram matrix of a layer's representations (DNAtlas): similarity by offset, and
codon periodicity inside coding sequence.

Evidence: the representation of every base (its token's, at `layer.{layer}.{site}`), from the shared
activation cache; for the shuffled control, the same model's representations of the coding windows with
the bases of every codon permuted.

Definitions (per sequence s; D = `max_offset`, a multiple of 3):
- rows: the bases' representations, centred on the sequence's mean over the bases used and scaled to unit
  length (DNAtlas's normalisation); similarity of two bases = cosine of their rows.
- profile p_s(d), d = 1..D: mean similarity of the pairs of bases d apart.
- period-3 share: the share of the power of p_s (its linear trend removed) at frequency 1/3; 1 for a pure
  period-3 profile, about 2/D for white noise.
- codon_periodicity: mean period-3 share of the coding windows (label 1 of dataset `coding`) over their
  longest uninterrupted reading frame (consecutive CDS bases whose codon phase advances; introns end it);
  windows whose frame is shorter than `min_run` (default 2 D) bases are left out.
- intergenic_periodicity: the same over the whole of the intergenic windows (label 0).
- codon_periodicity_over_intergenic: the difference (groups resampled independently).
- shuffled_periodicity: the same coding windows and frames with the three bases of every codon permuted
  at random (each codon's composition and the frame kept, the position of a base inside its codon lost).
- codon_periodicity_over_shuffled: paired difference per window, coding minus shuffled. Above 0, the
  periodicity depends on which base sits at which codon position. A representation that is periodic for
  a reason other than the sequence (e.g. absolute position mod 3) has about 0 here and against intergenic.
- sequence_periodicity: the same statistic of the sequence itself, its bases' one-hot k-mers
  (`sequence_k`, default 1) in place of the representations: coding sequence is 3-periodic in composition,
  so a representation that only encodes each base is "periodic" too.
- codon_periodicity_over_sequence: paired difference per window, representation minus sequence; above 0
  the layer's periodicity is more than its input's.
- offset_similarity_decay: mean over all windows of p_s(1) minus the mean of p_s(d) over d = D/2..D
  (similarity falling with distance, DNAtlas's offset-dependent similarity).
- `compare_to: <model>`: codon_periodicity_minus_compared and offset_similarity_decay_minus_compared, the
  paired difference per window between this model and the other (e.g. `organism@step0`, the
  initialisation) on the same windows.
Intervals: percentile bootstrap over windows (`resamples`, `ci_level`); n: windows. Minimum n: 20.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from seqclaims.core.evidence import Estimate, Evidence
from seqclaims.core.families import Family, Statistic
from seqclaims.core.schema import StrictModel
from seqclaims.inputs.models import ModelRef
from seqclaims.methods import geometry as geo
from seqclaims.methods.figures import Figure, figure_from_matplotlib

MIN_N = 20
NO_PHASE = "the dataset has no codon_phase track; use `dataset: coding`"


class GramParams(StrictModel):
    layer: int = Field(ge=0, description="layer whose representations are compared")
    site: Literal[geo.SITES] = Field("resid_post", description="which representation of the layer")
    max_offset: int = Field(30, ge=9, le=150, description="largest offset D of the similarity profile (a "
                            "multiple of 3)")
    min_run: int | None = Field(None, ge=6, description="shortest reading frame a coding window must hold "
                                "(default 2 max_offset)")
    sequence_k: int = Field(1, ge=1, le=6, description="k of the one-hot k-mer sequence baseline")
    compare_to: ModelRef | None = Field(None, description="a second model (e.g. organism@step0) for the "
                                        "_minus_compared statistics")

    @model_validator(mode="after")
    def _whole_periods(self) -> "GramParams":
        if self.max_offset % geo.PERIOD:
            raise ValueError(f"max_offset must be a multiple of 3 (got {self.max_offset}), so that period 3 is "
                             "one of the profile's frequencies")
        return self


class Profiles:
    """One model's per-window statistics on the claim's windows; controls: also the codon-shuffled and sequence
    profiles (a compared model needs neither)."""

    def __init__(self, model, claim, dataset, seed: int, controls: bool = True):
        params = claim.params
        hook = geo.representation_hook(claim, model, params.layer, params.site)
        rows = geo.nucleotide_representations(model, dataset.sequences, hook, dataset.content_hash)
        self.whole = geo.offset_profiles(rows, [np.ones(len(r), bool) for r in rows], params.max_offset)
        self.coding = self.shuffled = None
        self.too_few = False
        if "codon_phase" not in dataset.tracks:
            return
        phases = dataset.tracks["codon_phase"]
        runs = [geo.coding_run(phase) for phase in phases]
        min_run = self.min_run = params.min_run or 2 * params.max_offset
        self.coding_rows = np.flatnonzero((np.asarray(dataset.labels) == 1) & np.array([r.sum() >= min_run for r in runs]))
        self.intergenic_rows = np.flatnonzero(np.asarray(dataset.labels) == 0)
        coding_runs = [runs[i] for i in self.coding_rows]
        if len(self.coding_rows) == 0:
            self.too_few = True
            return
        self.coding = geo.offset_profiles([rows[i] for i in self.coding_rows], coding_runs, params.max_offset)
        self.example = rows[self.coding_rows[0]][coding_runs[0]]
        if not controls:
            return
        rng = np.random.default_rng(seed)
        shuffled = [geo.shuffle_within_codons(dataset.sequences[i], phases[i], runs[i], rng) for i in self.coding_rows]
        shuffled_rows = geo.nucleotide_representations(
            model, shuffled, hook, geo.derived_hash(dataset.content_hash, "codon-shuffled", seed, *self.coding_rows))
        self.shuffled = geo.offset_profiles(shuffled_rows, coding_runs, params.max_offset)
        self.sequence = geo.offset_profiles([geo.kmer_one_hot(dataset.sequences[i], params.sequence_k)
                                             for i in self.coding_rows], coding_runs, params.max_offset)


def evaluate(claim, context) -> Evidence:
    inputs = context.inputs()
    dataset = inputs.dataset
    seed = context.seed_for("codon-shuffle")
    ours = Profiles(inputs.model, claim, dataset, seed)
    boot = {"resamples": claim.resamples, "level": claim.ci_level}
    mean = lambda values, purpose: geo.mean_interval(values, seed=context.seed_for(purpose), **boot)  # noqa: E731
    statistics = {"offset_similarity_decay": geo.as_estimate(mean(ours.whole.decay, "bootstrap"), MIN_N)}
    statistics.update(_periodicity(ours, mean, claim.ci_level))
    other_model = geo.compared_model(claim)
    if other_model is not None:
        other = Profiles(other_model, claim, dataset, seed, controls=False)
        statistics["offset_similarity_decay_minus_compared"] = geo.as_estimate(
            mean(ours.whole.decay - other.whole.decay, "bootstrap"), MIN_N, compared=other_model.ref.describe())
        statistics["codon_periodicity_minus_compared"] = (
            geo.as_estimate(mean(ours.coding.share - other.coding.share, "bootstrap"), MIN_N,
                            compared=other_model.ref.describe())
            if ours.coding is not None and other.coding is not None else Estimate.missing(NO_PHASE))
    else:
        for name in ("offset_similarity_decay_minus_compared", "codon_periodicity_minus_compared"):
            statistics[name] = Estimate.missing("the claim compares with no model (params.compare_to)")
    evidence = Evidence(statistics=statistics, figures=_figures(ours, claim), cards=inputs.cards)
    evidence.versions.update(inputs.versions)
    return evidence


def _periodicity(ours: Profiles, mean, level: float) -> dict[str, Estimate]:
    names = ("codon_periodicity", "intergenic_periodicity", "codon_periodicity_over_intergenic",
             "shuffled_periodicity", "codon_periodicity_over_shuffled", "sequence_periodicity",
             "codon_periodicity_over_sequence")
    if ours.coding is None:
        reason = (f"no coding window holds a reading frame of {ours.min_run} bases; lower min_run or max_offset"
                  if ours.too_few else NO_PHASE)
        return {name: Estimate.missing(reason) for name in names}
    coding = mean(ours.coding.share, "bootstrap")
    intergenic = mean(ours.whole.share[ours.intergenic_rows], "bootstrap-intergenic")
    shuffled = mean(ours.shuffled.share, "bootstrap")
    too_few = f"fewer than {MIN_N} coding windows hold a long enough reading frame"
    return {
        "codon_periodicity": geo.as_estimate(coding, MIN_N, too_few, windows=len(ours.coding_rows)),
        "intergenic_periodicity": geo.as_estimate(intergenic, MIN_N),
        "codon_periodicity_over_intergenic": geo.as_estimate(geo.difference_of(coding, intergenic, level), MIN_N),
        "shuffled_periodicity": geo.as_estimate(shuffled, MIN_N),
        "codon_periodicity_over_shuffled": geo.as_estimate(mean(ours.coding.share - ours.shuffled.share, "bootstrap"),
                                                           MIN_N),
        "sequence_periodicity": geo.as_estimate(mean(ours.sequence.share, "bootstrap"), MIN_N),
        "codon_periodicity_over_sequence": geo.as_estimate(mean(ours.coding.share - ours.sequence.share, "bootstrap"),
                                                           MIN_N),
    }


def _figures(ours: Profiles, claim) -> list[Figure]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figures = []
    fig, ax = plt.subplots(figsize=(6.4, 3.4))
    groups = [("all windows", ours.whole, None)]
    if ours.coding is not None:
        groups = [("coding (reading frame)", ours.coding, None), ("codons shuffled", ours.shuffled, None),
                  ("intergenic", ours.whole, ours.intergenic_rows), ("sequence one-hot", ours.sequence, None)]
    for label, profiles, rows in groups:
        values = profiles.profiles if rows is None else profiles.profiles[rows]
        values = values[np.all(np.isfinite(values), axis=1)]
        if not len(values):
            continue
        offsets = np.arange(1, values.shape[1] + 1)
        centre, spread = values.mean(axis=0), 1.96 * values.std(axis=0) / np.sqrt(len(values))
        ax.plot(offsets, centre, marker=".", label=f"{label} (n={len(values)})")
        ax.fill_between(offsets, centre - spread, centre + spread, alpha=0.25)
    ax.set_xlabel("offset (bases)")
    ax.set_ylabel("mean cosine similarity")
    ax.legend(fontsize=8)
    figures.append(figure_from_matplotlib(fig, "Similarity by offset", "mean over windows, 95% band of the mean; "
                                          f"layer {claim.params.layer} {claim.params.site}"))
    plt.close(fig)
    if ours.coding is not None and ours.example is not None:
        units = geo.unit_rows(ours.example[:90], np.ones(min(90, len(ours.example)), bool))
        fig, ax = plt.subplots(figsize=(4.2, 3.8))
        image = ax.imshow(units @ units.T, cmap="viridis", vmin=-1, vmax=1)
        fig.colorbar(image, ax=ax, label="cosine")
        ax.set_xlabel("base (reading frame)")
        ax.set_ylabel("base")
        figures.append(figure_from_matplotlib(fig, "Gram matrix of a coding window",
                                              "the first coding window's reading frame (up to 90 bases)"))
        plt.close(fig)
    return figures


FAMILY = Family(
    name="gram",
    summary="similarity of a layer's base representations by offset and its period-3 structure inside coding "
            "sequence, against intergenic and codon-shuffled controls",
    params=GramParams,
    statistics={
        "codon_periodicity": Statistic("mean share of the similarity profile's power at period 3, coding windows",
                                       init=True),
        "intergenic_periodicity": Statistic("the same over intergenic windows"),
        "codon_periodicity_over_intergenic": Statistic("codon_periodicity minus intergenic_periodicity"),
        "shuffled_periodicity": Statistic("the same coding windows with the bases of every codon permuted"),
        "codon_periodicity_over_shuffled": Statistic("paired difference, coding minus codon-shuffled", control=True),
        "sequence_periodicity": Statistic("the same statistic of the bases' one-hot k-mers (the input alone)"),
        "codon_periodicity_over_sequence": Statistic("paired difference, representation minus sequence", init=True,
                                                     control=True),
        "offset_similarity_decay": Statistic("similarity at offset 1 minus the mean over offsets D/2..D", init=True),
        "codon_periodicity_minus_compared": Statistic("paired difference of codon_periodicity with compare_to",
                                                      control=True),
        "offset_similarity_decay_minus_compared": Statistic("paired difference of the decay with compare_to",
                                                            control=True),
    },
    evaluate=evaluate,
    min_n=MIN_N,
    example={
        "model": "organism",
        "data": {"dataset": "coding", "n": 400},
        "params": {"layer": 1},
        "criteria": [{"statistic": "codon_periodicity_over_shuffled", "op": ">", "threshold": 0.0},
                     {"statistic": "codon_periodicity_minus_init", "op": ">", "threshold": 0.0}],
    },
)
