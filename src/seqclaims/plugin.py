"""The pytest plugin: `pytest claims/` collects one item per claim file, judges it, and renders the report.

Modelled on pytest's non-Python collection example: a File collector (`ClaimFile`) yields one
`ClaimItem`, whose `repr_failure` prints a compact table instead of a traceback. Every item is judged
through `judging.judge.judge_path`, as the Ray executor and `seqclaims judge` judge a claim file. An item
passes when the verdict meets the claim's prediction (`expect`); a verdict that the ledger records as the
accepted outcome of a failed prediction is reported like an xfail, under its own name ("not met
(accepted)"); any other mismatch fails.

A session's state lives on one `SeqclaimsPlugin` object, registered in `pytest_configure` under
`PLUGIN_NAME`, whose methods are the session's hooks; nothing is kept in module globals, so two sessions
in one process (pytester, or two `pytest.main` calls) share nothing. Workers (pytest-xdist) spool each
full result to a JSON file; the controlling process gathers them, compares them with the ledger and
writes the report once, even when items fail.
"""

from __future__ import annotations

import functools
import json
import os
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from seqclaims.core.discovery import CLAIM_SUFFIXES, is_claim_file, not_collected_because
from seqclaims.core.families import FamilyTable, checks_dirs, load_families
from seqclaims.core.schema import Claim, shown_path
from seqclaims.errors import InputError
from seqclaims.executors import (EXECUTORS, RayDispatch, dispatch, group_key, one_thread_per_worker, start_ray,
                                 stop_ray)
from seqclaims.judging.judge import ERROR, SKIPPED, ClaimResult, error_result, judge_path, read_claim
from seqclaims.paths import cache_dir, project_root_set_to
from seqclaims.record.ledger import (MISSING, REGRESSION, accepted_outcome, compare_with_ledger, read_ledger,
                                     write_json_atomic)
from seqclaims.record.registry import Registry, git_commit, registration_status
from seqclaims.record.report import (NOT_MET_ACCEPTED, build_results, describe_record, format_number, render_report,
                                     result_table)
from seqclaims.version import __version__

PLUGIN_NAME = "seqclaims-session"
RESULT_PROPERTY = "seqclaims_result_file"

# Nothing downloads at run time: models come from local folders or the local Hugging Face cache.
for _variable in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
    os.environ.setdefault(_variable, "1")


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
    plugin = SeqclaimsPlugin(config)
    config.pluginmanager.register(plugin, PLUGIN_NAME)
    for name in sorted(plugin.families.families):
        config.addinivalue_line("markers", f"{marker_name(name)}: claims checked by the {name} family")
    for study in _studies(plugin.root):
        config.addinivalue_line("markers", f"{marker_name(study)}: claims of the {study} study")


def session_plugin(config: pytest.Config) -> "SeqclaimsPlugin":
    """The session's plugin object, registered by `pytest_configure`."""
    return config.pluginmanager.get_plugin(PLUGIN_NAME)


def marker_name(name: str) -> str:
    """Marker names must be identifiers for `-m` expressions: `organism-6mer` -> `organism_6mer`."""
    return name.replace("-", "_")


def _studies(root: Path) -> list[str]:
    claims_dir = root / "claims"
    if not claims_dir.is_dir():
        return []
    return sorted({p.parent.name for p in claims_dir.rglob("*.y*ml") if p.parent != claims_dir} | {"claims"})


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


