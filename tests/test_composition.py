"""Composition controls: the engine (windows, partial correlation, shuffles, composition detector) and the
adversarial case they exist for, a head that reads only the GC of the bases around its keys.

The planted model's composition head and neuron are tested as claims (claims/planted/*composition*) and
in test_planted.py; scripts/calibrate_composition.py runs the full calibration over random composition
heads.
"""

from __future__ import annotations

import importlib
import warnings
import zlib
from dataclasses import replace
from types import SimpleNamespace

import claim_files  # noqa: F401  (loads the check families as seqclaims_checks.*)
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seqclaims.errors import InputError
from seqclaims.inputs.datasets import build
from seqclaims.inputs.motifs import load_motif, token_motif_scores
from seqclaims.methods import attention as att
from seqclaims.methods import composition as comp
from seqclaims.methods.stats import mc_standard_error, resample_counts

QK = importlib.import_module("seqclaims_checks.qk_motif")
ENRICHMENT = importlib.import_module("seqclaims_checks.attention_enrichment")


# ---------------------------------------------------------------------------------------------
# Windows and composition


@settings(max_examples=40, deadline=None)
@given(st.text(alphabet="ACGT", min_size=20, max_size=80), st.integers(2, 9),
       st.sampled_from(["anchored", "centred", "overlap_max"]), st.integers(1, 4))
def test_window_composition_is_the_composition_of_the_window_the_motif_track_credits(sequence, width, window, k):
    offsets = att.surrogate_offsets([sequence], "kmer_nonoverlapping", k=k)
    spans = comp.window_spans(offsets, [len(sequence)], width, window)
    features = comp.composition_features([sequence], spans, "dinucleotides")
    gc = comp.composition_features([sequence], spans, "gc")[0, 0]
    # a window exists where the motif track of the same alignment is defined (overlap_max: always)
    scores = np.zeros(len(sequence) - width + 1)
    track = token_motif_scores(scores, offsets[0], width, window)
    assert np.array_equal(np.isfinite(track), spans[0, :, 0] >= 0)
    for t, (lo, hi) in enumerate(spans[0]):
        if lo < 0:
            assert np.isnan(features[:, 0, t]).all()
            continue
        text = sequence[lo:hi]
        assert features[:3, 0, t] == pytest.approx([text.count(b) / len(text) for b in "ACG"])
        assert gc[t] == pytest.approx((text.count("G") + text.count("C")) / len(text))
        pairs = [text[i:i + 2] for i in range(len(text) - 1)]
        expected = [pairs.count(a + b) / max(len(pairs), 1) for a in "ACGT" for b in "ACGT"]
        assert features[3:, 0, t] == pytest.approx(expected)


def test_composition_of_residue_classes_single_bases_and_sequences_without_windows():
    """Proteins: the hydrophobic (AILMFVWC) and charged (DEKR) shares of a window; DNA: a window of one base;
    a sequence with no window at all leaves the next ones alone."""
    spans = np.array([[[0, 6], [2, 3]], [[-1, -1], [-1, -1]], [[0, 1], [1, 4]]])
    residues = comp.composition_features(["AKLDGS"], spans[:1], "residue_classes")[:, 0]
    np.testing.assert_allclose(residues, [[2 / 6, 1.0], [2 / 6, 0.0]])  # A, L; K, D
    assert comp.covariate_names("residue_classes") == ["hydrophobic", "charged"]
    assert comp.covariate_names("gc") == ["GC"] and comp.covariate_names("bases") == ["A", "C", "G"]
    spans[0, 0] = [0, 4]
    gc = comp.composition_features(["ACGT", "AAAA", "GATT"], spans, "gc")[0]
    assert np.isnan(gc[1]).all() and gc[2].tolist() == [1.0, 0.0] and gc[0].tolist() == [0.5, 1.0]


