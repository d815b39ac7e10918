"""The `seqclaims` command: pre-registration, ledger, scaffolding, and judging claim files without pytest.

Every problem a user can cause ends in one line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

from seqclaims.core.discovery import claim_files
from seqclaims.core.families import Family, FamilyTable, checks_dirs, design_warnings, load_claim, load_families
from seqclaims.core.schema import KEBAB_CASE, ClaimModel, canonical_hash
from seqclaims.errors import SeqclaimsError
from seqclaims.judging.judge import EVALUATED, ClaimResult, judge_path, read_claim
from seqclaims.organisms import protein_training, training
from seqclaims.paths import project_root, project_root_set_to
from seqclaims.record.ledger import PREDICTION_NOT_MET, accept
from seqclaims.record.registry import (ACCESS_LEVELS, Registry, amend, git_commit, register, registration_status,
                                       verify_chain, verify_committed_prefix)
from seqclaims.record.report import result_table


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help()
        return 2
    try:
        return args.run(args) or 0
    except SeqclaimsError as exc:
        print(f"seqclaims: {exc.message}", file=sys.stderr)
        return 2
    except (FileNotFoundError, PermissionError) as exc:
        print(f"seqclaims: {exc}", file=sys.stderr)
        return 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="seqclaims", description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=None, help="project folder (default: found from cwd)")
    commands = parser.add_subparsers(title="commands")

    command = commands.add_parser("register", help="pre-register new claims")
    command.add_argument("paths", nargs="+", type=Path, help="claim files or folders of claims")
    command.add_argument("--access", default="none", choices=ACCESS_LEVELS,
                         help="what had been seen when registering (default: none)")
    command.add_argument("--reason", default="pre-registration", help="a note kept in the log")
    command.set_defaults(run=run_register)

    command = commands.add_parser("amend", help="record a change to a registered claim")
    command.add_argument("path", type=Path)
    command.add_argument("--reason", required=True, help="why the claim changed")
    command.add_argument("--access", required=True, choices=ACCESS_LEVELS,
                         help="what had been seen: none | blinded | results-seen (results-seen is shown as post hoc)")
    command.add_argument("--correct-error", action="store_true",
                         help="the registered expect was a clerical mistake: allows changing it after results are "
                              "seen; recorded, and shown beside the claim (a failed prediction is recorded with "
                              "`seqclaims ledger accept` instead)")
    command.set_defaults(run=run_amend)

    registry_parser = commands.add_parser("registry", help="registry commands")
    registry_commands = registry_parser.add_subparsers(title="registry commands")
    command = registry_commands.add_parser("verify", help="check the hash chain and every claim against it")
    command.set_defaults(run=run_verify)

    ledger_parser = commands.add_parser("ledger", help="ledger commands")
    ledger_commands = ledger_parser.add_subparsers(title="ledger commands")
    command = ledger_commands.add_parser("accept", help="record the last run's verdicts as accepted")
    command.add_argument("--results", type=Path, default=None, help="results.json (default: reports/latest)")
    command.add_argument("--ledger", type=Path, default=None, help="ledger file (default: reports/ledger.json)")
    command.set_defaults(run=run_ledger_accept)

    command = commands.add_parser("new", help="write a claim from a family's template")
    command.add_argument("family")
    command.add_argument("id")
    command.add_argument("--study", default="exploratory", help="subfolder of claims/ (default: exploratory)")
    command.add_argument("--force", action="store_true", help="overwrite an existing file")
    command.set_defaults(run=run_new)

    command = commands.add_parser("check", help="validate claims (schema, includes, registration) without "
                                  "computing evidence; exit 1 on any problem (for pre-commit)")
    command.add_argument("paths", nargs="*", type=Path, help="claim files or folders (default: claims/)")
    command.add_argument("--quiet", "-q", action="store_true", help="print problems only")
    command.set_defaults(run=run_check)

    command = commands.add_parser("judge", help="judge claim files here, without pytest, the report or the "
                                  "ledger; exit 1 unless every verdict is the expected one")
    command.add_argument("paths", nargs="+", type=Path, help="claim files or folders of claims")
    command.add_argument("--recompute", action="store_true", help="compute the evidence even when it is stored")
    command.set_defaults(run=run_judge)

    command = commands.add_parser("families", help="list the check families and their statistics")
    command.set_defaults(run=run_families)

    training.add_command(commands)
    protein_training.add_command(commands)
    return parser


# ---------------------------------------------------------------------------------------------


def _root(args: argparse.Namespace) -> Path:
    return (args.root or project_root()).resolve()


def _named_claims(paths: list[Path], root: Path) -> list[Path]:
    """Every claim file the command line names (folders searched whether or not below claims/); at least one."""
    files = claim_files(paths, root, explicit=True)
    if not files:
        raise SeqclaimsError(f"no claim files under {', '.join(map(str, paths))}")
    return files


def _registry(root: Path) -> Registry:
    return Registry.open(root / "claims" / "registry.jsonl")


def run_register(args: argparse.Namespace) -> int:
    root = _root(args)
    families = load_families(checks_dirs(root))
    registry = _registry(root)
    failures = 0
    for path in claim_files(args.paths, root):
        try:
            claim = load_claim(path, families)
            register(registry, claim.id, claim.content, args.access, args.reason, root)
            print(f"registered {claim.id} ({canonical_hash(claim.content)[:12]})")
        except SeqclaimsError as exc:
            print(f"seqclaims: {exc.message}", file=sys.stderr)
            failures += 1
    return 2 if failures else 0


def run_amend(args: argparse.Namespace) -> int:
    root = _root(args)
    claim = load_claim(args.path, load_families(checks_dirs(root)))
    entry = amend(_registry(root), claim.id, claim.content, args.access, args.reason, root,
                  correct_error=args.correct_error)
    correction = ", expect corrected as a clerical error" if args.correct_error else ""
    print(f"amended {claim.id} ({entry['sha256'][:12]}, access {args.access}{correction})")
    return 0


def run_verify(args: argparse.Namespace) -> int:
    root = _root(args)
    registry = _registry(root)
    problems = verify_chain(registry.lines) + verify_committed_prefix(registry.path, root)
    families = load_families(checks_dirs(root))
    claims_dir = root / "claims"
    checked = 0
    present: set[str] = set()
    for path in claim_files([claims_dir], root) if claims_dir.is_dir() else []:
        present.add(path.stem)
        try:
            claim = load_claim(path, families)
        except SeqclaimsError as exc:
            problems.append(exc.message)
            continue
        last = registry.last(claim.id)
        if last is not None:
            checked += 1
            if last.get("sha256") != canonical_hash(claim.content):
                problems.append(f"{path}: changed after its last registry entry; run `seqclaims amend {path} "
                                f"--reason TEXT --access LEVEL`")
    for claim_id in registry.claim_ids():
        if claim_id not in present:
            problems.append(f"registered claim {claim_id!r} has no file under claims/; a pre-registered claim "
                            "must stay (amend its expectation instead of deleting it)")
    for problem in problems:
        print(f"seqclaims: {problem}", file=sys.stderr)
    if problems:
        return 1
    print(f"registry ok: {len(registry.lines)} entries, {checked} registered claims match their last entry")
    return 0


def run_check(args: argparse.Namespace) -> int:
    """One line per claim: ok with its registration state, or the problem; exit 1 when any has one."""
    root = _root(args)
    families = load_families(checks_dirs(root))
    registry = _registry(root)
    files = _named_claims(args.paths or [root / "claims"], root)
    bad, warned, seen = 0, 0, {}
    for path in files:
        line, ok, warnings = _check_one(path, families, registry, seen)
        bad += not ok
        warned += bool(warnings)
        if not (ok and args.quiet):
            print(line, file=sys.stdout if ok else sys.stderr)
        for warning in warnings:  # a question about the claim's design, not an error: the exit status stays
            print(f"warn   {path}: {warning}", file=sys.stderr)
    for name, problem in sorted(families.broken.items()):
        print(f"error  family {name!r} failed to load: {problem}", file=sys.stderr)
    failed = bad or families.broken
    print(f"{len(files) - bad} of {len(files)} claims ok" + (f"; {bad} with problems" if bad else "")
          + (f"; {warned} with warnings" if warned else ""), file=sys.stderr if failed else sys.stdout)
    return 1 if failed else 0


def _check_one(path: Path, families: FamilyTable, registry: Registry,
               seen: dict[str, Path]) -> tuple[str, bool, list[str]]:
    """The claim's line, whether it is ok, and the warnings about its design (`design_warnings`)."""
    claim = read_claim(path, families)
    if isinstance(claim, ClaimResult):
        return f"error  {claim.reason}", False, []
    other = seen.setdefault(claim.id, path)
    if other != path:
        return f"error  {path}: id: {claim.id!r} is also the id of {other}; ids must be unique", False, []
    status = registration_status(registry, claim.id, claim.content, path)
    if status.state in ("changed", "registry-invalid"):
        return f"error  {status.message}", False, []
    post_hoc = " (post hoc amendment)" if status.post_hoc else ""
    corrected = " (expect corrected: clerical error)" if status.corrected else ""
    warnings = design_warnings(claim, families.get(claim.check, path))
    return f"ok     {path}: {status.state}{post_hoc}{corrected}", True, warnings


