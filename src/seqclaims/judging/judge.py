"""The judge pipeline: claim file -> claim -> family evidence -> criterion verdicts -> claim verdict.

`judge_path` is the one way a claim file is judged (the pytest plugin, the Ray executor and the command
line call it): it loads the claim (`read_claim`) and judges it (`judge`). Errors and missing capabilities
are results, not crashes: a claim file that cannot be loaded is an `error` result, an unavailable model
or dataset makes the claim `skipped` with a reason, a user error or a failure inside a family makes it
`error`, and none of them ever counts as a pass.
"""

from __future__ import annotations

import time
import traceback
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from seqclaims.core.families import Context, Family, FamilyTable, load_claim
from seqclaims.core.schema import Claim, canonical_hash, shown_path
from seqclaims.core.values import Card, Estimate, Evidence, Figure
from seqclaims.core.verdicts import INCONCLUSIVE, claim_verdict, criterion_verdict
from seqclaims.errors import HookInfidelity, SeqclaimsError, Unavailable
from seqclaims.judging import evidence_store, init_baseline
from seqclaims.judging.claim_inputs import claim_context
from seqclaims.methods.figures import draw_for_criteria
from seqclaims.version import __version__

EVALUATED, SKIPPED, ERROR = "evaluated", "skipped", "error"


@dataclass
class CriterionResult:
    statistic: str
    op: str
    threshold: float
    estimate: float | None
    ci_low: float | None
    ci_high: float | None
    n: int
    p: float | None
    effect_size: float | None
    verdict: str
    reason: str
    ceiling: dict[str, float] | None = None
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class ClaimResult:
    id: str
    path: str
    family: str
    study: str
    status: str
    verdict: str | None
    expect: str | None
    reason: str = ""
    title: str = ""
    statement: str = ""
    source: str | None = None
    decision: str = "all"
    ci_level: float | None = None
    criteria: list[CriterionResult] = field(default_factory=list)
    registration: dict[str, Any] = field(default_factory=dict)
    figures: list[Figure] = field(default_factory=list)
    cards: list[Card] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    versions: dict[str, str] = field(default_factory=dict)
    duration_s: float = 0.0
    traceback: str | None = None
    evidence_source: str = ""  # computed | stored (re-judged from the evidence store) | "" (none)

    @property
    def matches_expectation(self) -> bool:
        return self.status == EVALUATED and self.verdict == self.expect

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["figures"] = [asdict(f) for f in self.figures]
        data["cards"] = [asdict(c) for c in self.cards]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "ClaimResult":
        """The result `to_json` wrote (a result computed elsewhere, e.g. on a Ray worker)."""
        return cls(**{**data, "criteria": [CriterionResult(**c) for c in data.get("criteria", [])],
                      "figures": [Figure(**f) for f in data.get("figures", [])],
                      "cards": [Card(**c) for c in data.get("cards", [])]})


def judge_path(path: Path, families: FamilyTable, *, loaded: Claim | ClaimResult | None = None,
               use_store: bool = True) -> ClaimResult:
    """Load the claim file `path` and judge it against its family. Never raises for problems with the file,
    the claim, its model or its data: a file that cannot be loaded is an error result.

    `loaded`: what `read_claim(path, families)` gave, when the caller has read the file already (the
    plugin reads every claim at collection, for its name and markers)."""
    loaded = loaded if loaded is not None else read_claim(path, families)
    if isinstance(loaded, ClaimResult):
        return loaded
    return judge(loaded, families.get(loaded.check, path), use_store=use_store)


def read_claim(path: Path, families: FamilyTable) -> Claim | ClaimResult:
    """The claim in `path`, or the error result that stands for a file that cannot be loaded."""
    try:
        return load_claim(path, families)
    except SeqclaimsError as exc:
        return error_result(shown_path(path), exc.message, path.parent.name)
    except Exception as exc:  # one unreadable claim must never stop the others
        message = f"{shown_path(path)}: could not be loaded ({type(exc).__name__}: {exc})".splitlines()[0]
        return error_result(shown_path(path), message, path.parent.name)


def judge(claim: Claim, family: Family, context: Context | None = None, *, use_store: bool = True) -> ClaimResult:
    """Evaluate one claim. Never raises for problems with the claim, its model or its data.

    `context` defaults to `claim_context(claim)`.
    With `use_store`, an unchanged claim is re-judged from its stored evidence (`evidence_store`)."""
    context = context if context is not None else claim_context(claim)
    result = _blank_result(claim)
    started = time.perf_counter()
    key = evidence_store.evidence_key(claim, family, family.source) if use_store else None
    stored = evidence_store.load(key, claim.criteria)
    if stored is not None:
        result.evidence_source = "stored"
        if stored.skipped is not None:
            result.status, result.reason = SKIPPED, stored.skipped
        else:
            _decide(result, claim, family, stored.evidence)
    else:
        _compute_and_decide(result, claim, family, context, key)
    result.duration_s = round(time.perf_counter() - started, 3)
    return result


