"""Proteins translated from the embedded genome annotation, and per-residue annotation tracks.

`proteome(species)` translates one protein per protein-coding gene (its mRNA with the longest CDS) with
the standard genetic code. A protein is kept when its CDS is a whole number of codons, starts with ATG,
ends with a stop codon (removed) and has no other stop codon or ambiguous base. Each protein records its
gene's interval, so that splits can be region-disjoint like the nucleotide datasets, and the residues
whose codon an exon-exon junction of the mRNA falls in or right before.

Residue tracks (`residue_tracks`), heuristics that the sequence supports, named for what they compute,
not for a curated annotation:

- cysteine: every C.
- cysteine_pair: a C with another C 2 to 4 residues away (the C-x(1..3)-C spacing of zinc knuckles,
  thioredoxin-like and disulfide-rich motifs); the k-mer baseline of this track is every C.
- hydrophobic_stretch: residues of a 19-residue window whose mean Kyte-Doolittle hydropathy is at
  least 1.6 (Kyte & Doolittle 1982's rule for membrane-spanning segments).
- signal_like: an N-terminal hydrophobic core, the residues of an 8-residue window starting at
  residues 2..30 whose mean hydropathy is at least 2.2 (signal peptides' h-region); only the first
  such stretch of a protein.
- exon_junction: the residue whose codon holds the last base of an exon (a codon split by the intron)
  or, for a junction between codons, the residue before it. It is derived from the gene structure,
  which a protein model never sees.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from seqclaims.code_keys import code_digest
from seqclaims.fsutil import pickled
from seqclaims.inputs import genome
from seqclaims.inputs.tokenizers import AMINO_ACIDS

UNKNOWN_RESIDUE = "X"
TRACKS = ("cysteine", "cysteine_pair", "hydrophobic_stretch", "signal_like", "exon_junction")
PROTEOME_VERSION = 1
CODE_VERSION = code_digest(__name__)

# The standard code: codons in TCAG order, TTT TTC TTA TTG TCT ... GGG.
_CODE_ORDER = "TCAG"
_AMINO_BY_CODON = "FFLLSSSSYY**CC*WLLLLPPPPHHQQRRRRIIIMTTTTNNKKSSRRVVVVAAAADDEEGGGG"
GENETIC_CODE = {"".join(c): a for c, a in zip(itertools.product(_CODE_ORDER, repeat=3), _AMINO_BY_CODON)}

KYTE_DOOLITTLE = {
    "A": 1.8, "R": -4.5, "N": -3.5, "D": -3.5, "C": 2.5, "Q": -3.5, "E": -3.5, "G": -0.4, "H": -3.2, "I": 4.5,
    "L": 3.8, "K": -3.9, "M": 1.9, "F": 2.8, "P": -1.6, "S": -0.8, "T": -0.7, "W": -0.9, "Y": -1.3, "V": 4.2,
}
MEMBRANE_WINDOW, MEMBRANE_HYDROPATHY = 19, 1.6
SIGNAL_WINDOW, SIGNAL_HYDROPATHY, SIGNAL_LAST_START = 8, 2.2, 30
CYSTEINE_SPACING = (2, 3, 4)

# The composition a protein composition control reads: counts of hydrophobic and charged residues in a
# window (the rest is "other"); hydropathy is a weighted count of the same kind.
COMPOSITION_CLASSES = {"hydrophobic": "AILMFVWC", "charged": "DEKR"}
# width (residues) of the window a composition control reads for each track (the element's size)
COMPOSITION_WIDTHS = {"cysteine": 1, "cysteine_pair": 9, "hydrophobic_stretch": MEMBRANE_WINDOW,
                      "signal_like": SIGNAL_WINDOW, "exon_junction": 8}


def translate(cds: str) -> str:
    """Amino acids of a CDS read from its first base; '*' for stops, 'X' for codons with other symbols."""
    return "".join(GENETIC_CODE.get(cds[i : i + 3], UNKNOWN_RESIDUE) for i in range(0, len(cds) - 2, 3))


@dataclass
class Proteome:
    """One protein per protein-coding gene. Arrays `(n,)`; `junctions[i]`: residue indices (int64)."""

    species: str
    gene: np.ndarray
    chrom: np.ndarray
    start: np.ndarray
    end: np.ndarray
    strand: np.ndarray
    sequences: list[str]
    junctions: list[np.ndarray]

    def __len__(self) -> int:
        return len(self.sequences)


def proteome(species: str) -> Proteome:
    """The species' proteins (cached under the genome cache, keyed by the annotation and this code)."""
    files = genome.species_files(species)
    stamp = genome.file_stamp(genome.data_dir() / files.gff) if files.gff else "none"
    path = genome.genome_cache_dir() / f"{species}.proteome.v{PROTEOME_VERSION}.{stamp}.{CODE_VERSION[:12]}.pkl"
    return pickled(path, lambda: _translate_genes(species))


