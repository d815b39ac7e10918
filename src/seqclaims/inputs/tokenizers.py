"""Tokenization with character offsets, for any tokenizer a model folder ships or a declared nucleotide scheme.

Every token carries the character span `[start, end)` it covers in its sequence, so that per-character
annotations (motif scores, codon phase, splice sites) align with tokens the same way for single
nucleotides, k-mers and BPE. Special tokens and padding have the span `(0, 0)`.

Kinds of tokenization:

- ``None``: the folder's own tokenizer. A fast (Rust) tokenizer reports offsets itself; a slow one is
  aligned by matching its token strings against the sequence. A tokenizer saved by
  :func:`build_nucleotide_tokenizer` records its scheme in ``tokenizer_config.json`` and is used through
  that scheme, so overlapping k-mers work from raw sequences too.
- ``single``: one token per character.
- ``kmer_overlapping``: one k-mer per start position `i`, span `[i, i + k)` (DNABERT-1 style).
- ``kmer_nonoverlapping``: consecutive k-mers from the left; a stretch of A/C/G/T shorter than k (at
  the end, or before an N or another symbol) becomes single-character tokens (Nucleotide Transformer
  style).

Sequences are upper-cased first (soft-masked genome sequence is lower case).
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from typing import Literal, Sequence

import numpy as np

from seqclaims.core.input_specs import Kind, Tokenization
from seqclaims.errors import InputError
from seqclaims.lazy import lazy_import

torch = lazy_import("torch")

Alphabet = Literal["dna", "protein"]

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
NUCLEOTIDES = "ACGT"
SCHEME_KEY = "seqclaims_tokenization"  # where a saved nucleotide tokenizer records its scheme
ALPHABET_KEY = "seqclaims_alphabet"  # where a saved tokenizer records that it reads proteins
AMINO_ACIDS = "ACDEFGHIKLMNPQRSTVWY"


@dataclass(frozen=True)
class Batch:
    """A padded batch of tokenized sequences.

    input_ids:      (n_seq, n_tok) int64
    attention_mask: (n_seq, n_tok) int64, 1 for real tokens (special tokens included), 0 for padding
    offsets:        (n_seq, n_tok, 2) int64, character span [start, end) of each token; (0, 0) for
                    special tokens and padding
    special_mask:   (n_seq, n_tok) bool, True for special tokens and padding
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    offsets: torch.Tensor
    special_mask: torch.Tensor

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])

    @property
    def n_tok(self) -> int:
        return int(self.input_ids.shape[1])

    @property
    def lengths(self) -> torch.Tensor:
        """(n_seq,) number of real tokens, special tokens included."""
        return self.attention_mask.sum(dim=1)

    @property
    def content_mask(self) -> torch.Tensor:
        """(n_seq, n_tok) bool: tokens that cover sequence characters (neither special nor padding)."""
        return ~self.special_mask

    def select(self, rows: slice | torch.Tensor) -> "Batch":
        """The sequences `rows`, trimmed to their longest member."""
        picked = Batch(self.input_ids[rows], self.attention_mask[rows], self.offsets[rows], self.special_mask[rows])
        return picked.trimmed()

    def trimmed(self) -> "Batch":
        """The same batch without token columns that are padding in every row."""
        n_tok = int(self.lengths.max()) if len(self) else 0
        if n_tok == self.n_tok:
            return self
        return Batch(
            self.input_ids[:, :n_tok],
            self.attention_mask[:, :n_tok],
            self.offsets[:, :n_tok],
            self.special_mask[:, :n_tok],
        )

    def repeated(self, copies: int) -> "Batch":
        """`copies` stacked copies of the batch, copy-major: row `c * n_seq + i` is sequence i."""
        return Batch(*(t.repeat(copies, *([1] * (t.ndim - 1))) for t in self._tensors()))

    def model_inputs(self) -> dict[str, torch.Tensor]:
        return {"input_ids": self.input_ids, "attention_mask": self.attention_mask}

    def _tensors(self) -> tuple[torch.Tensor, ...]:
        return (self.input_ids, self.attention_mask, self.offsets, self.special_mask)


