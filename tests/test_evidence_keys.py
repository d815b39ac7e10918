"""Evidence and cache keys derived from the import graph, and from every model and file a claim names.

Each family's evidence key covers its module and every module of the package that module reaches; each cache
key covers the module that defines the cache and what it reaches. Shown on a copy of the package: an edit to a
module a key covers changes it, an edit to any other module leaves it. Python itself checks the graph: the
modules that importing a check loads are all in the graph's closure.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest
import yaml

from seqclaims.code_keys import (INJECTED, PACKAGE, UNKEYED, code_digest, code_modules, family_digest,
                                 family_modules)
from seqclaims.core.families import checks_dirs, load_claim, load_families
from seqclaims.import_graph import import_graph, package_modules, reached_modules
from seqclaims.judging import evidence_store

REPO = Path(__file__).resolve().parents[1]
FAMILIES = load_families(checks_dirs(REPO))
EXAMPLE = REPO / "docs" / "examples" / "mean_norm.py"
FAMILY_FILES = {path.stem: path for path in [*sorted((REPO / "checks").glob("*.py")), EXAMPLE]
                if not path.name.startswith("_")}
# modules that define a cache and key it on their own code
CACHE_MODULES = sorted(name for name, path in package_modules(PACKAGE).items()
                       if "code_digest(__name__)" in path.read_text(encoding="utf-8"))
# what each key must cover at least, so that the contract below cannot hold for want of a graph
MUST_COVER = {
    "gram": {"methods.geometry", "inputs.cache"},
    "cka": {"methods.geometry", "inputs.models"},
    "rc_consistency": {"methods.geometry"},
    "feature_circuit": {"methods.circuits", "methods.sae", "methods.interventions"},
    "neuron": {"methods.features", "inputs.cache"},
    "sae_feature": {"methods.features", "methods.sae"},
    "attention_association": {"methods.features", "methods.attention", "methods.key_scores"},
    "qk_motif": {"methods.key_scores", "methods.attention", "methods.composition"},
    "mean_norm": {"inputs.cache", "methods.stats"},
    "seqclaims.inputs.datasets": {"inputs.data", "inputs.genome", "inputs.motifs", "inputs.userdata"},
    "seqclaims.inputs.cache": {"inputs.models", "inputs.tokenizers"},
    "seqclaims.methods.key_scores": {"inputs.cache"},
    "seqclaims.methods.probing": {"inputs.cache"},
}


class PackageCopy:
    """src/seqclaims, checks/ and the README's example family, copied: the keys computed over the copy."""

    def __init__(self, root: Path):
        ignore = shutil.ignore_patterns("__pycache__")
        self.package = Path(shutil.copytree(PACKAGE, root / "src" / "seqclaims", ignore=ignore))
        shutil.copytree(REPO / "checks", root / "checks", ignore=ignore)
        (root / "examples").mkdir()
        shutil.copy(EXAMPLE, root / "examples" / EXAMPLE.name)
        self.families = {name: root / ("examples" if path == EXAMPLE else "checks") / path.name
                         for name, path in FAMILY_FILES.items()}

    def digest(self, source: str) -> str:
        return family_digest(self.families[source], self.package) if source in self.families else \
            code_digest(source, self.package)

    def source_file(self, source: str) -> Path:
        return self.families.get(source) or package_modules(self.package)[source]

    def covered(self, source: str) -> set[str]:
        return set(family_modules(self.families[source], self.package) if source in self.families else
                   code_modules(source, self.package))


@pytest.fixture(scope="module")
def copy(tmp_path_factory) -> PackageCopy:
    return PackageCopy(tmp_path_factory.mktemp("copy"))


@contextmanager
def edited(path: Path, line: str = "\n# an edit\n") -> Iterator[None]:
    original = path.read_bytes()
    path.write_bytes(original + line.encode())
    try:
        yield
    finally:
        path.write_bytes(original)


def short(names) -> set[str]:
    return {name.removeprefix("seqclaims.") for name in names}


def test_the_sources_under_test_are_every_family_and_every_cache():
    assert len(FAMILY_FILES) >= 14 and "mean_norm" in FAMILY_FILES
    assert {"seqclaims.inputs.datasets", "seqclaims.inputs.cache", "seqclaims.methods.key_scores",
            "seqclaims.methods.probing", "seqclaims.methods.sae"} <= set(CACHE_MODULES)
    assert set(UNKEYED) | set(INJECTED) <= set(package_modules(PACKAGE)), "a listed module that no longer exists"


