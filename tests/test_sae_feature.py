"""sae_feature and the shared per-token scoring (seqclaims.methods.features): AUPRC engine, annotations, the
planted motif latent, the null control, determinism, null calibration and one-line user errors.

The planted model's layer-0 residual holds 0.1 x the TBP (MA0108.3) score of each token's 7-mer (the
`score` direction the motif head reads); a latent aligned with it detects TBP-hit tokens."""

from __future__ import annotations

from pathlib import Path

import claim_files
import numpy as np
import pytest
import scipy.sparse as sp
from claim_files import FAMILIES
from claim_files import criterion as statistic
from claim_files import evaluate
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import average_precision_score

from seqclaims.core.families import load_claim
from seqclaims.judging.judge import ERROR, EVALUATED
from seqclaims.errors import ClaimError
from seqclaims.methods.features import (Annotation, TokenTable, column_auprc, consensus_scores, element_bases,
                                        pattern_starts, permute_labels, runs, score_units, token_labels)
from seqclaims.methods.stats import mc_standard_error
from seqclaims.paths import cache_dir

PLANTED_DATA = {"dataset": "motif_sites", "matrix": "MA0108.3", "n": 200}
TBP_HIT = {"motif": "MA0108.3", "pvalue": 0.001, "align": "anchored"}
SMALL_SAE = {"d_sae": 128, "k": 8, "lr": 0.002, "tokens": 50000, "epochs": 5, "batch_size": 512, "seed": 0}
FAR_ABOVE_CHANCE = [{"statistic": "auprc_over_chance", "op": ">=", "threshold": 10}]


def write_claim(folder: Path, claim_id: str, *, params: dict, criteria: list[dict] = FAR_ABOVE_CHANCE,
                data: dict | None = None, **top) -> Path:
    return claim_files.write_claim(folder, claim_id, check="sae_feature", data=data or PLANTED_DATA, criteria=criteria,
                                   params=params, **top)


def sae_params(annotation: dict = TBP_HIT, **extra) -> dict:
    return {"hook": "layer.0.resid_post", "annotation": annotation, "sae": SMALL_SAE, "top_windows": 4, **extra}


# ---------------------------------------------------------------------------------------------
# AUPRC engine and annotations


@given(st.data())
@settings(max_examples=40, deadline=None)
def test_column_auprc_equals_sklearn_dense_and_sparse(data):
    n = data.draw(st.integers(5, 80))
    k = data.draw(st.integers(1, 4))
    rng = np.random.default_rng(data.draw(st.integers(0, 10**6)))
    labels = rng.random(n) < data.draw(st.floats(0.05, 0.6))
    labels[0], labels[-1] = True, False  # both classes present
    dense = np.round(rng.normal(size=(n, k)), 1)  # rounding makes ties
    codes = np.where(rng.random((n, k)) < 0.5, 0.0, np.abs(dense))
    for units in (dense, codes):
        expected = [average_precision_score(labels, units[:, j]) for j in range(k)]
        assert np.allclose(column_auprc(units, labels), expected, atol=1e-12)
    assert np.allclose(column_auprc(sp.csr_matrix(codes), labels),
                       [average_precision_score(labels, codes[:, j]) for j in range(k)], atol=1e-12)
    rows = np.flatnonzero(rng.random(n) < 0.7)
    if labels[rows].any() and not labels[rows].all():
        assert np.allclose(column_auprc(dense, labels[rows], rows=rows), column_auprc(dense[rows], labels[rows]))


def test_column_auprc_undefined_without_both_classes():
    assert np.isnan(column_auprc(np.ones((4, 2)), np.zeros(4, dtype=bool))).all()
    assert np.isnan(column_auprc(np.ones((4, 2)), np.ones(4, dtype=bool))).all()


def test_elements_and_bases():
    flags = np.array([0, 1, 1, 1, 0, 0, 1, 1, 0], dtype=bool)
    starts, widths = runs(flags)
    assert starts.tolist() == [1, 6] and widths.tolist() == [3, 2]
    assert np.flatnonzero(element_bases(starts, 9, widths, base=1)).tolist() == [2, 7]
    assert np.flatnonzero(element_bases(starts, 9, widths, base=2)).tolist() == [3]  # a 2-nt run has no base 2
    assert np.array_equal(element_bases(starts, 9, widths, base=None), flags)
    assert pattern_starts("ATGATGAATG", "ATG").tolist() == [0, 3, 7]
    assert pattern_starts("AAAA", "AA").tolist() == [0, 1, 2]  # overlapping