# ---------------------------------------------------------------------------------------------
# Building a nucleotide tokenizer that `AutoTokenizer.from_pretrained(folder)` loads offline


def nucleotide_vocab(kind: Kind, k: int = 1) -> list[str]:
    """Token strings of a nucleotide scheme, special tokens first.

    single: A C G T N; kmer_overlapping: the 4**k k-mers; kmer_nonoverlapping: the 4**k k-mers plus the
    single characters A C G T N that leftovers become.
    """
    Tokenization(kind=kind, k=k)
    singles = list(NUCLEOTIDES + "N")
    kmers = ["".join(p) for p in itertools.product(NUCLEOTIDES, repeat=k)]
    body = {"single": singles, "kmer_overlapping": kmers, "kmer_nonoverlapping": kmers + singles}[kind]
    return list(SPECIAL_TOKENS) + list(dict.fromkeys(body))


def build_nucleotide_tokenizer(kind: Kind, k: int = 1, *, model_max_length: int = 1024):
    """A `PreTrainedTokenizerFast` over a WordLevel vocabulary for a nucleotide scheme.

    Adds [CLS] ... [SEP] around each sequence. For `single` and `kmer_nonoverlapping` its own
    pre-tokenizer splits raw sequences like :func:`tokenize` does; for `kmer_overlapping` (which no
    splitting rule can express) it splits on whitespace, DNABERT-1 style, and :func:`tokenize` produces
    the overlapping k-mers from raw sequences. Save it with ``save_pretrained(folder)``.
    """
    split = None if kind == "kmer_overlapping" else _split_pattern(kind, k)
    return _word_level_tokenizer(nucleotide_vocab(kind, k), split, model_max_length,
                                 **{SCHEME_KEY: {"kind": kind, "k": k}})


def build_protein_tokenizer(*, model_max_length: int = 1024):
    """A one-token-per-residue `PreTrainedTokenizerFast`: the 20 amino acids and X (ESM-2 style, without
    the rare letters, which become [UNK]); it records the protein alphabet (`sequence_alphabet`)."""
    return _word_level_tokenizer(protein_vocab(), ".", model_max_length,
                                 **{SCHEME_KEY: {"kind": "single", "k": 1}, ALPHABET_KEY: "protein"})


def protein_vocab() -> list[str]:
    return list(SPECIAL_TOKENS) + list(AMINO_ACIDS + "X")


def _word_level_tokenizer(tokens: list[str], split: str | None, model_max_length: int, **recorded):
    """WordLevel over `tokens` (special tokens first), split by the regex `split` (None: on whitespace),
    framed as [CLS] $A [SEP]; `recorded` goes into tokenizer_config.json."""
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {token: i for i, token in enumerate(tokens)}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    if split is None:
        backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    else:
        backend.pre_tokenizer = pre_tokenizers.Split(Regex(split), behavior="isolated")
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B [SEP]",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=model_max_length,
        **recorded,
    )


def sequence_alphabet(tokenizer) -> Alphabet:
    """What a tokenizer reads: "protein" when it records so or its vocabulary holds single-letter tokens for
    residues that are no nucleotide code (E, F, I, L, P, Q); "dna" otherwise."""
    recorded = getattr(tokenizer, "init_kwargs", {}).get(ALPHABET_KEY)
    if recorded:
        return recorded
    vocab = tokenizer.get_vocab()
    return "protein" if all(letter in vocab for letter in "EFILPQ") else "dna"


def _split_pattern(kind: Kind, k: int) -> str:
    """Regex whose successive leftmost matches are the tokens of a non-overlapping scheme."""
    return "." if kind == "single" else f"[{NUCLEOTIDES}]{{{k}}}|."


def declared_scheme(tokenizer) -> Tokenization | None:
    """The nucleotide scheme a tokenizer saved by :func:`build_nucleotide_tokenizer` records, if any."""
    recorded = getattr(tokenizer, "init_kwargs", {}).get(SCHEME_KEY)
    return Tokenization(**recorded) if recorded else None


# ---------------------------------------------------------------------------------------------
# Tokenizing


