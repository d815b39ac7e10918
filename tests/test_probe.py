"""The probe family and `seqclaims.methods.probing`: the probe's algebra, the sequence-only features, GC matching,
known answers on the planted model (both directions), determinism, null calibration and user errors."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from seqclaims.judging.claim_inputs import ClaimInputs
from seqclaims.core.families import Context, checks_dirs, load_claim, load_families
from seqclaims.judging.judge import ERROR, EVALUATED, SKIPPED, judge
from seqclaims.errors import ClaimError, InputError
from seqclaims.inputs import data, datasets
from seqclaims.inputs.models import load_model, run_with_cache, save_random_model
from seqclaims.methods import probing
from seqclaims.methods.stats import mc_standard_error
from seqclaims.organisms.planted import direction, load_card
from seqclaims.paths import cache_dir

REPO = Path(__file__).resolve().parents[1]
# Small but real: TBP-site windows vs background on A. thaliana (400 train, 100 test windows).
PLANTED_DATA = {"dataset": "motif_sites", "matrix": "MA0108.3", "n": 500, "gc_match": False}
FAST = {"c_grid": [0.01, 1.0, 100.0], "inner_folds": 3, "random_label_permutations": 5}


@pytest.fixture(scope="module")
def families():
    return load_families(checks_dirs(REPO))


@pytest.fixture(scope="module")
def probe_module(families):
    import sys

    return sys.modules["seqclaims_checks.probe"]


@pytest.fixture(scope="module")
def claims_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("claims") / "study"


def write_claim(folder: Path, claim_id: str, *, params: dict | None = None, data_spec: dict | None = None,
                criteria: list[tuple[str, str, float]] = (("auroc", ">=", 0.5),), expect: str = "supported",
                model: str | dict = "planted", seed: int = 0, resamples: int = 300) -> Path:
    import yaml

    folder.mkdir(parents=True, exist_ok=True)
    content = {
        "id": claim_id, "title": f"test claim {claim_id}", "statement": "A test claim.", "expect": expect,
        "model": model, "data": data_spec or PLANTED_DATA, "check": "probe", "params": {**FAST, **(params or {})},
        "criteria": [{"statistic": s, "op": op, "threshold": t} for s, op, t in criteria],
        "seed": seed, "resamples": resamples,
    }
    path = folder / f"{claim_id}.yaml"
    path.write_text(yaml.safe_dump(content, sort_keys=False))
    return path


def run_claim(path: Path, families):
    claim = load_claim(path, families)
    return judge(claim, families.get("probe", path))


def by_statistic(result) -> dict:
    return {c.statistic: c for c in result.criteria}


# ---------------------------------------------------------------------------------------------
# The probe itself


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**16), d=st.integers(1, 6), C=st.sampled_from([0.01, 1.0, 30.0]))
def test_coefficients_are_in_the_original_coordinates(seed, d, C):
    """decision_function(X) = X coef + intercept equals scikit-learn's StandardScaler + LogisticRegression."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(seed)
    X = rng.normal(size=(60, d)) * rng.uniform(0.01, 50, size=d) + rng.uniform(-100, 100, size=d)
    y = (X[:, 0] + rng.normal(scale=X[:, 0].std() + 1e-9, size=60) > np.median(X[:, 0])).astype(int)
    probe = probing.fit_probe(X, y, C=C)
    # same solver settings as the probe: the property under test is the folding of the standardisation
    reference = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=probing.MAX_ITER)).fit(X, y)
    np.testing.assert_allclose(probe.decision_function(X), reference.decision_function(X), atol=2e-3, rtol=2e-3)
    np.testing.assert_allclose(probe.predict_proba(X), 1 / (1 + np.exp(-probe.decision_function(X))))
    assert probe.coef_.shape == (d,) and np.isclose(np.linalg.norm(probe.direction), 1.0)


