"""The `user` dataset: a CSV/TSV of sequences and labels, or a BED of intervals over a user FASTA.

Labels are integer classes. The split: a `split` column as given; else, with coordinates, region-disjoint
(the last `test_fraction` of each chromosome is the test region); else a seeded random draw stratified by
label (not region-disjoint, and the card says so). A malformed input is one InputError naming the file,
the line and the fix.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from seqclaims.errors import InputError
from seqclaims.fsutil import atomic_write_bytes, file_lock
from seqclaims.inputs import genome
from seqclaims.inputs.data import (IUPAC, SPLITS, Coords, Dataset, DataSpec, assign_split, composition, dataset_name,
                                   gc_summary, region_boundary)
from seqclaims.paths import cache_dir


def _resolve(path: str, base_dir: Path | None) -> Path:
    candidate = Path(path).expanduser()
    if not candidate.is_absolute() and base_dir is not None:
        candidate = Path(base_dir) / candidate
    return candidate


def _user_format(spec: DataSpec, path: Path) -> str:
    if spec.format:
        return spec.format
    suffixes = [s.lower() for s in path.suffixes if s.lower() != ".gz"]
    suffix = suffixes[-1] if suffixes else ""
    formats = {".csv": "csv", ".tsv": "tsv", ".txt": "tsv", ".bed": "bed"}
    if suffix not in formats:
        raise InputError(f"cannot tell the format of {path}; name it .csv, .tsv or .bed, or set `format: csv | tsv | bed`")
    return formats[suffix]


def _read_text(path: Path) -> str:
    if not path.is_file():
        raise InputError(f"data file {path} not found; check `path:` (relative paths are relative to the claim file)")
    try:
        raw = path.read_bytes()
        return (gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw).decode("utf-8-sig")
    except (OSError, UnicodeDecodeError, EOFError) as exc:
        raise InputError(f"cannot read {path}: {exc}; give a UTF-8 text file") from None


def _parse_label(value: str, where: str) -> int:
    try:
        label = int(str(value).strip())
    except ValueError:
        raise InputError(f"{where}: label {value!r} is not an integer class; use 0 / 1 (or 0..k-1)") from None
    if label < 0:
        raise InputError(f"{where}: label {label} is negative; use 0 / 1 (or 0..k-1)")
    return label


def _check_sequence(sequence: str, where: str) -> str:
    bad = set(sequence.upper()) - IUPAC
    if bad:
        raise InputError(f"{where}: sequence has characters {''.join(sorted(bad))!r} that are not nucleotides (ACGT or IUPAC codes)")
    if not sequence:
        raise InputError(f"{where}: sequence is empty")
    return sequence


@dataclass
class _UserRows:
    sequences: list[str]  # case kept (lowercase = soft-masked)
    labels: np.ndarray
    split: np.ndarray | None
    coords: Coords | None
    chrom_lengths: dict[str, int] | None


def read_table(path: Path, delimiter: str) -> _UserRows:
    """CSV/TSV with `sequence`, `label` and optional `split`, `chrom`, `start`, `end`, `strand` columns."""
    text = _read_text(path)
    reader = csv.DictReader(io.StringIO(text), delimiter=delimiter)
    columns = [c.strip() for c in (reader.fieldnames or [])]
    if not columns:
        raise InputError(f"{path} is empty; it needs a header row with columns sequence,label")
    reader.fieldnames = columns
    for required in ("sequence", "label"):
        if required not in columns:
            raise InputError(f"{path} lacks column {required!r} (found: {', '.join(columns)}); add it to the header row")
    rows = list(reader)
    if not rows:
        raise InputError(f"{path} has a header but no rows")
    sequences = [_check_sequence((r["sequence"] or "").strip(), f"{path} line {i + 2}") for i, r in enumerate(rows)]
    labels = np.array([_parse_label(r["label"], f"{path} line {i + 2}") for i, r in enumerate(rows)], dtype=np.int64)
    split = None
    if "split" in columns:
        split = np.array([(r["split"] or "").strip().lower() for r in rows], dtype="U5")
        bad = sorted(set(split) - set(SPLITS))
        if bad:
            raise InputError(f"{path}: column 'split' has {bad[0]!r}; use 'train' or 'test'")
    coords = None
    if {"chrom", "start", "end"} <= set(columns):
        coords = _table_coords(path, rows, sequences)
    lengths = None
    if coords is not None:
        lengths = {c: int(coords.end[coords.chrom == c].max()) for c in np.unique(coords.chrom)}
    return _UserRows(sequences, labels, split, coords, lengths)


def _table_coords(path: Path, rows: list[dict], sequences: list[str]) -> Coords:
    chrom, start, end, strand = [], [], [], []
    for i, row in enumerate(rows):
        where = f"{path} line {i + 2}"
        try:
            s, e = int(row["start"]), int(row["end"])
        except (TypeError, ValueError):
            raise InputError(f"{where}: start/end {row['start']!r}, {row['end']!r} are not integers") from None
        if not 0 <= s < e or e - s != len(sequences[i]):
            raise InputError(f"{where}: interval {s}-{e} does not match the sequence length {len(sequences[i])}; use 0-based half-open coordinates")
        strand_value = (row.get("strand") or "+").strip() or "+"
        if strand_value not in ("+", "-", "."):
            raise InputError(f"{where}: strand {strand_value!r} must be '+', '-' or '.'")
        chrom.append(str(row["chrom"]).strip())
        start.append(s)
        end.append(e)
        strand.append("-" if strand_value == "-" else "+")
    return Coords(chrom, start, end, strand)


def user_fasta(path: Path):
    """pyfaidx.Fasta of a user FASTA; its index goes to the cache folder, not next to the file."""
    if not path.is_file():
        raise InputError(f"FASTA {path} not found; check `fasta:`")
    folder = cache_dir() / "user_fasta"
    folder.mkdir(parents=True, exist_ok=True)
    # named by the file's location and stamp: a changed file gets a fresh index
    prefix = f"{hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:16]}.{genome.file_stamp(path)}"
    target = folder / f"{prefix}.{path.name}"
    try:
        with open(path, "rb") as handle:
            magic = handle.read(2)
        if magic == b"\x1f\x8b" and not genome.is_bgzf(path):
            target = folder / f"{prefix}.fa"
            with file_lock(target):
                if not target.exists():
                    with gzip.open(path, "rb") as reader:
                        atomic_write_bytes(target, reader.read())
        else:
            genome.link_into_cache(path.resolve(), target)
        return genome.open_indexed_fasta(target)
    except Exception as exc:  # pyfaidx raises many kinds for a malformed file
        reason = " ".join(str(exc).replace(str(target), str(path)).split()).rstrip(".") or type(exc).__name__
        raise InputError(f"cannot open FASTA {path}: {reason}; give a plain or bgzip-compressed FASTA") from None


def read_bed(path: Path, fasta_path: Path) -> _UserRows:
    """BED intervals (chrom, start, end, name = label, [score, strand]) over a FASTA."""
    text = _read_text(path)
    fasta = user_fasta(fasta_path)
    names = set(fasta.keys())
    sequences, labels, chrom, start, end, strand = [], [], [], [], [], []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.startswith(("#", "track", "browser")):
            continue
        where = f"{path} line {number}"
        fields = line.rstrip("\n").split("\t") if "\t" in line else line.split()
        if len(fields) < 4:
            raise InputError(f"{where}: a BED line needs chrom, start, end and name (the label); found {len(fields)} columns")
        name = fields[0]
        if name not in names:
            raise InputError(f"{where}: chromosome {name!r} is not in {fasta_path} (it has {', '.join(sorted(names)[:5])})")
        try:
            s, e = int(fields[1]), int(fields[2])
        except ValueError:
            raise InputError(f"{where}: start/end {fields[1]!r}, {fields[2]!r} are not integers") from None
        length = len(fasta[name])
        if not 0 <= s < e <= length:
            raise InputError(f"{where}: interval {name}:{s}-{e} is outside the chromosome (length {length}); use 0 <= start < end <= {length}")
        orientation = fields[5] if len(fields) >= 6 else "+"
        if orientation not in ("+", "-", "."):
            raise InputError(f"{where}: strand {orientation!r} must be '+', '-' or '.'")
        sequence = str(fasta[name][s:e])
        sequences.append(genome.reverse_complement(sequence) if orientation == "-" else sequence)
        labels.append(_parse_label(fields[3], where))
        chrom.append(name)
        start.append(s)
        end.append(e)
        strand.append("-" if orientation == "-" else "+")
    if not sequences:
        raise InputError(f"{path} has no intervals")
    for i, sequence in enumerate(sequences):
        _check_sequence(sequence, f"{path} interval {i + 1}")
    lengths = {c: len(fasta[c]) for c in set(chrom)}
    return _UserRows(sequences, np.array(labels, dtype=np.int64), None, Coords(chrom, start, end, strand), lengths)


def _user_split(rows: _UserRows, test_fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    """The user's split column; else region-disjoint by coordinates; else random (stratified by label)."""
    if rows.split is not None:
        return rows.split, "given"
    if rows.coords is not None:
        boundaries = {c: region_boundary(n, test_fraction) for c, n in rows.chrom_lengths.items()}
        return assign_split(rows.coords, boundaries), "region"
    split = np.full(len(rows.labels), "train", dtype="U5")
    for label in np.unique(rows.labels):
        members = rng.permutation(np.flatnonzero(rows.labels == label))
        split[members[: int(round(len(members) * test_fraction))]] = "test"
    return split, "random (no coordinates: not region-disjoint)"


