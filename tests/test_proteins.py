"""Proteins: translation, residue tracks, the proteins dataset, the protein tokenizer and baselines, and the
unit families on protein sequences (known answers and adversaries)."""

from __future__ import annotations

import claim_files
import numpy as np
import pytest
from claim_files import FAMILIES, criterion, evaluate

from seqclaims.core.families import load_claim
from seqclaims.judging.judge import ERROR, EVALUATED
from seqclaims.errors import ClaimError
from seqclaims.inputs import data, datasets, proteins
from seqclaims.inputs.tokenizers import build_nucleotide_tokenizer, build_protein_tokenizer, sequence_alphabet, tokenize
from seqclaims.methods import baselines
from seqclaims.methods.features import (Annotation, TokenTable, composition_scores, consensus_scores, score_units,
                                        token_labels)

PROTEIN_DATA = {"dataset": "proteins", "n": 200}
SMALL_SAE = {"d_sae": 128, "k": 8, "lr": 0.002, "tokens": 20000, "epochs": 2, "batch_size": 1024, "seed": 0}


@pytest.fixture(scope="module")
def proteome():
    return proteins.proteome("athaliana")


@pytest.fixture(scope="module")
def dataset():
    return datasets.build(PROTEIN_DATA, seed=0)


# ---------------------------------------------------------------------------------------------
# Translation and the proteome


def test_genetic_code_is_the_standard_one():
    assert len(proteins.GENETIC_CODE) == 64
    assert sorted(c for c, a in proteins.GENETIC_CODE.items() if a == "*") == ["TAA", "TAG", "TGA"]
    assert proteins.translate("ATGTGGTTTAAATGCTAG") == "MWFKC*"
    assert proteins.translate("ATGNNN") == "MX"
    assert sum(a == "L" for a in proteins.GENETIC_CODE.values()) == 6


def test_proteome_is_whole_proteins_split_by_gene_region(proteome):
    assert len(proteome) > 6000
    assert all(s.startswith("M") and "*" not in s and "X" not in s for s in proteome.sequences)
    split = data.protein_split(proteome, 0.2)
    boundary = data.test_region("athaliana", proteome.chrom[0])[0]
    assert (proteome.end[split == "train"] <= boundary).all() and (proteome.start[split == "test"] >= boundary).all()
    assert (split == "test").sum() > 1000 and (split == "").sum() <= 2
    assert len(set(proteome.gene)) == len(proteome)  # one protein per gene


def test_junction_residues_hold_the_last_base_of_each_exon():
    # exons of 4, 5 and 9 coding bases: last bases 3 and 8 lie in codons 1 and 2
    assert proteins._junction_residues(np.array([4, 5, 9])).tolist() == [1, 2]
    assert proteins._junction_residues(np.array([6, 6])).tolist() == [1]


def test_residue_tracks_on_constructed_proteins():
    membrane = "M" + "K" * 40 + "L" * 20 + "K" * 40
    tracks = proteins.residue_tracks(membrane, np.array([10]))
    stretch = np.flatnonzero(tracks["hydrophobic_stretch"])
    assert stretch.min() >= 33 and stretch.max() <= 68 and tracks["hydrophobic_stretch"][41:61].all()
    assert not tracks["signal_like"].any()  # the stretch starts after residue 30
    signal = "MK" + "L" * 10 + "K" * 60
    assert np.flatnonzero(proteins.residue_tracks(signal, np.zeros(0, int))["signal_like"]).tolist() == list(range(1, 9))
    pairs = proteins.residue_tracks("MCKKCAAAAAAAACAAAAAAAAC", np.zeros(0, int))
    assert np.flatnonzero(pairs["cysteine"]).tolist() == [1, 4, 13, 22]
    assert np.flatnonzero(pairs["cysteine_pair"]).tolist() == [1, 4]
    assert np.flatnonzero(tracks["exon_junction"]).tolist() == [10]


# ---------------------------------------------------------------------------------------------
# The proteins dataset