def test_every_lazy_import_names_a_library_not_a_module_of_the_package():
    """The graph reads import statements; a module imported on first use by name would be invisible to it."""
    named = [match for path in package_modules(PACKAGE).values()
             for match in re.findall(r"lazy_import\(\s*[\'\"]([\w.]+)", path.read_text(encoding="utf-8"))]
    assert "torch" in named
    assert [name for name in named if name.split(".")[0] == "seqclaims"] == []


@pytest.mark.parametrize("source", [*FAMILY_FILES, *CACHE_MODULES])
def test_a_key_changes_with_each_module_its_source_reaches_and_with_no_other(copy, source):
    covered = copy.covered(source)
    assert short(covered) >= MUST_COVER.get(source, set())
    assert source in CACHE_MODULES or covered >= set(INJECTED)
    before = copy.digest(source)
    with edited(copy.source_file(source)):
        assert copy.digest(source) != before, "its own module"
    modules = package_modules(copy.package)
    assert set(modules) - covered - {source} - set(UNKEYED), "every module reached: nothing shows what is not"
    for name, path in modules.items():
        if name != source:
            with edited(path):
                assert (copy.digest(source) != before) == (name in covered), name
    assert copy.digest(source) == before


def test_a_family_from_a_users_checks_folder_is_keyed_the_same_way(copy, tmp_path):
    folder = tmp_path / "my_checks"
    folder.mkdir()
    (folder / "mine.py").write_text("import helpers\nfrom seqclaims.methods import geometry\n")
    (folder / "helpers.py").write_text("from seqclaims_checks import more\nfrom seqclaims.methods.features import x\n")
    (folder / "more.py").write_text("from seqclaims.methods import circuits\n")
    (folder / "unused.py").write_text("from seqclaims.methods import ov\n")
    reached = reached_modules(folder / "mine.py", copy.package)
    assert {"helpers", "seqclaims_checks.more"} <= set(reached) and "unused" not in reached
    assert {"methods.geometry", "methods.features", "methods.circuits"} <= short(reached)
    assert "methods.ov" not in short(reached)
    before = family_digest(folder / "mine.py", copy.package)
    for changes, path in [(True, folder / "helpers.py"), (True, folder / "more.py"), (False, folder / "unused.py"),
                          (True, copy.package / "methods" / "circuits.py"), (False, copy.package / "methods" / "ov.py")]:
        with edited(path):
            assert (family_digest(folder / "mine.py", copy.package) != before) == changes, path.name


def test_a_family_made_in_code_is_keyed_on_the_whole_package(copy):
    before = family_digest(None, copy.package)
    with edited(copy.package / "record" / "report.py"):
        assert family_digest(None, copy.package) != before


def test_the_cache_constants_are_their_modules_digests():
    from seqclaims.inputs import cache, datasets, proteins
    from seqclaims.methods import key_scores, probing, sae

    assert cache.CODE_VERSION == code_digest("seqclaims.inputs.cache")
    assert datasets.CODE_HASH == code_digest("seqclaims.inputs.datasets")
    assert key_scores.CODE_VERSION == code_digest("seqclaims.methods.key_scores")
    assert sae.SAE_CODE_VERSION == code_digest("seqclaims.methods.sae")
    assert probing.CODE_VERSION == code_digest("seqclaims.methods.probing")
    assert proteins.CODE_VERSION == code_digest("seqclaims.inputs.proteins")


FORK_AND_IMPORT = textwrap.dedent("""
    import importlib.util, json, os, sys
    import numpy, pydantic, scipy.stats, torch, yaml  # loaded once, before the children fork
    pipes = {}
    for path in sys.argv[1:]:  # one child per check, all at once; each writes what it loaded to its pipe
        read, write = os.pipe()
        if os.fork() == 0:
            name = "seqclaims_checks." + os.path.basename(path)[:-3]
            spec = importlib.util.spec_from_file_location(name, path)
            module = sys.modules[name] = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            os.write(write, json.dumps(sorted(m for m in sys.modules if m.split(".")[0] == "seqclaims")).encode())
            os._exit(0)
        os.close(write)
        pipes[path] = read
    loaded = {}
    for path, read in pipes.items():
        with os.fdopen(read) as handle:
            loaded[path] = json.loads(handle.read() or "null")
    print(json.dumps(loaded))
""")