class SeqclaimsPlugin:
    """One pytest session's claims: the families, where results go, the ids seen, the result files
    gathered, the Ray dispatch; and the hooks that use them."""

    def __init__(self, config: pytest.Config):
        self.config = config
        self.root = Path(config.rootpath)
        self.families: FamilyTable = load_families(checks_dirs(self.root))
        option = config.getoption("--claims-report")
        self.report_dir = Path(option).resolve() if option else self.root / "reports" / "latest"
        ledger_option = config.getoption("--claims-ledger")
        self.ledger_path = Path(ledger_option).resolve() if ledger_option else self.root / "reports" / "ledger.json"
        self.registry_path = self.root / "claims" / "registry.jsonl"
        self.spool_dir = self.report_dir / ".spool"
        self.explicit = explicit_files(config)
        self.seen_ids: dict[str, Path] = {}
        self.result_files: list[str] = []
        self.started = datetime.now(timezone.utc).isoformat(timespec="seconds")
        self.ledger_changes: list[Any] = []
        self.prediction_record: dict[str, int] | None = None
        self.report_path: Path | None = None
        self.strict_problem = ""
        self.ray: RayDispatch | None = None

    # collection ------------------------------------------------------------------------------

    def pytest_report_header(self, config: pytest.Config) -> list[str]:
        return [f"seqclaims: {line}" for line in uncollected_yaml(config)]

    def pytest_collect_file(self, file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
        if is_claim_file(file_path, self.root, file_path.resolve() in self.explicit):
            return ClaimFile.from_parent(parent, path=file_path)
        return None

    def read(self, path: Path) -> Claim | ClaimResult:
        """The claim in `path`, or the error result of a file that cannot be loaded or repeats an id."""
        loaded = read_claim(path, self.families)
        if isinstance(loaded, ClaimResult):
            return loaded
        other = self.seen_ids.setdefault(loaded.id, path)
        if other != path:
            message = f"{path}: id: {loaded.id!r} is also the id of {other}; ids must be unique"
            return error_result(shown_path(path), message, path.parent.name)
        return loaded

    @pytest.hookimpl(trylast=True)  # after -k / -m deselection: only the claims that will run are sent
    def pytest_collection_modifyitems(self, session: pytest.Session, config: pytest.Config,
                                      items: list[pytest.Item]) -> None:
        if config.getoption("--claims-executor") != "ray" or hasattr(config, "workerinput"):
            return
        groups: dict[str, list[str]] = {}
        for item in items:
            if isinstance(item, ClaimItem) and item.claim is not None:
                groups.setdefault(group_key(item.claim), []).append(str(item.path))
        if not groups:
            return
        try:
            started = start_ray(config.getoption("--claims-ray-address"), config.getoption("--claims-ray-workers"))
        except InputError as exc:
            raise pytest.UsageError(exc.message) from None
        with project_root_set_to(self.root):
            self.ray = dispatch(self.root, groups, started_cluster=started)

    # judging ---------------------------------------------------------------------------------

    @functools.cached_property
    def ledger(self) -> dict[str, Any]:
        """The accepted conclusions, read once per process (each xdist worker reads the same file)."""
        return read_ledger(self.ledger_path)

    def result_for(self, path: Path, loaded: Claim | ClaimResult) -> ClaimResult:
        """The claim's result (from the Ray cluster when it judged the claims) with its registration status."""
        if isinstance(loaded, ClaimResult):
            return loaded
        with project_root_set_to(self.root):
            status = registration_status(Registry.open(self.registry_path), loaded.id, loaded.content, path)
            if self.ray is not None:
                result = self.ray.result_for(path)
            else:
                result = judge_path(path, self.families, loaded=loaded)
        result.registration = status.to_json()
        return result

    def spool(self, result: ClaimResult) -> str:
        """Write the full result for the controlling process; the file's name goes in the test report."""
        target = self.spool_dir / f"{result.id}-{uuid.uuid4().hex[:8]}.json"
        write_json_atomic(target, result.to_json())
        return str(target)

    # gathering results (controller side, with or without xdist) and writing the report ----------

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        for name, value in getattr(report, "user_properties", []):
            if name == RESULT_PROPERTY and report.when == "call":
                self.result_files.append(value)

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        config = session.config
        if hasattr(config, "workerinput") or config.getoption("--claims-no-report"):
            return
        files = list(dict.fromkeys(self.result_files))
        results = _gather(files)
        if config.getoption("--claims-strict") and not any(r.get("status") == "evaluated" for r in results):
            self.strict_problem = "no claim was evaluated (strict mode)"
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
        if not results:
            return
        changes = compare_with_ledger(results, self.ledger, complete_run=_is_complete_run(config))
        self.ledger_changes = changes
        run = {"started": self.started, "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
               "seqclaims_version": __version__, "git_commit": git_commit(self.root)}
        document = build_results(results, run, changes, self.ledger)
        self.prediction_record = document["prediction_record"]
        self.report_path = render_report(self.report_dir, document, self.root)
        for name in files:  # only once the report holds them
            Path(name).unlink(missing_ok=True)
        if any(change.kind in (REGRESSION, MISSING) for change in changes) and session.exitstatus == 0:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter, exitstatus: int, config: pytest.Config) -> None:
        if hasattr(config, "workerinput") or (self.report_path is None and not self.strict_problem):
            return
        terminalreporter.section("seqclaims")
        if self.prediction_record is not None:
            terminalreporter.write_line(describe_record(self.prediction_record))
        for change in self.ledger_changes:
            terminalreporter.write_line(change.describe() + "  " + _intervals(change.old_criteria) + " -> "
                                        + _intervals(change.new_criteria), red=change.kind == REGRESSION)
        if not self.ledger_changes:
            terminalreporter.write_line("no verdict changed against the ledger")
        if self.strict_problem:
            terminalreporter.write_line(self.strict_problem, red=True)
        if self.report_path is not None:
            terminalreporter.write_line(f"report: {self.report_path}")

    @pytest.hookimpl(tryfirst=True)  # before pytest's own xfail status
    def pytest_report_teststatus(self, report: pytest.TestReport, config: pytest.Config):
        if report.when == "call" and str(getattr(report, "wasxfail", "")).startswith(NOT_MET_ACCEPTED):
            return NOT_MET_ACCEPTED, "n", ("NOT MET (accepted)", {"yellow": True})
        return None

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        stop_ray(self.ray)


