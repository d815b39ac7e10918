"""Per-token units (MLP channels, SAE latents) scored against per-token annotations by AUPRC.

Shared by the `neuron` and `sae_feature` check families. A *unit* is one column of a per-token
activation matrix: an MLP channel of a `layer.{l}.mlp.post` hook, or a latent of a sparse
autoencoder. An *annotation* marks tokens: a dataset track (start or stop codon, splice donor or
acceptor, TSS), a codon phase, JASPAR motif support, or a sequence pattern (`Annotation`).

Protocol (DESIGN sections 3 and 6): every unit's AUPRC is computed on the train split, the unit with
the highest train AUPRC is chosen, and its AUPRC is reported on the test split, with a percentile
bootstrap over test sequences (the resampling unit; windows cut from one sequence resample
together). Chance is the expected AUPRC of a random ranking of the scored test tokens (`random_auprc`:
the prevalence when positives are many, more when they are few); the ratio AUPRC / chance is computed
inside every resample, so its interval comes from the same draws.

Definitions:
- AUPRC is average precision as `sklearn.metrics.average_precision_score` defines it (tied scores
  form one threshold), with the unit's activation as the score: a unit detects an annotation when it
  is *high* on annotated tokens.
- k-mer baseline: a detector that fires on every occurrence of the annotated element's consensus
  (start codon ATG; stop codon TAA, TAG, TGA; donor GT; acceptor AG), at the same base and alignment:
  what knowing the k-mer alone achieves. A unit above it tells annotated elements from other
  occurrences of their k-mer.
- motif cosine (MINTS's feature ranking, for comparison): the cosine, across sequences, between a
  unit's per-sequence mean activation over scored tokens and the sequence's share of annotated
  tokens, both centred over sequences (uncentred, any two non-negative vectors have a large cosine).
  The unit is chosen by its train cosine and scored on the test split.
- token identity: a token's identity class is its token id together with the ids of the tokens at
  the claim's `token_offsets` from it (default [0]: the token alone). The token-controlled activation
  of a unit is its activation minus the train-split mean of the token's class, over the class's
  train-split standard deviation (scaled, because a unit's spread differs between tokens: see
  `token_controlled`). `auprc_token_controlled` is its test AUPRC over the test tokens of a *mixed*
  class: one with at least MIN_IDENTITY_TOKENS (2) train tokens, among them annotated and other ones
  (in a class whose train tokens are all annotated, or none, the token decides the annotation and no
  unit can know more than the token); the unit is the one `auprc` reports (chosen by raw train AUPRC,
  again in every resample); its ratio to chance uses the chance of those tokens. A unit that only
  reads which token it sees falls to chance; a detector of a longer pattern keeps what the token does
  not say. `token_identity_share` is the share of the unit's activation variance that the
  train-split class means explain on those test tokens (1 - residual / total sum of squares;
  measured out of sample, so many rare classes, as with k-mer tokens, do not inflate it); at 0.5 or
  more a note flags the unit as mostly a token-identity reader. Where identity decides the
  annotation itself (a k-mer token holding the whole pattern) no class is mixed: the token-controlled
  statistics are missing, and a note says why.

Key statistics carry their bootstrap resamples (`Estimate.samples`): resample b is drawn from the
claim's seeds, so the same claim on a randomly initialised copy of the model is paired with it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any, Iterable, Literal

import numpy as np
import scipy.sparse as sp
from pydantic import Field, model_validator

from seqclaims.core.evidence import Ceiling, Estimate, Figure, token_annotation
from seqclaims.core.families import Statistic
from seqclaims.core.schema import StrictModel
from seqclaims.errors import InputError
from seqclaims.inputs import motifs
from seqclaims.inputs.motifs import load_motif
from seqclaims.inputs.proteins import COMPOSITION_WIDTHS
from seqclaims.methods import composition as comp
from seqclaims.methods.figures import figure_from_matplotlib
from seqclaims.methods.stats import bootstrap, expand_to_items, permute_between_units, select_and_score
from seqclaims.methods.weighted import auprc_weighted, pearson_weighted

# The sequence every annotated element of a track has (the builders verify it), for the k-mer baseline.
CONSENSUS = {"start_codon": ("ATG",), "stop_codon": ("TAA", "TAG", "TGA"), "donor": ("GT",), "acceptor": ("AG",),
             "cysteine": ("C",), "cysteine_pair": ("C",)}
MIN_TEST_POSITIVES = 5
DEFAULT_COMPOSITION_WINDOW = 8  # nt, for annotations without an element length (tss, codon phase)
_COLUMN_CHUNK = 64  # dense columns sorted at once (bounds the memory of one argsort)

Units = np.ndarray | sp.spmatrix  # (n_tokens, K) dense activations, or sparse non-negative codes

# units whose train AUPRC is re-ranked in every resample when the best unit is chosen again
SELECTION_CANDIDATES = 8

# token identity: the neighbours a claim may add, and the share of variance that makes a unit a token reader
MAX_TOKEN_OFFSETS, MAX_TOKEN_OFFSET = 5, 8
TOKEN_READER_SHARE = 0.5
MIN_IDENTITY_TOKENS = 2  # train tokens an identity class needs for its mean and spread


# ---------------------------------------------------------------------------------------------
# What a claim annotates


class Annotation(StrictModel):
    """Which tokens a unit should detect. Exactly one of `track`, `codon_phase`, `motif`, `pattern`.

    A plain string is short for `{track: <string>}`.
    """

    track: Literal["start_codon", "stop_codon", "donor", "acceptor", "tss", "cysteine", "cysteine_pair",
                   "hydrophobic_stretch", "signal_like", "exon_junction"] | None = Field(
        None, description="an annotation track of the dataset: per nucleotide (start/stop codon: its 3 nt; "
        "donor/acceptor: the intron's GT/AG; tss: the first transcribed base) or, for the proteins dataset, "
        "per residue (cysteine, cysteine_pair, hydrophobic_stretch, signal_like, exon_junction; "
        "seqclaims.inputs.proteins defines them)")
    codon_phase: int | None = Field(None, ge=0, le=2, description="bases at this codon position (0, 1, 2) of a CDS")
    motif: str | None = Field(None, description="JASPAR matrix ID: tokens whose motif score (best of both "
                              "strands) reaches the threshold")
    release: str = Field("JASPAR2024", description="JASPAR release of `motif`")
    threshold_fraction: float | None = Field(None, ge=0, le=1, description="motif hit: score >= min + f (max - min) "
                                             "(default 0.8, unless `pvalue` is given)")
    pvalue: float | None = Field(None, gt=0, lt=1, description="motif hit: score with this p-value per window")
    pattern: str | None = Field(None, pattern=r"^[ACGT]+$", description="a sequence pattern (ACGT), e.g. ATG: "
                                "every occurrence on the sequence as read")
    base: int | None = Field(None, ge=0, description="keep only this base (0 = first) of each annotated element "
                             "(codon, site, pattern occurrence); null: every base of it")
    align: Literal["any", "anchored", "centred"] = Field(
        "any", description="per-nucleotide to per-token: any (the token covers an annotated base; motif: max over "
        "windows overlapping the token), anchored (the token's first base; motif: the window starting there), "
        "centred (motif only: the window centred on the token)")
    permuted: bool = Field(False, description="null control: each sequence gets the annotation of another "
                           "sequence of the same split and length, circularly shifted by a random offset "
                           "(seeded by the claim's seed)")

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        return {"track": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _exactly_one(self) -> "Annotation":
        given = [key for key in ("track", "codon_phase", "motif", "pattern") if getattr(self, key) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of `track`, `codon_phase`, `motif`, `pattern`")
        if self.threshold_fraction is not None and self.pvalue is not None:
            raise ValueError("give `threshold_fraction` or `pvalue`, not both")
        if self.motif is None and (self.threshold_fraction is not None or self.pvalue is not None):
            raise ValueError("`threshold_fraction` and `pvalue` apply to `motif` annotations only")
        if self.motif is not None and self.base is not None:
            raise ValueError("`base` does not apply to `motif` (use `align` to place the motif window)")
        if self.align == "centred" and self.motif is None:
            raise ValueError("`align: centred` applies to `motif` annotations only; use any or anchored")
        return self

    def describe(self) -> str:
        if self.motif is not None:
            what = f"motif {self.motif} ({self.release}) support"
        elif self.pattern is not None:
            what = f"pattern {self.pattern}"
        elif self.codon_phase is not None:
            what = f"codon phase {self.codon_phase}"
        else:
            what = self.track
        base = "" if self.base is None else f", base {self.base}"
        return f"{what}{base}, {self.align}-aligned" + (" (permuted between sequences)" if self.permuted else "")


class UnitParams(StrictModel):
    """The params the neuron and sae_feature families share."""

    annotation: Annotation = Field(description="which tokens a unit (channel or latent) should detect: a dataset "
                                   "track (start_codon, stop_codon, donor, acceptor, tss), {codon_phase: 0|1|2}, "
                                   "{motif: <JASPAR ID>} or {pattern: ACGT...}")
    top_windows: int = Field(8, ge=0, le=32, description="top-activating windows per dashboard (0: no dashboards)")
    composition_window: int | None = Field(
        None, ge=1, le=200, description="auprc_over_composition: width (nt, or residues) of the window whose "
        "composition (bases; for proteins the hydrophobic and charged shares) the composition detector reads, placed "
        "as the annotation aligns (default: the annotated element's length: the motif's, the pattern's, 3 for codons, "
        "2 for donor/acceptor, 19 for hydrophobic_stretch, 8 for signal_like, 9 for cysteine_pair, "
        f"{DEFAULT_COMPOSITION_WINDOW} otherwise)")
    token_offsets: list[int] = Field(
        [0], min_length=1, max_length=MAX_TOKEN_OFFSETS, description="auprc_token_controlled: the token identity "
        "removed is that of the token itself (offset 0) together with the tokens at these other offsets (e.g. "
        f"[-1, 0, 1]: the token and its two neighbours); 0 must be among them, each within +-{MAX_TOKEN_OFFSET}")

    @model_validator(mode="after")
    def _offsets_include_the_token(self) -> "UnitParams":
        if 0 not in self.token_offsets:
            raise ValueError("token_offsets must include 0 (the token's own identity)")
        if len(set(self.token_offsets)) != len(self.token_offsets):
            raise ValueError("token_offsets lists an offset twice")
        if any(abs(offset) > MAX_TOKEN_OFFSET for offset in self.token_offsets):
            raise ValueError(f"token_offsets must lie within -{MAX_TOKEN_OFFSET}..{MAX_TOKEN_OFFSET}")
        return self


# ---------------------------------------------------------------------------------------------
# Per-nucleotide and per-token annotation


def element_bases(starts: np.ndarray, length: int, width: np.ndarray | int, base: int | None) -> np.ndarray:
    """(length,) bool marking elements [starts[i], starts[i] + width[i]), or only base `base` of each."""
    starts = np.asarray(starts, dtype=np.int64)
    widths = np.broadcast_to(np.asarray(width, dtype=np.int64), starts.shape)
    marks = np.zeros(length, dtype=bool)
    if base is not None:
        keep = widths > base
        marks[starts[keep] + base] = True
        return marks
    for offset in range(int(widths.max()) if widths.size else 0):
        at = starts[widths > offset] + offset
        marks[at[at < length]] = True
    return marks


def runs(flags: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start and length of every run of True in (n,) bool flags. Returns two (n_runs,) int arrays."""
    padded = np.concatenate(([False], np.asarray(flags, dtype=bool), [False]))
    edges = np.flatnonzero(padded[1:] != padded[:-1])
    return edges[::2], edges[1::2] - edges[::2]