def tokenize(
    sequences: Sequence[str],
    kind: Kind | None = None,
    k: int | None = None,
    *,
    tokenizer,
    max_length: int | None = None,
) -> Batch:
    """Tokenize `sequences` into a padded :class:`Batch` with character offsets.

    kind/k: a nucleotide scheme, looked up in `tokenizer`'s vocabulary; None uses the tokenizer itself
    (or the scheme it records). max_length: the model's context in tokens, special tokens included; a
    longer sequence raises InputError (cutting sequences into windows is the dataset builder's job).
    """
    sequences = [str(s).upper() for s in sequences]
    _reject_empty(sequences)
    scheme = Tokenization(kind=kind, k=k or 1) if kind else declared_scheme(tokenizer)
    if scheme is not None:
        lookup = _VocabLookup.of(tokenizer)
        rows = [_scheme_row(s, i, scheme, lookup) for i, s in enumerate(sequences)]
    else:
        rows = _tokenizer_rows(sequences, tokenizer)
    _check_lengths(rows, sequences, max_length)
    return _pad(rows, tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0)


@dataclass(frozen=True)
class _Row:
    """One tokenized sequence: ids (n,), spans (n, 2), special (n,) bool."""

    ids: np.ndarray
    spans: np.ndarray
    special: np.ndarray


def _reject_empty(sequences: list[str]) -> None:
    if not sequences:
        raise InputError("no sequences to tokenize; give at least one sequence")
    for i, s in enumerate(sequences):
        if not s:
            raise InputError(f"sequence {i} is empty; remove it from the dataset")


def split_sequence(sequence: str, scheme: Tokenization) -> tuple[list[str], np.ndarray]:
    """Token strings of `sequence` under a nucleotide scheme and their spans (n, 2) [start, end)."""
    if scheme.kind == "kmer_overlapping":
        starts = np.arange(max(len(sequence) - scheme.k + 1, 0))
        tokens = [sequence[i : i + scheme.k] for i in range(len(starts))]
        return tokens, np.stack([starts, starts + scheme.k], axis=1)
    matches = list(re.finditer(_split_pattern(scheme.kind, scheme.k), sequence, flags=re.S))
    spans = np.array([m.span() for m in matches], dtype=np.int64).reshape(-1, 2)
    return [m.group() for m in matches], spans


@dataclass(frozen=True)
class _VocabLookup:
    """What a nucleotide scheme needs from a tokenizer: its vocabulary, unknown id and special frame."""

    vocab: dict[str, int]
    unk: int | None
    prefix: list[int]
    suffix: list[int]

    @classmethod
    def of(cls, tokenizer) -> "_VocabLookup":
        return cls(tokenizer.get_vocab(), tokenizer.unk_token_id, *_special_frame(tokenizer))


def _scheme_row(sequence: str, index: int, scheme: Tokenization, lookup: _VocabLookup) -> _Row:
    tokens, spans = split_sequence(sequence, scheme)
    if not tokens:
        raise InputError(
            f"sequence {index} has {len(sequence)} characters, fewer than k = {scheme.k}; "
            "drop it or use a shorter k"
        )
    vocab, unk = lookup.vocab, lookup.unk
    if unk is None and any(t not in vocab for t in tokens):
        missing = next(t for t in tokens if t not in vocab)
        raise InputError(
            f"token {missing!r} of sequence {index} is not in the tokenizer's vocabulary and it has no "
            "unknown token; declare a tokenization that matches the model's vocabulary"
        )
    ids = np.fromiter((vocab.get(t, unk) for t in tokens), dtype=np.int64, count=len(tokens))
    return _framed(ids, spans, lookup.prefix, lookup.suffix)


def _framed(ids: np.ndarray, spans: np.ndarray, prefix: list[int], suffix: list[int]) -> _Row:
    """Surround content tokens with the tokenizer's special tokens, whose span is (0, 0)."""
    n_pre, n_suf = len(prefix), len(suffix)
    all_ids = np.concatenate([np.asarray(prefix, np.int64), ids, np.asarray(suffix, np.int64)])
    all_spans = np.concatenate([np.zeros((n_pre, 2), np.int64), spans, np.zeros((n_suf, 2), np.int64)])
    special = np.zeros(len(all_ids), dtype=bool)
    special[:n_pre] = True
    special[len(all_ids) - n_suf :] = True
    return _Row(all_ids, all_spans, special)


