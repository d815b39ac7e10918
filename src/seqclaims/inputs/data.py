"""Datasets: labelled windows of the embedded genomes and proteins, and the types every dataset shares.

A claim's `data:` mapping (validated by `DataSpec`) names a dataset; `datasets.build(spec, seed=...)`
returns a `Dataset` with sequences, binary labels, a region-disjoint train/test split,
genomic coordinates, per-nucleotide annotation tracks and a card that documents how it was
made. Builders are deterministic (same spec and seed, same dataset) and cached under
`cache_dir()/datasets/`.

Embedded datasets (species `athaliana` by default; `aarenosa` has an annotation too):

- `promoters`: windows around the TSS (first transcribed base) of protein-coding mRNAs,
  default 249 nt upstream to 50 nt downstream (300 nt, the TSS at index 249, read in the
  mRNA's direction), vs random windows at least 2 kb from any annotated TSS, sampled to match
  the promoters' GC distribution (histogram matching on 0.01-wide GC bins, per split).
- `tata`: the same promoter windows; label 1 when a TBP motif (default JASPAR2024 MA0108.3,
  the 7 bp TATAAAA matrix) scores at least min + 0.95 (max - min) on the promoter's own
  strand in a window centred in -40..-20 relative to the TSS; label 0 otherwise (GC-matched).
- `splice_donors` / `splice_acceptors`: windows whose anchor (default index 100 of 200 nt) is
  the first base of the intron's GT / AG at an annotated boundary of a protein-coding mRNA,
  vs decoy GT / AG dinucleotides inside protein-coding genes (same strand) that are not
  annotated boundaries.
- `coding`: windows centred on a CDS base (read on the CDS's strand) vs intergenic windows
  (no annotated gene or pseudogene on either strand); tracks codon_phase, start_codon,
  stop_codon.
- `motif_sites`: windows centred on the best genome hits of a JASPAR matrix (`matrix:`),
  oriented so that the motif reads forward, chosen greedily best-first so that no two of them
  share a base, vs GC-matched windows whose centred motif window scores below the threshold.
- `proteins`: proteins translated from the annotation (`seqclaims.inputs.proteins`: one per protein-coding
  gene, its longest CDS), the first `window[1] + 1` residues of each (default 256; `window[0]` is 0,
  the N-terminus); label 1 for membrane-like proteins (a hydrophobic_stretch among the kept residues),
  0 otherwise, balanced; region-disjoint by gene. Tracks per residue: cysteine, cysteine_pair,
  hydrophobic_stretch, signal_like, exon_junction. Sequences are amino acids (`alphabet` "protein").
- `user`: CSV/TSV with columns `sequence`, `label` (optional `split`, `chrom`, `start`, `end`,
  `strand`), or BED (chrom, start, end, name = label, score, strand) over a FASTA.

Splits are region-disjoint: the last `test_fraction` of every chromosome is the test region
(`test_region`), windows that straddle the boundary are dropped, so no test window overlaps a
train window (`overlapping_pairs`). Every class must have at least one item in each split.

Built datasets are cached under a key that covers the resolved parameters, the input files, the
source of this module, `userdata`, `genome` and `motifs`, and the pyjaspar version; concurrent builds of one
key wait for each other.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from pydantic import ValidationError

from seqclaims.core.input_specs import TATA_REGION, DataSpec
from seqclaims.core.schema import describe_validation_error
from seqclaims.errors import InputError, Unavailable
from seqclaims.inputs import genome, motifs, proteins
from seqclaims.inputs.motifs import DEFAULT_THRESHOLD_FRACTION

# Seeds the builders' random streams: bump it only to change the datasets on purpose. Any change to
# the code that builds them already changes the cache key (`datasets.CODE_HASH`).
DATA_VERSION = 1
SPLITS = ("train", "test")
ACGT = np.frombuffer(b"ACGT", dtype=np.uint8)
IUPAC = set("ACGTURYKMSWBDHVN")
GC_BIN_WIDTH = 0.01
NEGATIVE_POOL_FACTOR = 20
MIN_TSS_DISTANCE = 2000
DEFAULT_N = 2000
DEFAULT_TATA_MATRIX = "MA0108.3"
TATA_THRESHOLD_FRACTION = 0.95


@dataclass(frozen=True)
class Recipe:
    """Defaults of one embedded dataset: window (upstream, downstream) and GC matching of negatives."""

    window: tuple[int, int]
    gc_match: bool
    needs_annotation: bool = True


RECIPES: dict[str, Recipe] = {
    "promoters": Recipe(window=(249, 50), gc_match=True),
    "tata": Recipe(window=(249, 50), gc_match=True),
    "splice_donors": Recipe(window=(100, 99), gc_match=False),
    "splice_acceptors": Recipe(window=(100, 99), gc_match=False),
    "coding": Recipe(window=(149, 150), gc_match=False),
    "motif_sites": Recipe(window=(100, 99), gc_match=True, needs_annotation=False),
    "proteins": Recipe(window=(0, 255), gc_match=False),
}
DEFAULT_N_PROTEINS = 600
DATASETS = (*RECIPES, "user")


def parse_spec(spec: dict | DataSpec) -> DataSpec:
    """Validate a `data:` mapping; a bad key or value is one InputError line."""
    if isinstance(spec, DataSpec):
        return spec
    if not isinstance(spec, dict):
        raise InputError(f"data: must be a mapping of keys to values, not {type(spec).__name__}")
    try:
        return DataSpec.model_validate(spec)
    except ValidationError as exc:

        raise InputError("; ".join(describe_validation_error(err, DataSpec, ("data",)) for err in exc.errors())) from None


def resolved_parameters(spec: DataSpec, seed: int) -> dict:
    """Every setting that shaped the dataset, defaults filled in (recorded in the card and hashed)."""
    params = spec.model_dump()
    recipe = RECIPES.get(spec.dataset)
    if recipe:
        params["window"] = list(spec.window or recipe.window)
        params["gc_match"] = recipe.gc_match if spec.gc_match is None else spec.gc_match
        params["n"] = spec.n or (DEFAULT_N_PROTEINS if spec.dataset == "proteins" else DEFAULT_N)
    if spec.dataset == "tata":
        params["matrix"] = spec.matrix or DEFAULT_TATA_MATRIX
    if params["matrix"] is not None and spec.threshold_fraction is None:
        params["threshold_fraction"] = TATA_THRESHOLD_FRACTION if spec.dataset == "tata" else DEFAULT_THRESHOLD_FRACTION
    params["seed"] = int(seed)
    params["data_version"] = DATA_VERSION
    return params


# ---------------------------------------------------------------------------------------
# Coordinates and datasets
# ---------------------------------------------------------------------------------------


@dataclass
class Coords:
    """Genomic intervals `[start, end)`; the sequence is read on `strand`. All arrays `(n,)`."""

    chrom: np.ndarray
    start: np.ndarray
    end: np.ndarray
    strand: np.ndarray

    def __post_init__(self):
        self.chrom = np.asarray(self.chrom, dtype=str)
        self.start = np.asarray(self.start, dtype=np.int64)
        self.end = np.asarray(self.end, dtype=np.int64)
        self.strand = np.asarray(self.strand, dtype="U1")

    def __len__(self) -> int:
        return len(self.start)

    def take(self, index) -> "Coords":
        return Coords(self.chrom[index], self.start[index], self.end[index], self.strand[index])

    @staticmethod
    def concat(parts: list["Coords"]) -> "Coords":
        return Coords(*(np.concatenate([getattr(p, f.name) for p in parts]) for f in dataclasses.fields(Coords)))

    @staticmethod
    def empty() -> "Coords":
        return Coords(np.zeros(0, str), np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, "U1"))


@dataclass
class Dataset:
    """A labelled set of sequences.

    sequences: n upper-case strings; labels `(n,)` int; split `(n,)` "train"/"test";
    coords: genomic intervals or None (user data without coordinates);
    tracks: name -> n per-nucleotide arrays aligned with the sequences (soft_mask, codon_phase,
    start_codon, stop_codon, donor, acceptor, tss, motif_score, motif_support where they apply);
    source: `(n,)` index of the sequence each one was cut from (identity unless windowed);
    card: counts, lengths, GC before/after matching, parameters; content_hash: sha256 over
    sequences, labels, split and parameters (the activation cache's key).
    """

    name: str
    sequences: list[str]
    labels: np.ndarray
    split: np.ndarray
    coords: Coords | None
    tracks: dict[str, list[np.ndarray]]
    card: dict
    content_hash: str = ""
    source: np.ndarray | None = None
    alphabet: str = "dna"  # "dna", or "protein" (sequences of amino acids; tracks per residue)

    def __len__(self) -> int:
        return len(self.sequences)

    def indices(self, split: str) -> np.ndarray:
        """Row indices of one split. `(n_split,)` int."""
        return np.flatnonzero(self.split == split)


def content_hash(sequences: list[str], labels: np.ndarray, split: np.ndarray, parameters: dict) -> str:
    digest = hashlib.sha256()
    digest.update(json.dumps(parameters, sort_keys=True, default=str).encode())
    for sequence in sequences:
        digest.update(sequence.encode("ascii", "replace"))
        digest.update(b"\n")
    digest.update(np.asarray(labels, dtype=np.int64).tobytes())
    digest.update("\n".join(map(str, split)).encode())
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------
# Region-disjoint splits
# ---------------------------------------------------------------------------------------


def test_region(species: str, chrom: str, test_fraction: float = 0.2) -> tuple[int, int]:
    """The held-out region `[start, end)` of a chromosome: its last `test_fraction`."""
    length = genome.chromosome_length(species, chrom)
    return region_boundary(length, test_fraction), length


def region_boundary(length: int, test_fraction: float) -> int:
    return int(np.floor(length * (1.0 - test_fraction)))


def assign_split(coords: Coords, boundaries: dict[str, int]) -> np.ndarray:
    """ "train" for windows ending at or before their chromosome's boundary, "test" for those
    starting at or after it, "" (to drop) for those that straddle it. `(n,)` str."""
    boundary = np.array([boundaries[c] for c in coords.chrom], dtype=np.int64) if len(coords) else np.zeros(0, np.int64)
    split = np.full(len(coords), "", dtype="U5")
    split[coords.end <= boundary] = "train"
    split[coords.start >= boundary] = "test"
    return split


def overlapping_pairs(train: Coords, test: Coords, chunk: int = 2048) -> np.ndarray:
    """Pairs (i, j) where train window i and test window j share a base on the same chromosome.

    Strand is ignored: both strands of a base are the same locus. Returns `(k, 2)` int.
    """
    pairs = []
    for lo in range(0, len(train), chunk):
        part = train.take(slice(lo, lo + chunk))
        hit = (
            (part.chrom[:, None] == test.chrom[None, :])
            & (part.start[:, None] < test.end[None, :])
            & (test.start[None, :] < part.end[:, None])
        )
        i, j = np.nonzero(hit)
        pairs.append(np.stack([i + lo, j], axis=1))
    return np.concatenate(pairs) if pairs else np.zeros((0, 2), dtype=np.int64)


# ---------------------------------------------------------------------------------------
# Window geometry and sequence extraction
# ---------------------------------------------------------------------------------------


def anchored_windows(chrom, anchors: np.ndarray, strands: np.ndarray, window: tuple[int, int]) -> Coords:
    """Windows with `upstream` nt before and `downstream` nt after each anchor in reading
    direction, so that index `upstream` of the oriented sequence is the anchor base."""
    up, down = window
    anchors = np.asarray(anchors, dtype=np.int64)
    minus = np.asarray(strands) == "-"
    start = np.where(minus, anchors - down, anchors - up)
    chrom = np.broadcast_to(np.asarray(chrom, dtype=str), anchors.shape)
    return Coords(chrom, start, start + up + down + 1, strands)


def oriented_window_values(track_for: Callable[[str, str], np.ndarray], coords: Coords) -> list[np.ndarray]:
    """Per-window slices of a chromosome-wide track, reversed for '-' windows.

    track_for(chrom, strand) -> `(chrom_len,)` array. Windows of equal length on one
    chromosome and strand are gathered in one indexing operation. Returns n arrays.
    """
    out: list[np.ndarray | None] = [None] * len(coords)
    lengths = coords.end - coords.start
    keys = np.stack([coords.chrom, coords.strand, lengths.astype(str)], axis=1) if len(coords) else np.zeros((0, 3), str)
    for chrom, strand, length in {tuple(k) for k in keys}:
        rows = np.flatnonzero((coords.chrom == chrom) & (coords.strand == strand) & (lengths == int(length)))
        values = np.asarray(track_for(chrom, strand))[coords.start[rows, None] + np.arange(int(length))]
        if strand == "-":
            values = values[:, ::-1]
        for row, value in zip(rows, values):
            out[row] = np.ascontiguousarray(value)
    return out


def window_codes(species: str, coords: Coords, keep_case: bool = False) -> list[np.ndarray]:
    """ASCII codes of each window in reading direction (complemented for '-'). n arrays, uint8."""
    source = genome.sequence_array if keep_case else genome.upper_array
    codes = oriented_window_values(lambda chrom, _strand: source(species, chrom), coords)
    minus = np.flatnonzero(coords.strand == "-")
    for row in minus:
        codes[row] = genome.COMPLEMENT_BYTES[codes[row]]
    return codes


_IS_ACGT = np.isin(np.arange(256), ACGT)
_IS_GC = np.isin(np.arange(256), np.frombuffer(b"CG", dtype=np.uint8))


def composition(codes: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """GC fraction (G+C over A+C+G+T; NaN without any) and ambiguity (a base other than
    A, C, G, T) of each sequence's codes. Returns `(n,)` float64 and `(n,)` bool."""
    if not codes:
        return np.zeros(0), np.zeros(0, dtype=bool)
    lengths = np.array([len(c) for c in codes])
    if (lengths == lengths[0]).all():
        stacked = np.stack(codes)
        acgt, gc = _IS_ACGT[stacked].sum(axis=1), _IS_GC[stacked].sum(axis=1)
    else:
        flat, row = np.concatenate(codes), np.repeat(np.arange(len(codes)), lengths)
        acgt = np.bincount(row, weights=_IS_ACGT[flat], minlength=len(codes))
        gc = np.bincount(row, weights=_IS_GC[flat], minlength=len(codes))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(acgt > 0, gc / acgt, np.nan), acgt < lengths


# ---------------------------------------------------------------------------------------
# GC matching
# ---------------------------------------------------------------------------------------


def largest_remainder(weights: np.ndarray, total: int) -> np.ndarray:
    """Integers proportional to `weights` that sum to `total`. `(k,)` int."""
    weights = np.asarray(weights, dtype=np.float64)
    if total <= 0 or weights.sum() <= 0:
        return np.zeros(len(weights), dtype=np.int64)
    exact = weights / weights.sum() * total
    counts = np.floor(exact).astype(np.int64)
    short = total - counts.sum()
    counts[np.argsort(-(exact - counts), kind="stable")[:short]] += 1
    return counts


def match_gc(target_gc: np.ndarray, pool_gc: np.ndarray, count: int, rng: np.random.Generator,
             bin_width: float = GC_BIN_WIDTH) -> np.ndarray:
    """Pick `count` pool items whose GC histogram matches the target's (indices into the pool).

    Each GC bin gets a quota proportional to the target's share; a bin short of candidates
    is filled with the unused candidates nearest in GC to that bin's centre.
    """
    count = min(count, len(pool_gc))
    n_bins = int(np.ceil(1 / bin_width)) + 1
    target_bins = np.clip((np.asarray(target_gc) / bin_width).astype(np.int64), 0, n_bins - 1)
    pool_bins = np.clip((np.asarray(pool_gc) / bin_width).astype(np.int64), 0, n_bins - 1)
    quota = largest_remainder(np.bincount(target_bins, minlength=n_bins), count)
    order = rng.permutation(len(pool_gc))
    order = order[np.argsort(pool_bins[order], kind="stable")]  # random within each bin
    first = np.searchsorted(pool_bins[order], np.arange(n_bins))
    available = np.bincount(pool_bins, minlength=n_bins)
    taken = np.minimum(quota, available)
    chosen = np.concatenate([order[first[b]: first[b] + taken[b]] for b in np.flatnonzero(taken)] or [np.zeros(0, np.int64)])
    used = np.zeros(len(pool_gc), dtype=bool)
    used[chosen] = True
    extra = []
    for b in np.flatnonzero(quota > taken):
        spare = np.flatnonzero(~used)
        nearest = spare[np.argsort(np.abs(pool_gc[spare] - (b + 0.5) * bin_width), kind="stable")[: quota[b] - taken[b]]]
        used[nearest] = True
        extra.append(nearest)
    return np.sort(np.concatenate([chosen, *extra]).astype(np.int64))


def gc_summary(values: np.ndarray) -> dict:
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if not len(values):
        return {"n": 0, "mean": None, "sd": None}
    return {"n": int(len(values)), "mean": round(float(values.mean()), 4), "sd": round(float(values.std()), 4)}


# ---------------------------------------------------------------------------------------
# Assembling a binary genome dataset
# ---------------------------------------------------------------------------------------


@dataclass
class Candidates:
    """What a builder proposes. positives: every eligible label-1 window (priority: higher is
    taken first, ties at random; None = random); negatives(split, count, rng): label-0
    candidate windows inside that split's region (at least `count` where possible)."""

    positives: Coords
    negatives: Callable[[str, int, np.random.Generator], Coords]
    priority: np.ndarray | None = None
    notes: list[str] = field(default_factory=list)


@dataclass
class _Pool:
    """Candidate windows of one class and split after the ambiguity filter, with their codes and
    GC; `kept` indexes the windows given to `_filtered_pool`."""

    coords: Coords
    codes: list[np.ndarray]
    gc: np.ndarray
    kept: np.ndarray
    excluded: int


def _filtered_pool(species: str, coords: Coords, policy: str) -> _Pool:
    codes = window_codes(species, coords)
    gc, ambiguous = composition(codes)
    kept = np.flatnonzero(~ambiguous if policy == "exclude" else np.ones(len(codes), dtype=bool))
    return _Pool(coords.take(kept), [codes[i] for i in kept], gc[kept], kept, len(codes) - len(kept))


def _pick_positives(pool: _Pool, priority: np.ndarray | None, count: int, rng: np.random.Generator) -> np.ndarray:
    """`count` pool indices: highest priority first (ties at random), or at random."""
    tie_break = rng.random(len(pool.coords))
    order = np.argsort(tie_break) if priority is None else np.lexsort((tie_break, -priority))
    return np.sort(order[:count])


def _split_targets(n: int, test_fraction: float) -> dict[str, int]:
    """Windows per class in each split: balanced classes, `test_fraction` of them in test.

    InputError when a split would get no window of a class.
    """
    targets = _per_class_targets(n, test_fraction)
    if min(targets.values()) < 1:
        enough = next(m for m in itertools.count(n) if min(_per_class_targets(m, test_fraction).values()) >= 1)
        raise InputError(
            f"n = {n} with test_fraction {test_fraction} gives {targets['train']} train and {targets['test']} test "
            f"windows per class; every class needs one in each split: raise n to at least {enough} or change test_fraction"
        )
    return targets


def _per_class_targets(n: int, test_fraction: float) -> dict[str, int]:
    n_test = int(round(n * test_fraction))
    return {"train": (n - n_test) // 2, "test": n_test // 2}


def assemble(species: str, name: str, candidates: Candidates, params: dict, rng: np.random.Generator) -> Dataset:
    """Balanced, split-aware selection of positives and (GC-matched) negatives, then sequences and tracks."""
    positives = candidates.positives
    boundaries = _boundaries(species, params)
    pos_split = assign_split(positives, boundaries)
    targets = _split_targets(params["n"], params["test_fraction"])
    chosen, gc_before, gc_after, excluded = [], {0: [], 1: []}, {0: [], 1: []}, {0: 0, 1: 0}
    shortfalls = []
    for split in SPLITS:
        rows = np.flatnonzero(pos_split == split)
        pos_pool = _filtered_pool(species, positives.take(rows), params["ambiguous"])
        priority = None if candidates.priority is None else candidates.priority[rows][pos_pool.kept]
        neg_raw = candidates.negatives(split, NEGATIVE_POOL_FACTOR * targets[split], rng)
        neg_raw = neg_raw.take(np.flatnonzero(assign_split(neg_raw, boundaries) == split))
        neg_pool = _filtered_pool(species, neg_raw, params["ambiguous"])
        count = min(targets[split], len(pos_pool.coords), len(neg_pool.coords))
        if count < targets[split]:
            shortfalls.append(f"{split}: {count} per class of {targets[split]} requested (too few eligible windows)")
        pos_idx = _pick_positives(pos_pool, priority, count, rng)
        if params.get("gc_match"):
            neg_idx = match_gc(pos_pool.gc[pos_idx], neg_pool.gc, count, rng)
        else:
            neg_idx = np.sort(rng.permutation(len(neg_pool.coords))[:count])
        for label, pool, idx in ((1, pos_pool, pos_idx), (0, neg_pool, neg_idx)):
            gc_before[label].append(pool.gc)
            gc_after[label].append(pool.gc[idx])
            excluded[label] += pool.excluded
            chosen.append((split, label, pool.coords.take(idx), [pool.codes[i] for i in idx]))
    dataset = _dataset_from_parts(species, name, chosen, params)
    dataset.card.update({
        "gc": {str(label): {"before": gc_summary(np.concatenate(gc_before[label])),
                            "after": gc_summary(np.concatenate(gc_after[label]))} for label in (1, 0)},
        "excluded_ambiguous": {str(label): excluded[label] for label in (1, 0)},
        "eligible_positives": int((pos_split != "").sum()),
        "dropped_straddling_positives": int((pos_split == "").sum()),
        "shortfalls": shortfalls,
        "notes": candidates.notes,
        "anchor": params["window"][0],
        "test_regions": {c: [b, genome.chromosome_length(species, c)] for c, b in boundaries.items()},
    })
    return dataset


def _dataset_from_parts(species: str, name: str, parts: list, params: dict) -> Dataset:
    """Concatenate (split, label, coords, codes) parts, ordered by split then genomic position."""
    coords = Coords.concat([p[2] for p in parts]) if parts else Coords.empty()
    codes = [c for p in parts for c in p[3]]
    labels = np.concatenate([np.full(len(p[2]), p[1], dtype=np.int64) for p in parts]) if parts else np.zeros(0, np.int64)
    split = np.concatenate([np.full(len(p[2]), p[0], dtype="U5") for p in parts]) if parts else np.zeros(0, "U5")
    order = np.lexsort((coords.strand, coords.start, coords.chrom, split == "test"))
    coords, labels, split = coords.take(order), labels[order], split[order]
    sequences = [codes[i].tobytes().decode("ascii") for i in order]
    tracks = {"soft_mask": [v >= ord("a") for v in window_codes(species, coords, keep_case=True)]}
    tracks.update(_annotation_tracks(species, coords))
    return Dataset(name=name, sequences=sequences, labels=labels, split=split, coords=coords, tracks=tracks,
                   card={"species": species, "assembly": genome.species_files(species).assembly})


def _annotation_tracks(species: str, coords: Coords) -> dict[str, list[np.ndarray]]:
    """codon_phase, start/stop codon, donor/acceptor and tss tracks on each window's strand."""
    if genome.species_files(species).gff is None:
        return {}
    tracks = {"codon_phase": oriented_window_values(lambda c, s: genome.feature_tracks(species, c).phase[s], coords)}
    for flag in ("start_codon", "stop_codon", "donor", "acceptor", "tss"):
        tracks[flag] = oriented_window_values(lambda c, s, f=flag: genome.feature_tracks(species, c).flag(f, s), coords)
    return tracks


# ---------------------------------------------------------------------------------------
# Random windows
# ---------------------------------------------------------------------------------------


def sample_windows(species: str, split: str, count: int, window: tuple[int, int], rng: np.random.Generator,
                   accept: Callable[[str, np.ndarray, np.ndarray], np.ndarray], test_fraction: float,
                   strand: str | None = None, max_rounds: int = 8) -> Coords:
    """Up to `count` random anchored windows inside `split`'s region that `accept` keeps.

    accept(chrom, anchors, strands) -> `(k,)` bool. Chromosomes are drawn in proportion to
    their region length; strands at random unless `strand` is given. Rejection sampling in
    vectorised rounds of growing size.
    """
    regions = {}
    reach = max(window) + 1
    for chrom in genome.chromosomes(species):
        length = genome.chromosome_length(species, chrom)
        boundary = region_boundary(length, test_fraction)
        lo, hi = (0, boundary) if split == "train" else (boundary, length)
        if hi - lo > 2 * reach:
            regions[chrom] = (lo + reach, hi - reach)
    if not regions:
        return Coords.empty()
    names = sorted(regions)
    sizes = np.array([regions[c][1] - regions[c][0] for c in names], dtype=np.float64)
    found: list[Coords] = []
    have, draw = 0, max(4 * count, 1000)
    for _ in range(max_rounds):
        chrom_idx = rng.choice(len(names), size=draw, p=sizes / sizes.sum())
        strands = np.where(rng.random(draw) < 0.5, "+", "-") if strand is None else np.full(draw, strand)
        for i, chrom in enumerate(names):
            rows = np.flatnonzero(chrom_idx == i)
            anchors = rng.integers(regions[chrom][0], regions[chrom][1], size=len(rows))
            keep = accept(chrom, anchors, strands[rows])
            found.append(anchored_windows(chrom, anchors[keep], strands[rows][keep], window))
            have += int(keep.sum())
        if have >= count:
            break
        draw *= 4
    pooled = Coords.concat(found)
    return pooled.take(np.sort(rng.permutation(len(pooled))[:count]))


# ---------------------------------------------------------------------------------------
# Builders
# ---------------------------------------------------------------------------------------


def _require_annotation(species: str, dataset: str) -> None:
    if genome.species_files(species).gff is None:
        raise Unavailable(f"dataset {dataset!r} needs a genome annotation, which species {species!r} lacks; use athaliana or aarenosa")


def promoter_windows(species: str, window: tuple[int, int]) -> Coords:
    """One window per distinct TSS of a protein-coding mRNA, in the mRNA's direction."""
    parts = []
    for chrom in genome.chromosomes(species):
        tss = genome.tss_positions(species, chrom)
        parts.append(anchored_windows(chrom, tss["anchor"], tss["strand"], window))
    coords = Coords.concat(parts)
    return coords.take(np.flatnonzero(inside_chromosomes(species, coords)))


def inside_chromosomes(species: str, coords: Coords) -> np.ndarray:
    """Windows that lie wholly on their chromosome. `(n,)` bool."""
    lengths = np.array([genome.chromosome_length(species, c) for c in coords.chrom], dtype=np.int64)
    return (coords.start >= 0) & (coords.end <= lengths)


def _far_from_tss(species: str, window: tuple[int, int], min_distance: int) -> Callable:
    """accept() for windows at least `min_distance` nt from every annotated TSS (any transcript, either strand)."""
    tss = {c: np.sort(genome.tss_positions(species, c, protein_coding_only=False)["anchor"]) for c in genome.chromosomes(species)}

    def accept(chrom: str, anchors: np.ndarray, strands: np.ndarray) -> np.ndarray:
        w = anchored_windows(chrom, anchors, strands, window)
        sites = tss[chrom]
        lo = np.searchsorted(sites, w.start - min_distance, side="left")
        hi = np.searchsorted(sites, w.end + min_distance, side="left")
        return lo == hi

    return accept


def _tss_at_start_codon(species: str) -> float:
    """Fraction of protein-coding TSSs that coincide with a start codon (mRNAs without a 5' UTR)."""
    ann = genome.annotation(species)
    hits = [genome.sorted_contains(np.sort(genome.cds_ends(ann, c)["begin"]), genome.tss_positions(species, c)["anchor"])
            for c in genome.chromosomes(species)]
    return float(np.concatenate(hits).mean())


def build_promoters(spec: DataSpec, params: dict, rng: np.random.Generator) -> Candidates:
    species, window = spec.species, tuple(params["window"])
    accept = _far_from_tss(species, window, MIN_TSS_DISTANCE)
    return Candidates(
        positives=promoter_windows(species, window),
        negatives=lambda split, count, r: sample_windows(species, split, count, window, r, accept, params["test_fraction"]),
        notes=[f"promoter: TSS of a protein-coding mRNA at index {window[0]}, mRNA direction",
               f"{_tss_at_start_codon(species):.1%} of these TSSs are at the start codon (no annotated 5' UTR)",
               f"non-promoter: random windows >= {MIN_TSS_DISTANCE} nt from any annotated TSS, random strand"],
    )


def forward_motif_scores(codes: list[np.ndarray], motif) -> list[np.ndarray]:
    """Forward-strand (reading direction) score of every motif window of each sequence, NaN where
    a window touches a non-ACGT base. Sequences are scanned in one pass, joined by N separators."""
    flat, offsets = _joined(codes)
    forward, _ = motifs.scan_strands(flat, motif)
    forward = np.concatenate([forward, np.full(motif.length - 1, np.nan, np.float32)])
    return [forward[o: o + max(len(c) - motif.length + 1, 0)] for o, c in zip(offsets, codes)]


def _joined(codes: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Sequences joined with one 'N' between them, and each one's offset. `(total,)` uint8, `(n,)` int."""
    lengths = np.array([len(c) for c in codes], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths + 1)[:-1]]).astype(np.int64)
    flat = np.full(int((lengths + 1).sum()), ord("N"), dtype=np.uint8)
    for offset, c in zip(offsets, codes):
        flat[offset: offset + len(c)] = c
    return flat, offsets


def build_tata(spec: DataSpec, params: dict, rng: np.random.Generator) -> Candidates:
    species, window = spec.species, tuple(params["window"])
    motif = motifs.load_motif(params["matrix"], release=spec.release)
    # windows whose centre (start + L // 2) lies in -40..-20 relative to the TSS (index window[0])
    first = window[0] + TATA_REGION[0] - motif.length // 2
    last = window[0] + TATA_REGION[1] - motif.length // 2
    if first < 0:  # a negative slice start would silently wrap to the window's end
        raise InputError(
            f"dataset 'tata' with matrix {motif.matrix_id} ({motif.length} bp) needs window upstream >= "
            f"{-TATA_REGION[0] + motif.length // 2} to hold motif windows centred at {TATA_REGION[0]}, got "
            f"{window[0]}; widen `window:`"
        )
    threshold = motifs.score_threshold(motif, fraction=params["threshold_fraction"])
    promoters = promoter_windows(species, window)
    scores = forward_motif_scores(window_codes(species, promoters), motif)
    region = np.array([s[first: last + 1] for s in scores])
    has_tata = np.nan_to_num(region, nan=-np.inf).max(axis=1) >= threshold
    others = promoters.take(np.flatnonzero(~has_tata))
    return Candidates(
        positives=promoters.take(np.flatnonzero(has_tata)),
        negatives=lambda split, count, r: others,  # assemble keeps the split's own
        notes=[f"TATA: {motif.matrix_id} ({motif.name}, {motif.length} bp, {spec.release}) scoring >= "
               f"{threshold:.2f} bits (fraction {params['threshold_fraction']}) on the promoter's strand, "
               f"window centred in {TATA_REGION[0]}..{TATA_REGION[1]} of the TSS",
               f"{int(has_tata.sum())} of {len(promoters)} promoters have a TATA hit"],
    )


def _boundaries(species: str, params: dict) -> dict[str, int]:
    return {c: region_boundary(genome.chromosome_length(species, c), params["test_fraction"]) for c in genome.chromosomes(species)}


def _decoy_acceptor(species: str, kind: str) -> Callable:
    """accept() for decoy sites: GT (donor) / AG (acceptor) in reading direction, inside a
    protein-coding gene on that strand, not an annotated site of that kind."""
    word = {"donor": "GT", "acceptor": "AG"}[kind]

    def accept(chrom: str, anchors: np.ndarray, strands: np.ndarray) -> np.ndarray:
        tracks = genome.feature_tracks(species, chrom)
        upper = genome.upper_array(species, chrom)
        keep = np.zeros(len(anchors), dtype=bool)
        for strand in genome.STRANDS:
            on = np.flatnonzero(strands == strand)
            a = anchors[on]
            dinucleotide = genome.has_motif(genome.oriented_codes(upper, a, strand, 2), (word,))
            keep[on] = dinucleotide & tracks.flag("coding_gene", strand)[a] & ~tracks.flag(kind, strand)[a]
        return keep

    return accept


def build_splice(kind: str) -> Callable:
    def builder(spec: DataSpec, params: dict, rng: np.random.Generator) -> Candidates:
        species, window = spec.species, tuple(params["window"])
        positives = []
        for chrom in genome.chromosomes(species):
            sites = genome.splice_sites(species, chrom, kind)
            positives.append(anchored_windows(chrom, sites["anchor"], sites["strand"], window))
        accept = _decoy_acceptor(species, kind)
        word = {"donor": "GT", "acceptor": "AG"}[kind]
        positives = Coords.concat(positives)
        return Candidates(
            positives=positives.take(np.flatnonzero(inside_chromosomes(species, positives))),
            negatives=lambda split, count, r: sample_windows(species, split, count, window, r, accept, params["test_fraction"]),
            notes=[f"{kind}: first base of the intron's {word} at index {window[0]}, mRNA direction (canonical sites only)",
                   f"decoy: {word} inside a protein-coding gene on the same strand, not an annotated {kind}"],
        )

    return builder


def build_coding(spec: DataSpec, params: dict, rng: np.random.Generator) -> Candidates:
    species, window = spec.species, tuple(params["window"])

    def in_cds(chrom: str, anchors: np.ndarray, strands: np.ndarray) -> np.ndarray:
        phase = genome.feature_tracks(species, chrom).phase
        return np.where(strands == "+", phase["+"][anchors], phase["-"][anchors]) >= 0

    def intergenic(chrom: str, anchors: np.ndarray, strands: np.ndarray) -> np.ndarray:
        gene = genome.feature_tracks(species, chrom).flag("gene", "+")
        starts = anchored_windows(chrom, anchors, strands, window).start
        return ~gene[starts[:, None] + np.arange(sum(window) + 1)].any(axis=1)

    positive_pool = {split: sample_windows(species, split, params["n"], window, rng, in_cds, params["test_fraction"])
                     for split in SPLITS}
    return Candidates(
        positives=Coords.concat([positive_pool[s] for s in SPLITS]),
        negatives=lambda split, count, r: sample_windows(species, split, count, window, r, intergenic, params["test_fraction"]),
        notes=[f"coding: a CDS base of a protein-coding mRNA at index {window[0]}, read on the CDS's strand",
               "intergenic: no annotated gene or pseudogene on either strand of the window, random strand"],
    )


def gene_coords(proteome: proteins.Proteome) -> Coords:
    return Coords(proteome.chrom, proteome.start, proteome.end, proteome.strand)


def protein_split(proteome: proteins.Proteome, test_fraction: float) -> np.ndarray:
    """Each protein's split by its gene's interval, as windows are split (`assign_split`). `(n,)` str."""
    return assign_split(gene_coords(proteome), _boundaries(proteome.species, {"test_fraction": test_fraction}))


def build_proteins(spec: DataSpec, params: dict, rng: np.random.Generator) -> Dataset:
    """Balanced membrane-like (label 1) and other proteins (label 0) per split, the first residues of each."""
    species = spec.species
    proteome = proteins.proteome(species)
    keep = params["window"][1] + 1
    coords = gene_coords(proteome)
    split_of = protein_split(proteome, params["test_fraction"])
    tracks = [proteins.residue_tracks(s, j) for s, j in zip(proteome.sequences, proteome.junctions)]
    label_of = np.array([t["hydrophobic_stretch"][:keep].any() for t in tracks], dtype=np.int64)
    targets = _split_targets(params["n"], params["test_fraction"])
    chosen, shortfalls = [], []
    for split in SPLITS:
        for label in (1, 0):
            eligible = np.flatnonzero((split_of == split) & (label_of == label))
            if len(eligible) < targets[split]:
                shortfalls.append(f"{split}, label {label}: {len(eligible)} of {targets[split]} requested")
            chosen.append(np.sort(rng.permutation(eligible)[: targets[split]]))
    rows = np.concatenate(chosen)
    dataset = Dataset(
        name=dataset_name(spec), sequences=[proteome.sequences[i][:keep] for i in rows], labels=label_of[rows],
        split=split_of[rows], coords=coords.take(rows),
        tracks={name: [tracks[i][name][:keep] for i in rows] for name in proteins.TRACKS},
        card={"species": species, "assembly": genome.species_files(species).assembly,
              "genes": proteome.gene[rows].tolist(), "proteome_size": len(proteome),
              "label": "1: a hydrophobic_stretch among the kept residues (membrane-like), 0: none",
              "shortfalls": shortfalls, "dropped_straddling_genes": int((split_of == "").sum())},
        alphabet="protein",
    )
    return dataset


def genome_motif_hits(species: str, chrom: str, motif, threshold: float, chunk: int = 1 << 22) -> dict[str, np.ndarray]:
    """Every motif window on `chrom` scoring >= threshold: {"start", "score", "strand"} `(n_hits,)`.

    strand '+' when the forward score is the larger, '-' when the reverse-complement matrix wins.
    """
    upper = genome.upper_array(species, chrom)
    starts, scores, strands = [], [], []
    n_windows = len(upper) - motif.length + 1
    for lo in range(0, n_windows, chunk):
        hi = min(lo + chunk, n_windows)
        forward, reverse = motifs.scan_strands(np.asarray(upper[lo: hi + motif.length - 1]), motif)
        best = np.fmax(forward, reverse)
        hit = np.flatnonzero(best >= threshold)
        starts.append(hit + lo)
        scores.append(best[hit])
        strands.append(np.where(forward[hit] >= reverse[hit], "+", "-"))
    return {"start": np.concatenate(starts), "score": np.concatenate(scores), "strand": np.concatenate(strands)}


def build_motif_sites(spec: DataSpec, params: dict, rng: np.random.Generator) -> Candidates:
    species, window = spec.species, tuple(params["window"])
    motif = motifs.load_motif(params["matrix"], release=spec.release)
    threshold = motifs.score_threshold(motif, fraction=params["threshold_fraction"])
    length = motif.length
    positives, priority, hit_starts = [], [], {}
    for chrom in genome.chromosomes(species):
        hits = genome_motif_hits(species, chrom, motif, threshold)
        hit_starts[chrom] = np.sort(hits["start"])
        # the motif occupies indices [up - L//2, up - L//2 + L) of the oriented window
        anchor = np.where(hits["strand"] == "+", hits["start"] + length // 2, hits["start"] + length - 1 - length // 2)
        windows = anchored_windows(chrom, anchor, hits["strand"], window)
        inside = np.flatnonzero(inside_chromosomes(species, windows))
        # best score first (ties at random); a window sharing a base with one already taken is dropped
        order = inside[np.lexsort((rng.random(len(inside)), -hits["score"][inside]))]
        kept = np.sort(order[motifs.non_overlapping(windows.start[order], sum(window) + 1)])
        positives.append(windows.take(kept))
        priority.append(hits["score"][kept])

    def centre_not_a_hit(chrom: str, anchors: np.ndarray, strands: np.ndarray) -> np.ndarray:
        start = np.where(strands == "+", anchors - length // 2, anchors - (length - 1 - length // 2))
        return ~genome.sorted_contains(hit_starts[chrom], start)

    return Candidates(
        positives=Coords.concat(positives),
        priority=np.concatenate(priority),
        negatives=lambda split, count, r: sample_windows(species, split, count, window, r, centre_not_a_hit, params["test_fraction"]),
        notes=[f"motif site: best hits of {motif.matrix_id} ({motif.name}, {length} bp, {spec.release}), taken "
               f"best first so that no two windows share a base, oriented so the motif reads forward at indices "
               f"{window[0] - length // 2}..{window[0] - length // 2 + length - 1}",
               f"background: random windows whose centred motif window scores < {threshold:.2f} bits "
               f"(fraction {params['threshold_fraction']}) on both strands"],
    )


BUILDERS: dict[str, Callable[[DataSpec, dict, np.random.Generator], Candidates]] = {
    "promoters": build_promoters,
    "tata": build_tata,
    "splice_donors": build_splice("donor"),
    "splice_acceptors": build_splice("acceptor"),
    "coding": build_coding,
    "motif_sites": build_motif_sites,
}


# ---------------------------------------------------------------------------------------
# Hygiene shared by every dataset: motif tracks, length policy, card, hash
# ---------------------------------------------------------------------------------------


def add_motif_tracks(dataset: Dataset, matrix: str, release: str, threshold_fraction: float) -> None:
    """motif_score (best score, either strand, over motif windows covering each base; NaN where
    every covering window touches a non-ACGT base) and motif_support (score >= threshold)."""
    motif = motifs.load_motif(matrix, release=release)
    threshold = motifs.score_threshold(motif, fraction=threshold_fraction)
    codes = [np.frombuffer(s.encode("ascii"), np.uint8) for s in dataset.sequences]
    flat, offsets = _joined(codes)
    scores = motifs.scan(flat, motif)
    bases = np.concatenate([o + np.arange(len(c)) for o, c in zip(offsets, codes)]) if codes else np.zeros(0, np.int64)
    per_base = motifs.token_motif_scores(scores, np.stack([bases, bases + 1], axis=1), motif.length)
    bounds = np.cumsum([0] + [len(c) for c in codes])
    dataset.tracks["motif_score"] = [per_base[a:b].astype(np.float32) for a, b in zip(bounds[:-1], bounds[1:])]
    dataset.tracks["motif_support"] = [np.nan_to_num(t, nan=-np.inf) >= threshold for t in dataset.tracks["motif_score"]]
    dataset.card["motif"] = {"matrix": motif.matrix_id, "name": motif.name, "length": motif.length, "release": release,
                             "threshold_fraction": threshold_fraction, "threshold_bits": round(float(threshold), 4)}


def apply_length_policy(dataset: Dataset, max_length: int | None, windowing: bool) -> Dataset:
    """Raise on sequences longer than `max_length`, or cut them into consecutive windows."""
    if max_length is None:
        return dataset
    lengths = np.array([len(s) for s in dataset.sequences])
    too_long = np.flatnonzero(lengths > max_length)
    if not len(too_long):
        return dataset
    if not windowing:
        i = int(too_long[0])
        raise InputError(
            f"dataset {dataset.name}: sequence {i} is {lengths[i]} nt, longer than max_length {max_length}; "
            "set `windowing: true` to cut long sequences into windows, or raise max_length")
    pieces = [(i, lo) for i, n in enumerate(lengths) for lo in range(0, n, max_length)]
    rows = np.array([i for i, _ in pieces], dtype=np.int64)
    coords = None
    if dataset.coords is not None:
        c = dataset.coords.take(rows)
        offset = np.array([lo for _, lo in pieces], dtype=np.int64)
        size = np.minimum(lengths[rows] - offset, max_length)
        minus = c.strand == "-"
        start = np.where(minus, c.end - offset - size, c.start + offset)
        coords = Coords(c.chrom, start, start + size, c.strand)
    return Dataset(
        name=dataset.name,
        sequences=[dataset.sequences[i][lo: lo + max_length] for i, lo in pieces],
        labels=dataset.labels[rows], split=dataset.split[rows], coords=coords,
        tracks={k: [v[i][lo: lo + max_length] for i, lo in pieces] for k, v in dataset.tracks.items()},
        card=dict(dataset.card, windowing={"max_length": max_length, "sequences_cut": int(len(too_long)), "pieces": len(pieces)}),
        source=rows,
    )


def class_counts(dataset: Dataset) -> dict[str, dict[str, int]]:
    """Items per split and class: `{split: {str(label): count}}` over the dataset's classes."""
    return {split: {str(label): int(((dataset.split == split) & (dataset.labels == label)).sum())
                    for label in np.unique(dataset.labels)} for split in SPLITS}


def require_every_class_in_every_split(dataset: Dataset, params: dict) -> None:
    """InputError naming n and test_fraction unless each class has an item in each split."""
    counts = class_counts(dataset)
    empty = [(split, label) for split in SPLITS for label, count in counts[split].items() if count == 0]
    if len(dataset) and not empty:
        return
    n = params.get("n") or f"all {len(dataset)} usable rows"
    where = f"class {empty[0][1]} has no {empty[0][0]} item" if empty else "no item is left"
    fix = "raise n, change test_fraction" + (" or the file's split column" if params["dataset"] == "user" else "")
    raise InputError(f"dataset {dataset.name}: {where} with n = {n} and test_fraction {params['test_fraction']}; {fix}")


def _finish_card(dataset: Dataset, params: dict) -> None:
    lengths = np.array([len(s) for s in dataset.sequences]) if len(dataset) else np.zeros(1)
    counts = class_counts(dataset)
    dataset.card.update({
        "name": dataset.name,
        "dataset": params["dataset"],
        "parameters": params,
        "n_requested": params.get("n"),
        "n": len(dataset),
        "counts": counts,
        "length": {"min": int(lengths.min()), "max": int(lengths.max()), "mean": round(float(lengths.mean()), 2)},
        "test_fraction": params["test_fraction"],
        "ambiguous_policy": params["ambiguous"],
    })


def dataset_name(spec: DataSpec) -> str:
    if spec.dataset == "user":
        return f"user:{Path(spec.path).name}"
    return f"{spec.dataset}:{spec.species}"


def build_embedded(spec: DataSpec, params: dict, rng: np.random.Generator) -> Dataset:
    """An embedded dataset (genome windows or proteins) before the hygiene every dataset gets (`finish`)."""
    genome.species_files(spec.species)
    _split_targets(params["n"], params["test_fraction"])  # fails before the (slow) candidate search
    if RECIPES[spec.dataset].needs_annotation:
        _require_annotation(spec.species, spec.dataset)
    if spec.dataset == "proteins":
        return build_proteins(spec, params, rng)
    candidates = BUILDERS[spec.dataset](spec, params, rng)
    return assemble(spec.species, dataset_name(spec), candidates, params, rng)


def finish(dataset: Dataset, spec: DataSpec, params: dict) -> Dataset:
    """What every dataset gets, embedded or the user's: split check, motif tracks, length policy, card, hash."""
    require_every_class_in_every_split(dataset, params)
    if params.get("matrix"):
        add_motif_tracks(dataset, params["matrix"], spec.release, params["threshold_fraction"])
    dataset = apply_length_policy(dataset, spec.max_length, spec.windowing)
    if dataset.source is None:
        dataset.source = np.arange(len(dataset))
    _finish_card(dataset, params)
    dataset.content_hash = content_hash(dataset.sequences, dataset.labels, dataset.split, params)
    return dataset