def test_an_ambiguous_base_is_left_out_of_its_windows_composition():
    spans = comp.window_spans(att.surrogate_offsets(["ACGTNACGTA", "ANNNA"], "single"), [10, 5], 3, "anchored")
    gc = comp.composition_features(["ACGTNACGTA", "ANNNA"], spans, "gc")[0]
    assert gc[0, 2] == pytest.approx(0.5)  # GTN: G and T
    assert gc[0, 3] == pytest.approx(0.0)  # TNA: T and A
    assert np.isnan(gc[1, 1])  # NNN: no base to count


def test_window_spans_of_each_placement_and_none_for_special_tokens():
    """Tokens [0, 0) (special), [2, 5), [5, 6), [8, 10) of a 10-nt sequence, windows of 4 nt."""
    offsets = np.array([[[0, 0], [2, 5], [5, 6], [8, 10]]])
    expected = {"anchored": [[-1, -1], [2, 6], [5, 9], [-1, -1]],
                "centred": [[-1, -1], [1, 5], [3, 7], [-1, -1]],  # the last one would end past the sequence
                "overlap_max": [[-1, -1], [0, 8], [2, 9], [5, 10]],
                "token": [[-1, -1], [2, 5], [5, 6], [8, 10]]}
    for window, spans in expected.items():
        assert comp.window_spans(offsets, [10], 4, window).tolist() == [spans], window
    with pytest.raises(InputError, match="^unknown composition window 'middle'; use one of anchored, centred, "
                                         "overlap_max, token$"):
        comp.window_spans(offsets, [10], 4, "middle")


# ---------------------------------------------------------------------------------------------
# Partial correlation from per-sequence sums


def residual_correlation(x, y, z, weights=None) -> float:
    """Pearson r of the residuals of x and y after weighted least squares on (1, z)."""
    w = np.ones_like(x) if weights is None else weights
    design = np.column_stack([np.ones_like(x), *z])
    root = np.sqrt(w)
    beta_x = np.linalg.lstsq(design * root[:, None], x * root, rcond=None)[0]
    beta_y = np.linalg.lstsq(design * root[:, None], y * root, rcond=None)[0]
    rx, ry = x - design @ beta_x, y - design @ beta_y
    return float(np.sum(w * rx * ry) / np.sqrt(np.sum(w * rx * rx) * np.sum(w * ry * ry)))


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10**6), st.integers(1, 4))
def test_partial_r_from_sums_is_the_correlation_of_regression_residuals(seed, q):
    rng = np.random.default_rng(seed)
    n_seq, n_tok, k = 12, 30, 2
    z = rng.normal(size=(q, n_seq, n_tok))
    y = z.sum(axis=0) + rng.normal(size=(n_seq, n_tok))
    x = np.stack([0.5 * y + z[0] + rng.normal(size=(n_seq, n_tok)) for _ in range(k)])
    mask = rng.random((n_seq, n_tok)) > 0.2
    x, y, z = np.where(mask, x, 0.0), np.where(mask, y, 0.0), np.where(mask, z, 0.0)
    moments = comp.partial_moments(x, y, z, mask)
    got = comp.partial_from_sums(att.weighted_sums(moments, None))[0]
    for head in range(k):
        assert got[head] == pytest.approx(residual_correlation(x[head][mask], y[mask], [c[mask] for c in z]), abs=1e-9)
    counts = resample_counts(n_seq, 3, seed)  # a bootstrap resample weighs each sequence's tokens by its count
    resampled = comp.partial_from_sums(att.weighted_sums(moments, counts))
    weights = np.repeat(counts[:, :, None], n_tok, axis=2)
    for b in range(3):
        keep = mask & (weights[b] > 0)
        expected = residual_correlation(x[0][keep], y[keep], [c[keep] for c in z], weights[b][keep].astype(float))
        assert resampled[b, 0] == pytest.approx(expected, abs=1e-9)