def test_proteins_dataset_is_balanced_region_disjoint_and_deterministic(dataset):
    assert dataset.alphabet == "protein" and len(dataset) == 200
    assert dataset.card["counts"] == {"train": {"0": 80, "1": 80}, "test": {"0": 20, "1": 20}}
    assert max(len(s) for s in dataset.sequences) <= 256
    assert all(len(t) == len(s) for name in proteins.TRACKS for t, s in zip(dataset.tracks[name], dataset.sequences))
    membrane = np.array([t.any() for t in dataset.tracks["hydrophobic_stretch"]])
    assert (membrane == (dataset.labels == 1)).all()
    assert not data.overlapping_pairs(dataset.coords.take(dataset.indices("train")),
                                      dataset.coords.take(dataset.indices("test"))).size
    again = datasets.build(PROTEIN_DATA, seed=0, use_cache=False)
    assert again.content_hash == dataset.content_hash
    assert datasets.build(PROTEIN_DATA, seed=1, use_cache=False).content_hash != dataset.content_hash


@pytest.mark.parametrize("spec, fragment", [
    ({"dataset": "proteins", "window": [10, 100]}, "N-terminus"),
    ({"dataset": "proteins", "matrix": "MA0108.3"}, "takes no `matrix`"),
])
def test_bad_protein_specs_are_one_line(spec, fragment):
    from seqclaims.errors import InputError

    with pytest.raises(InputError, match=fragment):
        data.parse_spec(spec)


# ---------------------------------------------------------------------------------------------
# Tokenizer and baselines


def test_protein_tokenizer_has_residue_offsets_and_declares_its_alphabet(tmp_path):
    from transformers import AutoTokenizer

    tokenizer = build_protein_tokenizer()
    tokenizer.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    batch = tokenize(["MKCU", "ME"], tokenizer=loaded)
    assert batch.offsets[0, 1:5].tolist() == [[0, 1], [1, 2], [2, 3], [3, 4]]
    assert int(batch.input_ids[0, 4]) == loaded.unk_token_id  # selenocysteine is not in the vocabulary
    assert sequence_alphabet(loaded) == "protein" and sequence_alphabet(build_nucleotide_tokenizer("single")) == "dna"


def test_twenty_letter_context_baseline_learns_a_periodic_protein():
    codes = proteins.residue_codes("MKLV" * 50)
    fitted = baselines.fit_context_model([codes], baselines.ContextSpec("markov-1", 1, 0, 20))
    rows, cols = np.zeros(10, int), np.arange(1, 11)
    correct, _ = baselines.score(baselines.predict(fitted, codes[None], rows, cols), codes[cols])
    assert correct.all()
    marginal = baselines.fit_context_model([codes], baselines.ContextSpec("markov-0", 0, 0, 20))
    assert baselines.predict(marginal, codes[None], rows, cols).shape == (10, 20)


# ---------------------------------------------------------------------------------------------
# Known answers and adversaries for the unit statistics on proteins


def _table(dataset, track: str):
    tokenizer = build_protein_tokenizer()
    batch = tokenize(dataset.sequences, tokenizer=tokenizer)
    offsets, special = batch.offsets.numpy(), batch.special_mask.numpy()
    annotation = Annotation(track=track)
    labels = token_labels(dataset, offsets, annotation)
    table = TokenTable.build(dataset, labels, special, consensus_scores(dataset, offsets, annotation))
    table.composition = composition_scores(dataset, offsets, table, annotation, None)
    return table, offsets


def _hydrophobic_share(dataset, offsets, table, width: int = 19) -> np.ndarray:
    """A unit that reads only composition: the hydrophobic share of the window around each token."""
    from seqclaims.methods import composition

    spans = composition.window_spans(offsets, [len(s) for s in dataset.sequences], width, "centred")
    share = composition.composition_features(dataset.sequences, spans, "residue_classes")[0]
    return np.nan_to_num(table.gather(share))[:, None]


def _ratio(units, table, name="auprc_over_composition"):
    scored = score_units([units], table, ["u"], named=None, level=0.95, resamples=200, seed=0, min_n=5)
    return scored.statistics[name]