def _compute_and_decide(result: ClaimResult, claim: Claim, family: Family, context: Context,
                        key: evidence_store.EvidenceKey | None) -> None:
    result.evidence_source = "computed"
    try:
        evidence = family.evaluate(claim, replace(context, whole_sequences=family.whole_sequences))
        evidence.statistics.update(init_baseline.init_statistics(claim, family, context, evidence.statistics))
    except Unavailable as exc:
        result.status, result.reason = SKIPPED, exc.message
        evidence_store.save_skip(key, exc.message, claim.criteria)
    except HookInfidelity as exc:
        result.verdict, result.reason = INCONCLUSIVE, exc.message
    except SeqclaimsError as exc:
        result.status, result.reason = ERROR, exc.message
    except Exception as exc:  # a bug in a family is an error result for this claim only
        result.status = ERROR
        result.reason = f"internal error in family {family.name!r}: {type(exc).__name__}: {exc}".splitlines()[0]
        result.traceback = traceback.format_exc()
    else:
        missing = [c.statistic for c in claim.criteria if c.statistic not in evidence.statistics]
        if missing:
            result.status = ERROR
            result.reason = f"family {family.name!r} did not produce {', '.join(sorted(set(missing)))}"
        else:
            evidence_store.save_evidence(key, evidence)
            _decide(result, claim, family, evidence)


def error_result(path: Path, message: str, study: str) -> ClaimResult:
    """The result for a claim file that could not be loaded at all."""
    return ClaimResult(id=path.stem, path=str(path), family="?", study=study, status=ERROR, verdict=None,
                       expect=None, reason=message)


def _blank_result(claim: Claim) -> ClaimResult:
    return ClaimResult(
        id=claim.id, path=str(claim.path), family=claim.check, study=claim.study, status=EVALUATED,
        verdict=None, expect=claim.expect, title=claim.title, statement=" ".join(claim.statement.split()),
        source=claim.source, decision=claim.decision, ci_level=claim.ci_level,
        versions={"seqclaims": __version__, "claim_sha256": canonical_hash(claim.content)},
    )


def _decide(result: ClaimResult, claim: Claim, family: Family, evidence: Evidence) -> None:
    for criterion in claim.criteria:
        estimate = evidence.statistics.get(criterion.statistic)
        if estimate is not None and estimate.min_n < family.min_n:
            estimate = replace(estimate, min_n=family.min_n)
        decided = criterion_verdict(estimate, criterion.op, criterion.threshold)
        result.criteria.append(_criterion_result(criterion, estimate, decided.verdict, decided.reason))
    result.verdict = claim_verdict([c.verdict for c in result.criteria], claim.decision)
    if result.verdict == INCONCLUSIVE:
        result.reason = "; ".join(sorted({c.reason for c in result.criteria if c.verdict == INCONCLUSIVE}))
    result.notes, result.cards = list(evidence.notes), evidence.cards
    result.figures = _drawn(evidence.figures, claim, result)
    result.versions.update(evidence.versions)


def _drawn(figures: list[Figure], claim: Claim, result: ClaimResult) -> list[Figure]:
    """The figures drawn against the claim's criteria; one that cannot be drawn is left out with a note
    (a figure never changes a verdict)."""
    drawn = []
    for figure in figures:
        try:
            drawn.append(draw_for_criteria(figure, claim.criteria))
        except Exception as exc:
            result.notes.append(f"figure {figure.title!r} could not be drawn: {type(exc).__name__}: {exc}".splitlines()[0])
    return drawn


def _criterion_result(criterion: Any, estimate: Estimate | None, verdict: str, reason: str) -> CriterionResult:
    values = estimate.to_json() if estimate is not None else {}
    return CriterionResult(
        statistic=criterion.statistic, op=criterion.op, threshold=criterion.threshold,
        estimate=values.get("estimate"), ci_low=values.get("ci_low"), ci_high=values.get("ci_high"),
        n=values.get("n", 0), p=values.get("p"), effect_size=values.get("effect_size"),
        verdict=verdict, reason=reason, ceiling=values.get("ceiling"), detail=values.get("detail") or {},
    )
