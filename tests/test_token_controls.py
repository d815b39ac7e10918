"""Token-identity controls and recovered-matrix similarity: the engines against direct computations, and the
known answers they exist for: a TBP detector against a head that reads only whether its key token is a T.

Synthetic heads on TBP (MA0108.3) sites with single-nucleotide tokens: the detector's attention logit is the
anchored PSSM score of the window at the key (the ideal detector), the T reader's is 3 x [key base == T].
TBP's matrix starts with a T, so the T reader correlates with the motif score (r about 0.2) without reading it.
"""

from __future__ import annotations

import importlib
import zlib
from types import SimpleNamespace

import claim_files  # noqa: F401  (loads the check families as seqclaims_checks.*)
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seqclaims.inputs.datasets import build
from seqclaims.inputs.motifs import load_motif, motif_from_counts
from seqclaims.methods import attention as att
from seqclaims.methods import composition as comp
from seqclaims.methods import recovered_matrix as rm
from seqclaims.methods import token_controls as tc
from seqclaims.methods.stats import mc_standard_error, percentile_interval

QK = importlib.import_module("seqclaims_checks.qk_motif")
DETECTOR, T_READER, UNRELATED = 0, 1, 2


# ---------------------------------------------------------------------------------------------
# Token identities


def test_identity_covariates_have_one_indicator_per_identity_but_the_most_frequent():
    sequences = ["TTTAC", "TTG"]
    offsets = att.surrogate_offsets(sequences, "single")
    codes, names = tc.identity_codes(sequences, offsets)
    assert names == ["T", "A", "C", "G"] and codes[1, 3:].tolist() == [-1, -1]
    z, labels = tc.identity_covariates(codes, names, [0], max_classes=8)
    assert labels == ["+0:A", "+0:C", "+0:G"]  # T (5 of 8 tokens) is the reference
    np.testing.assert_array_equal(z[0, 0], [0, 0, 0, 1, 0])
    assert np.isnan(z[:, 1, 3:]).all()


def test_neighbour_identities_include_none_at_the_edges_and_rare_identities_share_other():
    sequences = ["ACGTA"]
    codes, names = tc.identity_codes(sequences, att.surrogate_offsets(sequences, "single"))
    z, labels = tc.identity_covariates(codes, names, [-1], max_classes=2)
    # before each token: none, A, C, G, T (one each): none (the reference) and A are kept, the rest are other
    assert len(labels) == 2 and labels[-1] == "-1:other"
    row = {label: z[i, 0].tolist() for i, label in enumerate(labels)}
    assert row["-1:other"] == [0, 0, 1, 1, 1]  # C, G and T precede tokens 2-4
    assert sum(np.nansum(z[:, 0], axis=0) == 0) == 1  # exactly one token has the reference category


def test_codes_of_multi_base_tokens_are_their_upper_case_text():
    sequences = ["acgTAC"]
    offsets = att.surrogate_offsets(sequences, "kmer_nonoverlapping", k=3)
    codes, names = tc.identity_codes(sequences, offsets)
    assert [names[c] for c in codes[0]] == ["ACG", "TAC"]


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10**6), q=st.integers(1, 5))
def test_explained_share_from_sums_is_the_r_squared_of_the_regression(seed, q):
    rng = np.random.default_rng(seed)
    n_seq, n_tok = 6, 15
    z = rng.normal(size=(q, n_seq, n_tok))
    x = rng.normal(size=(2, n_seq, n_tok)) + np.einsum("q,qst->st", rng.normal(size=q), z)[None]
    y = rng.normal(size=(n_seq, n_tok))
    mask = np.ones((n_seq, n_tok), bool)
    share = comp.explained_share_from_sums(comp.partial_moments(x, y, z, mask).sum(axis=0))
    design = np.column_stack([np.ones(n_seq * n_tok), z.reshape(q, -1).T])
    for head in range(2):
        target = x[head].ravel()
        residual = target - design @ np.linalg.lstsq(design, target, rcond=None)[0]
        assert share[head] == pytest.approx(1 - residual.var() / target.var(), abs=1e-9)