def run_judge(args: argparse.Namespace) -> int:
    """Each claim's result as the compact table a failing pytest item shows; 1 unless every claim is
    evaluated with its expected verdict."""
    root = _root(args)
    families = load_families(checks_dirs(root))
    as_expected = True
    with project_root_set_to(root):
        for path in _named_claims(args.paths, root):
            result = judge_path(path, families, use_store=not args.recompute)
            as_expected &= result.matches_expectation
            print(result_table(result, _headline(result)))
    return 0 if as_expected else 1


def _headline(result: ClaimResult) -> str:
    if result.status != EVALUATED:
        return f"{result.status}: {result.reason}"
    expected = "as expected" if result.matches_expectation else f"the claim expects {result.expect!r}"
    return f"verdict {result.verdict!r}, {expected} (evidence {result.evidence_source})"


def run_ledger_accept(args: argparse.Namespace) -> int:
    root = _root(args)
    results = args.results or root / "reports" / "latest" / "results.json"
    ledger_path = args.ledger or root / "reports" / "ledger.json"
    ledger = accept(results, ledger_path, git_commit(root))
    not_met = sum(entry.get("outcome") == PREDICTION_NOT_MET for entry in ledger["claims"].values())
    print(f"ledger: accepted {len(ledger['claims'])} conclusions into {ledger_path}; {not_met} record a prediction "
          "not met as the accepted outcome")
    return 0