class ClaimFile(pytest.File):
    def collect(self):
        loaded = session_plugin(self.config).read(self.path)
        if isinstance(loaded, ClaimResult):
            yield ClaimItem.from_parent(self, name=loaded.id, loaded=loaded)
            return
        item = ClaimItem.from_parent(self, name=loaded.id, loaded=loaded)
        for marker in sorted({loaded.check, loaded.study}):
            self.config.addinivalue_line("markers", f"{marker_name(marker)}: claims of {marker}")  # a study outside claims/
            item.add_marker(marker_name(marker))
        yield item


class ClaimMismatch(Exception):
    """The verdict differs from `expect`, the claim could not be evaluated, or it changed after registration."""

    def __init__(self, result: ClaimResult, headline: str):
        super().__init__(headline)
        self.result, self.headline = result, headline


class ClaimItem(pytest.Item):
    def __init__(self, *, loaded: Claim | ClaimResult, **kwargs):
        super().__init__(**kwargs)
        self.loaded = loaded

    @property
    def claim(self) -> Claim | None:
        """The loaded claim; None when the file could not be loaded."""
        return None if isinstance(self.loaded, ClaimResult) else self.loaded

    def runtest(self) -> None:
        plugin = session_plugin(self.config)
        result = plugin.result_for(self.path, self.loaded)
        self.user_properties.append((RESULT_PROPERTY, plugin.spool(result)))
        registration = result.registration or {}
        if registration.get("state") in ("changed", "registry-invalid"):
            raise ClaimMismatch(result, registration["message"])
        if result.status == SKIPPED:
            if self.config.getoption("--claims-strict") and self.claim is not None and isinstance(self.claim.model, str):
                raise ClaimMismatch(result, f"skipped although its model is embedded (strict mode): {result.reason}")
            pytest.skip(f"{result.id}: {result.reason}")
        if result.status == ERROR:
            raise ClaimMismatch(result, f"error: {result.reason}")
        if result.matches_expectation:
            return
        if accepted_outcome(plugin.ledger, result.id, result.verdict, result.expect):
            pytest.xfail(f"{NOT_MET_ACCEPTED}: verdict {result.verdict!r}, predicted {result.expect!r}")
        raise ClaimMismatch(result, f"verdict {result.verdict!r} but the claim expects {result.expect!r} (a failed "
                                    "prediction stays: after review, `seqclaims ledger accept` records the outcome)")

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style=None) -> str:
        if isinstance(excinfo.value, ClaimMismatch):
            return result_table(excinfo.value.result, excinfo.value.headline)
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self):
        return self.path, 0, f"claim {self.name}"


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


def _intervals(criteria: list[dict[str, Any]]) -> str:
    return ", ".join(f"{c.get('statistic')} {format_number(c.get('estimate'))} "
                     f"[{format_number(c.get('ci_low'))}, {format_number(c.get('ci_high'))}]" for c in criteria)