def test_a_shared_covariate_block_is_inverted_once_and_gives_the_per_candidate_answer():
    rng = np.random.default_rng(1)
    z = rng.normal(size=(3, 5, 10))
    x, y = rng.normal(size=(4, 5, 10)), rng.normal(size=(5, 10))
    sums = comp.partial_moments(x, y, z, np.ones((5, 10), bool)).sum(axis=0)
    separately = np.array([comp.partial_from_sums(sums[k]) for k in range(4)])
    np.testing.assert_allclose(comp.partial_from_sums(sums), separately, atol=1e-12)


# ---------------------------------------------------------------------------------------------
# Recovered matrices


def additive_head(sequences, offsets, matrix: np.ndarray) -> np.ndarray:
    """(n_seq, n_tok) logit = sum over the anchored window of matrix[base, position]; NaN without a window."""
    width = matrix.shape[1]
    starts = rm.window_starts(offsets, [len(s) for s in sequences], width, "anchored")
    out = np.full(starts.shape, np.nan)
    for i, sequence in enumerate(sequences):
        for t, start in enumerate(starts[i]):
            if start >= 0:
                out[i, t] = sum(matrix["ACGT".index(b), l] for l, b in enumerate(sequence[start:start + width]))
    return out


@pytest.mark.parametrize("strand", ["forward", "reverse"])
def test_an_additive_head_recovers_its_matrix_on_either_strand(strand):
    rng = np.random.default_rng(4)
    motif = motif_from_counts(rng.integers(0, 30, size=(4, 6)))
    sequences = ["".join(rng.choice(list("ACGT"), 120)) for _ in range(30)]
    offsets = att.surrogate_offsets(sequences, "single")
    matrix = motif.pssm if strand == "forward" else motif.pssm[::-1, ::-1]
    tracks = att.paired_tracks(additive_head(sequences, offsets, matrix)[None], np.zeros(offsets.shape[:2]),
                               centre=True)
    starts = rm.window_starts(offsets, [len(s) for s in sequences], motif.length, "anchored")
    sums = rm.matrix_sums(sequences, starts, tracks.x, tracks.mask, motif.length, centre=True)
    recovered = rm.recovered_matrices(sums)[0, 0]
    similarity, reverse = rm.similarity(recovered, motif)
    assert similarity == pytest.approx(1.0, abs=1e-3) and bool(reverse) == (strand == "reverse")
    centred = matrix - matrix.mean(axis=0)
    np.testing.assert_allclose(recovered / recovered.std(), centred / centred.std(), atol=0.02)


def test_a_one_column_matrix_is_as_similar_as_its_column_allows():
    motif = load_motif("MA0108.3")
    pssm = motif.pssm - motif.pssm.mean(axis=0)
    weights = rm.information_content(motif)
    single = np.zeros_like(pssm)
    single[:, 0] = pssm[:, 0]
    expected = np.sqrt(weights[0] * (pssm[:, 0] ** 2).sum() / (weights * (pssm ** 2).sum(axis=0)).sum())
    assert rm.similarity(single, motif)[0] == pytest.approx(expected, abs=1e-9)


def test_information_content_is_the_relative_entropy_of_each_position():
    motif = load_motif("MA0108.3")
    probabilities = (motif.counts + 0.8 / 4) / (motif.counts.sum(axis=0) + 0.8)
    expected = (probabilities * np.log2(probabilities / 0.25)).sum(axis=0)
    np.testing.assert_allclose(rm.information_content(motif), expected, atol=1e-9)


# ---------------------------------------------------------------------------------------------
# Known answers: a TBP detector and a T-token reader


def stand_in(params, resamples: int = 300, claim_seed: int = 0):
    claim = SimpleNamespace(params=params, resamples=resamples, ci_level=0.95, correction=None, criteria=[])
    context = SimpleNamespace(seed_for=lambda purpose: zlib.crc32(f"{claim_seed}:{purpose}".encode()))
    return claim, context