def _special_frame(tokenizer) -> tuple[list[int], list[int]]:
    """The special token ids the tokenizer puts before and after a sequence (e.g. [CLS], [SEP])."""
    probe = tokenizer("A", return_special_tokens_mask=True)
    ids, special = probe["input_ids"], probe["special_tokens_mask"]
    if 0 not in special:
        raise InputError(
            f"the tokenizer ({type(tokenizer).__name__}) turns the probe sequence 'A' into special tokens only, "
            "so a nucleotide scheme cannot be framed with it; use the folder's own tokenization (no "
            "`tokenization:`) or a tokenizer whose vocabulary holds the nucleotides"
        )
    first = special.index(0)
    last = len(special) - 1 - special[::-1].index(0)
    return list(ids[:first]), list(ids[last + 1 :])


def _tokenizer_rows(sequences: list[str], tokenizer) -> list[_Row]:
    """Tokenize with the tokenizer itself: its offsets when it is fast, else aligned token strings."""
    if getattr(tokenizer, "is_fast", False):
        encoded = tokenizer(sequences, return_offsets_mapping=True, return_special_tokens_mask=True)
        return [
            _Row(np.asarray(ids, np.int64), np.asarray(spans, np.int64).reshape(-1, 2), np.asarray(sp, bool))
            for ids, spans, sp in zip(
                encoded["input_ids"], encoded["offset_mapping"], encoded["special_tokens_mask"]
            )
        ]
    encoded = tokenizer(sequences, return_special_tokens_mask=True)
    return [
        _aligned_row(seq, i, ids, sp, tokenizer)
        for i, (seq, ids, sp) in enumerate(zip(sequences, encoded["input_ids"], encoded["special_tokens_mask"]))
    ]


_SUBWORD_MARKS = ("##", "Ġ", "▁")


def _aligned_row(sequence: str, index: int, ids: list[int], special: list[int], tokenizer) -> _Row:
    """Offsets for a tokenizer that gives none, by matching each content token's string in turn."""
    tokens = tokenizer.convert_ids_to_tokens(ids)
    spans = np.zeros((len(ids), 2), dtype=np.int64)
    cursor = 0
    for j, (token, is_special) in enumerate(zip(tokens, special)):
        if is_special:
            continue
        text = token
        for mark in _SUBWORD_MARKS:
            text = text.removeprefix(mark)
        text = text.upper()
        if not text or sequence[cursor : cursor + len(text)] != text:
            raise InputError(
                f"cannot align token {token!r} of sequence {index} with its characters; declare "
                "`tokenization: {kind: ..., k: ...}` in the claim's model mapping"
            )
        spans[j] = (cursor, cursor + len(text))
        cursor += len(text)
    return _Row(np.asarray(ids, np.int64), spans, np.asarray(special, bool))


def _check_lengths(rows: list[_Row], sequences: list[str], max_length: int | None) -> None:
    if max_length is None:
        return
    lengths = np.array([len(r.ids) for r in rows])
    too_long = np.flatnonzero(lengths > max_length)
    if too_long.size:
        i = int(too_long[0])
        raise InputError(
            f"sequence {i} ({len(sequences[i])} characters) gives {lengths[i]} tokens, more than the model's "
            f"context of {max_length} tokens ({too_long.size} sequences too long); cut the data into "
            "shorter windows"
        )


def _pad(rows: list[_Row], pad_id: int) -> Batch:
    n_seq, n_tok = len(rows), max(len(r.ids) for r in rows)
    input_ids = np.full((n_seq, n_tok), pad_id, dtype=np.int64)
    attention = np.zeros((n_seq, n_tok), dtype=np.int64)
    offsets = np.zeros((n_seq, n_tok, 2), dtype=np.int64)
    special = np.ones((n_seq, n_tok), dtype=bool)
    for i, row in enumerate(rows):
        n = len(row.ids)
        input_ids[i, :n] = row.ids
        attention[i, :n] = 1
        offsets[i, :n] = np.where(row.special[:, None], 0, row.spans)
        special[i, :n] = row.special
    return Batch(*(torch.from_numpy(a) for a in (input_ids, attention, offsets, special)))
