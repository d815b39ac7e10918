"""Per-site log enrichment and its composition control: known answers on detectors built by construction.

A head's attention is proportional to exp(beta x logit of the key), every query alike (`attention.ideal_key_scores`),
on 400 random sequences (GC 0.5, 300 nt, single-nucleotide tokens) each holding one site sampled from the matrix
and three composition-matched decoys (the site's bases in another order, scoring low):
- a detector of a GC-rich 8-mer: logit = the matrix's score of the 8-mer anchored at the key (bits);
- a GC reader: logit = GC count of that 8-mer;
- a sharp detector of an AT-rich motif (beta 3): the plain ratio of attentions explodes, the floored log does not.
"""

from __future__ import annotations

import importlib
import math
import zlib
from types import SimpleNamespace

import numpy as np
import pytest

from seqclaims.inputs.motifs import motif_from_counts
from seqclaims.methods import attention as att
from seqclaims.methods import composition as comp
from seqclaims.methods import enrichment as enr

ENRICHMENT = importlib.import_module("seqclaims_checks.attention_enrichment")
FOLD = math.log(1.5)
N_SEQUENCES, LENGTH, DECOYS = 400, 300, 3
BASES = "ACGT"


def sharp_matrix(consensus: str, name: str):
    counts = np.full((4, len(consensus)), 5.0)
    for j, base in enumerate(consensus):
        counts[BASES.index(base), j] = 85.0
    return motif_from_counts(counts, matrix_id=name, name=name)


GC_RICH = sharp_matrix("GGCGCCGC", "gc-rich")
AT_RICH = sharp_matrix("TATAAATA", "at-rich")


