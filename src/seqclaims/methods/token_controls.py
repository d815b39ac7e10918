"""Token-identity controls: what a head that reads only which token its key is would show.

In randomly initialised DNA encoders the identity of the key token explains most of the (sequence-centred)
attention a token receives, and a motif's anchored score is driven by the key token's own base (TBP's
matrix starts with a T), so a head that prefers T tokens correlates with the TATA box without reading it.
The controls here remove what token identity explains:

- ``identity_codes``: per token, an integer code of its text (the bases it spans, upper case); -1 at
  special tokens and padding (spans with no bases).
- ``identity_covariates``: one-hot covariates of the identity of the token at each of the given offsets
  from the key (0: the key token itself; -1: the token before it; +1: the one after). Per offset the
  categories are the `max_classes` identities most frequent at that offset over the content key tokens
  (ties broken by code), "other" for the rest (when there are any), and "none" where the offset leaves
  the sequence's tokens or lands on a special token (an identity like any other). The most frequent
  category is the reference and gets no column (the one-hots of all categories sum to 1). Columns are
  these indicators, 1 or 0 at every content key token, NaN elsewhere; `composition.prepared_covariates`
  restricts and centres them like the composition covariates, so that the partial correlation
  (`composition.partial_moments` / `partial_from_sums`) and the explained share
  (`composition.explained_share_from_sums`) are computed from per-sequence sums, resampled like r.
"""

from __future__ import annotations

from collections import Counter
from typing import Sequence

import numpy as np

NONE, OTHER = "none", "other"


def identity_codes(sequences: Sequence[str], offsets: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """(n_seq, n_tok) int code of each token's text (its [start, end) span, upper case) and the texts by
    code; -1 at special tokens and padding (empty spans)."""
    offsets = np.asarray(offsets, dtype=np.int64)
    codes = np.full(offsets.shape[:2], -1, dtype=np.int64)
    index: dict[str, int] = {}
    for i, sequence in enumerate(sequences):
        for t, (start, end) in enumerate(offsets[i]):
            if end > start >= 0:
                codes[i, t] = index.setdefault(sequence[start:end].upper(), len(index))
    return codes, list(index)


def shifted_codes(codes: np.ndarray, offset: int) -> np.ndarray:
    """(n_seq, n_tok) code of the token `offset` positions from each token; -1 beyond the token row."""
    out = np.full_like(codes, -1)
    n_tok = codes.shape[1]
    if abs(offset) >= n_tok:
        return out
    if offset >= 0:
        out[:, : n_tok - offset] = codes[:, offset:]
    else:
        out[:, -offset:] = codes[:, : n_tok + offset]
    return out


def identity_covariates(codes: np.ndarray, names: Sequence[str], token_offsets: Sequence[int],
                        max_classes: int) -> tuple[np.ndarray, list[str]]:
    """(q, n_seq, n_tok) one-hot identity covariates of the tokens at `token_offsets` from every content
    key token (module docstring), and their names "<offset>:<identity>"."""
    content = codes >= 0
    columns, labels = [], []
    for offset in token_offsets:
        shifted = shifted_codes(codes, offset)
        categories = _categories(shifted[content], max_classes)
        lookup = np.full(len(names) + 1, categories.get(None, 0), dtype=np.int64)  # by code + 1
        for code, category in categories.items():
            if code is not None:
                lookup[code + 1] = category
        assigned = lookup[shifted + 1]
        for category, label in enumerate(_category_labels(categories, names)):
            if category == 0:
                continue  # the most frequent category is the reference
            columns.append(np.where(content, (assigned == category).astype(np.float64), np.nan))
            labels.append(f"{offset:+d}:{label}")
    if not columns:
        return np.zeros((0, *codes.shape)), []
    return np.stack(columns), labels


def _categories(observed: np.ndarray, max_classes: int) -> dict[int | None, int]:
    """code -> category (0 = most frequent), the `max_classes` most frequent codes (-1 is "none") each their
    own, any others sharing the key None ("other")."""
    ranked = sorted(Counter(observed.tolist()).items(), key=lambda item: (-item[1], item[0]))
    kept: dict[int | None, int] = {code: i for i, (code, _) in enumerate(ranked[:max_classes])}
    if len(ranked) > max_classes:
        kept[None] = len(kept)
    return kept


def _category_labels(categories: dict[int | None, int], names: Sequence[str]) -> list[str]:
    labels = [""] * len(categories)
    for code, category in categories.items():
        labels[category] = OTHER if code is None else NONE if code < 0 else names[code]
    return labels
