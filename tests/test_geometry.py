"""Representation geometry (gram, rc_consistency, cka) and attention_association: known answers, adversarial
representations that fool a naive statistic but not the controlled one, and calibration on null data
(a criterion "> 0" is supported no more often than alpha + 2 Monte-Carlo standard errors)."""

from __future__ import annotations

from types import SimpleNamespace

import claim_files
import numpy as np
import pytest

from seqclaims.judging.judge import EVALUATED
from seqclaims.inputs.architectures import CADUCEUS_MODULE_MAP, build_caduceus_like
from seqclaims.inputs.datasets import build
from seqclaims.methods import attention as att
from seqclaims.methods import geometry as geo
from seqclaims.methods.stats import mc_standard_error

ALPHA = 0.05
REPEATS = 40


def supported_rate_bound(rate: float) -> bool:
    return rate <= ALPHA + 2 * mc_standard_error(ALPHA, REPEATS)


# ---------------------------------------------------------------------------------------------
# Debiased linear CKA


def unbiased_hsic(k: np.ndarray, l: np.ndarray) -> float:
    n = len(k)
    k, l = k.copy(), l.copy()
    np.fill_diagonal(k, 0)
    np.fill_diagonal(l, 0)
    one = np.ones(n)
    return (np.trace(k @ l) + one @ k @ one * (one @ l @ one) / ((n - 1) * (n - 2))
            - 2 / (n - 2) * one @ k @ l @ one) / (n * (n - 3))


def test_cka_from_per_sequence_sums_equals_the_n_by_n_unbiased_estimator():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(50, 6))
    b = a @ rng.normal(size=(6, 4)) + rng.normal(size=(50, 4))
    k, l = a @ a.T, b @ b.T
    reference = unbiased_hsic(k, l) / np.sqrt(unbiased_hsic(k, k) * unbiased_hsic(l, l))
    parts = [geo.cka_sums(a[:20], b[:20]), geo.cka_sums(a[20:35], b[20:35]), geo.cka_sums(a[35:], b[35:])]
    summed = {key: np.stack([p[key] for p in parts]).sum(axis=0)[None] for key in parts[0]}
    assert geo.cka_from_sums(summed)[0] == pytest.approx(reference, rel=1e-10)


def test_cka_is_one_under_rotation_and_scaling_and_about_zero_for_independent_representations():
    rng = np.random.default_rng(1)
    a = [rng.normal(size=(30, 8)) for _ in range(25)]
    rotation = np.linalg.qr(rng.normal(size=(8, 8)))[0]
    same = geo.cka_interval([geo.cka_sums(x, 3.0 * x @ rotation) for x in a], level=0.95)
    assert same.estimate == pytest.approx(1.0, abs=1e-9)
    independent = geo.cka_interval([geo.cka_sums(x, rng.normal(size=(30, 12))) for x in a], level=0.95)
    assert abs(independent.estimate) < 0.05 and independent.low < independent.estimate < independent.high
    assert not independent.low > 0


def test_cka_of_independent_representations_is_supported_above_zero_within_alpha():
    rng = np.random.default_rng(2)
    supported = 0
    for repeat in range(REPEATS):
        pairs = [geo.cka_sums(rng.normal(size=(20, 6)), rng.normal(size=(20, 10))) for _ in range(30)]
        supported += geo.cka_interval(pairs, level=0.95).low > 0
    assert supported_rate_bound(supported / REPEATS), supported


# ---------------------------------------------------------------------------------------------
# Similarity by offset and codon periodicity


def test_period_share_of_known_profiles():
    offsets = np.arange(1, 31)
    assert geo.period_share(np.where(offsets % 3 == 0, 0.5, 0.1)) > 0.95
    assert geo.period_share(0.5 - 0.01 * offsets + np.where(offsets % 3 == 0, 0.05, 0.0)) > 0.95  # trend removed
    noise = [geo.period_share(np.random.default_rng(s).normal(size=30)) for s in range(400)]
    assert np.mean(noise) == pytest.approx(2 / 30, abs=0.02)
    assert np.isnan(geo.period_share(np.full(30, 0.2))) and np.isnan(geo.period_share(np.ones(31)))