class _Dataset:
    """The few attributes the annotation code reads."""

    def __init__(self, sequences, split=None, tracks=None):
        self.sequences = sequences
        self.split = np.array(split or ["train"] * len(sequences))
        self.tracks = tracks or {}
        self.source = np.arange(len(sequences))
        self.name = "test"

    def __len__(self):
        return len(self.sequences)


def kmer_offsets(lengths: list[int], k: int) -> np.ndarray:
    """Offsets of overlapping k-mers with a special token at each end, padded to the longest row."""
    n_tok = max(lengths) - k + 1 + 2
    offsets = np.zeros((len(lengths), n_tok, 2), dtype=np.int64)
    for row, length in enumerate(lengths):
        starts = np.arange(length - k + 1)
        offsets[row, 1: 1 + starts.size] = np.stack([starts, starts + k], axis=1)
    return offsets


def test_token_labels_anchored_and_any_for_overlapping_kmers():
    dataset = _Dataset(["CCATGCCCCC"])
    offsets = kmer_offsets([10], 3)  # tokens CCA CAT ATG TGC GCC CCC CCC CCC
    anchored = token_labels(dataset, offsets, Annotation(pattern="ATG", base=0, align="anchored"))
    assert anchored[0, 1:9].tolist() == [0, 0, 1, 0, 0, 0, 0, 0]  # the token that starts with ATG
    assert np.isnan(anchored[0, [0, 9]]).all()  # special tokens
    covering = token_labels(dataset, offsets, Annotation(pattern="ATG", base=0, align="any"))
    assert covering[0, 1:9].tolist() == [1, 1, 1, 0, 0, 0, 0, 0]  # every token covering the A


def test_track_annotation_base_and_consensus_baseline():
    sequence = "CCATGCCATGCC"
    start = np.zeros(len(sequence), dtype=bool)
    start[2:5] = True  # the first ATG is annotated, the second is not
    dataset = _Dataset([sequence], tracks={"start_codon": [start]})
    offsets = kmer_offsets([len(sequence)], 1)
    labels = token_labels(dataset, offsets, Annotation(track="start_codon", base=1))
    assert np.flatnonzero(labels[0] == 1).tolist() == [4]  # the T of the annotated ATG (token 1 + 3)
    baseline = consensus_scores(dataset, offsets, Annotation(track="start_codon", base=1))
    assert np.flatnonzero(baseline[0] == 1).tolist() == [4, 9]  # the T of every ATG
    assert consensus_scores(dataset, offsets, Annotation(track="tss")) is None


def test_codon_phase_annotation():
    phase = np.array([-1, 0, 1, 2, 0, 1, 2, -1])
    dataset = _Dataset(["ACGTACGT"], tracks={"codon_phase": [phase]})
    labels = token_labels(dataset, kmer_offsets([8], 1), Annotation(codon_phase=2))
    assert np.flatnonzero(labels[0] == 1).tolist() == [4, 7]


def test_permuted_labels_stay_in_split_and_keep_their_counts():
    rng = np.random.default_rng(0)
    sequences = ["A" * 30] * 12 + ["A" * 20] * 4
    split = ["train"] * 8 + ["test"] * 4 + ["train"] * 4
    dataset = _Dataset(sequences, split)
    offsets = kmer_offsets([len(s) for s in sequences], 1)
    special = offsets[:, :, 1] == offsets[:, :, 0]
    labels = np.where(special, np.nan, (rng.random(special.shape) < 0.2).astype(float))
    permuted = permute_labels(labels, special, dataset, rng_seed=3)
    assert np.array_equal(np.isnan(permuted), np.isnan(labels))
    counts = np.nansum(labels, axis=1)
    for group in (np.arange(8), np.arange(8, 12), np.arange(12, 16)):  # train-30, test-30, train-20
        assert sorted(np.nansum(permuted[group], axis=1)) == sorted(counts[group])
    assert not np.array_equal(permuted, labels, equal_nan=True)
    assert np.array_equal(permuted, permute_labels(labels, special, dataset, rng_seed=3), equal_nan=True)


# ---------------------------------------------------------------------------------------------
# Null calibration of the protocol (fast version; scripts/calibrate_sae_feature.py is the full one)