def build_user(spec: DataSpec, params: dict, rng: np.random.Generator, base_dir: Path | None) -> Dataset:
    path = _resolve(spec.path, base_dir)
    fmt = _user_format(spec, path)
    if fmt == "bed":
        if spec.fasta is None:
            raise InputError(f"BED file {path} needs `fasta:` naming the FASTA its intervals refer to")
        rows = read_bed(path, _resolve(spec.fasta, base_dir))
    else:
        rows = read_table(path, "," if fmt == "csv" else "\t")
    split, method = _user_split(rows, spec.test_fraction, rng)
    upper = [s.upper() for s in rows.sequences]
    gc, ambiguous = composition([np.frombuffer(s.encode("ascii"), np.uint8) for s in upper])
    keep = split != ""
    if spec.ambiguous == "exclude":
        keep &= ~ambiguous
    kept = np.flatnonzero(keep)
    if spec.n is not None and spec.n < len(kept):
        kept = np.sort(rng.permutation(kept)[: spec.n])
    if not len(kept):
        raise InputError(f"{path}: no sequence is left after dropping ambiguous or boundary-straddling rows")
    sequences = [upper[i] for i in kept]
    gc = gc[kept]
    labels = rows.labels[kept]
    card = {
        "source": str(path), "format": fmt, "split_method": method,
        "excluded_ambiguous": int((ambiguous & (split != "")).sum()) if spec.ambiguous == "exclude" else 0,
        "dropped_straddling": int((split == "").sum()),
        "gc": {str(label): {"before": gc_summary(gc[labels == label]), "after": gc_summary(gc[labels == label])}
               for label in np.unique(labels)},
    }
    return Dataset(
        name=dataset_name(spec), sequences=sequences, labels=labels, split=split[kept],
        coords=rows.coords.take(kept) if rows.coords is not None else None,
        tracks={"soft_mask": [np.frombuffer(rows.sequences[i].encode(), np.uint8) >= ord("a") for i in kept]},
        card=card,
    )


def user_files(spec: DataSpec, base_dir: Path | None) -> list[Path]:
    return [_resolve(p, base_dir) for p in (spec.path, spec.fasta) if p]
