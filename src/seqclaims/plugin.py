"""The pytest plugin: `pytest claims/` collects one item per claim file, judges it, and renders the report.

Modelled on pytest's non-Python collection example: a File collector (`ClaimFile`) yields one
`ClaimItem`, whose `repr_failure` prints a compact table instead of a traceback. Workers (pytest-xdist)
spool each full result to a JSON file; the controlling process gathers them, compares them with the
ledger and writes the report once, even when items fail.
"""

from __future__ import annotations

import json
import os
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from seqclaims.version import __version__
from seqclaims.core.families import Context, FamilyTable, checks_dirs, load_claim, load_families
from seqclaims.core.judge import ERROR, SKIPPED, ClaimResult, error_result, judge
from seqclaims.core.schema import shown_path
from seqclaims.errors import ClaimError, InputError
from seqclaims.executors import (EXECUTORS, RayDispatch, dispatch, group_key, one_thread_per_worker, start_ray,
                                 stop_ray)
from seqclaims.paths import cache_dir, project_root_set_to
from seqclaims.record.ledger import MISSING, REGRESSION, compare_with_ledger, read_ledger, write_json_atomic
from seqclaims.record.registry import Registry, git_commit, registration_status
from seqclaims.record.report import format_number, write_report

RESULT_PROPERTY = "seqclaims_result_file"

# Nothing downloads at run time: models come from local folders or the local Hugging Face cache.
for _variable in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
    os.environ.setdefault(_variable, "1")
CLAIM_SUFFIXES = (".yaml", ".yml")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("seqclaims")
    group.addoption("--claims-report", default=None, metavar="DIR",
                    help="where to write index.html, summary.md and results.json (default: reports/latest)")
    group.addoption("--claims-ledger", default=None, metavar="FILE",
                    help="the accepted-conclusions ledger (default: reports/ledger.json)")
    group.addoption("--claims-no-report", action="store_true", help="do not render a report")
    group.addoption("--claims-strict", action="store_true",
                    help="fail claims on embedded models that skip, and fail a run that evaluates no claim")
    group.addoption("--claims-device", default=None, metavar="DEVICE",
                    help="where models run: cpu, cuda or cuda:N (default: $SEQCLAIMS_DEVICE, else cuda when "
                         "available, else cpu); statistics always run in float64 on the CPU")
    group.addoption("--claims-executor", default="local", choices=EXECUTORS,
                    help="where claims are judged: local (this process, or its -n workers) or ray (one task per "
                         "model and dataset on a Ray cluster; needs seqclaims[ray])")
    group.addoption("--claims-ray-address", default=None, metavar="ADDRESS",
                    help="a running Ray cluster (default: $RAY_ADDRESS, else a local cluster for this run)")
    group.addoption("--claims-ray-workers", default=None, type=int, metavar="N",
                    help="CPUs of the local Ray cluster, hence tasks at once (default: every CPU)")
    group.addoption("--claims-dtype", default=None, choices=("float32", "bfloat16", "float16"),
                    help="precision of the forward passes (default: $SEQCLAIMS_DTYPE, else float32); part of "
                         "every activation cache key")


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("--claims-executor") == "ray" and getattr(config.option, "numprocesses", None):
        raise pytest.UsageError("--claims-executor ray runs the claims on Ray workers; drop -n")
    try:
        cache_dir()
    except InputError as exc:
        raise pytest.UsageError(exc.message) from None
    for option, variable in (("--claims-device", "SEQCLAIMS_DEVICE"), ("--claims-dtype", "SEQCLAIMS_DTYPE")):
        if config.getoption(option):  # the environment carries it to xdist workers
            os.environ[variable] = config.getoption(option)
    if hasattr(config, "workerinput"):  # xdist workers share the cores, as Ray tasks do
        one_thread_per_worker()
    root = Path(config.rootpath)
    config.stash[_STATE] = _SessionState(root, config)
    for name in sorted(config.stash[_STATE].families.families):
        config.addinivalue_line("markers", f"{marker_name(name)}: claims checked by the {name} family")
    for study in _studies(root):
        config.addinivalue_line("markers", f"{marker_name(study)}: claims of the {study} study")