def test_inner_cv_picks_a_grid_strength_and_recovers_the_signal_direction():
    rng = np.random.default_rng(0)
    signal = rng.normal(size=20)
    signal /= np.linalg.norm(signal)
    X = rng.normal(size=(400, 20))
    y = (X @ signal + 0.3 * rng.normal(size=400) > 0).astype(int)
    probe = probing.fit_probe(X, y, seed=1)
    assert probe.C_ in probing.DEFAULT_C_GRID
    assert probe.cv_auroc_.shape == (len(probing.DEFAULT_C_GRID),) and probe.oof_decision_.shape == (400,)
    assert probe.direction @ signal > 0.95
    assert probe.score(X, y) > 0.95
    assert ((probe.predict(X) == y).mean()) > 0.85


def test_activation_pattern_follows_the_signal_where_the_filter_cancels_noise():
    """A shared noise source makes the filter (coef) lean on a pure-noise dimension; the pattern does not."""
    rng = np.random.default_rng(1)
    label = rng.integers(0, 2, 2000)
    noise = rng.normal(size=2000)
    X = np.column_stack([label + noise + 0.1 * rng.normal(size=2000), noise + 0.01 * rng.normal(size=2000)])
    probe = probing.fit_probe(X, label, C=100.0)
    assert abs(probe.direction[1]) > 0.5  # the filter subtracts the noise dimension
    pattern = probe.pattern_ / np.linalg.norm(probe.pattern_)
    assert pattern[0] > 0.99 * np.linalg.norm(pattern)  # the signal lives on dimension 0 only


def test_binary_labels_are_required():
    with pytest.raises(InputError, match="binary labels"):
        probing.fit_probe(np.zeros((4, 1)), np.array([0, 1, 2, 1]))


# ---------------------------------------------------------------------------------------------
# Sequence-only features and GC matching

sequences_strategy = st.lists(st.text(alphabet="ACGTN", min_size=0, max_size=30), min_size=1, max_size=8)


@settings(max_examples=60, deadline=None)
@given(sequences=sequences_strategy, k=st.integers(1, 3))
def test_kmer_frequencies_match_naive_counting(sequences, k):
    table = probing.kmer_frequencies(sequences, k)
    index = {"".join(p): i for i, p in enumerate(__import__("itertools").product("ACGT", repeat=k))}
    for row, sequence in zip(table, sequences):
        counts = np.zeros(4**k)
        for start in range(len(sequence) - k + 1):
            word = sequence[start:start + k]
            if "N" not in word:
                counts[index[word]] += 1
        expected = counts / counts.sum() if counts.sum() else counts
        np.testing.assert_allclose(row, expected)


@settings(max_examples=60, deadline=None)
@given(sequences=sequences_strategy)
def test_composition_features_match_naive_counting(sequences):
    features = probing.composition_features(sequences)
    for (gc, skew, length), sequence in zip(features, sequences):
        g, c = sequence.count("G"), sequence.count("C")
        acgt = len(sequence) - sequence.count("N")
        assert length == len(sequence)
        assert (np.isnan(gc) and acgt == 0) or np.isclose(gc, (g + c) / acgt)
        assert np.isclose(skew, (g - c) / (g + c) if g + c else 0.0)


@settings(max_examples=50, deadline=None)
@given(gc=hnp.arrays(np.float64, st.integers(2, 80), elements=st.floats(0, 1)), seed=st.integers(0, 1000),
       caliper=st.floats(0.001, 0.2))
def test_gc_matched_pairs_lie_within_the_caliper_and_use_each_window_once(gc, seed, caliper):
    labels = np.random.default_rng(seed).integers(0, 2, len(gc))
    pairs = probing.gc_matched_pairs(gc, labels, caliper, np.random.default_rng(seed))
    assert (labels[pairs[:, 0]] == 1).all() and (labels[pairs[:, 1]] == 0).all()
    assert len(np.unique(pairs)) == pairs.size
    assert (np.abs(gc[pairs[:, 0]] - gc[pairs[:, 1]]) <= caliper + 1e-12).all()
    # maximality: no unmatched positive has an unmatched negative within the caliper
    free_pos = np.setdiff1d(np.flatnonzero(labels == 1), pairs[:, 0])
    free_neg = np.setdiff1d(np.flatnonzero(labels == 0), pairs[:, 1])
    if len(free_pos) and len(free_neg):
        assert np.abs(gc[free_pos][:, None] - gc[free_neg][None, :]).min() > caliper