def pattern_starts(sequence: str, pattern: str) -> np.ndarray:
    """Start of every (overlapping) occurrence of `pattern` in `sequence`. (n_hits,) int."""
    return np.array([m.start() for m in re.finditer(f"(?={re.escape(pattern)})", sequence)], dtype=np.int64)


def pattern_annotation(sequences: list[str], patterns: tuple[str, ...], base: int | None) -> list[np.ndarray]:
    """Per-nucleotide marks of every occurrence of any of `patterns` (or of its base `base`). n arrays (n_nt,) bool."""
    return [np.logical_or.reduce([element_bases(pattern_starts(s, p), len(s), len(p), base) for p in patterns])
            for s in sequences]


def nucleotide_annotation(dataset: Any, spec: Annotation, claim_name: str = "annotation") -> list[np.ndarray]:
    """Per-nucleotide annotation of each sequence (not motifs, which are per token). n arrays (n_nt,) bool."""
    if spec.pattern is not None:
        return pattern_annotation(dataset.sequences, (spec.pattern,), spec.base)
    name = "codon_phase" if spec.codon_phase is not None else spec.track
    if name not in dataset.tracks:
        raise InputError(f"{claim_name}: dataset {dataset.name} has no {name!r} track (it has "
                         f"{', '.join(sorted(dataset.tracks)) or 'none'}); use an annotated genome dataset "
                         "(coding, promoters, splice_donors, ...) or a `motif`/`pattern` annotation")
    tracks = dataset.tracks[name]
    flags = [np.asarray(t) == spec.codon_phase for t in tracks] if spec.codon_phase is not None else \
        [np.asarray(t, dtype=bool) for t in tracks]
    if spec.base is None:
        return flags
    return [_one_base_per_run(f, spec.base) for f in flags]


def _one_base_per_run(flags: np.ndarray, base: int) -> np.ndarray:
    """(n,) bool: base `base` of every run of True in `flags` (runs shorter than base + 1 give none)."""
    starts, widths = runs(flags)
    return element_bases(starts, len(flags), widths, base)


def token_labels(dataset: Any, offsets: np.ndarray, spec: Annotation, claim_name: str = "annotation") -> np.ndarray:
    """Per-token annotation. offsets: (n_seq, n_tok, 2) character spans ((0, 0) for special tokens and
    padding). Returns (n_seq, n_tok) float: 1 annotated, 0 not, NaN for special tokens, padding and
    tokens that cannot be scored (a motif window off the sequence or over an ambiguous base)."""
    offsets = np.asarray(offsets)
    _require_alphabet(dataset, spec, claim_name)
    if spec.motif is None:
        how = "any" if spec.align == "any" else "anchored"
        return token_annotation(nucleotide_annotation(dataset, spec, claim_name), offsets, how=how)

    motif = motifs.load_motif(spec.motif, release=spec.release)
    fraction = spec.threshold_fraction if spec.pvalue is not None or spec.threshold_fraction is not None \
        else motifs.DEFAULT_THRESHOLD_FRACTION
    threshold = motifs.score_threshold(motif, fraction=fraction, pvalue=spec.pvalue)
    alignment = {"any": "overlap_max", "anchored": "anchored", "centred": "centred"}[spec.align]
    labels = np.full(offsets.shape[:2], np.nan)
    for row, sequence in enumerate(dataset.sequences):
        scores = motifs.motif_track(sequence, motif, offsets[row], alignment=alignment)
        scored = ~np.isnan(scores)
        labels[row, scored] = scores[scored] >= threshold
    return labels


def _require_alphabet(dataset: Any, spec: Annotation, claim_name: str) -> None:
    """Motifs, patterns and codon phases read nucleotides; a protein dataset has residue tracks instead."""
    if getattr(dataset, "alphabet", "dna") == "protein" and spec.track is None:
        raise InputError(f"{claim_name}: dataset {dataset.name} holds proteins; annotate a residue track "
                         "(cysteine, cysteine_pair, hydrophobic_stretch, signal_like, exon_junction), not a motif, "
                         "pattern or codon phase")