@pytest.fixture(scope="module")
def tbp_heads():
    """TBP sites, single-nucleotide tokens, the motif track, and key scores (log mean attention received) of
    the TBP detector, the T reader and a head of random logits."""
    dataset = build({"dataset": "motif_sites", "matrix": "MA0108.3", "n": 200}, seed=0)
    motif = load_motif("MA0108.3")
    offsets = att.surrogate_offsets(dataset.sequences, "single")
    params = QK.QkMotifParams()
    scores = att.window_scores(dataset.sequences, motif)
    motif_score = att.motif_tracks(scores, offsets, motif.length, params.alignment)
    detector = att.ideal_logits(scores, offsets, motif.length, params.alignment)
    codes, names = tc.identity_codes(dataset.sequences, offsets)
    is_t = np.where(codes >= 0, (codes == names.index("T")).astype(float), np.nan)
    random_logits = np.random.default_rng(0).normal(size=detector.shape)
    key = np.stack([att.ideal_key_scores(logits, "log_probability", "attention_received")
                    for logits in (detector, 3.0 * is_t, random_logits)])
    return dataset, motif, offsets, scores, motif_score, key


def analysis_of(tbp_heads, key, motif_score, named: int, params=None, **stand_in_args):
    dataset, motif, offsets, scores, _, _ = tbp_heads
    params = params or QK.QkMotifParams()
    tracks = att.paired_tracks(key, motif_score, centre=params.centre)
    ideal = QK.ideal_tracks(scores, offsets, motif, motif_score, params)
    claim, context = stand_in(params, **stand_in_args)
    control, share = QK.token_identity_controls(dataset.sequences, offsets, tracks, ideal, params)
    matrix = QK.matrix_control(dataset.sequences, offsets, motif, tracks, ideal, params)
    heads = [(0, k) for k in range(key.shape[0])]
    return QK.Analysis(claim, context, tracks, ideal, np.array([len(s) for s in dataset.sequences]), dataset.split,
                       heads, named, {"r_token_controlled": control}, share=share, matrix=matrix)


@pytest.fixture(scope="module")
def known_answers(tbp_heads):
    key, motif_score = tbp_heads[-1], tbp_heads[-2]
    out = {}
    for named in (DETECTOR, T_READER):
        analysis = analysis_of(tbp_heads, key, motif_score, named)
        out[named] = (analysis, analysis.statistics())
    return out


def test_a_tbp_detector_keeps_its_r_under_the_token_control_and_recovers_the_matrix(known_answers):
    _, stats = known_answers[DETECTOR]
    controlled, similarity = stats["r_token_controlled"], stats["matrix_similarity"]
    assert controlled.ci_low > 0.99  # the detector is the ideal detector: measured 1.00
    assert stats["token_identity_share"].ci_high < 0.2  # measured 0.05
    assert similarity.ci_low > 0.7 and similarity.estimate == pytest.approx(similarity.ceiling.estimate, abs=1e-6)
    assert stats["max_matrix_similarity"].detail["head"] == DETECTOR  # measured 0.83 on the test split
    recovered = similarity.detail["recovered_matrix"]
    assert np.count_nonzero(np.abs(np.array(list(recovered.values()))).max(axis=0) > 0.1) == 7  # every column


def test_a_t_reader_is_flagged_has_no_token_controlled_r_and_recovers_one_column(known_answers):
    analysis, stats = known_answers[T_READER]
    assert stats["r"].ci_low > 0.1  # fooled: measured 0.19 [0.18, 0.20]
    assert stats["token_identity_share"].ci_low > 0.99 and stats["token_identity_share"].detail["token_identity_reader"]
    assert stats["r_token_controlled"].estimate == 0.0 and stats["r_token_controlled"].ceiling.estimate > 0.99
    similarity = stats["matrix_similarity"]
    assert similarity.ci_high < 0.3 < similarity.ceiling.ci_low  # measured 0.15; the ideal detector 0.83
    recovered = np.array(list(similarity.detail["recovered_matrix"].values()))
    assert np.abs(recovered[:, 1:]).max() < 0.01 < np.abs(recovered[:, 0]).max()  # one column
    notes = QK.token_identity_notes(analysis, stats)
    assert len(notes) == 1 and notes[0].startswith("L0H1 (named)") and "token-identity reader" in notes[0]