def test_importing_a_check_loads_only_modules_the_graph_sees(tmp_path):
    """Python's own account: every module that importing a check loads is one the graph reaches from it,
    or from the packages above what it reaches (Python runs a package's `__init__` before its modules).
    A check that imports by a computed name shows that the comparison can fail."""
    dynamic = tmp_path / "dynamic.py"
    dynamic.write_text("import importlib\nimportlib.import_module('seqclaims.record.report')\n")
    paths = [*FAMILY_FILES.values(), dynamic]
    run = subprocess.run([sys.executable, "-c", FORK_AND_IMPORT, *map(str, paths)], capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    loaded = json.loads(run.stdout.splitlines()[-1])
    graph = import_graph(PACKAGE)
    unseen = {}
    for path in paths:
        assert loaded[str(path)] is not None, f"{path} failed to import"
        unseen[path.stem] = set(loaded[str(path)]) - _closure(set(reached_modules(path, PACKAGE)), graph)
    assert unseen.pop("dynamic") >= {"seqclaims.record.report"}
    assert unseen == {name: set() for name in FAMILY_FILES}


def _closure(modules: set[str], graph: dict[str, set[str]]) -> set[str]:
    """The modules and everything they import, with the packages above each."""
    while True:
        above = {".".join(name.split(".")[:i]) for name in modules for i in range(1, name.count(".") + 1)}
        grown = modules | above | {target for name in modules | above for target in graph.get(name, ())}
        if grown == modules:
            return modules
        modules = grown


# ---------------------------------------------------------------------------------------------
# models and files a claim names


def fake_model(folder: Path, weights: bytes = b"weights") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text('{"model_type": "bert"}')
    (folder / "model.safetensors").write_bytes(weights)
    return folder


def claim_file(folder: Path, check: str, params: dict, data: dict | None = None, model="planted") -> Path:
    content = {"id": "keyed", "title": "t", "statement": "s", "expect": "supported", "model": model, "check": check,
               "data": data or {"dataset": "motif_sites", "matrix": "MA0108.3", "n": 100}, "params": params,
               "criteria": [{"statistic": next(iter(FAMILIES.get(check, folder).statistics)), "op": ">=",
                             "threshold": 0.1}]}
    path = folder / "claims" / "keyed.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(content, sort_keys=False))
    return path


def key_of(path: Path, families=FAMILIES) -> str:
    claim = load_claim(path, families)
    family = families.get(claim.check, path)
    key = evidence_store.evidence_key(claim, family, family.source)
    assert key is not None
    return key.digest


def test_a_nested_model_enters_the_key_by_its_weights(tmp_path):
    other = fake_model(tmp_path / "other")
    path = claim_file(tmp_path, "cka", {"layer": 1, "other": {"model": {"path": str(other)}, "layer": 1}})
    claim = load_claim(path, FAMILIES)
    identities = evidence_store.model_identities(claim, FAMILIES.get("cka", path))
    assert len(identities) == 2  # the claim's model and params.other.model
    before = key_of(path)
    assert key_of(path) == before
    (other / "model.safetensors").write_bytes(b"retrained")
    assert key_of(path) != before
    shutil.rmtree(other)
    assert evidence_store.model_identities(claim, FAMILIES.get("cka", path))[1].startswith(evidence_store.ABSENT)


USER_FAMILY = textwrap.dedent('''
    """A test-only family whose params name models in lists and mappings, and a file."""
    from seqclaims.core.evidence import Evidence
    from seqclaims.core.families import Family, Statistic
    from seqclaims.core.schema import StrictModel
    from seqclaims.inputs.models import ModelRef


    class Pair(StrictModel):
        models: list[ModelRef]
        by_name: dict[str, ModelRef] = {}


    class Params(StrictModel):
        pair: Pair
        table: str = "none"


    FAMILY = Family(name="nested", summary="test", params=Params, statistics={"x": Statistic("x")},
                    evaluate=lambda claim, context: Evidence(statistics={}))
''')


def test_models_in_lists_and_mappings_and_a_named_file_enter_the_key(tmp_path):
    (tmp_path / "checks").mkdir()
    (tmp_path / "checks" / "nested.py").write_text(USER_FAMILY)
    families = load_families([tmp_path / "checks"])
    first, second = fake_model(tmp_path / "m1"), fake_model(tmp_path / "m2")
    (tmp_path / "claims").mkdir()
    (tmp_path / "claims" / "table.tsv").write_text("a\t1\n")
    content = {"id": "keyed", "title": "t", "statement": "s", "expect": "supported", "model": "planted",
               "check": "nested", "data": {"dataset": "promoters", "n": 100},
               "params": {"pair": {"models": [{"path": str(first)}], "by_name": {"b": {"path": str(second)}}},
                          "table": "table.tsv"},
               "criteria": [{"statistic": "x", "op": ">=", "threshold": 0.1}]}
    path = tmp_path / "claims" / "keyed.yaml"
    path.write_text(yaml.safe_dump(content))
    claim = load_claim(path, families)
    assert len(evidence_store.model_identities(claim, families.get("nested", path))) == 3
    assert list(evidence_store.file_identities(claim)) == ["table.tsv"]
    before = key_of(path, families)
    for change in (lambda: (first / "model.safetensors").write_bytes(b"other"),
                   lambda: (second / "model.safetensors").write_bytes(b"other"),
                   lambda: (tmp_path / "claims" / "table.tsv").write_text("a\t2\n")):
        change()
        after = key_of(path, families)
        assert after != before
        before = after


def test_a_user_data_file_enters_the_key_by_its_content(tmp_path):
    rows = "sequence,label\n" + "".join(f"{'ACGT' * 10},{i % 2}\n" for i in range(40))
    (tmp_path / "claims").mkdir()
    (tmp_path / "claims" / "rows.csv").write_text(rows)
    path = claim_file(tmp_path, "neuron", FAMILIES.get("neuron", tmp_path).example["params"],
                      data={"dataset": "user", "path": "rows.csv"})
    before = key_of(path)
    (tmp_path / "claims" / "rows.csv").write_text(rows.replace("ACGT,1", "ACGA,1", 1))
    assert key_of(path) != before
    assert evidence_store.file_identities(load_claim(path, FAMILIES)) == {}  # the dataset's key holds it once


# ---------------------------------------------------------------------------------------------
# end to end: a stored claim is recomputed after an edit to a module its family reaches

E2E_CLAIMS = {
    "gram-small": {"check": "gram", "model": "planted", "data": {"dataset": "coding", "n": 60},
                   "params": {"layer": 1},
                   "criteria": [{"statistic": "codon_periodicity_over_shuffled", "op": ">=", "threshold": 0.02}]},
    "association-small": {"check": "attention_association", "model": "planted",
                          "data": {"dataset": "motif_sites", "matrix": "MA0108.3", "n": 60},
                          "params": {"annotation": {"motif": "MA0108.3", "align": "anchored"}, "layer": 0, "head": 2},
                          "criteria": [{"statistic": "association", "op": ">=", "threshold": 0.5}],
                          "correction": "holm"},
}


@pytest.mark.slow
def test_an_edit_to_a_reached_module_recomputes_stored_evidence_end_to_end(tmp_path):
    project = tmp_path / "project"
    copy = PackageCopy(project)
    (project / "fixtures").symlink_to(REPO / "fixtures")
    shutil.copy(REPO / "conftest.py", project / "conftest.py")
    (project / "pytest.ini").write_text("[pytest]\naddopts = -p no:benchmark\n")
    for claim_id, fields in E2E_CLAIMS.items():
        content = {"id": claim_id, "title": claim_id, "statement": "test claim", "expect": "supported",
                   "resamples": 100, **fields}
        (project / "claims" / "planted").mkdir(parents=True, exist_ok=True)
        (project / "claims" / "planted" / f"{claim_id}.yaml").write_text(yaml.safe_dump(content, sort_keys=False))
    env = {key: value for key, value in os.environ.items()
           if key not in (evidence_store.DISABLE_ENV, "SEQCLAIMS_CHECKS_PATH", "PYTHONPATH")}
    env.update(PYTHONPATH=str(copy.package.parent), SEQCLAIMS_CACHE=str(tmp_path / "cache"))
    imported = subprocess.run([sys.executable, "-c", "import seqclaims; print(seqclaims.__file__)"], cwd=project,
                              env=env, capture_output=True, text=True, check=True).stdout.strip()
    assert Path(imported).parent == copy.package

    def sources() -> dict[str, str]:
        report = tmp_path / "report"
        run = subprocess.run([sys.executable, "-m", "pytest", "claims/", "--claims-report", str(report),
                              "-p", "no:cacheprovider", "-q"], cwd=project, env=env, capture_output=True, text=True,
                             timeout=900)
        results = json.loads((report / "results.json").read_text())["claims"]
        assert all(r["status"] == "evaluated" for r in results), run.stdout[-3000:]
        return {r["id"]: r["evidence_source"] for r in results}

    assert sources() == {"gram-small": "computed", "association-small": "computed"}
    assert sources() == {"gram-small": "stored", "association-small": "stored"}
    with edited(copy.package / "methods" / "geometry.py"):
        assert sources() == {"gram-small": "computed", "association-small": "stored"}
    with edited(copy.package / "methods" / "features.py"):
        assert sources() == {"gram-small": "stored", "association-small": "computed"}