def consensus_scores(dataset: Any, offsets: np.ndarray, spec: Annotation) -> np.ndarray | None:
    """The k-mer baseline: per-token 1 where the token holds (the same base of) the consensus of the
    annotated element, aligned as the annotation is; e.g. every ATG for start codons. (n_seq, n_tok)
    float, or None when the annotation has no consensus (motif, pattern, codon phase, TSS)."""
    if spec.track not in CONSENSUS:
        return None
    how = "any" if spec.align == "any" else "anchored"
    return token_annotation(pattern_annotation(dataset.sequences, CONSENSUS[spec.track], spec.base), offsets, how=how)


# ---------------------------------------------------------------------------------------------
# The scored tokens of a dataset


@dataclass
class TokenTable:
    """The scored tokens (content tokens with a defined annotation), flattened in (row, token) order.

    row, position: (n,) dataset row and token index of each token; label: (n,) bool; test: (n,) bool
    (the row is in the test split); unit: (n,) int resampling unit (the sequence a row was cut from);
    baseline: (n,) score of the k-mer baseline (`consensus_scores`), or None; composition: (n,) score of
    the composition detector (`composition_scores`), or None; identity: (n,) int token-identity class
    (`token_identities`), or None.
    """

    row: np.ndarray
    position: np.ndarray
    label: np.ndarray
    test: np.ndarray
    unit: np.ndarray
    n_rows: int
    baseline: np.ndarray | None = None
    composition: np.ndarray | None = None
    identity: np.ndarray | None = None

    @classmethod
    def build(cls, dataset: Any, labels: np.ndarray, special_mask: np.ndarray,
              baseline: np.ndarray | None = None) -> "TokenTable":
        """labels, baseline: (n_seq, n_tok) from `token_labels`, `consensus_scores`; special_mask: (n_seq, n_tok) bool."""
        scored = ~np.asarray(special_mask, dtype=bool) & ~np.isnan(labels)
        row, position = np.nonzero(scored)
        source = np.asarray(dataset.source if dataset.source is not None else np.arange(len(dataset)))
        return cls(row=row, position=position, label=labels[row, position] > 0.5,
                   test=np.asarray(dataset.split)[row] == "test", unit=source[row], n_rows=len(dataset),
                   baseline=None if baseline is None else np.nan_to_num(baseline[row, position]))

    def gather(self, padded: np.ndarray) -> np.ndarray:
        """(n_seq, n_tok, ...) padded per-token values -> (n, ...) at the scored tokens."""
        return padded[self.row, self.position]


def permute_labels(labels: np.ndarray, special_mask: np.ndarray, dataset: Any, rng_seed: int) -> np.ndarray:
    """Null control: row i gets the content-token labels of another row of the same split and length,
    circularly shifted by a random offset, so that neither the sequence nor the position in the window
    (windows centred on a site put the annotation at the same place) links the labels to the tokens.

    labels, special_mask: (n_seq, n_tok). Returns (n_seq, n_tok) float, NaN at special tokens."""
    lengths = np.array([len(s) for s in dataset.sequences])
    strata = np.unique(np.stack([lengths.astype(str), np.asarray(dataset.split, dtype=str)], axis=1),
                       axis=0, return_inverse=True)[1].ravel()
    perm = permute_between_units(list(labels), n_permutations=1, seed=rng_seed, strata=strata)[0]
    content = ~np.asarray(special_mask, dtype=bool)
    shifts = np.random.default_rng([rng_seed, 1]).integers(0, np.iinfo(np.int32).max, size=len(perm))
    out = np.full(labels.shape, np.nan)
    for row, (source, shift) in enumerate(zip(perm, shifts)):
        donor, target = labels[source][content[source]], np.flatnonzero(content[row])
        size = min(donor.size, target.size)
        if size:
            out[row, target[:size]] = np.roll(donor, int(shift % donor.size))[:size]
    return out


# ---------------------------------------------------------------------------------------------
# Token identity: what the token itself (and its neighbours) explain of a unit


def token_identities(input_ids: np.ndarray, table: TokenTable, token_offsets: Iterable[int]) -> np.ndarray:
    """(n,) int identity class of every scored token of `table`: tokens share a class when their own token id
    and the ids of the tokens at each of `token_offsets` from them (in the same row; special tokens count by
    their id, a position off the row as -1) are all equal. input_ids: (n_seq, n_tok) the tokenizer's ids."""
    ids = np.asarray(input_ids)
    n_tok = ids.shape[1]
    columns = []
    for offset in token_offsets:
        at = table.position + int(offset)
        inside = (at >= 0) & (at < n_tok)
        columns.append(np.where(inside, ids[table.row, np.clip(at, 0, n_tok - 1)], -1))
    return np.unique(np.stack(columns, axis=1), axis=0, return_inverse=True)[1].ravel()