def marker_name(name: str) -> str:
    """Marker names must be identifiers for `-m` expressions: `organism-6mer` -> `organism_6mer`."""
    return name.replace("-", "_")


def _studies(root: Path) -> list[str]:
    claims_dir = root / "claims"
    if not claims_dir.is_dir():
        return []
    return sorted({p.parent.name for p in claims_dir.rglob("*.y*ml") if p.parent != claims_dir} | {"claims"})


class _SessionState:
    def __init__(self, root: Path, config: pytest.Config):
        self.root = root
        self.families: FamilyTable = load_families(checks_dirs(root))
        option = config.getoption("--claims-report")
        self.report_dir = Path(option).resolve() if option else root / "reports" / "latest"
        ledger_option = config.getoption("--claims-ledger")
        self.ledger_path = Path(ledger_option).resolve() if ledger_option else root / "reports" / "ledger.json"
        self.registry_path = root / "claims" / "registry.jsonl"
        self.spool_dir = self.report_dir / ".spool"
        self.seen_ids: dict[str, Path] = {}
        self.result_files: list[str] = []
        self.started = datetime.now(timezone.utc).isoformat(timespec="seconds")
        self.ledger_changes: list[Any] = []
        self.report_path: Path | None = None
        self.strict_problem = ""
        self.ray: RayDispatch | None = None


_STATE = pytest.StashKey[_SessionState]()


def is_claim_file(file_path: Path, root: Path, explicit: bool = False) -> bool:
    """YAML files below a `claims/` folder, or named explicitly, except templates (`_name.yaml`, or
    inside `templates/`)."""
    return file_path.suffix in CLAIM_SUFFIXES and not_collected_because(file_path, root, explicit) is None


def not_collected_because(file_path: Path, root: Path, explicit: bool = False) -> str | None:
    """Why a YAML file is not collected as a claim, or None when it is."""
    if file_path.name.startswith("_"):
        return "a template (its name starts with '_'); claims include it with `include:`"
    try:
        parts = file_path.resolve().relative_to(root.resolve()).parts
    except ValueError:
        parts = file_path.parts
    if "templates" in parts[:-1]:
        return "inside a templates/ folder"
    if "claims" not in parts[:-1] and not explicit:
        return "not below a claims/ folder; name the file explicitly to run it"
    return None


def named_paths(config: pytest.Config) -> list[Path]:
    """The paths named on the command line (node ids without their `::` part)."""
    return [Path(str(arg).split("::")[0]) for arg in config.args]


def explicit_files(config: pytest.Config) -> set[Path]:
    """The YAML files named on the command line, resolved."""
    return {path.resolve() for path in named_paths(config) if path.suffix in CLAIM_SUFFIXES}


def uncollected_yaml(config: pytest.Config) -> list[str]:
    """What the command line names that will not run as claims: each YAML file named explicitly, with its
    reason, and per folder named, how many YAML files in it lie outside any claims/ folder (templates
    beside claims are expected and not counted)."""
    root = Path(config.rootpath)
    lines = []
    for path in named_paths(config):
        if path.is_file() and path.suffix in CLAIM_SUFFIXES:
            reason = not_collected_because(path, root, explicit=True)
            if reason:
                lines.append(f"{shown_path(path)}: not collected: {reason}")
        elif path.is_dir():
            outside = [p for p in path.rglob("*") if p.suffix in CLAIM_SUFFIXES and ".cache" not in p.parts
                       and (not_collected_because(p, root) or "").startswith("not below")]
            if outside:
                lines.append(f"{shown_path(path)}: {len(outside)} YAML file(s) not collected: not below a claims/ "
                             "folder; name them explicitly to run them as claims")
    return lines


_EXPLICIT = pytest.StashKey[set]()


def _explicit_files(config: pytest.Config) -> set[Path]:
    """explicit_files, computed once per session (collection asks for every file)."""
    if _EXPLICIT not in config.stash:
        config.stash[_EXPLICIT] = explicit_files(config)
    return config.stash[_EXPLICIT]