def test_a_composition_reader_is_not_above_the_composition_detector(dataset):
    """Adversary: a unit that reads the hydrophobic share of a window looks like a hydrophobic-stretch
    detector far above chance, but the composition control does not call it more than composition."""
    table, offsets = _table(dataset, "hydrophobic_stretch")
    units = _hydrophobic_share(dataset, offsets, table)
    assert _ratio(units, table, "auprc_over_chance").ci_low > 3
    assert _ratio(units, table).ci_low < 1.0


def test_a_detector_of_the_stretch_itself_is_above_composition(dataset):
    table, _ = _table(dataset, "hydrophobic_stretch")
    rng = np.random.default_rng(0)
    units = (table.label + 0.1 * rng.random(table.label.size))[:, None]
    assert _ratio(units, table).ci_low > 1.0


def test_a_cysteine_reader_is_not_above_the_every_cysteine_baseline(dataset):
    """Adversary for cysteine_pair: a unit that fires on every C is perfect for `cysteine` and far above
    chance for pairs, but no better than the k-mer baseline (every C)."""
    table, offsets = _table(dataset, "cysteine_pair")
    is_c = np.array([[s[a] == "C" if b > a else False for a, b in row] for s, row in zip(dataset.sequences, offsets)])
    units = table.gather(is_c).astype(float)[:, None]
    assert _ratio(units, table, "auprc_over_chance").ci_low > 2
    assert _ratio(units, table, "auprc_over_pattern").ci_high <= 1.0 + 1e-9


# ---------------------------------------------------------------------------------------------
# Claims on proteins


def _protein_claim(folder, claim_id, *, model="protein@step0", check="sae_feature", params=None, criteria=None,
                   data_spec=None):
    params = params or {"hook": "embed", "annotation": {"track": "cysteine"}, "sae": SMALL_SAE,
                        "top_windows": 2}
    criteria = criteria or [{"statistic": "auprc_over_chance", "op": ">=", "threshold": 5}]
    return claim_files.write_claim(folder, claim_id, check=check, data=data_spec or PROTEIN_DATA,
                                   criteria=criteria, params=params, model=model)


def test_a_residue_identity_latent_is_found_and_a_permuted_track_is_not(tmp_path):
    """In the initial protein model's embedding the residue's identity is exact: an SAE latent
    detects cysteines far above chance; with the cysteine track permuted between proteins, none does."""
    found = evaluate(_protein_claim(tmp_path, "cysteine-latent"))
    assert found.status == EVALUATED and found.verdict == "supported"
    assert criterion(found, "auprc_over_chance").ci_low >= 5
    permuted = {"hook": "embed", "annotation": {"track": "cysteine", "permuted": True},
                "sae": SMALL_SAE, "top_windows": 0}
    null = evaluate(_protein_claim(tmp_path, "cysteine-permuted", params=permuted,
                                   criteria=[{"statistic": "auprc_over_chance", "op": ">=", "threshold": 2}]))
    assert null.status == EVALUATED and null.verdict == "refuted"


def test_a_dna_model_on_proteins_is_one_line(tmp_path):
    result = evaluate(_protein_claim(tmp_path, "dna-model", model="organism"))
    assert result.status == ERROR
    assert "holds protein sequences but model organism reads dna" in result.reason
    assert "\n" not in result.reason


def test_a_dna_only_family_rejects_proteins_up_front(tmp_path):
    path = claim_files.write_claim(tmp_path, "probe-on-proteins", check="probe", data=PROTEIN_DATA,
                                   criteria=[{"statistic": "auroc", "op": ">=", "threshold": 0.6}],
                                   params={"layer": 1}, model="protein@step0")
    with pytest.raises(ClaimError, match="reads DNA only"):
        load_claim(path, FAMILIES)


def test_a_motif_annotation_on_proteins_is_one_line(tmp_path):
    params = {"hook": "layer.0.resid_post", "annotation": {"pattern": "ATG"}, "sae": SMALL_SAE}
    result = evaluate(_protein_claim(tmp_path, "pattern-on-proteins", params=params))
    assert result.status == ERROR and "annotate a residue track" in result.reason