def _translate_genes(species: str) -> Proteome:
    ann = genome.annotation(species)
    rows = []
    for tx in _longest_cds_per_gene(ann):
        pieces = _cds_pieces(ann, tx)
        strand = str(pieces["strand"][0])
        chrom = str(pieces["chrom"][0])
        cds = "".join(genome.fetch(species, chrom, int(p["start"]), int(p["end"]), strand) for p in pieces).upper()
        protein = translate(cds)
        if len(cds) % 3 or not cds.startswith("ATG") or not protein.endswith("*") or "*" in protein[:-1] \
                or UNKNOWN_RESIDUE in protein:
            continue
        gene = ann.genes[ann.transcripts["gene"][tx]]
        junctions = _junction_residues(pieces["end"] - pieces["start"])
        rows.append((str(gene["id"]), chrom, int(gene["start"]), int(gene["end"]), strand, protein[:-1], junctions))
    rows.sort(key=lambda r: (r[1], r[2], r[4], r[0]))
    columns = list(zip(*rows)) if rows else [()] * 7
    return Proteome(species, np.array(columns[0], dtype=str), np.array(columns[1], dtype=str),
                    np.array(columns[2], dtype=np.int64), np.array(columns[3], dtype=np.int64),
                    np.array(columns[4], dtype="U1"), list(columns[5]), list(columns[6]))


def _longest_cds_per_gene(ann: genome.Annotation) -> list[int]:
    """The protein-coding mRNA with the longest CDS of each gene (ties: the first in the annotation)."""
    coding = ann.cds[ann.transcripts["protein_coding"][ann.cds["transcript"]]]
    length = np.bincount(coding["transcript"], weights=coding["end"] - coding["start"], minlength=len(ann.transcripts))
    best: dict[int, int] = {}
    for tx in np.flatnonzero(length > 0):
        gene = int(ann.transcripts["gene"][tx])
        if gene not in best or length[tx] > length[best[gene]]:
            best[gene] = int(tx)
    return sorted(best.values())


def _cds_pieces(ann: genome.Annotation, tx: int) -> np.ndarray:
    """The CDS rows of one transcript in reading order."""
    pieces = ann.cds[ann.cds["transcript"] == tx]
    pieces = pieces[np.argsort(pieces["start"])]
    return pieces[::-1] if pieces["strand"][0] == "-" else pieces


def _junction_residues(piece_lengths: np.ndarray) -> np.ndarray:
    """Residue holding the last coding base before each exon-exon junction. `(n_junctions,)` int64."""
    last_base = np.cumsum(piece_lengths)[:-1] - 1
    return (last_base // 3).astype(np.int64)


# ---------------------------------------------------------------------------------------------
# Residue tracks


def residue_tracks(protein: str, junctions: np.ndarray) -> dict[str, np.ndarray]:
    """Every track of `TRACKS` for one protein: name -> (len(protein),) bool."""
    letters = np.frombuffer(protein.encode("ascii"), dtype=np.uint8)
    is_c = letters == ord("C")
    return {
        "cysteine": is_c,
        "cysteine_pair": is_c & _has_partner(is_c, CYSTEINE_SPACING),
        "hydrophobic_stretch": _windows_above(hydropathy(protein), MEMBRANE_WINDOW, MEMBRANE_HYDROPATHY),
        "signal_like": _signal_core(hydropathy(protein)),
        "exon_junction": _marked(len(protein), junctions),
    }


def hydropathy(protein: str) -> np.ndarray:
    """(len,) Kyte-Doolittle hydropathy of each residue (0 for X)."""
    return np.array([KYTE_DOOLITTLE.get(a, 0.0) for a in protein])


def _has_partner(flags: np.ndarray, spacings: tuple[int, ...]) -> np.ndarray:
    partner = np.zeros_like(flags)
    for d in spacings:
        partner[d:] |= flags[:-d]
        partner[:-d] |= flags[d:]
    return partner


def _window_means(values: np.ndarray, width: int) -> np.ndarray:
    """(len - width + 1,) mean of every window of `width` (empty when the sequence is shorter)."""
    if len(values) < width:
        return np.zeros(0)
    prefix = np.concatenate([[0.0], np.cumsum(values)])
    return (prefix[width:] - prefix[:-width]) / width


def _windows_above(values: np.ndarray, width: int, threshold: float) -> np.ndarray:
    """(len,) bool: residues inside any window whose mean reaches `threshold`."""
    starts = np.flatnonzero(_window_means(values, width) >= threshold)
    delta = np.zeros(len(values) + 1, dtype=np.int64)
    np.add.at(delta, starts, 1)
    np.add.at(delta, starts + width, -1)
    return np.cumsum(delta[:-1]) > 0


def _signal_core(values: np.ndarray) -> np.ndarray:
    """(len,) bool: the first N-terminal hydrophobic window (start 1..SIGNAL_LAST_START - 1, 0-based)."""
    means = _window_means(values, SIGNAL_WINDOW)[1:SIGNAL_LAST_START]
    marked = np.zeros(len(values), dtype=bool)
    hits = np.flatnonzero(means >= SIGNAL_HYDROPATHY)
    if len(hits):
        first = hits[0] + 1
        marked[first : first + SIGNAL_WINDOW] = True
    return marked


def _marked(length: int, positions: np.ndarray) -> np.ndarray:
    flags = np.zeros(length, dtype=bool)
    positions = np.asarray(positions, dtype=np.int64)
    flags[positions[(positions >= 0) & (positions < length)]] = True
    return flags


def residue_codes(sequences: list[str] | np.ndarray) -> np.ndarray:
    """ASCII bytes or strings -> int8 codes in AMINO_ACIDS order, -1 for anything else."""
    table = np.full(256, -1, dtype=np.int8)
    for code, letter in enumerate(AMINO_ACIDS.encode()):
        table[letter] = code
    if isinstance(sequences, np.ndarray):
        return table[sequences.astype(np.uint8)]
    return table[np.frombuffer("".join(sequences).encode("ascii"), dtype=np.uint8)]