def pytest_report_header(config: pytest.Config) -> list[str]:
    return [f"seqclaims: {line}" for line in uncollected_yaml(config)]


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    config = parent.config
    if is_claim_file(file_path, Path(config.rootpath), file_path.resolve() in _explicit_files(config)):
        return ClaimFile.from_parent(parent, path=file_path)
    return None


class ClaimFile(pytest.File):
    def collect(self):
        state = self.config.stash[_STATE]
        try:
            claim = load_claim(self.path, state.families)
        except ClaimError as exc:
            yield ClaimItem.from_parent(self, name=self.path.stem, claim=None, load_error=exc.message)
            return
        except Exception as exc:  # one unreadable claim must never stop the collection of the others
            message = f"{shown_path(self.path)}: could not be loaded ({type(exc).__name__}: {exc})".splitlines()[0]
            yield ClaimItem.from_parent(self, name=self.path.stem, claim=None, load_error=message)
            return
        other = state.seen_ids.get(claim.id)
        if other is not None and other != self.path:
            message = f"{self.path}: id: {claim.id!r} is also the id of {other}; ids must be unique"
            yield ClaimItem.from_parent(self, name=claim.id, claim=None, load_error=message)
            return
        state.seen_ids[claim.id] = self.path
        item = ClaimItem.from_parent(self, name=claim.id, claim=claim, load_error=None)
        for marker in sorted({claim.check, claim.study}):
            self.config.addinivalue_line("markers", f"{marker_name(marker)}: claims of {marker}")  # a study outside claims/
            item.add_marker(marker_name(marker))
        yield item


class ClaimMismatch(Exception):
    """The verdict differs from `expect`, the claim could not be evaluated, or it changed after registration."""

    def __init__(self, result: ClaimResult, headline: str):
        super().__init__(headline)
        self.result, self.headline = result, headline


class ClaimItem(pytest.Item):
    def __init__(self, *, claim, load_error: str | None, **kwargs):
        super().__init__(**kwargs)
        self.claim, self.load_error = claim, load_error

    def runtest(self) -> None:
        state = self.config.stash[_STATE]
        with project_root_set_to(state.root):
            result = self._evaluate(state)
        self._spool(state, result)
        registration = result.registration or {}
        if registration.get("state") in ("changed", "registry-invalid"):
            raise ClaimMismatch(result, registration["message"])
        if result.status == SKIPPED:
            if self.config.getoption("--claims-strict") and self.claim is not None and isinstance(self.claim.model, str):
                raise ClaimMismatch(result, f"skipped although its model is embedded (strict mode): {result.reason}")
            pytest.skip(f"{result.id}: {result.reason}")
        if result.status == ERROR:
            raise ClaimMismatch(result, f"error: {result.reason}")
        if not result.matches_expectation:
            raise ClaimMismatch(result, f"verdict {result.verdict!r} but the claim expects {result.expect!r}")

    def _evaluate(self, state: _SessionState) -> ClaimResult:
        if self.claim is None:
            return error_result(shown_path(self.path), self.load_error, self.path.parent.name)
        registry = Registry.open(state.registry_path)
        status = registration_status(registry, self.claim.id, self.claim.content, self.path)
        if state.ray is not None:
            result = state.ray.result_for(self.path)
        else:
            context = Context(claim=self.claim, cache_dir=cache_dir())
            result = judge(self.claim, state.families.get(self.claim.check, self.path), context)
        result.registration = status.to_json()
        return result

    def _spool(self, state: _SessionState, result: ClaimResult) -> None:
        target = state.spool_dir / f"{result.id}-{uuid.uuid4().hex[:8]}.json"
        write_json_atomic(target, result.to_json())
        self.user_properties.append((RESULT_PROPERTY, str(target)))

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style=None) -> str:
        if isinstance(excinfo.value, ClaimMismatch):
            return render_failure(excinfo.value.result, excinfo.value.headline)
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self):
        return self.path, 0, f"claim {self.name}"


