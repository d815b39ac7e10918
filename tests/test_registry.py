"""Pre-registration: canonical hashing and the verifiable chain (DESIGN section 4)."""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from seqclaims.record.registry import Registry, canonical_hash, verify_chain, verify_committed_prefix

scalars = st.one_of(st.integers(-10**6, 10**6), st.floats(-1e6, 1e6, allow_nan=False).filter(lambda x: x != 0.0),
                    st.text(st.characters(min_codepoint=48, max_codepoint=122), min_size=1, max_size=8),
                    st.booleans())
keys = st.text(st.characters(min_codepoint=97, max_codepoint=122), min_size=1, max_size=6)
contents = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, min_size=1, max_size=3),
                                                          st.dictionaries(keys, inner, min_size=1, max_size=4)),
                        max_leaves=12).filter(lambda c: isinstance(c, dict)) | st.dictionaries(keys, scalars, min_size=1)


def reordered(value):
    if isinstance(value, dict):
        return {k: reordered(value[k]) for k in reversed(list(value))}
    if isinstance(value, list):
        return [reordered(v) for v in value]
    return value


@given(contents)
def test_hash_ignores_key_order_and_yaml_formatting(content):
    block = yaml.safe_load(yaml.safe_dump(content, default_flow_style=False, sort_keys=True))
    flow = yaml.safe_load("# a comment\n" + yaml.safe_dump(reordered(content), default_flow_style=True,
                                                           sort_keys=False, width=40))
    assert canonical_hash(block) == canonical_hash(flow) == canonical_hash(content)


def leaf_paths(value, prefix=()):
    if isinstance(value, dict):
        for k, v in value.items():
            yield from leaf_paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from leaf_paths(v, (*prefix, i))
    else:
        yield prefix


def changed(value):
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value + 1
    return value + "x"


@given(contents, st.data())
def test_hash_changes_with_any_value(content, data):
    paths = list(leaf_paths(content))
    path = data.draw(st.sampled_from(paths))
    edited = json.loads(json.dumps(content))
    target = edited
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = changed(target[path[-1]])
    assert canonical_hash(edited) != canonical_hash(content)


def build_registry(tmp_path, n):
    registry = Registry(tmp_path / "registry.jsonl")
    for i in range(n):
        registry.append(f"claim-{i % 3}", {"threshold": i, "id": f"claim-{i % 3}"},
                        "register" if i < 3 else "amend", "none", f"reason {i}", tmp_path)
    return Registry.open(registry.path)


def edit_line(line: str, position: int) -> str:
    entry = json.loads(line)
    key = sorted(entry)[position % len(entry)]
    value = entry[key]
    entry[key] = changed(value) if isinstance(value, (str, int, float)) and value is not None else "edited"
    return json.dumps(entry, sort_keys=True)


@settings(max_examples=60)
@given(st.integers(2, 7), st.data())
def test_verify_detects_any_single_edit_deletion_or_reordering(n, data):
    with tempfile.TemporaryDirectory() as folder:
        lines = build_registry(Path(folder), n).lines
    assert verify_chain(lines) == []
    mutation = data.draw(st.sampled_from(["edit", "delete", "reorder"]))
    i = data.draw(st.integers(0, n - 1))
    mutated = list(lines)
    if mutation == "edit":
        mutated[i] = edit_line(lines[i], data.draw(st.integers(0, 20)))
    elif mutation == "delete":
        if i == n - 1:
            i = n - 2  # deleting the last line is caught by the committed-prefix check (test below)
        del mutated[i]
    else:
        j = data.draw(st.integers(0, n - 1).filter(lambda j: j != i))
        mutated[i], mutated[j] = mutated[j], mutated[i]
    assert verify_chain(mutated), (mutation, i)


def test_deleting_the_last_committed_line_is_detected(tmp_path):
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    registry = build_registry(tmp_path, 3)
    subprocess.run(["git", "add", "registry.jsonl"], cwd=tmp_path, check=True)
    subprocess.run(["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "log"], cwd=tmp_path,
                   check=True)
    assert verify_committed_prefix(registry.path, tmp_path) == []
    registry.path.write_text("\n".join(registry.lines[:-1]) + "\n")
    assert verify_chain(Registry.open(registry.path).lines) == []
    assert verify_committed_prefix(registry.path, tmp_path)