def null_table(rng: np.random.Generator, n_seq: int = 60, n_tok: int = 80) -> TokenTable:
    labels = rng.random((n_seq, n_tok)) < 0.01
    split = np.where(np.arange(n_seq) < 2 * n_seq // 3, "train", "test")
    row, position = np.nonzero(np.ones((n_seq, n_tok), dtype=bool))
    return TokenTable(row=row, position=position, label=labels[row, position], test=split[row] == "test",
                      unit=row, n_rows=n_seq)


def test_best_of_many_latents_is_not_above_chance_on_null_data():
    """Sparse codes independent of the labels: the train-selected latent's test AUPRC must not be called
    above chance (interval of auprc_over_chance above 1) more often than the one-sided 2.5 % allows."""
    supported = []
    for replicate in range(40):
        rng = np.random.default_rng(replicate)
        table = null_table(rng)
        codes = sp.random(table.row.size, 64, density=0.1, random_state=replicate, format="csr")
        scored = score_units([codes], table, [f"f{j}" for j in range(64)], named=None, level=0.95, resamples=200,
                             seed=replicate, min_n=5)
        ratio = scored.statistics["auprc_over_chance"]
        if not ratio.is_missing:
            supported.append(ratio.ci_low > 1)
    rate = float(np.mean(supported))
    assert len(supported) >= 30
    assert rate <= 0.025 + 3 * mc_standard_error(0.025, len(supported)), rate


# ---------------------------------------------------------------------------------------------
# The family on the planted model


@pytest.fixture(scope="module")
def planted_results(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sae")
    motif = evaluate(write_claim(folder, "motif-latent", params=sae_params(),
                                 criteria=FAR_ABOVE_CHANCE + [{"statistic": "fvu", "op": "<=", "threshold": 1.0}]))
    again = evaluate(write_claim(folder, "motif-latent-again", params=sae_params()))
    null = evaluate(write_claim(folder, "permuted-null", params=sae_params({**TBP_HIT, "permuted": True})))
    return motif, again, null


def test_planted_motif_latent_is_far_above_chance(planted_results):
    motif = planted_results[0]
    assert motif.status == EVALUATED and motif.verdict == "supported", motif.reason
    ratio = statistic(motif, "auprc_over_chance")
    assert ratio.ci_low >= 10 and ratio.ceiling["estimate"] > ratio.estimate
    assert ratio.detail["n_test_annotated"] >= 5 and ratio.n >= 20
    assert motif.figures and all(f.title.startswith("SAE latent") for f in motif.figures)
    assert any(card.title == "sparse autoencoder" for card in motif.cards)
    assert motif.versions.get("sae_key")


def test_permuted_annotation_is_not_far_above_chance(planted_results):
    null = planted_results[2]
    assert null.status == EVALUATED and null.verdict == "refuted", null.reason
    assert statistic(null, "auprc_over_chance").ci_high < 10


def test_same_seed_same_statistics_and_shared_sae(planted_results):
    motif, again, _ = planted_results
    first, second = statistic(motif, "auprc_over_chance"), statistic(again, "auprc_over_chance")
    assert (first.estimate, first.ci_low, first.ci_high) == (second.estimate, second.ci_low, second.ci_high)
    assert motif.versions["sae_key"] == again.versions["sae_key"]  # one SAE serves both claims


def test_retrained_sae_gives_identical_statistics(planted_results, tmp_path, monkeypatch):
    """A fresh SAE cache (the activations and dataset stay shared): same seed, same SAE, same statistics."""
    import shutil

    fresh = tmp_path / "cache"
    fresh.mkdir()
    for shared in ("activations", "datasets", "file_hashes"):
        if (cache_dir() / shared).exists():
            (fresh / shared).symlink_to(cache_dir() / shared)
    monkeypatch.setenv("SEQCLAIMS_CACHE", str(fresh))
    retrained = evaluate(write_claim(tmp_path, "motif-latent", params=sae_params()))
    assert any("SAE (computed)" in note for note in retrained.notes)
    old, new = statistic(planted_results[0], "auprc_over_chance"), statistic(retrained, "auprc_over_chance")
    assert (old.estimate, old.ci_low, old.ci_high) == (new.estimate, new.ci_low, new.ci_high)
    shutil.rmtree(fresh / "sae", ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# User errors: one line, naming the input


@pytest.mark.parametrize("params, message", [
    (sae_params(hook="layer.9.resid_post"), "not a hook"),
    (sae_params(hook="layer.0.attn.pattern"), "not a per-token activation"),
])
def test_user_errors_are_one_line_results(tmp_path, params, message):
    result = evaluate(write_claim(tmp_path, "bad-claim", params=params))
    assert result.status == ERROR and message in result.reason and "\n" not in result.reason


def test_missing_track_on_user_data_is_one_line(tmp_path):
    csv = tmp_path / "claims" / "planted" / "windows.csv"
    csv.parent.mkdir(parents=True)
    rows = ["sequence,label,split"] + [f"{'ACGTTATAAAAGG' * 4},{i % 2},{'test' if i % 3 == 0 else 'train'}"
                                        for i in range(30)]
    csv.write_text("\n".join(rows) + "\n")
    path = write_claim(tmp_path, "user-start", params=sae_params({"track": "start_codon"}),
                       data={"dataset": "user", "path": "windows.csv"})
    result = evaluate(path)
    assert result.status == ERROR and "no 'start_codon' track" in result.reason and "\n" not in result.reason


@pytest.mark.parametrize("annotation, fragment", [
    ({"track": "start_codon", "motif": "MA0108.3"}, "exactly one of"),
    ({"pattern": "ATN"}, "pattern"),
    ({"track": "start_codon", "align": "centred"}, "centred"),
    ({"motif": "MA0108.3", "base": 1}, "base"),
    ({"motif": "MA0108.3", "pvalue": 0.01, "threshold_fraction": 0.8}, "not both"),
    ({"track": "exon"}, "track"),
])
def test_bad_annotations_are_one_line_claim_errors(tmp_path, annotation, fragment):
    path = write_claim(tmp_path, "bad-annotation", params=sae_params(annotation))
    with pytest.raises(ClaimError) as error:
        load_claim(path, FAMILIES)
    assert fragment in str(error.value) and "\n" not in str(error.value)


def test_feature_must_be_a_latent(tmp_path):
    path = write_claim(tmp_path, "bad-feature", params=sae_params(feature=500))
    with pytest.raises(ClaimError, match="not a latent") as error:
        load_claim(path, FAMILIES)
    assert "\n" not in str(error.value)


def test_k_must_be_below_d_sae(tmp_path):
    path = write_claim(tmp_path, "bad-sae", params={**sae_params(), "sae": {"d_sae": 8, "k": 8}})
    with pytest.raises(ClaimError, match="k"):
        load_claim(path, FAMILIES)


@pytest.mark.parametrize("family", ["sae_feature", "neuron"])
def test_claim_template_is_a_valid_claim(tmp_path, family):
    from seqclaims.cli import claim_template

    path = tmp_path / "claims" / "exploratory" / "from-template.yaml"
    path.parent.mkdir(parents=True)
    path.write_text(claim_template(FAMILIES.get(family, path), "from-template"))
    claim = load_claim(path, FAMILIES)
    assert claim.check == family and claim.params.annotation is not None


def test_the_best_unit_is_chosen_again_in_every_resample():
    """Two units are equally good on train (the same signal, independent noise); on test one detects the
    annotation and the other is noise. Chosen once, the interval would describe one of them as if the
    choice were certain; chosen in every resample, it spans both, so its lower end falls far below that of
    the detector named outright."""
    rng = np.random.default_rng(1)  # a draw in which the detector wins on the whole train split
    table = null_table(rng, n_seq=90)
    label = table.label.astype(float)
    detector = label + rng.normal(0, 0.3, label.size)
    rival = np.where(table.test, rng.normal(0, 0.3, label.size), label + rng.normal(0, 0.3, label.size))
    units = np.column_stack([detector, rival])
    named = score_units([units], table, ["detector", "rival"], named=0, level=0.95, resamples=300, seed=0, min_n=5)
    chosen = score_units([units], table, ["detector", "rival"], named=None, level=0.95, resamples=300, seed=0,
                         min_n=5)
    best, detector_low = chosen.statistics["best_auprc"], named.statistics["auprc"].ci_low
    assert best.detail["best_unit"] == "detector" and best.estimate == named.statistics["auprc"].estimate
    assert detector_low > 0.2, named.statistics["auprc"]
    assert best.ci_low < detector_low / 2, best
