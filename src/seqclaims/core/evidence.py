"""What a check family hands back: one estimate per statistic, plus figures and cards for the report.

The value types live in `seqclaims.core.values` (which imports nothing else from the package) and are
re-exported here and from `seqclaims` itself, where family authors import them. `token_annotation` maps
per-nucleotide tracks onto tokens. The claim's model and dataset come through `Context.inputs()`
(`seqclaims.judging.claim_inputs`)."""

from __future__ import annotations

from typing import Any

import numpy as np

from seqclaims.core.values import Card, Ceiling, Estimate, Evidence, Figure, rounded

__all__ = ["Card", "Ceiling", "Estimate", "Evidence", "Figure", "rounded", "token_annotation"]


def token_annotation(tracks: list[Any], offsets: Any, how: str = "any") -> Any:
    """Per-token values of per-nucleotide tracks through the tokenizer's character offsets.

    tracks: n_seq arrays (n_nt,); offsets: (n_seq, n_tok, 2) character spans, (0, 0) for special tokens
    and padding. how: `any` (max over the token's span: the token covers an annotated base), or
    `anchored` (the value at the token's first base). Returns (n_seq, n_tok) float with NaN at special
    tokens and padding."""

    offsets = np.asarray(offsets)
    out = np.full(offsets.shape[:2], np.nan)
    for row, track in enumerate(tracks):
        values = np.asarray(track, dtype=float)
        starts, ends = offsets[row, :, 0], offsets[row, :, 1]
        content = ends > starts
        if how == "anchored":
            out[row, content] = values[starts[content]]
        elif how == "any":
            prefix_max = _span_max(values, starts[content], ends[content])
            out[row, content] = prefix_max
        else:
            raise ValueError(f"unknown token alignment {how!r}: use 'any' or 'anchored'")
    return out


def _span_max(values: Any, starts: Any, ends: Any) -> Any:
    width = int((ends - starts).max()) if len(starts) else 0
    padded = np.concatenate([values, np.full(max(width, 1), -np.inf)])
    index = starts[:, None] + np.arange(max(width, 1))[None, :]
    window = np.where(index < ends[:, None], padded[index], -np.inf)
    return window.max(axis=1)