def test_similarity_by_offset_of_a_representation_that_repeats_every_three_bases():
    rows = np.tile(np.eye(3), (20, 1))  # base i -> e_(i mod 3)
    sums, counts = geo.similarity_by_offset(geo.unit_rows(rows, np.ones(60, bool)), 9)
    profile = sums / counts
    assert profile[[2, 5, 8]] == pytest.approx(1.0) and profile[[0, 1, 3]] == pytest.approx(-0.5)
    assert geo.offset_decay(profile) < 0.0


def test_coding_run_and_codon_shuffle_keep_the_frame_and_each_codons_bases():
    phase = np.array([-1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2, -1, 0])
    run = geo.coding_run(phase)
    assert run.tolist() == [False] + [True] * 10 + [False, False]
    sequence = "CAATGGCTTAAGT"
    shuffled = geo.shuffle_within_codons(sequence, phase, run, np.random.default_rng(0))
    for start in (2, 5, 8):
        assert sorted(shuffled[start:start + 3]) == sorted(sequence[start:start + 3])
    assert shuffled[:2] == sequence[:2] and shuffled[11:] == sequence[11:]


@pytest.fixture(scope="module")
def coding_windows():
    dataset = build({"dataset": "coding", "n": 200}, seed=0)
    runs = [geo.coding_run(p) for p in dataset.tracks["codon_phase"]]
    coding = [i for i in range(len(dataset)) if dataset.labels[i] == 1 and runs[i].sum() >= 60]
    return dataset, runs, coding


def periodicity_of(representation, dataset, runs, rows) -> np.ndarray:
    """Per-window period-3 share of `representation(i, sequence)` rows over each window's reading frame."""
    return geo.offset_profiles([representation(i, dataset.sequences[i]) for i in rows], [runs[i] for i in rows],
                               30).share


def test_adversaries_of_codon_periodicity_fool_the_raw_share_but_not_its_controls(coding_windows):
    """A representation of absolute position mod 3 is perfectly periodic everywhere (fools the raw share,
    not the shuffled or intergenic contrasts); one of the base alone is periodic in coding sequence because
    its composition is (fools the shuffled contrast, not the sequence baseline)."""
    dataset, runs, coding = coding_windows
    rng = np.random.default_rng(0)
    shuffled = {i: geo.shuffle_within_codons(dataset.sequences[i], dataset.tracks["codon_phase"][i], runs[i], rng)
                for i in coding}
    position = lambda i, s: np.eye(3)[np.arange(len(s)) % 3] + 0.05 * np.random.default_rng(i).normal(size=(len(s), 3))  # noqa: E731
    base = lambda i, s: geo.kmer_one_hot(s, 1)  # noqa: E731
    for representation, fooled_shuffle in ((position, False), (base, True)):
        real = periodicity_of(representation, dataset, runs, coding)
        on_shuffled = geo.offset_profiles([representation(i, shuffled[i]) for i in coding], [runs[i] for i in coding],
                                          30).share
        over_shuffled = geo.mean_interval(real - on_shuffled, resamples=500, seed=0, level=0.95)
        sequence = periodicity_of(lambda i, s: geo.kmer_one_hot(s, 1), dataset, runs, coding)
        over_sequence = geo.mean_interval(real - sequence, resamples=500, seed=0, level=0.95)
        if representation is position:
            assert real.mean() > 0.9  # the raw share is fooled
            assert abs(over_shuffled.estimate) < 0.01 and not over_shuffled.low > 0  # "> 0" not supported
        else:
            assert over_shuffled.low > 0 and over_sequence.estimate == pytest.approx(0.0, abs=1e-12)


def test_mean_interval_of_null_differences_supports_above_zero_within_alpha():
    rng = np.random.default_rng(3)
    supported = sum(geo.mean_interval(rng.normal(size=60) - rng.normal(size=60), resamples=300, seed=r,
                                      level=0.95).low > 0 for r in range(REPEATS))
    assert supported_rate_bound(supported / REPEATS), supported