def planted_sequences(motif, seed: int) -> list[str]:
    """Random sequences, each with one site sampled from the matrix and DECOYS permutations of its bases that
    score at most half-way between the matrix's minimum and maximum, at non-overlapping places."""
    rng = np.random.default_rng(seed)
    probabilities = motif.counts / motif.counts.sum(axis=0)
    midpoint = (motif.min_score + motif.max_score) / 2
    width = motif.length
    out = []
    for _ in range(N_SEQUENCES):
        sequence = list(rng.choice(list(BASES), size=LENGTH))
        site = [BASES[rng.choice(4, p=probabilities[:, j])] for j in range(width)]
        pieces = [site] + [low_scoring_permutation(site, motif, midpoint, rng) for _ in range(DECOYS)]
        slots = rng.choice(LENGTH // (3 * width), size=len(pieces), replace=False) * 3 * width + width
        for piece, slot in zip(pieces, slots):
            sequence[slot: slot + width] = piece
        out.append("".join(sequence))
    return out


def low_scoring_permutation(site: list[str], motif, ceiling: float, rng) -> list[str]:
    for _ in range(200):
        candidate = list(rng.permutation(site))
        if both_strand_score(candidate, motif) <= ceiling:
            return candidate
    return list(rng.permutation(site))


def both_strand_score(piece: list[str], motif) -> float:
    """The matrix's score (bits) of a motif-length piece, the better strand."""
    codes = np.array([BASES.index(b) for b in piece])
    columns = np.arange(motif.length)
    return max(motif.pssm[codes, columns].sum(), motif.pssm[3 - codes[::-1], columns].sum())


def stand_in(**params):
    claim = SimpleNamespace(params=ENRICHMENT.EnrichmentParams(layer=0, head=0, **params), resamples=200,
                            ci_level=0.95, correction=None, criteria=[])
    context = SimpleNamespace(seed_for=lambda purpose: zlib.crc32(f"0:{purpose}".encode()))
    return claim, context


def attention_of(logits: np.ndarray, beta: float) -> np.ndarray:
    """(n_seq, n_tok) attention every key receives from a head whose logit at the key is beta x logits."""
    return att.ideal_key_scores(logits, "probability", "attention_received", beta)


def statistics(sequences, motif, heads: list[np.ndarray], **params) -> dict:
    """The family's statistics of the synthetic heads, the first one named."""
    offsets = att.surrogate_offsets(sequences, "single")
    claim, context = stand_in(**params)
    split = np.where(np.arange(len(sequences)) % 2 == 0, "train", "test")
    names = [(0, k) for k in range(len(heads))]
    analysis = ENRICHMENT.enrichment_analysis(claim, context, sequences, offsets, np.stack(heads), split, motif,
                                              names, 0)
    return analysis.statistics(), analysis.notes()


@pytest.fixture(scope="module")
def gc_rich():
    sequences = planted_sequences(GC_RICH, seed=1)
    offsets = att.surrogate_offsets(sequences, "single")
    score = att.motif_tracks(att.window_scores(sequences, GC_RICH), offsets, GC_RICH.length, "anchored")
    spans = comp.window_spans(offsets, [len(s) for s in sequences], GC_RICH.length, "anchored")
    gc_count = comp.composition_features(sequences, spans, "gc")[0] * GC_RICH.length
    return sequences, {"detector": attention_of(score, 1.0), "gc_reader": attention_of(gc_count, 1.0)}


def test_a_gc_rich_detector_is_supported_by_the_composition_control_and_a_gc_reader_is_refuted(gc_rich):
    sequences, heads = gc_rich
    detector, _ = statistics(sequences, GC_RICH, [heads["detector"], heads["gc_reader"]])
    reader, _ = statistics(sequences, GC_RICH, [heads["gc_reader"], heads["detector"]])
    control = detector["log_rho_over_composition"]
    assert control.ci_low >= FOLD, control  # measured 4.03 [3.87, 4.20]
    assert reader["log_rho_over_composition"].ci_high < FOLD, reader["log_rho_over_composition"]  # measured 0.000
    assert abs(reader["log_rho_over_composition"].estimate) < 0.1
    assert control.detail["matched_sites"] > 0.8 * N_SEQUENCES
    selected = detector["max_log_rho_over_composition"]
    assert selected.ci_low >= FOLD and (selected.detail["layer"], selected.detail["head"]) == (0, 0)
    for name in ("rho", "max_rho", "log_rho", "max_log_rho", "log_rho_over_composition",
                 "max_log_rho_over_composition"):
        samples = detector[name].samples
        assert samples is not None and samples.shape == (200,) and np.isfinite(samples).mean() > 0.99, name


def test_a_sharp_detector_has_a_finite_log_rho_where_the_plain_ratio_explodes():
    sequences = planted_sequences(AT_RICH, seed=2)
    offsets = att.surrogate_offsets(sequences, "single")
    score = att.motif_tracks(att.window_scores(sequences, AT_RICH), offsets, AT_RICH.length, "anchored")
    result, _ = statistics(sequences, AT_RICH, [attention_of(score, 3.0)])
    rho, log_rho = result["rho"], result["log_rho"]
    assert rho.estimate > 1e4  # the background gets next to nothing: measured 771,677
    # bounded by the floor: at most log(1 / floor) = log(content tokens / floor_fraction)
    assert 0 < log_rho.ci_low <= log_rho.ci_high < math.log(LENGTH / ENRICHMENT.DEFAULT_FLOOR_FRACTION)  # 2.98
    assert log_rho.ci_high - log_rho.ci_low < 1.0
    assert sum(log_rho.detail["sites_at_floor"].values()) > 0  # the floor is reported where it acts
    assert result["log_rho_over_composition"].ci_low >= FOLD


@pytest.mark.parametrize("consensus, similar", [("GGGGCGGG", True), ("GGCGCCGC", False)])
def test_similar_shuffled_matrices_are_reported_with_a_note(consensus, similar):
    motif = sharp_matrix(consensus, consensus)
    sequences = planted_sequences(motif, seed=3)[:60]
    offsets = att.surrogate_offsets(sequences, "single")
    uniform = np.where(offsets[..., 1] > offsets[..., 0], 1.0 / LENGTH, np.nan)
    result, notes = statistics(sequences, motif, [uniform], shuffles=7)
    similarity = result["shuffled_similarity"]
    expected = enr.matrix_similarity(motif, comp.shuffled_motifs(motif, 7, zlib.crc32(b"0:shuffled-motifs")))
    assert similarity.estimate == pytest.approx(expected.mean()) and similarity.n == 7
    assert result["rho_over_shuffled"].detail["shuffled_similarity"] == pytest.approx(expected.mean(), abs=1e-4)
    # one C among seven Gs: every permutation keeps 6 of 8 columns (measured 0.71); the other matrix 0.33
    assert (similarity.estimate > ENRICHMENT.SIMILAR_SHUFFLES) == similar == bool(notes)


# ---------------------------------------------------------------------------------------------
# The pieces


def test_site_runs_are_the_runs_of_support_tokens():
    support = np.array([[0, 1, 1, 0, 1], [1, 1, 1, 1, 1], [0, 0, 0, 0, 0]], bool)
    sites = enr.site_runs(support)
    assert list(zip(sites.sequence, sites.start, sites.length)) == [(0, 1, 2), (0, 4, 1), (1, 0, 5)]


def test_log_ratio_of_a_window_is_floored_and_the_floor_is_counted():
    attention = np.array([[[0.5, 0.0, 0.25, 0.25]]])  # (K=1, n_seq=1, n_tok=4)
    reference = np.full_like(attention, 0.25)
    totals = enr.WindowTotals(attention, reference, np.ones((1, 4), bool), floor_fraction=0.04)  # floor 0.01
    ratios = totals.log_ratios(np.array([0, 0, 0]), np.array([0, 1, 2]), np.array([1, 1, 2]))
    assert ratios.values[0] == pytest.approx([math.log(2), math.log(0.01 / 0.25), 0.0])
    assert ratios.floored[0].tolist() == [False, True, False]


def test_composition_distance_is_zero_for_a_rearrangement_that_keeps_the_dinucleotides():
    sequence = "ACGTTGCAACGT"
    spans = np.array([[0, 4], [8, 12], [4, 8]])
    vectors = enr.composition_vectors(sequence, spans)
    distance = enr.composition_distance(vectors[0], vectors)
    assert distance[0] == 0 and distance[1] == 0  # the same 4-mer
    assert distance[2] == pytest.approx(max(0.0, 0.5 * np.abs(vectors[2, 4:] - vectors[0, 4:]).sum()))
    assert np.allclose(vectors[:, :4].sum(axis=1), 1) and np.allclose(vectors[:, 4:].sum(axis=1), 1)


def test_non_sites_avoid_support_and_each_other_and_match_composition():
    sequences = planted_sequences(GC_RICH, seed=4)[:30]
    offsets = att.surrogate_offsets(sequences, "single")
    covered = att.support_bases(sequences, GC_RICH, pvalue=1e-3)
    support = att.token_support(covered, offsets)
    sites = enr.site_runs(support)
    starts = att.ideal_logits(att.window_scores(sequences, GC_RICH), offsets, GC_RICH.length, "overlap_max")
    matches = enr.composition_matches(sequences, offsets, sites, support, np.ones_like(support), starts,
                                      tolerance=0.3, quantile=0.5, neighbours=5)
    assert matches.site.size > len(sites)  # the decoys at least
    assert (matches.distance <= 0.3 + 1e-12).all()
    for i in np.unique(matches.site):
        s = sites.sequence[i]
        chosen = sorted(matches.start[matches.site == i])
        assert all(b - a >= sites.length[i] for a, b in zip(chosen, chosen[1:]))
        for t in chosen:
            assert not support[s, t: t + sites.length[i]].any()
