"""The run report (DESIGN section 5): `index.html` (Jinja), `summary.md` and `results.json`.

The report leads with the prediction record: of the claims registered before their results, how many
verdicts met the prediction, how many did not (split into outcomes the ledger accepts and the rest), and
how many have no verdict in this run (undecided). Each is counted against the expectation as first
registered (or its recorded clerical correction), so an expectation rewritten after its result counts
as the prediction it replaced."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape

from seqclaims.core.values import Figure
from seqclaims.methods.figures import RENDERERS, copy_into, draw_for_criteria, figure_from_recipe
from seqclaims.record.ledger import LedgerChange, accepted_outcome, write_json_atomic
from seqclaims.version import __version__

FIGURES_FOLDER = "figures"  # beside index.html: the report's PNG files, copied from the figure store

VERDICT_COLOURS = {"pass": "#1a7f37", "fail": "#cf222e", "inconclusive": "#8c959f"}


TEMPLATES = Path(__file__).resolve().parent / "templates"  # the copy shipped inside the package


def templates_dir(root: Path) -> Path:
    """The project's `reports/templates/` when it has one, else the copy shipped inside the package."""
    for candidate in (root / "reports" / "templates", TEMPLATES):
        if (candidate / "index.html.j2").exists():
            return candidate
    raise FileNotFoundError("report templates not found: expected reports/templates/index.html.j2")


# a claim's item, against its standing `expect`
AS_EXPECTED, NOT_MET_ACCEPTED, NOT_MET, SKIPPED, ERROR = ("as expected", "not met (accepted)", "not met", "skipped",
                                                          "error")
# a claim in the prediction record, against its registered prediction
MET, UNDECIDED = "met", "undecided"
NOT_COUNTED = {"exploratory": "exploratory (not registered)",
               "after_results": "registered after results were seen"}
RECORD_KEYS = {MET: "met", NOT_MET_ACCEPTED: "not_met_accepted", NOT_MET: "not_met", UNDECIDED: "undecided"}
COUNT_KEYS = {AS_EXPECTED: "as_expected", NOT_MET_ACCEPTED: "accepted_outcomes", NOT_MET: "not_as_expected",
              SKIPPED: "skipped", ERROR: "error"}


def build_results(results: list[dict[str, Any]], run: dict[str, Any], changes: list[LedgerChange],
                  ledger: dict[str, Any] | None = None) -> dict[str, Any]:
    ledger = ledger or {"claims": {}}
    change_by_claim = {c.claim: c for c in changes}
    claims = []
    for result in sorted(results, key=lambda r: r["path"]):
        entry = dict(result)
        change = change_by_claim.get(result["id"])
        entry["ledger"] = None if change is None else {
            "kind": change.kind, "old_verdict": change.old_verdict, "new_verdict": change.new_verdict,
            "old_criteria": change.old_criteria}
        entry["outcome"] = item_outcome(result, ledger)
        entry["prediction"] = prediction_entry(result, ledger)
        claims.append(entry)
    return {"run": run, "prediction_record": prediction_record(claims),
            "ledger_changes": [c.__dict__ for c in changes], "claims": claims, "counts": _counts(claims)}


def item_outcome(result: dict[str, Any], ledger: dict[str, Any]) -> str:
    """How the claim's item ended: its verdict against its standing `expect`, and the ledger."""
    if result["status"] != "evaluated":
        return SKIPPED if result["status"] == "skipped" else ERROR
    verdict, expect = result.get("verdict"), result.get("expect")
    if verdict == expect:
        return AS_EXPECTED
    return NOT_MET_ACCEPTED if accepted_outcome(ledger, result["id"], verdict, expect) else NOT_MET