# ---------------------------------------------------------------------------------------------
# Reverse-complement consistency


def caduceus_claim(tmp_path, folder, name):
    return claim_files.write_claim(tmp_path, name, check="rc_consistency",
                                   model={"path": str(folder), "trust_remote_code": True,
                                          "module_map": CADUCEUS_MODULE_MAP},
                                   data={"dataset": "motif_sites", "matrix": "MA0108.3", "n": 120},
                                   params={"layer": 1},
                                   criteria=[{"statistic": "rc_beyond_sequence", "op": ">=", "threshold": 0.99},
                                             {"statistic": "rc_equivariance", "op": ">=", "threshold": 0.999}])


def test_an_rc_equivariant_model_passes_and_a_plain_one_does_not(tmp_path):
    equivariant = build_caduceus_like(tmp_path / "rcps", rc_equivariant=True)
    plain = build_caduceus_like(tmp_path / "plain")
    passed = claim_files.evaluate(caduceus_claim(tmp_path, equivariant, "rc-equivariant"))
    assert passed.status == EVALUATED and passed.verdict == "supported", passed.reason
    assert [c.estimate for c in passed.criteria] == pytest.approx([1.0, 1.0], abs=1e-6)
    failed = claim_files.evaluate(caduceus_claim(tmp_path, plain, "rc-plain"))
    assert failed.status == EVALUATED and failed.verdict == "refuted", failed.reason
    assert failed.criteria[0].ci_high < 0.99


def synthetic_strands(rng, n_seq: int, length: int, dependent: bool):
    """Per window: x rows (random, or carrying the other strand's context), rc rows = a function of the
    centred 3-mer plus context noise, and the 3-mer features."""
    pairs = []
    local = rng.normal(size=(64, 4))  # what the 3-mer contributes, the same map for every window
    for _ in range(n_seq):
        sequence = "".join(rng.choice(list("ACGT"), size=length))
        features = geo.centred_kmer_one_hot(sequence, 3)
        context = rng.normal(size=(length, 4))
        y = np.nan_to_num(features) @ local + context
        x = np.hstack([rng.normal(size=(length, 5)), context if dependent else rng.normal(size=(length, 4))])
        keep = np.all(np.isfinite(features), axis=1)
        pairs.append((x[keep], y[keep], features[keep]))
    return pairs


def beyond_sequence(pairs, train, test, seed):
    rows = [pairs[i] for i in train]
    y = np.concatenate([p[1] for p in rows])
    both = geo.fit_linear_map(np.concatenate([np.hstack([p[0], p[2]]) for p in rows]), y)
    alone = geo.fit_linear_map(np.concatenate([p[2] for p in rows]), y)
    sums = geo.residual_sums([pairs[i] for i in test], both, alone)
    return geo.ratio_interval(sums, geo.explained_beyond, resamples=300, seed=seed, level=0.95)


def test_rc_beyond_sequence_finds_shared_context_and_holds_its_level_without_it():
    rng = np.random.default_rng(4)
    train, test = np.arange(0, 60), np.arange(60, 90)
    found = beyond_sequence(synthetic_strands(rng, 90, 80, dependent=True), train, test, 0)
    assert found.low > 0.9
    supported = sum(beyond_sequence(synthetic_strands(rng, 90, 80, dependent=False), train, test, r).low > 0
                    for r in range(REPEATS))
    assert supported_rate_bound(supported / REPEATS), supported


# ---------------------------------------------------------------------------------------------
# Attention association: the permutation test


def fake_claim(permutations: int = 199):
    claim = SimpleNamespace(correction="holm", resamples=200, ci_level=0.95,
                            params=SimpleNamespace(permutations=permutations))
    context = SimpleNamespace(seed_for=lambda purpose: abs(hash(purpose)) % (2**31))
    return claim, context


def smoothed(rng, shape, width: int = 5) -> np.ndarray:
    noise = rng.normal(size=shape)
    kernel = np.ones(width) / width
    return np.apply_along_axis(lambda row: np.convolve(row, kernel, mode="same"), -1, noise)