def test_identical_gc_distributions_match_completely():
    gc = np.repeat(np.linspace(0.2, 0.6, 50), 2)
    labels = np.tile([1, 0], 50)
    assert len(probing.gc_matched_pairs(gc, labels, 0.001, np.random.default_rng(0))) == 50


def test_a_test_split_gc_matched_at_construction_needs_no_matching(probe_module):
    """promoters are GC-matched by default, so the matched contrast would repeat auroc_minus_gc (inconclusive);
    without matching at construction the classes' GC differs and the contrast has work to do."""
    for gc_match, already in ((True, True), (False, False)):
        dataset = datasets.build({"dataset": "promoters", "n": 2000, "gc_match": gc_match}, seed=0)
        test = dataset.indices("test")
        gc = probing.gc_fraction([dataset.sequences[i] for i in test])
        assert probe_module._already_gc_matched(gc, dataset.labels[test], 0.01) is already


def test_genomic_block_folds_keep_neighbours_together_and_fall_back_without_coordinates():
    coords = data.Coords(["1"] * 100, np.arange(100) * 1000, np.arange(100) * 1000 + 300, ["+"] * 100)
    labels = np.tile([0, 1], 50)
    folds = probing.genomic_block_folds(labels, coords, 5, seed=0)
    assert (np.diff(folds) >= 0).all() and set(folds) == set(range(5))
    random_folds = probing.genomic_block_folds(labels, None, 5, seed=0)
    assert np.bincount(random_folds[labels == 1]).tolist() == [10] * 5
    one_class_block = np.array([0] * 50 + [1] * 50)  # contiguous blocks would hold one class only
    assert not (np.diff(probing.genomic_block_folds(one_class_block, coords, 5, seed=0)) >= 0).all()


# ---------------------------------------------------------------------------------------------
# Known answers on the planted model


@pytest.fixture(scope="module")
def planted_results(claims_dir, families):
    """The planted mechanism (motif present, written at layer 0) and a label defined by GC alone."""
    paths = {
        "motif": write_claim(claims_dir, "motif-layer-0", params={"layer": 0},
                             criteria=[("auroc", ">=", 0.75), ("auroc_minus_gc_matched", ">", 0.0)]),
        "motif-all": write_claim(claims_dir, "motif-all", params={"layer": "all"},
                                 criteria=[("best_layer", ">=", 0), ("best_layer_auroc", ">=", 0.75)]),
        "gc-caught": write_claim(claims_dir, "gc-caught", params={"layer": 0, "label": "gc_content"},
                                 criteria=[("auroc", ">=", 0.9), ("auroc_minus_gc", "<=", 0.01)]),
        "gc-overclaim": write_claim(claims_dir, "gc-overclaim", params={"layer": 0, "label": "gc_content"},
                                    criteria=[("auroc_minus_gc", ">=", 0.02)], expect="refuted"),
    }
    return {name: run_claim(path, families) for name, path in paths.items()}


def test_the_planted_motif_is_decoded_at_its_layer_and_beats_gc_on_matched_windows(planted_results):
    result = planted_results["motif"]
    assert result.status == EVALUATED and result.verdict == "supported", result.reason
    matched = by_statistic(result)["auroc_minus_gc_matched"]
    assert matched.ci_low > 0.1 and matched.detail["ks_p"] >= 0.05
    assert len(result.figures) == 2


def test_the_best_layer_is_a_block_output_never_the_embeddings(planted_results):
    result = planted_results["motif-all"]
    assert result.verdict == "supported", result.reason
    frequency = by_statistic(result)["best_layer"].detail["selection_frequency"]
    assert frequency["embed"] < 0.05