def test_a_key_score_that_composition_explains_has_partial_r_zero_and_a_fixed_motif_none():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(2, 10, 40))
    y = z[0] + rng.normal(size=(10, 40))
    mask = np.ones((10, 40), bool)
    explained = (2 * z[0] - z[1]).astype(np.float32).astype(np.float64)[None]  # float32 rounding only
    assert comp.partial_from_sums(comp.partial_moments(explained, y, z, mask).sum(axis=0)) == pytest.approx(0.0)
    fixed = comp.partial_from_sums(comp.partial_moments(y[None], z[1] * 3.0, z, mask).sum(axis=0))
    assert np.isnan(fixed).all()


@pytest.mark.parametrize(("x_scale", "y_scale"), [(1e3, 1e-3), (1e-3, 1e3), (1e-3, 1e-3), (1.0, 1.0)])
def test_partial_r_thresholds_are_relative_to_each_tracks_own_variance(x_scale, y_scale):
    """Whatever the scales of the key and motif scores: a key score composition explains up to float32
    rounding has partial r 0; one with a small part of its own (a thousandth) keeps its partial r, positive
    or negative; a motif score that composition fixes leaves it undefined, one with a small part of its own
    does not. None of it warns."""
    rng = np.random.default_rng(1)
    z = rng.normal(size=(2, 10, 40))
    own = rng.normal(size=(10, 40))
    y = y_scale * (z[0] + own + 0.1 * rng.normal(size=(10, 40)))
    mask = np.ones((10, 40), bool)
    explained = x_scale * (2 * z[0] - z[1]).astype(np.float32).astype(np.float64)
    small_part = np.stack([sign * x_scale * (2 * z[0] - z[1] + 1e-3 * own) for sign in (1, -1)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert comp.partial_from_sums(comp.partial_moments(explained[None], y, z, mask).sum(axis=0)) == 0.0
        kept = comp.partial_from_sums(comp.partial_moments(small_part, y, z, mask).sum(axis=0))
        fixed = comp.partial_from_sums(comp.partial_moments(small_part, y_scale * 3 * z[1], z, mask).sum(axis=0))
        nearly_fixed = comp.partial_from_sums(
            comp.partial_moments(small_part, y_scale * (3 * z[1] + 1e-3 * own), z, mask).sum(axis=0))
    expected = [residual_correlation(x.ravel(), y.ravel(), [c.ravel() for c in z]) for x in small_part]
    assert kept == pytest.approx(expected, abs=1e-6) and expected[0] > 0.9 and expected[1] < -0.9
    assert np.isnan(fixed).all()
    assert nearly_fixed == pytest.approx([1.0, -1.0], abs=1e-6)  # the two small parts are the same


def test_partial_r_needs_two_tokens_more_than_its_variables_and_a_varying_key_score():
    """p = 2 + q variables; q = 19 (the dinucleotide covariates) needs 23 tokens."""
    rng = np.random.default_rng(2)
    for q in (1, 19):
        tokens = q + 4  # p + 2
        z, y, x = rng.normal(size=(q, 1, tokens)), rng.normal(size=(1, tokens)), rng.normal(size=(2, 1, tokens))
        x[1] = 2.0  # constant: no variance to correlate
        for n, defined in ((tokens, True), (tokens - 1, False)):
            mask = np.arange(tokens)[None] < n
            cut = [np.where(mask, v, 0.0) for v in (x, y, z)]
            r = comp.partial_from_sums(comp.partial_moments(*cut, mask).sum(axis=0))
            assert np.isfinite(r[0]) == defined and np.isnan(r[1]), (q, n)


# ---------------------------------------------------------------------------------------------
# Shuffled motifs


def test_shuffled_motifs_are_distinct_column_permutations_with_the_same_score_distribution():
    motif = load_motif("MA0108.3")
    shuffled = comp.shuffled_motifs(motif, 20, seed=1)
    assert len({m.pssm.tobytes() for m in shuffled} | {motif.pssm.tobytes()}) == 21
    for m in shuffled:
        assert sorted(map(tuple, m.pssm.T.round(9))) == sorted(map(tuple, motif.pssm.T.round(9)))
        assert m.pssm.max(axis=0).sum() == pytest.approx(motif.pssm.max(axis=0).sum())
    assert [m.pssm.tobytes() for m in comp.shuffled_motifs(motif, 20, seed=1)] == [m.pssm.tobytes() for m in shuffled]
    with pytest.raises(Exception, match="distinct column arrangements"):
        comp.shuffled_motifs(load_motif("MA0108.3"), 6000, seed=0)


def test_every_distinct_arrangement_of_a_short_matrix_can_be_drawn_and_no_more():
    """Four columns, two of them identical: 4! / 2! - 1 = 11 arrangements other than the matrix itself."""
    motif = load_motif("MA0108.3")
    columns = [0, 1, 2, 2]
    short = replace(motif, counts=motif.counts[:, columns], pssm=motif.pssm[:, columns])
    shuffled = comp.shuffled_motifs(short, 11, seed=0)
    assert len({m.pssm.tobytes() for m in shuffled} | {short.pssm.tobytes()}) == 12
    assert [m.name for m in shuffled] == [f"{motif.name} (columns shuffled {i})" for i in range(1, 12)]
    for m in shuffled:  # counts move with their columns
        order = [next(j for j in range(4) if np.array_equal(m.pssm[:, i], short.pssm[:, j])) for i in range(4)]
        np.testing.assert_array_equal(m.counts, short.counts[:, order])
    with pytest.raises(InputError, match="only 11 distinct column arrangements other than the motif exist; set "
                                         "`shuffles` to at most 11$"):
        comp.shuffled_motifs(short, 12, seed=0)


def test_a_matrix_with_identical_columns_never_shuffles_into_itself():
    pif4 = load_motif("MA0561.1")  # two of its eight columns are identical
    assert len({tuple(column) for column in pif4.pssm.T.round(12)}) < pif4.length
    shuffled = comp.shuffled_motifs(pif4, 200, seed=0)
    assert pif4.pssm.tobytes() not in {m.pssm.tobytes() for m in shuffled}
    assert len({m.pssm.tobytes() for m in shuffled}) == 200


# ---------------------------------------------------------------------------------------------
# The composition detector


def test_composition_detector_scores_each_class_by_its_train_share():
    fractions = np.array([[0.5, 0.0, 0.5]] * 4 + [[0.0, 0.5, 0.5]] * 4 + [[np.nan] * 3])
    labels = np.array([1, 1, 1, 0, 0, 0, 0, 1, 1], bool)
    train = np.array([1, 1, 1, 1, 1, 1, 1, 0, 0], bool)
    score = comp.composition_detector(fractions, labels, train, prior_weight=0.0)
    prevalence = labels[train].mean()
    assert score[:4] == pytest.approx(0.75) and score[4:8] == pytest.approx(0.0) and score[8] == prevalence


def test_composition_detector_shrinks_towards_the_train_prevalence_and_scores_unseen_classes_at_it():
    """Train: class X 2 of 3 annotated, class Y 0 of 1 (prevalence 0.5); class Z (sorted last) only on test;
    one token without a window. With the default prior of one token: X (2 + 0.5) / 4, Y 0.5 / 2, Z and the
    windowless token 0.5. Without a prior an unseen class has no share and falls back to the prevalence,
    silently."""
    fractions = np.array([[0.2, 0.3, 0.3]] * 3 + [[0.1, 0.4, 0.4]] + [[0.9, 0.0, 0.1], [np.nan] * 3])
    labels = np.array([1, 1, 0, 0, 1, 0], bool)
    train = np.array([1, 1, 1, 1, 0, 0], bool)
    np.testing.assert_allclose(comp.composition_detector(fractions, labels, train), [0.625] * 3 + [0.25, 0.5, 0.5])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_allclose(comp.composition_detector(fractions, labels, train, prior_weight=0.0),
                                   [2 / 3] * 3 + [0.0, 0.5, 0.5])
    np.testing.assert_allclose(comp.composition_detector(fractions, labels, np.zeros(6, bool)), 0.0)


def test_composition_classes_bin_the_gc_of_each_window():
    spans = np.array([[[0, 4], [4, 8], [2, 6], [3, 6], [-1, -1]]])
    classes = comp.composition_classes(["GCGCATAT"], spans, bins=4)  # GC 1, 0, 1/2, 1/3, no window
    assert classes.tolist() == [[3, 0, 2, 1, -1]]


def test_dinucleotides_count_only_pairs_of_two_bases():
    """NACNGTA, window [0, 7): of the pairs NA, AC, CN, NG, GT, TA only AC, GT and TA are two bases."""
    features = comp.composition_features(["NACNGTA"], np.array([[[0, 7]]]), "dinucleotides")[:, 0, 0]
    assert features[:3] == pytest.approx([0.4, 0.2, 0.2])  # A, C, G among the five bases
    pairs = dict(zip(comp.covariate_names("dinucleotides")[3:], features[3:]))
    assert pairs == pytest.approx({a + b: 1 / 3 if a + b in ("AC", "GT", "TA") else 0.0
                                   for a in "ACGT" for b in "ACGT"})


def test_prepared_covariates_are_zero_outside_the_mask_centred_within_sequences_and_of_unit_rms():
    rng = np.random.default_rng(0)
    z = 0.1 * rng.normal(size=(3, 4, 6))
    z[2] = 5.0  # constant: nothing left after centring, and kept at 0 rather than divided by 0
    mask = rng.random((4, 6)) < 0.7
    mask[0] = [True] + [False] * 5  # a sequence with a single pooled token
    z[0, 1, np.flatnonzero(mask[1])[0]] = np.nan  # no covariate value: taken as 0
    for centre in (False, True):
        out = comp.prepared_covariates(z, mask, centre=centre)
        assert (out[:, ~mask] == 0).all()
        filled = np.where(mask, np.nan_to_num(z), 0.0)
        if centre:
            filled = np.where(mask, filled - filled.sum(axis=2, keepdims=True) / mask.sum(axis=1)[:, None], 0.0)
            np.testing.assert_allclose(out.sum(axis=2), 0.0, atol=1e-12)
            assert (out[2] == 0).all()
        rms = np.sqrt((out**2).sum(axis=(1, 2)) / mask.sum())
        np.testing.assert_allclose(rms[:2], 1.0)
        np.testing.assert_allclose(out[:2], filled[:2] / np.sqrt((filled[:2] ** 2).sum(axis=(1, 2)) / mask.sum())
                                   [:, None, None], atol=1e-12)
    single = np.zeros((4, 6), bool)
    single[1, 2] = True
    np.testing.assert_allclose(np.abs(comp.prepared_covariates(z, single, centre=False)[:2, 1, 2]), 1.0)


def test_rho_over_shuffled_is_the_motifs_rho_over_a_quantile_of_the_shuffles():
    """Summed (attention to support, to matched background) for the motif and four shuffles; a shuffle
    without background has no rho and is left out of the quantile; the ratio is undefined without the motif's
    background or over shuffles at rho 0."""
    sums = np.array([[[6.0, 2.0, 1.0, 1.0, 4.0, 2.0, 5.0, 0.0, 2.0, 4.0],  # rho 3; 1, 2, none, 0.5
                      [6.0, 0.0, 1.0, 1.0, 4.0, 2.0, 5.0, 0.0, 2.0, 4.0],  # the motif without background
                      [6.0, 2.0, 0.0, 1.0, 0.0, 2.0, 5.0, 0.0, 0.0, 4.0],  # every defined shuffle at rho 0
                      [0.0, 2.0, 0.0, 1.0, 0.0, 2.0, 5.0, 0.0, 0.0, 4.0]]])  # and the motif too
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ratio = comp.over_shuffled_from_sums(sums, 0.75)  # (1 resample, 4 heads)
    assert ratio.shape == (1, 4) and ratio[0, 0] == pytest.approx(3.0 / np.quantile([1.0, 2.0, 0.5], 0.75))
    assert np.isnan(ratio[0, 1:]).all()


def test_r_minus_shuffled_is_the_motifs_r_minus_a_quantile_of_the_shuffles():
    """Two resamples of summed Pearson moments (n, sx, sy, sxx, syy, sxy) for the motif and three shuffles."""
    rng = np.random.default_rng(2)
    x = rng.normal(size=(2, 4, 50))
    y = x * np.array([0.9, 0.1, 0.4, -0.2])[:, None] + rng.normal(size=(2, 4, 50))
    moments = np.stack([np.full(x.shape[:2], 50.0), x.sum(-1), y.sum(-1), (x * x).sum(-1), (y * y).sum(-1),
                        (x * y).sum(-1)], axis=-1)
    r = np.array([[np.corrcoef(x[b, s], y[b, s])[0, 1] for s in range(4)] for b in range(2)])
    got = comp.minus_shuffled_from_sums(moments.reshape(2, 1, 24), 0.9)  # (resamples, heads, ...)
    np.testing.assert_allclose(got[:, 0], r[:, 0] - np.quantile(r[:, 1:], 0.9, axis=1), atol=1e-12)


# ---------------------------------------------------------------------------------------------
# The adversarial case: a head that reads the GC of the 8 nt around its key


@pytest.fixture(scope="module")
def gc_reading_head():
    """SP1 (MA0079.5, GC 0.91) sites and GC-matched background, single-nucleotide tokens, and a head whose
    attention logit is 8 x the GC fraction of the 8 nt around the key: it knows no motif."""
    dataset = build({"dataset": "motif_sites", "matrix": "MA0079.5", "n": 200}, seed=0)
    motif = load_motif("MA0079.5")
    offsets = att.surrogate_offsets(dataset.sequences, "single")
    lengths = [len(s) for s in dataset.sequences]
    spans = comp.window_spans(offsets, lengths, 8, "centred")
    logits = 8.0 * comp.composition_features(dataset.sequences, spans, "gc")[0]
    key = att.ideal_key_scores(logits, "log_probability", "attention_received")
    return dataset, motif, offsets, key


def stand_in(params, claim_seed: int = 0):
    claim = SimpleNamespace(params=params, resamples=300, ci_level=0.95, correction=None, criteria=[])
    context = SimpleNamespace(seed_for=lambda purpose: zlib.crc32(f"{claim_seed}:{purpose}".encode()))
    return claim, context


@pytest.mark.slow  # the planted model's key scores (~10 s); not run against every mutant
def test_a_gc_reading_head_passes_r_but_not_the_composition_controls(gc_reading_head):
    dataset, motif, offsets, key = gc_reading_head
    params = QK.QkMotifParams()
    scores = att.window_scores(dataset.sequences, motif)
    motif_score = att.motif_tracks(scores, offsets, motif.length, params.alignment)
    tracks = att.paired_tracks(key[None], motif_score, centre=True)
    ideal = QK.ideal_tracks(scores, offsets, motif, motif_score, params)
    claim, context = stand_in(params)
    controls = QK.composition_controls(dataset.sequences, offsets, motif, tracks, ideal, params,
                                       context.seed_for("shuffled-motifs"))
    stats = QK.Analysis(claim, context, tracks, ideal, np.array([len(s) for s in dataset.sequences]),
                        dataset.split, [(0, 0)], 0, controls).statistics()
    assert stats["r"].ci_low >= 0.3 and stats["r_p"].estimate < 0.05  # fooled: measured 0.41 [0.38, 0.44]
    assert stats["r_partial_composition"].ci_high < 0.15  # measured 0.09 [0.08, 0.10] (window half overlaps)
    assert stats["r_minus_shuffled"].ci_high < 0.05  # measured 0.001 [-0.005, 0.009]
    # an ideal SP1 detector: partial r 1.0, r_minus_shuffled 0.26
    assert stats["r_partial_composition"].ceiling.estimate > 0.9 and stats["r_minus_shuffled"].ceiling.estimate > 0.2


@pytest.mark.slow  # the planted model's key scores (~10 s); not run against every mutant
def test_a_gc_reading_head_looks_enriched_unless_sites_are_compared_with_shuffled_sites(gc_reading_head):
    dataset, motif, offsets, key = gc_reading_head
    base = ENRICHMENT.EnrichmentParams()
    attention = np.exp(key)[None]
    rho = {}
    for name, params in (("token", base.model_copy(update={"composition_window": "token", "composition_bins": 5})),
                         ("window", base)):
        classes = ENRICHMENT.composition_classes(dataset.sequences, offsets, motif.length, params)
        matched = ENRICHMENT.matched_sites(dataset.sequences, offsets, motif, classes, params)
        shuffled = [att.enrichment_sums(attention, ENRICHMENT.matched_sites(dataset.sequences, offsets, m, classes,
                                                                            params))
                    for m in comp.shuffled_motifs(motif, params.shuffles, seed=3)]
        claim, context = stand_in(params)
        enrichment = ENRICHMENT.Enrichment(claim, context, att.enrichment_sums(attention, matched), matched,
                                           dataset.split, [(0, 0)], 0, shuffled)
        rho[name] = enrichment.named_rho()
        over = enrichment.over_shuffled()["rho_over_shuffled"]
        assert over.ci_low < 1, (name, over)  # not fooled under either matching
    # fooled under both matchings (measured 7.1 [6.1, 8.4] and 6.4 [5.5, 7.6]): the head's window is not the
    # motif window that is matched, so only the comparison with shuffled sites catches it
    assert rho["token"].ci_low > 2 and rho["window"].ci_low > 2


# ---------------------------------------------------------------------------------------------
# Null data: composition controls of unrelated heads are supported no more often than alpha allows


@pytest.mark.slow  # the planted model's key scores (~10 s); not run against every mutant
def test_null_heads_are_called_motif_specific_no_more_often_than_alpha(gc_reading_head):
    """Random-feature heads (the planted model's filler heads have none of the motif) with the motif
    tracks permuted between sequences: lower bound above 0 for r_partial_composition and
    r_minus_shuffled in at most alpha + 2 MC SE of repetitions."""
    dataset, motif, offsets, _ = gc_reading_head
    params = QK.QkMotifParams(shuffles=10)
    scores = att.window_scores(dataset.sequences, motif)
    motif_score = att.motif_tracks(scores, offsets, motif.length, params.alignment)
    lengths = np.array([len(s) for s in dataset.sequences])
    rng = np.random.default_rng(5)
    repetitions, hits = 40, {"r_partial_composition": 0, "r_minus_shuffled": 0}
    for repetition in range(repetitions):
        # another sequence's motif track, circularly shifted: motif-like structure at the wrong places
        donor = motif_score[rng.permutation(len(lengths))]
        donor = np.stack([np.roll(row, int(shift)) for row, shift in zip(donor, rng.integers(0, donor.shape[1], len(donor)))])
        key = rng.normal(size=motif_score.shape) + 0.3 * np.nan_to_num(donor)
        tracks = att.paired_tracks(key[None], motif_score, centre=True)
        ideal = QK.ideal_tracks(scores, offsets, motif, motif_score, params)
        claim, context = stand_in(params, repetition)
        claim.resamples = 200
        controls = QK.composition_controls(dataset.sequences, offsets, motif, tracks, ideal, params,
                                           context.seed_for("shuffled-motifs"))
        analysis = QK.Analysis(claim, context, tracks, ideal, lengths, dataset.split, [(0, 0)], 0, controls)
        for name in hits:
            hits[name] += analysis.controlled_statistics(name, controls[name])[name].ci_low > 0
    bar = 0.05 + 2 * mc_standard_error(0.05, repetitions)
    assert all(count / repetitions <= bar for count in hits.values()), hits