def identity_moments(values: np.ndarray, identity: np.ndarray, fit: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For every token, the mean and the standard deviation (ddof 1) of `values` over the `fit` tokens of its
    identity class; both NaN for a class with fewer than MIN_IDENTITY_TOKENS of them. values, identity: (n,);
    fit: (n,) bool. Returns two (n,) arrays."""
    n_classes = int(identity.max()) + 1
    counts = np.bincount(identity[fit], minlength=n_classes).astype(np.float64)
    centre = float(values[fit].mean()) if fit.any() else 0.0  # sums of squares without cancellation
    x = values[fit] - centre
    sums = np.bincount(identity[fit], weights=x, minlength=n_classes)
    squares = np.bincount(identity[fit], weights=x**2, minlength=n_classes)
    fitted = counts >= MIN_IDENTITY_TOKENS
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(fitted, sums / counts, np.nan)
        variance = np.where(fitted, np.maximum(squares - counts * mean**2, 0.0) / (counts - 1), np.nan)
    return (mean + centre)[identity], np.sqrt(variance)[identity]


def token_controlled(values: np.ndarray, table: TokenTable) -> np.ndarray:
    """(n,) a unit's activation with what token identity explains removed: each token's value minus the
    train-split mean of its identity class, over that class's train-split standard deviation (0 where the
    class's train tokens all have one value; NaN for a class with fewer than MIN_IDENTITY_TOKENS train tokens).
    Scaled, because a unit's spread differs between tokens (a unit that reads A varies with context on A and is
    about 0 elsewhere): mean-centred values of such a unit would rank the A tokens' upper half first, and an
    annotation of some A tokens would look detected. values: (n,) at every scored token of `table`."""
    mean, spread = identity_moments(values, table.identity, ~table.test)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(spread > 0, (values - mean) / spread, np.where(np.isnan(spread), np.nan, 0.0))


def seen_test_tokens(table: TokenTable) -> np.ndarray:
    """(n_test,) bool: the test tokens whose identity class has at least MIN_IDENTITY_TOKENS train tokens (those
    whose class mean and spread are known)."""
    counts = np.bincount(table.identity[~table.test], minlength=int(table.identity.max()) + 1)
    return counts[table.identity[table.test]] >= MIN_IDENTITY_TOKENS


def mixed_test_tokens(table: TokenTable) -> np.ndarray:
    """(n_test,) bool: the `seen_test_tokens` whose identity class holds both annotated and other train tokens:
    where a unit can know more than the token, because the token does not decide the annotation."""
    n_classes = int(table.identity.max()) + 1
    train = ~table.test
    counts = np.bincount(table.identity[train], minlength=n_classes)
    annotated = np.bincount(table.identity[train], weights=table.label[train], minlength=n_classes)
    classes = table.identity[table.test]
    return seen_test_tokens(table) & (annotated[classes] > 0) & (annotated[classes] < counts[classes])


def identity_share(values: np.ndarray, identity_mean: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """(B,) share of the variance of `values` that token identity explains, measured on tokens not used to fit
    it: 1 - sum w (x - m_identity)^2 / sum w (x - m)^2, with m_identity (`identity_mean`) the train-split mean of
    the token's identity class and m the weighted mean of `values`; each token weighted by (B, n) `weights`
    (None: once). It is 1 when identity fixes the value, about 0 (or below) when it says nothing, however many
    classes there are (an in-sample share would grow with their number). NaN where the values do not vary."""
    x, fitted = np.asarray(values, dtype=np.float64), np.asarray(identity_mean, dtype=np.float64)
    x, fitted = x - x.mean(), fitted - x.mean()  # sums of squares without cancellation
    w = np.ones((1, x.size)) if weights is None else np.asarray(weights, dtype=np.float64)
    total_weight = w.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = (w @ x) / total_weight
        total = w @ x**2 - total_weight * mean**2
        residual = w @ (x - fitted) ** 2
        return np.where(total > 1e-12 * (w @ x**2), 1.0 - residual / total, np.nan)


# ---------------------------------------------------------------------------------------------
# AUPRC of many units at once



def unit_statistics(unit: str, chosen: str) -> dict:
    """The statistics the neuron and sae_feature families share; `unit` names what is scored ("channel",
    "latent"), `chosen` how the motif_cosine unit is picked. The AUPRCs of the unit and its ratios are key
    statistics (`init`: also computed on a randomly initialised copy of the model); the ratios to the
    baselines and the token-identity statistics are controls."""
    return {
        "auprc": Statistic(f"test AUPRC of the named {unit}, else of the {unit} with the best train AUPRC; "
                           "bootstrap over test sequences", init=True),
        "best_auprc": Statistic(f"test AUPRC of the {unit} with the best train AUPRC; the choice is made again in "
                                "every resample (train and test sequences each resampled within their split)",
                                selection=True, init=True),
        "chance": Statistic("expected AUPRC of a random ranking of the scored test tokens (the prevalence when "
                            "positives are many)"),
        "prevalence": Statistic("share of scored test tokens that are annotated"),
        "auprc_over_chance": Statistic("auprc / chance, inside every resample; ceiling 1 / chance", init=True),
        "pattern_auprc": Statistic("test AUPRC of the k-mer baseline: a detector of the annotation's consensus "
                                   "(ATG; TAA, TAG, TGA; GT; AG) at the same base and alignment"),
        "auprc_over_pattern": Statistic(f"auprc / pattern_auprc, inside every resample: above 1, the {unit} knows "
                                        "more than the k-mer", init=True, control=True),
        "composition_auprc": Statistic("test AUPRC of the composition detector: the train-split share of annotated "
                                       "tokens among tokens whose window (params.composition_window) has the same "
                                       "base composition; the best a reader of composition alone can do"),
        "auprc_over_composition": Statistic(f"auprc / composition_auprc, inside every resample: above 1, the {unit} "
                                            "knows more than the composition of the annotation's window", init=True,
                                            control=True),
        "auprc_token_controlled": Statistic(
            f"test AUPRC of the auprc {unit}'s activation standardised within token identity (minus the train-split "
            "mean, over the train-split standard deviation, of tokens with the same token id and ids at "
            "params.token_offsets), over test tokens of an identity with 2 or more train tokens, annotated and "
            "other ones: what the unit knows beyond which token it reads", init=True, control=True),
        "auprc_token_controlled_over_chance": Statistic(
            "auprc_token_controlled / the chance of its test tokens, inside every resample", init=True, control=True),
        "token_identity_share": Statistic(
            f"share of the auprc {unit}'s activation variance explained by token identity: 1 - residual / total "
            "sum of squares on test tokens, identity means fitted on train; at 0.5 or more the unit is mostly a "
            "token-identity reader", control=True),
        "motif_cosine": Statistic(f"centred cosine across test sequences of the {unit}'s mean activation with the "
                                  f"share of annotated tokens (MINTS's ranking); {chosen}"),
    }


def random_auprc(positives: np.ndarray | float, total: np.ndarray | float) -> np.ndarray:
    """Expected AUPRC of a random ranking (no ties) of `total` items of which `positives` are annotated:
    (P - 1) / (N - 1) + H_N (N - P) / (N (N - 1)), with H_N the N-th harmonic number (Bestgen 2015, exact
    for integer P and N; for bootstrap weights H_N is ln N + gamma + 1 / 2N). It exceeds the prevalence
    P / N by about (1 - P / N) ln(N) / N: little for many positives, a fifth with 32 positives in 1,600
    tokens, where a ratio to the prevalence calls a random unit "above chance" far too often."""
    positives, total = np.asarray(positives, dtype=np.float64), np.asarray(total, dtype=np.float64)
    harmonic = np.log(total) + np.euler_gamma + 1.0 / (2.0 * total)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (positives - 1) / (total - 1) + harmonic * (total - positives) / (total * (total - 1))


def column_auprc(units: Units, labels: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
    """Average precision of every column of `units` (n, K) as a score for bool `labels`. Returns (K,).

    rows: (m,) the rows scored (default all), with `labels` (m,) theirs; dense blocks are gathered a
    few columns at a time, so a subset costs no copy of the whole matrix. Sparse columns list only
    their stored entries; every absent entry is a zero, and stored entries must be positive (top-k codes
    after their ReLU). NaN where `labels` has no positive or no negative. Equals sklearn's
    average_precision_score per column.
    """
    labels = np.asarray(labels, dtype=bool)
    if rows is not None and sp.issparse(units):
        units, rows = sp.csr_matrix(units)[rows], None
    n, n_columns = (units.shape[0] if rows is None else len(rows)), units.shape[1]
    n_pos = int(labels.sum())
    out = np.full(n_columns, np.nan)
    if n_pos == 0 or n_pos == n:
        return out
    if sp.issparse(units):
        codes = sp.csc_matrix(units)
        codes.eliminate_zeros()
        for j in range(n_columns):
            entries = slice(codes.indptr[j], codes.indptr[j + 1])
            values, positive = codes.data[entries], labels[codes.indices[entries]]
            absent_positives = np.zeros(n_pos - int(positive.sum()), dtype=values.dtype)
            out[j] = _average_precision(np.sort(values), np.concatenate([values[positive], absent_positives]),
                                        n_absent=n - values.size)
        return out
    for lo in range(0, n_columns, _COLUMN_CHUNK):
        block = units[:, lo: lo + _COLUMN_CHUNK] if rows is None else units[rows, lo: lo + _COLUMN_CHUNK]
        block = np.ascontiguousarray(np.asarray(block).T)  # (c, n)
        ordered = np.sort(block, axis=1)
        for j in range(block.shape[0]):
            out[lo + j] = _average_precision(ordered[j], block[j, labels], n_absent=0)
    return out


def _average_precision(sorted_values: np.ndarray, positive_values: np.ndarray, n_absent: int) -> float:
    """AP = mean over positives of the precision at the positive's score (ties included).

    sorted_values: (m,) ascending scores of the listed items (positives included); positive_values:
    (P,) scores of every positive; n_absent: items not listed, which score 0, below every listed item."""
    thresholds = np.sort(positive_values)
    at_or_above = sorted_values.size - np.searchsorted(sorted_values, thresholds, side="left")
    at_or_above = at_or_above + n_absent * (thresholds <= 0)
    positives_at_or_above = thresholds.size - np.searchsorted(thresholds, thresholds, side="left")
    return float(np.mean(positives_at_or_above / at_or_above))


def column_of(units: Units, j: int) -> np.ndarray:
    """(n,) float64 values of unit j."""
    if sp.issparse(units):
        return np.asarray(sp.csc_matrix(units[:, [j]]).todense(), dtype=np.float64).ravel()
    return np.asarray(units[:, j], dtype=np.float64)


def sequence_means(units: Units, rows: np.ndarray, n_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-row mean of every unit over the given tokens. units: (n, K); rows: (n,) row of each token.

    Returns ((n_rows, K) means, (n_rows,) token counts); rows without tokens have mean 0."""
    indicator = sp.csr_matrix((np.ones(len(rows)), (rows, np.arange(len(rows)))), shape=(n_rows, len(rows)))
    sums = indicator @ units
    sums = sums.toarray() if sp.issparse(sums) else np.asarray(sums, dtype=np.float64)
    counts = np.bincount(rows, minlength=n_rows).astype(np.float64)
    return sums / np.maximum(counts, 1)[:, None], counts


