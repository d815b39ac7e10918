"""The values a check family hands back, and that results and the evidence store keep: one `Estimate` per
statistic (with its `Ceiling` where the family computes one), `Card`s, references to `Figure`s, and the
`Evidence` that holds them.

This module imports nothing else from the package, so every layer can use these types: families build
them, the judge decides on them, the evidence store writes them, the report shows them. Drawing and storing
figures lives in `seqclaims.methods.figures`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Ceiling:
    """The statistic an ideal mechanism reaches under the claim's exact settings (DESIGN section 3)."""

    estimate: float
    ci_low: float
    ci_high: float


@dataclass(frozen=True)
class Estimate:
    """One statistic: point estimate, confidence interval, the sample size it rests on.

    `p` is the corrected p-value where one is meaningful. `kind == "pvalue"` marks a statistic that
    *is* a p-value: criteria compare it directly (its interval is the point). `reason` explains a
    missing estimate (NaN), which makes every criterion on it inconclusive.
    """

    estimate: float
    ci_low: float
    ci_high: float
    n: int
    p: float | None = None
    kind: str = "estimate"
    min_n: int = 1
    ceiling: Ceiling | None = None
    effect_size: float | None = None
    reason: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    # the bootstrap resamples behind the interval, index-aligned with any other run of the same claim (same
    # seeds, same sequences): what the paired _minus_init statistics subtract. Kept in memory only.
    samples: Any = field(default=None, repr=False, compare=False)
    samples_kind: str = field(default="bootstrap", repr=False, compare=False)  # or "jackknife": leave-one-out values

    def __post_init__(self) -> None:
        low, high = self.ci_low, self.ci_high
        if math.isfinite(low) and math.isfinite(high) and low > high:
            raise ValueError(f"confidence interval [{low}, {high}] has its bounds in the wrong order")

    @classmethod
    def missing(cls, reason: str, n: int = 0) -> "Estimate":
        nan = float("nan")
        return cls(nan, nan, nan, n, reason=reason)

    @classmethod
    def pvalue(cls, p: float, n: int, **kwargs: Any) -> "Estimate":
        return cls(p, p, p, n, p=p, kind="pvalue", **kwargs)

    @property
    def is_missing(self) -> bool:
        return not all(math.isfinite(v) for v in (self.estimate, self.ci_low, self.ci_high))

    def to_json(self) -> dict[str, Any]:
        data = asdict(replace(self, samples=None))
        data.pop("samples"), data.pop("samples_kind")
        data["ceiling"] = asdict(self.ceiling) if self.ceiling else None
        return {key: json_safe(value) for key, value in data.items()}


@dataclass(frozen=True)
class Card:
    """A dataset or model card: a title and a flat or nested mapping of facts."""

    title: str
    facts: dict[str, Any]


@dataclass(frozen=True)
class Figure:
    """A figure for the report: `file` names a PNG in the figure store (None while it is a recipe, the data
    of a figure drawn against the claim's criteria when it is judged). Made by
    `seqclaims.methods.figures.figure_from_matplotlib` and `figure_from_recipe`."""

    title: str
    file: str | None
    caption: str = ""
    recipe: dict[str, Any] | None = None
    graph: dict[str, Any] | None = None  # nodes and edges the report shows as an interactive graph beside the PNG


@dataclass
class Evidence:
    statistics: dict[str, Estimate]
    figures: list[Figure] = field(default_factory=list)
    cards: list[Card] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    versions: dict[str, str] = field(default_factory=dict)


def rounded(value: Any, digits: int = 6) -> float | None:
    """A number for a detail table: rounded, or None when it is NaN or infinite."""
    return round(float(value), digits) if math.isfinite(float(value)) else None


def json_safe(value: Any) -> Any:
    """NaN and infinity become null; numpy scalars become Python numbers."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if hasattr(value, "tolist") and callable(value.tolist):  # numpy arrays and scalars
        return json_safe(value.tolist())
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return None
    return value