def prediction_entry(result: dict[str, Any], ledger: dict[str, Any]) -> dict[str, Any]:
    """The claim in the prediction record: its registered prediction, and met / not met (accepted or not) /
    undecided against it; or why it is not counted (never registered, or registered after its results)."""
    registration = result.get("registration") or {}
    registered = registration.get("prediction")
    entry = {"registered": registered, "corrected": bool(registration.get("corrected")), "record": None,
             "not_counted": None}
    if registered is None:
        entry["not_counted"] = "exploratory"
    elif registration.get("registered_after_results"):
        entry["not_counted"] = "after_results"
    elif result["status"] != "evaluated":
        entry["record"] = UNDECIDED
    elif result.get("verdict") == registered:
        entry["record"] = MET
    else:
        accepted = accepted_outcome(ledger, result["id"], result.get("verdict"), result.get("expect"))
        entry["record"] = NOT_MET_ACCEPTED if accepted else NOT_MET
    return entry


def prediction_record(claims: list[dict[str, Any]]) -> dict[str, int]:
    """Counts over the annotated claims: predictions, met, not met (accepted and not), undecided, and the
    claims not counted."""
    record = {"predictions": 0, **{key: 0 for key in (*RECORD_KEYS.values(), *NOT_COUNTED)}}
    for claim in claims:
        prediction = claim["prediction"]
        if prediction["record"] is None:
            record[prediction["not_counted"]] += 1
        else:
            record["predictions"] += 1
            record[RECORD_KEYS[prediction["record"]]] += 1
    return record


def describe_record(record: dict[str, int]) -> str:
    """The prediction record in one line (the terminal's, and the first line of summary.md under its title)."""
    not_met = record["not_met_accepted"] + record["not_met"]
    text = (f"prediction record: {record['met']} met, {not_met} not met ({record['not_met_accepted']} accepted as "
            f"outcomes), {record['undecided']} undecided, of {record['predictions']} predictions counted against "
            "the expectation as first registered")
    skipped = [f"{record[key]} {NOT_COUNTED[key]}" for key in NOT_COUNTED if record[key]]
    return text + (f"; not counted: {', '.join(skipped)}" if skipped else "")


def _counts(claims: list[dict[str, Any]]) -> dict[str, int]:
    counts = {"total": len(claims), **{key: 0 for key in COUNT_KEYS.values()}}
    for claim in claims:
        counts[COUNT_KEYS[claim["outcome"]]] += 1
    return counts


def write_report(out_dir: Path, results: list[dict[str, Any]], run: dict[str, Any],
                 changes: list[LedgerChange], root: Path, ledger: dict[str, Any] | None = None) -> Path:
    """Write results.json, summary.md and index.html into `out_dir`; return the HTML path."""
    return render_report(out_dir, build_results(results, run, changes, ledger), root)


def render_report(out_dir: Path, document: dict[str, Any], root: Path) -> Path:
    """Write the built document (`build_results`) as results.json, summary.md and index.html into
    `out_dir`; return the HTML path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    forest = forest_plot(document["claims"])
    shown = [Figure(**f) for claim in document["claims"] for f in claim.get("figures", [])]
    copy_into([*shown, *([forest] if forest else [])], out_dir / FIGURES_FOLDER)
    write_json_atomic(out_dir / "results.json", document)
    env = Environment(loader=FileSystemLoader(str(templates_dir(root))),
                      autoescape=select_autoescape(enabled_extensions=("html.j2",), default_for_string=False),
                      trim_blocks=True, lstrip_blocks=True)
    env.filters["num"] = format_number
    env.globals["NOT_COUNTED"] = NOT_COUNTED
    graphs = any(f.get("graph") for claim in document["claims"] for f in claim.get("figures", []))
    html = env.get_template("index.html.j2").render(doc=document, forest=forest, version=__version__,
                                                    viewer_js=viewer_script() if graphs else "")
    (out_dir / "index.html").write_text(html, encoding="utf-8")
    markdown = env.get_template("summary.md.j2").render(doc=document)
    (out_dir / "summary.md").write_text(markdown, encoding="utf-8")
    return out_dir / "index.html"


VIEWER_LIBRARY = TEMPLATES / "vendor" / "cytoscape-3.35.0.min.js"


def viewer_script() -> str:
    """Cytoscape.js (MIT, shipped with the package), inlined so that the report's graphs work offline."""
    return VIEWER_LIBRARY.read_text(encoding="utf-8").replace("</script", "<\\/script")