def centred_cosine(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Cosine of each centred column of x (n, K) with centred y (n,). Returns (K,), NaN for constant columns."""
    xc = x - x.mean(axis=0)
    yc = y - y.mean()
    norms = np.linalg.norm(xc, axis=0) * np.linalg.norm(yc)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(norms > 0, (yc @ xc) / np.where(norms > 0, norms, 1.0), np.nan)


# ---------------------------------------------------------------------------------------------
# The protocol: choose on train, score on test


@dataclass
class Survey:
    """What the train split says about every unit, and the columns of the units a claim may use."""

    train_auprc: np.ndarray  # (K,)
    train_cosine: np.ndarray  # (K,) centred cosine of per-sequence means with the share of annotated tokens
    columns: dict[int, np.ndarray]  # unit -> (n,) float64 values at every scored token

    @property
    def candidates(self) -> np.ndarray:
        """The SELECTION_CANDIDATES units with the best train AUPRC, best first (their columns are kept)."""
        return _top_units(self.train_auprc, SELECTION_CANDIDATES)


def survey_units(blocks: Iterable[Units], table: TokenTable, named: int | None = None) -> Survey:
    """Train-split AUPRC and motif cosine of every unit, reading the (n, K) unit matrix as consecutive
    column blocks (e.g. one layer at a time), so that only one block and a few columns are in memory.

    Keeps the columns of the SELECTION_CANDIDATES best units by train AUPRC, the best by train cosine, and
    the named unit."""
    train = np.flatnonzero(~table.test)
    share, counts = _annotated_share(table)
    train_rows = (counts > 0) & ~_test_rows(table)
    aucs, cosines, columns, offset = [], [], {}, 0
    for block in blocks:
        width = block.shape[1]
        aucs.append(column_auprc(block, table.label[train], rows=train))
        means, _ = sequence_means(block, table.row, table.n_rows)
        cosines.append(centred_cosine(means[train_rows], share[train_rows]))
        candidates = {*(offset + _top_units(aucs[-1], SELECTION_CANDIDATES)), offset + _nan_argmax(cosines[-1])}
        if named is not None and offset <= named < offset + width:
            candidates.add(named)
        columns.update({unit: column_of(block, unit - offset) for unit in candidates if unit >= offset})
        keep = {*_top_units(np.concatenate(aucs), SELECTION_CANDIDATES), _nan_argmax(np.concatenate(cosines)), named}
        columns = {unit: values for unit, values in columns.items() if unit in keep}
        offset += width
    return Survey(np.concatenate(aucs) if aucs else np.zeros(0), np.concatenate(cosines) if cosines else np.zeros(0),
                  columns)


def _top_units(values: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest non-NaN values, largest first (the first on ties)."""
    finite = np.flatnonzero(~np.isnan(values))
    return finite[np.argsort(-values[finite], kind="stable")[:k]]


def _nan_argmax(values: np.ndarray) -> int:
    """Index of the largest non-NaN value (the first on ties), -1 if every value is NaN."""
    return -1 if values.size == 0 or np.isnan(values).all() else int(np.nanargmax(values))


def _annotated_share(table: TokenTable) -> tuple[np.ndarray, np.ndarray]:
    """(n_rows,) share of annotated scored tokens per row and (n_rows,) scored tokens per row."""
    counts = np.bincount(table.row, minlength=table.n_rows).astype(np.float64)
    return np.bincount(table.row, weights=table.label, minlength=table.n_rows) / np.maximum(counts, 1), counts


def _test_rows(table: TokenTable) -> np.ndarray:
    rows = np.zeros(table.n_rows, dtype=bool)
    rows[table.row[table.test]] = True
    return rows


@dataclass
class Scored:
    """What `score_units` found: per-statistic estimates and the units the claim used."""

    statistics: dict[str, Estimate]
    used: dict[str, int]  # role ("best", "named", "cosine") -> unit index
    columns: dict[int, np.ndarray]  # unit -> (n,) values at every scored token
    notes: list[str] = field(default_factory=list)


def score_units(blocks: Iterable[Units], table: TokenTable, names: list[str], *, named: int | None, level: float,
                resamples: int, seed: int, min_n: int) -> Scored:
    """Choose the unit with the best train AUPRC, score it (and the named unit) on the test split.

    blocks: the (n, K) unit activations at the tokens of `table`, as consecutive column blocks (read
    only when the evidence is not too thin); names: (K,) labels of the units (for details)."""
    problem = _thin_evidence(table)
    if problem:
        missing = Estimate.missing(problem, n=np.unique(table.unit[table.test]).size)
        return Scored({name: missing for name in _STATISTIC_NAMES}, {}, {})
    survey = survey_units(blocks, table, named)
    best = _nan_argmax(survey.train_auprc)
    if best < 0:
        missing = Estimate.missing("every unit's train AUPRC is undefined", n=np.unique(table.unit[table.test]).size)
        return Scored({name: missing for name in _STATISTIC_NAMES}, {}, {})
    reported = best if named is None else named
    auprc_stats = _test_auprc(survey.columns, table, survey.candidates, reported if named is not None else None,
                              level=level, resamples=resamples, seed=seed, min_n=min_n)
    cosine_unit = named if named is not None else _nan_argmax(survey.train_cosine)
    cosine = _motif_cosine(survey, table, cosine_unit, named is None, level=level, resamples=resamples,
                           seed=seed + 1, min_n=min_n)
    share = _token_identity_share(survey.columns[reported], table, level=level, resamples=resamples, seed=seed + 4,
                                  min_n=min_n)
    top = np.argsort(-np.nan_to_num(survey.train_auprc, nan=-1), kind="stable")[:5]
    detail = {"best_unit": names[best], "train_auprc_best": float(survey.train_auprc[best]),
              "train_top5": {names[i]: round(float(survey.train_auprc[i]), 4) for i in top},
              "n_units": int(survey.train_auprc.size)}
    statistics = {key: _with_detail(value, detail) for key, value in
                  {**auprc_stats, "motif_cosine": cosine, "token_identity_share": share}.items()}
    used = {"best": best, **({"cosine": cosine_unit} if cosine_unit >= 0 else {}),
            **({"named": named} if named is not None else {})}
    ratio = statistics["auprc_over_chance"]
    note = (f"{names[reported]} ({'named' if named is not None else 'best of ' + str(survey.train_auprc.size)} on train): "
            f"test AUPRC {statistics['auprc'].estimate:.4f}, {ratio.estimate:.1f}x chance "
            f"[{ratio.ci_low:.1f}, {ratio.ci_high:.1f}], {ratio.detail['n_test_annotated']} annotated of "
            f"{ratio.detail['n_test_tokens']} test tokens")
    return Scored(statistics, used, survey.columns, [note, *_token_reader_note(names[reported], statistics)])


def _token_reader_note(name: str, statistics: dict[str, Estimate]) -> list[str]:
    """Notes flagging the reported unit as mostly a token-identity reader (token_identity_share >= 0.5), and an
    annotation that token identity alone decides."""
    share, controlled = statistics["token_identity_share"], statistics["auprc_token_controlled_over_chance"]
    notes = []
    if not share.is_missing and share.estimate >= TOKEN_READER_SHARE:
        without = "" if controlled.is_missing else \
            (f"; without it the unit is {controlled.estimate:.1f}x chance [{controlled.ci_low:.1f}, "
             f"{controlled.ci_high:.1f}] (auprc_token_controlled_over_chance)")
        notes.append(f"{name} is mostly a token-identity reader: token identity explains {share.estimate:.0%} "
                     f"[{share.ci_low:.0%}, {share.ci_high:.0%}] of its activation variance{without}")
    if controlled.reason == IDENTITY_DECIDES:
        notes.append(f"auprc_token_controlled is undefined: {IDENTITY_DECIDES}")
    return notes


_STATISTIC_NAMES = ("auprc", "best_auprc", "chance", "prevalence", "auprc_over_chance", "pattern_auprc",
                    "auprc_over_pattern", "composition_auprc", "auprc_over_composition", "auprc_token_controlled",
                    "auprc_token_controlled_over_chance", "token_identity_share", "motif_cosine")


def _thin_evidence(table: TokenTable) -> str | None:
    for split, rows in (("train", ~table.test), ("test", table.test)):
        if not rows.any():
            return f"no scored token in the {split} split"
        positives = int(table.label[rows].sum())
        if split == "train" and positives == 0:
            return "no annotated token in the train split"
        if split == "test" and positives < MIN_TEST_POSITIVES:
            return f"{positives} annotated tokens in the test split (fewer than {MIN_TEST_POSITIVES})"
        if positives == int(rows.sum()):
            return f"every scored token of the {split} split is annotated"
    return None


def _test_auprc(columns: dict[int, np.ndarray], table: TokenTable, candidates: np.ndarray, named: int | None, *,
                level: float, resamples: int, seed: int, min_n: int) -> dict[str, Estimate]:
    """Test-split AUPRC statistics, every one computed on the same bootstrap resamples of the test sequences.

    The best unit is chosen again inside every resample (`stats.select_and_score`): the candidate with the best
    AUPRC on the resampled train sequences, scored on the resampled test sequences, each split resampled by
    sequence within itself. The candidates are the SELECTION_CANDIDATES best units on the whole train split (a
    unit outside them has a train AUPRC too far below to win a resample). Ratios to chance and to the
    baselines are taken inside every test resample; the token-controlled AUPRC is that of the same unit's
    `token_controlled` activation over the `mixed_test_tokens`. named: the unit `auprc` reports, else the chosen
    one. Every key statistic carries its (B,) resamples (`Estimate.samples`)."""
    test, train = table.test, ~table.test
    labels, train_labels = table.label[test], table.label[train]
    unit_ids, unit_of_token = np.unique(table.unit[test], return_inverse=True)
    train_ids, unit_of_train_token = np.unique(table.unit[train], return_inverse=True)
    test_scores = [columns[unit][test] for unit in candidates]
    train_scores = [columns[unit][train] for unit in candidates]
    mixed = None if table.identity is None else mixed_test_tokens(table)
    mixed_labels = None if mixed is None else labels[mixed]
    control_problem = _control_problem(table, mixed_labels)
    if control_problem:
        mixed = None  # the token-controlled statistics are missing: nothing to score
    controlled_scores = [_controlled_test_scores(columns[unit], table, mixed) for unit in candidates]
    named_scores = None if named is None else \
        (columns[named][test], _controlled_test_scores(columns[named], table, mixed))
    baseline = None if table.baseline is None else table.baseline[test]
    composition = None if table.composition is None else table.composition[test]

    def references(weights: np.ndarray | None) -> np.ndarray:
        """(B, 5): chance, 1 / chance, k-mer baseline AUPRC, prevalence, composition AUPRC."""
        w = np.ones((1, labels.size)) if weights is None else weights
        positives, total = w @ labels.astype(np.float64), w.sum(axis=1)
        chance = random_auprc(positives, total)
        pattern_ap = np.full_like(chance, np.nan) if baseline is None else auprc_weighted(baseline, labels, weights)
        composition_ap = np.full_like(chance, np.nan) if composition is None else \
            auprc_weighted(composition, labels, weights)
        return np.stack([chance, 1.0 / chance, pattern_ap, positives / total, composition_ap], axis=1)

    def against(scores: np.ndarray, controlled: np.ndarray | None, weights: np.ndarray | None,
                refs: np.ndarray) -> np.ndarray:
        """(B, 6): a unit's AUPRC, its ratios to chance, to the k-mer baseline and to the composition detector,
        its token-controlled AUPRC on the test tokens of a mixed identity (`mixed_test_tokens`), and that one's
        ratio to the chance of those tokens."""
        ap = auprc_weighted(scores, labels, weights)
        if controlled is None:
            controlled_ap = controlled_chance = np.full_like(ap, np.nan)
        else:
            mixed_weights = None if weights is None else weights[:, mixed]
            w = np.ones((1, mixed_labels.size)) if weights is None else mixed_weights
            controlled_ap = auprc_weighted(controlled, mixed_labels, mixed_weights)
            controlled_chance = random_auprc(w @ mixed_labels.astype(np.float64), w.sum(axis=1))
        return np.stack([ap, ap / refs[:, 0], ap / refs[:, 2], ap / refs[:, 4], controlled_ap,
                         controlled_ap / controlled_chance], axis=1)

    def test_weights(counts: np.ndarray | None) -> np.ndarray | None:
        return None if counts is None else expand_to_items(counts, unit_of_token)

    def references_and_named(counts: np.ndarray | None) -> np.ndarray:
        """(B, 5 or 11): the references, then the named unit against them."""
        weights = test_weights(counts)
        refs = references(weights)
        if named_scores is None:
            return refs
        return np.concatenate([refs, against(*named_scores, weights, refs)], axis=1)

    def train_auprc(counts: np.ndarray | None) -> np.ndarray:
        weights = None if counts is None else expand_to_items(counts, unit_of_train_token)
        return np.stack([auprc_weighted(s, train_labels, weights) for s in train_scores], axis=1)

    def candidate_statistics(counts: np.ndarray | None) -> np.ndarray:
        """(B, K, 6): every candidate's test statistics against the references."""
        weights = test_weights(counts)
        refs = references(weights)
        return np.stack([against(s, c, weights, refs) for s, c in zip(test_scores, controlled_scores)], axis=1)

    fixed = bootstrap(references_and_named, unit_ids.size, n_resamples=resamples, seed=seed, level=level, chunk_size=32)
    # seed + 1 and seed + 2 are taken by the motif cosine and the SAE fit statistics, seed + 4 by token_identity_share
    best = select_and_score(train_auprc, candidate_statistics, train_ids.size, unit_ids.size, seeds=(seed + 3, seed),
                            n_resamples=resamples, level=level, chunk_size=32)
    n = int(unit_ids.size)
    counts = {"n_test_tokens": int(labels.size), "n_test_annotated": int(labels.sum())}

    def estimate(interval, i: int) -> Estimate:
        return Estimate(float(interval.estimate[i]), float(interval.low[i]), float(interval.high[i]), n, min_n=min_n,
                        detail=counts, samples=interval.samples[:, i])

    chance, inverse_chance, pattern, prevalence, composition_ap = (estimate(fixed, i) for i in range(5))
    reported = [estimate(best, i) if named is None else estimate(fixed, 5 + i) for i in range(6)]
    top = Ceiling(inverse_chance.estimate, inverse_chance.ci_low, inverse_chance.ci_high)
    identity_detail = _identity_detail(table)
    stats = {"auprc": reported[0], "best_auprc": estimate(best, 0), "chance": chance,
             "auprc_over_chance": replace(reported[1], ceiling=top, effect_size=reported[1].estimate),
             "pattern_auprc": pattern, "auprc_over_pattern": replace(reported[2], effect_size=reported[2].estimate),
             "prevalence": prevalence, "composition_auprc": composition_ap,
             "auprc_over_composition": replace(reported[3], effect_size=reported[3].estimate),
             "auprc_token_controlled": _with_detail(reported[4], identity_detail),
             "auprc_token_controlled_over_chance": _with_detail(
                 replace(reported[5], effect_size=reported[5].estimate), identity_detail)}
    if composition is None:
        reason = "no composition detector (the annotation has no window)"
        stats.update(composition_auprc=Estimate.missing(reason, n), auprc_over_composition=Estimate.missing(reason, n))
    if baseline is None:
        reason = "no k-mer baseline: only start_codon, stop_codon, donor and acceptor annotations have a consensus"
        stats.update(pattern_auprc=Estimate.missing(reason, n), auprc_over_pattern=Estimate.missing(reason, n))
    if control_problem:
        stats.update({name: Estimate.missing(control_problem, n) for name in
                      ("auprc_token_controlled", "auprc_token_controlled_over_chance")})
    return stats


NO_IDENTITIES = "no token identities (the scored tokens carry no token ids)"


IDENTITY_DECIDES = ("no token identity has both annotated and other train tokens: token identity decides the "
                    "annotation, and nothing is left for a unit to know beyond the token")


def _control_problem(table: TokenTable, seen_labels: np.ndarray | None) -> str | None:
    """Why the token-controlled statistics cannot be computed, or None."""
    if seen_labels is None:
        return NO_IDENTITIES
    if seen_labels.size == 0:
        return IDENTITY_DECIDES
    positives = int(seen_labels.sum())
    if positives < MIN_TEST_POSITIVES:
        return (f"{positives} annotated test tokens have a token identity with both annotated and other train "
                f"tokens (fewer than {MIN_TEST_POSITIVES})")
    if positives == seen_labels.size:
        return "every test token of a mixed token identity is annotated"
    return None


def _controlled_test_scores(values: np.ndarray, table: TokenTable, seen: np.ndarray | None) -> np.ndarray | None:
    """(n_mixed,) the unit's `token_controlled` activation at the test tokens of a mixed identity; None without
    token identities."""
    return None if seen is None else token_controlled(values, table)[table.test][seen]


def _identity_detail(table: TokenTable) -> dict[str, Any]:
    """How many identity classes the train split has, how many test tokens the token-controlled statistics score
    (`mixed_test_tokens`), and `annotation_identity_share`."""
    if table.identity is None:
        return {}
    mixed = mixed_test_tokens(table)
    return {"n_identities_train": int(np.unique(table.identity[~table.test]).size),
            "n_test_tokens_mixed_identity": int(mixed.sum()),
            "n_test_annotated_mixed_identity": int(table.label[table.test][mixed].sum()),
            "annotation_identity_share": float(annotation_identity_share(table))}


def annotation_identity_share(table: TokenTable) -> float:
    """`identity_share` of the annotation itself (0/1) on the `seen_test_tokens`: at 1 the annotation is a
    function of token identity (a k-mer token that holds the whole annotated pattern). NaN when no test token
    qualifies."""
    seen = seen_test_tokens(table)
    if not seen.any():
        return float("nan")
    labels = table.label.astype(np.float64)
    fitted = identity_moments(labels, table.identity, ~table.test)[0]
    return float(identity_share(labels[table.test][seen], fitted[table.test][seen])[0])


def _token_identity_share(values: np.ndarray, table: TokenTable, *, level: float, resamples: int, seed: int,
                          min_n: int) -> Estimate:
    """`identity_share` of a unit: identity means fitted on the train split, the share measured on the test
    `seen_test_tokens`; percentile bootstrap over test sequences."""
    n = int(np.unique(table.unit[table.test]).size)
    if table.identity is None:
        return Estimate.missing(NO_IDENTITIES, n)
    seen = seen_test_tokens(table)
    if not seen.any():
        return Estimate.missing("no test token has a token identity the train split holds", n)
    x = values[table.test][seen]
    fitted = identity_moments(values, table.identity, ~table.test)[0][table.test][seen]
    unit_ids, unit_of_token = np.unique(table.unit[table.test][seen], return_inverse=True)

    def statistic(counts: np.ndarray | None) -> np.ndarray:
        return identity_share(x, fitted, None if counts is None else expand_to_items(counts, unit_of_token))

    interval = bootstrap(statistic, unit_ids.size, n_resamples=resamples, seed=seed, level=level)
    detail = {"n_test_tokens_seen_identity": int(x.size),
              "n_identities_train": int(np.unique(table.identity[~table.test]).size)}
    return Estimate(float(interval.estimate), float(interval.low), float(interval.high), int(unit_ids.size),
                    min_n=min_n, detail=detail)


def _motif_cosine(survey: Survey, table: TokenTable, unit: int, selected: bool, *, level: float, resamples: int,
                  seed: int, min_n: int) -> Estimate:
    """Per-sequence centred cosine (MINTS's ranking) of `unit` on the test split, bootstrap over sequences."""
    if unit < 0:
        return Estimate.missing("every unit is constant over the train sequences")
    share, counts = _annotated_share(table)
    means = np.bincount(table.row, weights=survey.columns[unit], minlength=table.n_rows) / np.maximum(counts, 1)
    rows = np.flatnonzero(_test_rows(table) & (counts > 0))
    source = table.unit[np.searchsorted(table.row, rows)]  # the unit of a row: that of its first token
    unit_ids, unit_of_row = np.unique(source, return_inverse=True)
    x, y = means[rows], share[rows]

    def statistic(unit_counts: np.ndarray | None) -> np.ndarray:
        weights = None if unit_counts is None else expand_to_items(unit_counts, unit_of_row)
        return pearson_weighted(x, y, weights)

    interval = bootstrap(statistic, unit_ids.size, n_resamples=resamples, seed=seed, level=level)
    detail = {"cosine_unit": int(unit), "n_test_rows": int(rows.size),
              "train_cosine": float(survey.train_cosine[unit]) if selected else None}
    if interval.nan_fraction:
        detail["undefined_resamples"] = float(interval.nan_fraction)
    return Estimate(float(interval.estimate), float(interval.low), float(interval.high), int(unit_ids.size),
                    min_n=min_n, detail=detail)


def _with_detail(estimate: Estimate, extra: dict[str, Any]) -> Estimate:
    return replace(estimate, detail={**extra, **estimate.detail})


# ---------------------------------------------------------------------------------------------
# The feature dashboard


def base_values(token_values: np.ndarray, offsets: np.ndarray, length: int) -> np.ndarray:
    """Per-base values from per-token values: each base gets the value of the latest-starting token that
    covers it (for overlapping k-mers, the token anchored at the base). token_values: (n_tok,);
    offsets: (n_tok, 2). Returns (length,) float, NaN where no token covers the base."""
    out = np.full(length, np.nan)
    order = np.argsort(offsets[:, 0], kind="stable")
    for t in order:
        start, end = int(offsets[t, 0]), int(offsets[t, 1])
        if end > start:
            out[start:end] = token_values[t]
    return out


@dataclass
class DashboardInputs:
    """What a dashboard shows for one unit: test-split activations and labels, and the windows to draw."""

    title: str
    activation: np.ndarray  # (n_test,) at the scored test tokens
    label: np.ndarray  # (n_test,) bool
    auprc: float
    windows: list[tuple[str, np.ndarray, np.ndarray, int]] = field(default_factory=list)  # (text, values, marks, centre)


def top_windows(units_column: np.ndarray, table: TokenTable, sequences: list[str], offsets: np.ndarray,
                marks: list[np.ndarray] | None, *, count: int = 8, flank: int = 20) -> list[tuple[str, np.ndarray, np.ndarray, int]]:
    """The `count` test sequences with the highest activation (their top token), each as a window of
    2 * flank + 1 bases around that token: (text, per-base activation, per-base annotation marks, centre).

    units_column: (n,) activation of the unit at every scored token of `table`."""
    test = np.flatnonzero(table.test)
    order = test[np.argsort(-units_column[test], kind="stable")]
    _, first = np.unique(table.row[order], return_index=True)
    picks = order[np.sort(first)][:count]
    windows = []
    for token in picks:
        row = int(table.row[token])
        sequence = sequences[row]
        in_row = table.row == row
        values = np.full(offsets.shape[1], np.nan)
        values[table.position[in_row]] = units_column[in_row]
        per_base = base_values(values, offsets[row], len(sequence))
        if marks is not None:
            row_marks = np.asarray(marks[row], dtype=bool)
        else:
            labels = np.zeros(offsets.shape[1])
            labels[table.position[in_row]] = table.label[in_row]
            row_marks = base_values(labels, offsets[row], len(sequence)) > 0.5
        centre = int(offsets[row, table.position[token], 0])
        lo, hi = max(0, centre - flank), min(len(sequence), centre + flank + 1)
        windows.append((sequence[lo:hi], per_base[lo:hi], row_marks[lo:hi], centre - lo))
    return windows


def dashboard_figure(inputs: DashboardInputs) -> Figure:
    """Top-activating windows (bases shaded by activation, annotated bases underlined), the activation
    histogram on annotated vs other test tokens, and the precision-recall curve against chance."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import precision_recall_curve

    fig = plt.figure(figsize=(11, 6.2))
    grid = fig.add_gridspec(2, 2, height_ratios=[1.25, 1], hspace=0.45, wspace=0.25)
    _draw_windows(fig.add_subplot(grid[0, :]), inputs.windows)
    hist = fig.add_subplot(grid[1, 0])
    values, labels = inputs.activation, inputs.label
    bins = np.histogram_bin_edges(values, bins=40)
    hist.hist(values[~labels], bins=bins, density=True, alpha=0.6, label=f"other ({int((~labels).sum())})")
    hist.hist(values[labels], bins=bins, density=True, alpha=0.6, label=f"annotated ({int(labels.sum())})")
    hist.set_yscale("log")
    hist.set_xlabel("activation (test tokens)")
    hist.set_ylabel("density")
    hist.legend(fontsize=8)
    pr = fig.add_subplot(grid[1, 1])
    precision, recall, _ = precision_recall_curve(labels, values)
    pr.plot(recall, precision, label=f"unit (AUPRC {inputs.auprc:.3f})")
    pr.axhline(labels.mean(), color="grey", linestyle="--", label=f"random ranking (prevalence {labels.mean():.4f})")
    pr.set_xlabel("recall")
    pr.set_ylabel("precision")
    pr.set_ylim(0, 1.02)
    pr.legend(fontsize=8)
    fig.suptitle(inputs.title, fontsize=11)
    caption = ("top: the test sequences where the unit is most active, around its peak (bases shaded by "
               "activation, annotated bases underlined); bottom: activation histogram on annotated vs other test "
               "tokens, and the precision-recall curve against a random ranking (precision = prevalence)")
    return figure_from_matplotlib(fig, inputs.title, caption)


def _draw_windows(ax: Any, windows: list[tuple[str, np.ndarray, np.ndarray, int]]) -> None:
    import matplotlib.pyplot as plt

    ax.set_axis_off()
    if not windows:
        ax.text(0.5, 0.5, "no test tokens", ha="center")
        return
    peak = max(float(np.nanmax(np.abs(v))) if np.isfinite(v).any() else 0.0 for _, v, _, _ in windows) or 1.0
    colours = plt.get_cmap("Reds")
    width = max(len(text) for text, _, _, _ in windows)
    ax.set_xlim(-0.5, width + 0.5)
    ax.set_ylim(len(windows) - 0.5, -0.5)
    for y, (text, values, marks, centre) in enumerate(windows):
        for x, char in enumerate(text):
            value = 0.0 if np.isnan(values[x]) else max(values[x], 0.0) / peak
            ax.add_patch(plt.Rectangle((x - 0.5, y - 0.4), 1, 0.8, color=colours(value), linewidth=0))
            ax.text(x, y, char, ha="center", va="center", fontsize=7, family="monospace",
                    fontweight="bold" if x == centre else "normal")
            if marks[x]:
                ax.plot([x - 0.45, x + 0.45], [y + 0.42, y + 0.42], color="tab:blue", linewidth=1.5)
    ax.set_title("top-activating test windows (peak token in bold; annotated bases underlined)", fontsize=9)


# ---------------------------------------------------------------------------------------------
# What both families do around the scoring


@dataclass
class LabelledTokens:
    """The claim's scored tokens, their character spans, and per-base marks for the dashboards."""

    table: TokenTable
    offsets: np.ndarray  # (n_seq, n_tok, 2)
    marks: list[np.ndarray] | None  # per-nucleotide annotation, None where it is per token (motifs, permuted)


def label_tokens(claim: Any, dataset: Any, activations: Any, annotation: Annotation, seed: int) -> LabelledTokens:
    """Annotate the tokens of a cached activation entry; seed: the permutation of a `permuted` control."""
    offsets = np.asarray(activations["tokens.offsets"])
    special_mask = activations["tokens.special_mask"]
    labels = token_labels(dataset, offsets, annotation, f"{claim.path}: params.annotation")
    marks = None
    if annotation.permuted:
        labels = permute_labels(labels, special_mask, dataset, seed)
    elif annotation.motif is None:
        marks = nucleotide_annotation(dataset, annotation)
    baseline = consensus_scores(dataset, offsets, annotation)
    table = TokenTable.build(dataset, labels, special_mask, baseline)
    table.composition = composition_scores(dataset, offsets, table, annotation, claim.params.composition_window)
    table.identity = token_identities(activations["tokens.input_ids"], table, claim.params.token_offsets)
    return LabelledTokens(table, offsets, marks)


def composition_window(annotation: Annotation, width: int | None) -> tuple[int, str]:
    """Width (nt) and placement (`composition.window_spans`) of the window the composition detector reads."""
    placement = {"any": "overlap_max", "anchored": "anchored", "centred": "centred"}[annotation.align]
    if width is not None:
        return width, placement
    if annotation.motif is not None:

        return load_motif(annotation.motif, release=annotation.release).length, placement
    if annotation.pattern is not None:
        return len(annotation.pattern), placement
    if annotation.track in COMPOSITION_WIDTHS:
        return COMPOSITION_WIDTHS[annotation.track], placement
    if annotation.track in CONSENSUS:
        return len(CONSENSUS[annotation.track][0]), placement
    return DEFAULT_COMPOSITION_WINDOW, placement


def composition_scores(dataset: Any, offsets: np.ndarray, table: TokenTable, annotation: Annotation,
                       width: int | None) -> np.ndarray:
    """(n,) composition detector score of every scored token (`composition.composition_detector`), fitted
    on the train split's tokens."""

    size, placement = composition_window(annotation, width)
    spans = comp.window_spans(offsets, [len(s) for s in dataset.sequences], size, placement)
    kind = "residue_classes" if getattr(dataset, "alphabet", "dna") == "protein" else "bases"
    fractions = table.gather(np.moveaxis(comp.composition_features(dataset.sequences, spans, kind), 0, -1))
    return comp.composition_detector(fractions, table.label, ~table.test)


def unit_dashboards(scored: Scored, tokens: LabelledTokens, dataset: Any, names: list[str], kind: str,
                    annotation: Annotation, count: int) -> list[Figure]:
    """One dashboard per unit the claim used (best on train, named, best motif cosine)."""
    if count == 0 or not scored.used:
        return []
    roles: dict[int, list[str]] = {}
    for role, unit in scored.used.items():
        if unit >= 0:
            roles.setdefault(unit, []).append(role)
    test = tokens.table.test
    labels = tokens.table.label[test]
    figures = []
    for unit, why in roles.items():
        values = scored.columns[unit]
        windows = top_windows(values, tokens.table, dataset.sequences, tokens.offsets, tokens.marks, count=count)
        title = f"{kind} {names[unit]} ({', '.join(why)}) vs {annotation.describe()}"
        auprc = float(auprc_weighted(values[test], labels)[0])
        figures.append(dashboard_figure(DashboardInputs(title, values[test], labels, auprc, windows)))
    return figures