def test_a_gc_defined_label_is_decoded_but_the_gc_shortcut_is_caught(planted_results):
    caught, overclaim = planted_results["gc-caught"], planted_results["gc-overclaim"]
    assert caught.verdict == "supported", caught.reason
    assert overclaim.verdict == "refuted" and overclaim.criteria[0].ci_high < 0.02


def test_train_split_probe_pattern_is_the_planted_motif_direction():
    """What activation patching and OV alignment read: the planted motif-present direction."""
    model = load_model("planted")
    dataset = datasets.build(PLANTED_DATA, seed=0)
    probe = probing.train_split_probe(ClaimInputs(model, dataset), "layer.0.resid_post", c_grid=FAST["c_grid"])
    unit = direction(load_card(model.folder), "motif_present")
    assert probe.coef_.shape == (model.d_model,)
    assert probe.pattern_ @ unit / np.linalg.norm(probe.pattern_) > 0.9
    with pytest.raises(InputError, match="not a probe site"):
        probing.train_split_probe(ClaimInputs(model, dataset), "layer.9.resid_post")


# ---------------------------------------------------------------------------------------------
# Determinism and calibration


@pytest.fixture(scope="module")
def planted_probe_data(probe_module):
    model = load_model("planted")
    dataset = datasets.build(PLANTED_DATA, seed=0)
    params = probe_module.ProbeParams(layer=0, **FAST)
    return probe_module.probe_data_for(model, dataset, params), params


def test_same_seed_same_statistics_and_another_seed_other_random_labels(planted_probe_data, probe_module):
    probe_data, params = planted_probe_data

    def statistics(seed):
        claim = SimpleNamespace(id="determinism", seed=seed, params=params, ci_level=0.95, resamples=200)
        context = Context(claim=claim, cache_dir=cache_dir())
        suite = probing.fit_suite(probe_data.suite_inputs, probe_module.suite_settings(params, context, "layer.0.resid_post"),
                                  use_cache=False)
        found = probe_module.probe_evidence(probe_data, suite, claim, context, figures=False).statistics
        return {name: (e.estimate, e.ci_low, e.ci_high) for name, e in found.items()}

    first, again, other = statistics(0), statistics(0), statistics(1)
    np.testing.assert_equal(first, again)  # NaN (statistics this layer cannot give) equals NaN
    assert first["random_label_auroc"] != other["random_label_auroc"]


def test_label_permuted_data_is_rarely_supported(planted_probe_data, probe_module):
    """At a 90% interval a one-sided criterion errs at most 5% of the time on null data (80 replicates x 3
    criteria; cheap fits: one C, two folds, 2-mers; the full check is scripts/calibrate_probe.py)."""
    probe_data, params = planted_probe_data
    cheap = params.model_copy(update={"c_grid": [1.0], "inner_folds": 2, "kmer_k": 2, "random_label_permutations": 0})
    criteria = [("auroc", ">", 0.5), ("auroc_minus_gc", ">", 0.0), ("auroc_minus_kmer", ">", 0.0)]
    verdicts = probe_module.null_verdicts(probe_data, cheap, criteria, range(80), ci_level=0.90, resamples=200)
    supported = (verdicts == "pass").mean()
    assert supported <= 0.05 + 2 * mc_standard_error(0.05, verdicts.size), (verdicts == "pass").mean(axis=0)
    assert (verdicts == "fail").mean() <= 0.05 + 2 * mc_standard_error(0.05, verdicts.size)


# ---------------------------------------------------------------------------------------------
# Pooling, transfer and a second model