def association_p(x: np.ndarray, annotation: np.ndarray, seed: int) -> np.ndarray:
    claim, context = fake_claim()
    context.seed_for = lambda purpose: seed
    tracks = att.paired_tracks(x, annotation, centre=False)
    n_seq = annotation.shape[0]
    analysis = att.HeadCorrelation(claim, context, tracks, np.full(n_seq, annotation.shape[1]),
                                   np.array(["train", "test"] * (n_seq // 2)), [(0, k) for k in range(len(x))], None)
    return analysis.p_raw


def test_between_window_permutation_holds_its_level_for_autocorrelated_tracks():
    rng = np.random.default_rng(5)
    rejected = 0
    for repeat in range(REPEATS):
        x = smoothed(rng, (1, 40, 60))
        annotation = (smoothed(rng, (40, 60), 9) > 0.3).astype(float)
        rejected += association_p(x, annotation, repeat)[0] < ALPHA
    assert supported_rate_bound(rejected / REPEATS), rejected


def test_a_head_that_attends_to_the_window_centre_is_not_associated_with_an_annotation_anchored_there():
    """Half the windows carry an annotated site at the centre; the head attends to the centre of every window.
    Swapping tracks between windows keeps the site at the centre, so the head is not associated; a circular
    shift of the annotation (a block permutation that keeps only local autocorrelation) would call it so."""
    rng = np.random.default_rng(6)
    n_seq, length = 60, 50
    centre = np.exp(-0.5 * ((np.arange(length) - 25) / 2.0) ** 2)
    x = (centre + 0.05 * rng.normal(size=(n_seq, length)))[None]
    annotation = np.zeros((n_seq, length))
    annotation[rng.random(n_seq) < 0.5, 24:27] = 1.0
    assert association_p(x, annotation, 0)[0] > 0.2
    observed = att.pearson_from_sums(att.sequence_moments(att.paired_tracks(x, annotation, centre=False)).sum(axis=0))[0]
    shifted = [att.pearson_from_sums(att.sequence_moments(att.paired_tracks(
        x, np.array([np.roll(row, rng.integers(length)) for row in annotation]), centre=False)).sum(axis=0))[0]
        for _ in range(199)]
    assert (1 + np.sum(np.array(shifted) >= observed)) / 200 < 0.01  # the circular shift is fooled


# ---------------------------------------------------------------------------------------------
# gram on planted models: a codon-phase reader built by construction, and its position-mod-3 adversary


CONTROLS = ("codon_periodicity_over_intergenic", "codon_periodicity_over_shuffled", "codon_periodicity_over_sequence")


@pytest.fixture(scope="module")
def codon_log_odds():
    from seqclaims.inputs.architectures import codon_position_log_odds

    dataset = build({"dataset": "coding", "n": 200}, seed=1)
    train = [i for i in range(len(dataset)) if dataset.split[i] == "train"]
    return codon_position_log_odds([dataset.sequences[i] for i in train],
                                   [dataset.tracks["codon_phase"][i] for i in train])


@pytest.mark.parametrize("reads, verdict, passing", [("codon", "supported", CONTROLS),
                                                     ("position", "refuted", CONTROLS[2:])])
def test_the_planted_codon_reader_passes_every_control_and_a_position_reader_only_the_naive_one(
        tmp_path, codon_log_odds, reads, verdict, passing):
    from seqclaims.inputs.architectures import READER_MODULE_MAP, build_codon_reader

    folder = build_codon_reader(tmp_path / reads, codon_log_odds=codon_log_odds, reads=reads)
    path = claim_files.write_claim(tmp_path, f"reader-{reads}", check="gram",
                                   model={"path": str(folder), "trust_remote_code": True,
                                          "module_map": READER_MODULE_MAP},
                                   data={"dataset": "coding", "n": 300}, params={"layer": 0},
                                   criteria=[{"statistic": s, "op": ">", "threshold": 0.0} for s in CONTROLS])
    result = claim_files.evaluate(path)
    assert result.status == EVALUATED and result.verdict == verdict, result.reason
    assert tuple(c.statistic for c in result.criteria if c.verdict == "pass") == passing