def run_families(args: argparse.Namespace) -> int:
    table = load_families(checks_dirs(_root(args)))
    for name, family in sorted(table.families.items()):
        print(f"{name}: {family.summary}")
        for stat_name, statistic in family.statistics.items():
            print(f"    {stat_name:28s} {statistic.doc}")
    for name, problem in table.broken.items():
        print(f"{name}: BROKEN ({problem})")
    return 0


def run_new(args: argparse.Namespace) -> int:
    root = _root(args)
    families = load_families(checks_dirs(root))
    family = families.get(args.family, Path("seqclaims new"))
    if not KEBAB_CASE.match(args.id):
        raise SeqclaimsError(f"id {args.id!r} must be kebab-case (lowercase letters, digits and single hyphens)")
    if not KEBAB_CASE.match(args.study.replace("_", "-")):
        raise SeqclaimsError(f"--study {args.study!r} must be a plain folder name under claims/")
    target = root / "claims" / args.study / f"{args.id}.yaml"
    if target.exists() and not args.force:
        raise SeqclaimsError(f"{target} already exists; pass --force to overwrite it")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(claim_template(family, args.id), encoding="utf-8")
    try:
        load_claim(target, families)  # the template itself must be a valid claim
    except SeqclaimsError:
        target.unlink()
        raise
    print(f"wrote {target}; edit it, then `seqclaims register {target}` before computing its evidence")
    return 0


# ---------------------------------------------------------------------------------------------
# the commented template


def claim_template(family: Family, claim_id: str) -> str:
    example = family.example
    fields = ClaimModel.model_fields
    lines = [f"# A {family.name} claim: {family.summary}.",
             "# Every key is explained; delete the optional ones you do not need.", ""]

    def comment(name: str) -> str:
        return f"  # {fields[name].description}"

    lines.append(f"id: {claim_id}{comment('id')}")
    lines.append(f"title: One-line title of the claim{comment('title')}")
    lines += [f"statement: >{comment('statement')}", "  State the hypothesis in one or two sentences."]
    lines.append(f"source: null{comment('source')}")
    lines.append(f"expect: supported  # supported | refuted | inconclusive: {fields['expect'].description}")
    lines.append(f"model: {_yaml_scalar(example.get('model', 'organism'))}{comment('model')}")
    lines.append(f"data:{comment('data')}")
    lines += _mapping_lines(example.get("data", {}), family.data_schema, indent=2)
    lines.append(f"check: {family.name}{comment('check')}")
    lines.append(f"params:{comment('params')}")
    lines += _mapping_lines(example.get("params", {}), family.params, indent=2, include_defaults=True)
    lines.append(f"criteria:{comment('criteria')}")
    for criterion in example.get("criteria", [{"statistic": next(iter(family.statistics)), "op": ">=",
                                                "threshold": 0.5}]):
        produced = ", ".join(family.statistics)
        lines.append(f"  - statistic: {criterion['statistic']}  # one of: {produced}")
        lines.append(f"    op: \"{criterion['op']}\"  # >= | > | <= | <")
        lines.append(f"    threshold: {criterion['threshold']}  # pre-registered before seeing results")
    lines.append(f"decision: all{comment('decision')}")
    lines.append(f"ci_level: 0.95{comment('ci_level')}")
    lines.append(f"seed: 0{comment('seed')}")
    lines.append(f"resamples: 1000{comment('resamples')}")
    lines.append(f"init_seeds: 3{comment('init_seeds')}")
    return "\n".join(lines) + "\n"


def _mapping_lines(values: dict[str, Any], schema: Any, indent: int, include_defaults: bool = False) -> list[str]:
    pad = " " * indent
    described: dict[str, str] = {}
    defaults: dict[str, Any] = {}
    if schema is not None:
        for name, info in schema.model_fields.items():
            described[name] = info.description or ""
            if include_defaults and not info.is_required() and name not in values:
                default = info.get_default(call_default_factory=True)
                defaults[name] = default.model_dump() if hasattr(default, "model_dump") else default
    lines = []
    for name, value in {**values, **defaults}.items():
        note = described.get(name, "")
        default_note = " (default)" if name in defaults else ""
        lines.append(f"{pad}{name}: {_yaml_scalar(value)}" + (f"  # {note}{default_note}" if note else ""))
    return lines


def _yaml_scalar(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True, width=10_000).strip().removesuffix("...").strip()