@pytest.hookimpl(trylast=True)  # after -k / -m deselection: only the claims that will run are sent
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--claims-executor") != "ray" or hasattr(config, "workerinput") or _STATE not in config.stash:
        return
    groups: dict[str, list[str]] = {}
    for item in items:
        if isinstance(item, ClaimItem) and item.claim is not None:
            groups.setdefault(group_key(item.claim), []).append(str(item.path))
    if not groups:
        return
    state = config.stash[_STATE]
    try:
        started = start_ray(config.getoption("--claims-ray-address"), config.getoption("--claims-ray-workers"))
    except InputError as exc:
        raise pytest.UsageError(exc.message) from None
    with project_root_set_to(state.root):
        state.ray = dispatch(state.root, groups, started_cluster=started)


def pytest_unconfigure(config: pytest.Config) -> None:
    if _STATE in config.stash:
        stop_ray(config.stash[_STATE].ray)


def render_failure(result: ClaimResult, headline: str) -> str:
    """A compact table: statistic, estimate, interval, threshold, criterion verdict."""
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


# ---------------------------------------------------------------------------------------------
# gathering results (controller side, with or without xdist) and writing the report


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    for name, value in getattr(report, "user_properties", []):
        if name == RESULT_PROPERTY and report.when == "call":
            _CURRENT_FILES.append(value)


_CURRENT_FILES: list[str] = []


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    if hasattr(config, "workerinput") or config.getoption("--claims-no-report") or _STATE not in config.stash:
        return
    state = config.stash[_STATE]
    files = list(dict.fromkeys(_CURRENT_FILES))
    _CURRENT_FILES.clear()
    results = _gather(files)
    if config.getoption("--claims-strict") and not any(r.get("status") == "evaluated" for r in results):
        state.strict_problem = "no claim was evaluated (strict mode)"
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    if not results:
        return
    changes = compare_with_ledger(results, read_ledger(state.ledger_path), complete_run=_is_complete_run(config))
    state.ledger_changes = changes
    run = {"started": state.started, "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
           "seqclaims_version": __version__, "git_commit": git_commit(state.root)}
    state.report_path = write_report(state.report_dir, results, run, changes, state.root)
    for name in files:  # only once the report holds them
        Path(name).unlink(missing_ok=True)
    if any(change.kind in (REGRESSION, MISSING) for change in changes) and session.exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def _is_complete_run(config: pytest.Config) -> bool:
    """Every claim was asked for: no -k, -m or --lf, and the claims folder itself was named."""
    if config.option.keyword or config.option.markexpr or getattr(config.option, "lf", False):
        return False
    claims_dir = (Path(config.rootpath) / "claims").resolve()
    return claims_dir in {path.resolve() for path in named_paths(config)}


def _gather(files: list[str]) -> list[dict[str, Any]]:
    results = []
    for name in files:
        try:
            results.append(json.loads(Path(name).read_text(encoding="utf-8")))
        except (OSError, json.JSONDecodeError):
            continue
    return results


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    if _STATE not in config.stash or hasattr(config, "workerinput"):
        return
    state = config.stash[_STATE]
    if state.report_path is None and not state.strict_problem:
        return
    terminalreporter.section("seqclaims")
    for change in state.ledger_changes:
        terminalreporter.write_line(change.describe() + "  " + _intervals(change.old_criteria) + " -> "
                                    + _intervals(change.new_criteria), red=change.kind == REGRESSION)
    if not state.ledger_changes:
        terminalreporter.write_line("no verdict changed against the ledger")
    if state.strict_problem:
        terminalreporter.write_line(state.strict_problem, red=True)
    if state.report_path is not None:
        terminalreporter.write_line(f"report: {state.report_path}")


def _intervals(criteria: list[dict[str, Any]]) -> str:
    return ", ".join(f"{c.get('statistic')} {format_number(c.get('estimate'))} "
                     f"[{format_number(c.get('ci_low'))}, {format_number(c.get('ci_high'))}]" for c in criteria)