def test_position_pooling_reads_the_token_covering_the_position():
    model = load_model("planted")
    sequences = ["ACGTACGTTATAAAAGCGCGATCGATCG", "TTTTTTTTTATAAAAGGGGGCCCCCAAA"]
    pooled, key = probing.pooled_activations(model, sequences, "position-test", ["layer.0.resid_post"], "position", 3)
    run = run_with_cache(model, model.tokenize(sequences), ["layer.0.resid_post"])["layer.0.resid_post"]
    token = 4  # [CLS], then one 7-mer per start position: the token starting at base 3 is the fourth k-mer
    np.testing.assert_allclose(pooled["layer.0.resid_post"], run[:, token].numpy(), atol=1e-6)
    with pytest.raises(InputError, match="past the end"):
        probing.pooled_activations(model, sequences, "position-test", ["layer.0.resid_post"], "position", 28)


def test_model_b_gives_a_paired_difference_against_a_random_model(claims_dir, families, tmp_path_factory):
    folder = save_random_model(tmp_path_factory.mktemp("random") / "random-esm", "esm", n_layers=1, d_model=16,
                               n_heads=2, d_mlp=32)
    path = write_claim(claims_dir, "versus-random", params={"layer": 0, "model_b": {"path": str(folder)}},
                       criteria=[("auroc_minus_model_b", ">=", 0.1)])
    result = run_claim(path, families)
    assert result.status == EVALUATED and result.verdict == "supported", result.reason
    assert result.criteria[0].detail["model_b_layer"] == "layer.0.resid_post"


# ---------------------------------------------------------------------------------------------
# User errors: one line each


def one_line(text: str) -> bool:
    return bool(text) and "\n" not in text and "Traceback" not in text


def test_a_missing_user_file_skips_with_where_to_put_it(claims_dir, families):
    path = write_claim(claims_dir, "missing-export", data_spec={"dataset": "user", "path": "exports/absent.csv"})
    result = run_claim(path, families)
    assert result.status == SKIPPED and one_line(result.reason)
    assert "exports/absent.csv" in result.reason and "export" in result.reason


def test_a_hub_model_not_in_the_cache_skips_naming_both_missing_inputs(claims_dir, families):
    model = {"hf_id": "example/not-cached", "revision": "0" * 40}
    path = write_claim(claims_dir, "hub-missing", model=model, data_spec={"dataset": "user", "path": "absent.csv"})
    result = run_claim(path, families)
    assert result.status == SKIPPED and one_line(result.reason)
    assert "example/not-cached" in result.reason and "absent.csv" in result.reason


@pytest.mark.parametrize(("params", "data_spec", "message"), [
    ({"layer": 7}, None, "params.layer"),
    ({"transfer": "athaliana"}, None, "own species"),
    ({}, "multiclass", "binary labels"),
    ({"transfer": "aarenosa"}, "binary", "user dataset cannot be rebuilt"),
])
def test_user_errors_are_one_line_results(params, data_spec, message, claims_dir, families, tmp_path):
    if data_spec in ("multiclass", "binary"):
        csv = tmp_path / f"{data_spec}.csv"
        classes = 3 if data_spec == "multiclass" else 2
        rows = [f"{'ACGT' * 10},{i % classes},{'test' if i % 5 == 0 else 'train'}" for i in range(60)]
        csv.write_text("sequence,label,split\n" + "\n".join(rows) + "\n")
        data_spec = {"dataset": "user", "path": str(csv)}
    path = write_claim(claims_dir, f"bad-{message.replace(' ', '-').replace('.', '-')}", params=params,
                       data_spec=data_spec)
    result = run_claim(path, families)
    assert result.status == ERROR and one_line(result.reason) and message in result.reason, result.reason


@pytest.mark.parametrize(("params", "message"), [
    ({"c_grid": [1.0, -1.0]}, "c_grid"),
    ({"model_b": "organsim"}, "model_b"),
    ({"pooling": "median"}, "pooling"),
    ({"layers": "all"}, "layers"),
    ({"pooling": "position"}, "position"),
    ({"position": 100}, "position"),
])
def test_bad_params_are_one_line_claim_errors(params, message, claims_dir, families):
    path = write_claim(claims_dir, f"bad-param-{message.replace('_', '-')}", params=params)
    with pytest.raises(ClaimError) as error:
        load_claim(path, families)
    assert one_line(str(error.value)) and message in str(error.value)
