"""What a check family hands back: one estimate per statistic, plus figures and cards for the report."""

from __future__ import annotations

import base64
import io
import math
from dataclasses import asdict, dataclass, field
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
        data = asdict(self)
        data["ceiling"] = asdict(self.ceiling) if self.ceiling else None
        return {key: _finite_or_none(value) for key, value in data.items()}


@dataclass(frozen=True)
class Figure:
    """A figure for the report, stored as PNG bytes encoded in base64."""

    title: str
    png_base64: str
    caption: str = ""

    @classmethod
    def from_matplotlib(cls, fig: Any, title: str, caption: str = "") -> "Figure":
        import matplotlib.pyplot as plt

        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
        plt.close(fig)
        return cls(title, base64.b64encode(buffer.getvalue()).decode("ascii"), caption)


@dataclass(frozen=True)
class Card:
    """A dataset or model card: a title and a flat or nested mapping of facts."""

    title: str
    facts: dict[str, Any]


@dataclass
class Evidence:
    statistics: dict[str, Estimate]
    figures: list[Figure] = field(default_factory=list)
    cards: list[Card] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    versions: dict[str, str] = field(default_factory=dict)


def _finite_or_none(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