def test_key_statistics_carry_the_resamples_behind_their_intervals(known_answers):
    _, stats = known_answers[DETECTOR]
    for name in ("r", "max_r", "r_token_controlled", "max_r_token_controlled", "matrix_similarity",
                 "max_matrix_similarity", "token_identity_share"):
        estimate = stats[name]
        assert np.shape(estimate.samples) == (300,), name
        low, high = percentile_interval(estimate.samples, 0.95)
        assert (low, high) == pytest.approx((estimate.ci_low, estimate.ci_high)), name


def test_neighbour_identities_are_controlled_when_asked(tbp_heads):
    """A head reading the base after its key: the key token's identity explains none of it (share ~0), so the
    default control leaves its r; with offsets [0, 1] the control removes it."""
    dataset, motif, offsets, scores, motif_score, _ = tbp_heads
    codes, names = tc.identity_codes(dataset.sequences, offsets)
    next_t = tc.shifted_codes(codes, 1) == names.index("T")
    key = att.ideal_key_scores(np.where(codes >= 0, 3.0 * next_t, np.nan), "log_probability", "attention_received")
    results = {}
    for token_offsets in ([0], [0, 1]):
        params = QK.QkMotifParams(token_offsets=token_offsets)
        stats = analysis_of(tbp_heads, key[None], motif_score, 0, params, resamples=100).statistics()
        results[tuple(token_offsets)] = stats["r_token_controlled"].estimate
        assert stats["token_identity_share"].estimate < 0.05
    assert abs(results[(0,)]) > 0.05 and results[(0, 1)] == 0.0


def test_token_offsets_must_hold_the_key_token():
    for bad in ([1], [0, 0], [0, 40]):
        with pytest.raises(ValueError, match="include 0"):
            QK.QkMotifParams(token_offsets=bad)


# ---------------------------------------------------------------------------------------------
# Null: a key score independent of the motif


def test_token_controlled_r_of_heads_independent_of_the_motif_given_their_key_token_is_centred_at_zero(tbp_heads):
    """Heads reading their key token (a random preference per base) plus noise, against the sequences' own motif
    tracks: independent of the motif given the token, yet r's lower bound is above 0 in a third of them (the
    token correlates with the motif score). r_token_controlled's lower bound is above 0 in at most alpha + 2 MC
    SE of repetitions, and its estimates average to 0 within their Monte Carlo error."""
    dataset, motif, offsets, scores, motif_score, _ = tbp_heads
    codes, _ = tc.identity_codes(dataset.sequences, offsets)
    rng = np.random.default_rng(7)
    repetitions, estimates, hits, fooled = 30, [], 0, 0
    params = QK.QkMotifParams()
    for repetition in range(repetitions):
        preference = rng.normal(size=4)
        logits = np.where(codes >= 0, preference[np.maximum(codes, 0)] + rng.normal(size=codes.shape), np.nan)
        key = att.ideal_key_scores(logits, "log_probability", "attention_received")
        analysis = analysis_of(tbp_heads, key[None], motif_score, 0, params, resamples=200, claim_seed=repetition)
        estimate = analysis.controlled_statistics("r_token_controlled", analysis.controls["r_token_controlled"])
        estimates.append(estimate["r_token_controlled"].estimate)
        hits += estimate["r_token_controlled"].ci_low > 0
        fooled += analysis.low[0] > 0
    assert fooled / repetitions > 0.2, fooled  # measured 10 of 30
    assert hits / repetitions <= 0.05 + 2 * mc_standard_error(0.05, repetitions), hits  # measured 0
    assert abs(np.mean(estimates)) < 3 * np.std(estimates) / np.sqrt(repetitions) + 1e-3, np.mean(estimates)