def format_number(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if not math.isfinite(value):
        return "–"
    if value != 0 and (abs(value) < 10 ** -digits or abs(value) >= 10 ** 5):
        return f"{value:.{digits - 1}e}"
    return f"{value:.{digits}f}"


def result_table(result: Any, headline: str) -> str:
    """A judged claim (`judging.judge.ClaimResult`) as text: a headline, then one row per criterion
    (statistic, estimate, interval, threshold, n, verdict, why), the decision, and any traceback."""
    family = f" [{result.family}]" if result.family != "?" else ""
    lines = [f"{result.id}{family}: {headline}"]
    if result.criteria:
        header = ("statistic", "estimate", "interval", "threshold", "n", "verdict", "why")
        rows = [(c.statistic, format_number(c.estimate), f"[{format_number(c.ci_low)}, {format_number(c.ci_high)}]",
                 f"{c.op} {format_number(c.threshold)}", str(c.n), c.verdict, c.reason) for c in result.criteria]
        widths = [max(len(str(r[i])) for r in (header, *rows)) for i in range(len(header))]
        for row in (header, *rows):
            lines.append("  " + "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip())
        lines.append(f"  decision: {result.decision} -> {result.verdict}")
    if result.traceback:
        lines.append(result.traceback.rstrip())
    return "\n".join(lines)


def forest_plot(claims: list[dict[str, Any]]) -> Figure | None:
    """Every criterion's estimate and interval against its threshold, one row (own x-axis) each; drawn
    once per distinct content (a warm rerun reads it from the figure store)."""
    rows = [{"label": f"{claim['id']}: {criterion['statistic']} {criterion['op']} {format_number(criterion['threshold'])}",
             **{key: criterion.get(key) for key in ("verdict", "estimate", "threshold", "ci_low", "ci_high")},
             "ceiling": (criterion.get("ceiling") or {}).get("estimate")}
            for claim in claims for criterion in claim.get("criteria", []) if criterion.get("estimate") is not None]
    if not rows:
        return None
    recipe = figure_from_recipe("forest", "Forest plot of every criterion",
                                "Dot: estimate; bar: confidence interval; dashed line: registered threshold; "
                                "hollow diamond: ceiling (ideal mechanism). Colour: criterion verdict.", {"rows": rows})
    return draw_for_criteria(recipe, [])


def _draw_forest(data: dict[str, Any], criteria: Any) -> tuple[Any, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = data["rows"]
    fig, axes = plt.subplots(len(rows), 1, figsize=(8.5, 0.42 * len(rows) + 0.6), squeeze=False)
    for ax, row in zip(axes[:, 0], rows):
        _forest_row(ax, row)
    fig.subplots_adjust(hspace=0.9)
    return fig, ""


RENDERERS["forest"] = _draw_forest


def _forest_row(ax: Any, criterion: dict[str, Any]) -> None:
    colour = VERDICT_COLOURS.get(criterion["verdict"], "#8c959f")
    estimate, threshold = criterion["estimate"], criterion["threshold"]
    low = criterion["ci_low"] if criterion["ci_low"] is not None else estimate
    high = criterion["ci_high"] if criterion["ci_high"] is not None else estimate
    ax.hlines(0, low, high, color=colour, linewidth=2.5)
    ax.plot([estimate], [0], "o", color=colour, markersize=5)
    ax.axvline(threshold, color="black", linestyle="--", linewidth=1)
    points = [low, high, threshold, estimate]
    ceiling = criterion.get("ceiling")
    if ceiling is not None:
        ax.plot([ceiling], [0], "D", mfc="none", color="#0969da", markersize=5)
        points.append(ceiling)
    span = (max(points) - min(points)) or 1.0
    ax.set_xlim(min(points) - 0.15 * span, max(points) + 0.15 * span)
    ax.set_yticks([])
    ax.tick_params(axis="x", labelsize=7, pad=1)
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    ax.set_title(criterion["label"], fontsize=7.5, loc="left", pad=2)
