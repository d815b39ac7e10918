"""Pre-registration: canonical hashing, the verifiable chain, and the registered prediction (DESIGN section 4)."""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from seqclaims.errors import ClaimError
from seqclaims.record.registry import (Registry, amend, canonical_hash, register, registered_prediction, verify_chain,
                                       verify_committed_prefix)

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


# ---------------------------------------------------------------------------------------------
# the registered prediction: `expect` is not rewritten after results are seen

VERDICTS = ("supported", "refuted", "inconclusive")


def registered(tmp_path, expect="supported"):
    registry = Registry(tmp_path / "registry.jsonl")
    register(registry, "claim", {"id": "claim", "expect": expect, "threshold": 0}, "none", "pre-registration",
             tmp_path)
    return registry


def test_a_results_seen_amendment_may_not_rewrite_the_prediction(tmp_path):
    registry = registered(tmp_path, expect="supported")
    with pytest.raises(ClaimError) as refusal:
        amend(registry, "claim", {"id": "claim", "expect": "inconclusive", "threshold": 0}, "results-seen",
              "expectation set to the observed verdict", tmp_path)
    assert "\n" not in refusal.value.message and "seqclaims ledger accept" in refusal.value.message
    assert "--correct-error" in refusal.value.message
    assert len(Registry.open(registry.path).lines) == 1  # nothing was appended
    amend(registry, "claim", {"id": "claim", "expect": "supported", "threshold": 1}, "results-seen",
          "threshold raised", tmp_path)  # other changes after results stay possible, shown as post hoc


def test_a_clerical_correction_is_recorded_and_becomes_the_prediction(tmp_path):
    registry = registered(tmp_path, expect="supported")
    entry = amend(registry, "claim", {"id": "claim", "expect": "refuted", "threshold": 0}, "results-seen",
                  "the registered value contradicted the statement (typo)", tmp_path, correct_error=True)
    assert entry["correct_error"] is True
    history = Registry.open(registry.path).history("claim")
    assert registered_prediction(history) == "refuted"
    assert verify_chain(Registry.open(registry.path).lines) == []
    with pytest.raises(ClaimError, match="--correct-error corrects a registered expect"):
        amend(registry, "claim", {"id": "claim", "expect": "refuted", "threshold": 2}, "results-seen", "x",
              tmp_path, correct_error=True)


def test_a_rewritten_prediction_can_be_restored_after_results(tmp_path):
    registry = registered(tmp_path, expect="supported")
    amend(registry, "claim", {"id": "claim", "expect": "inconclusive", "threshold": 0}, "none",
          "expectation changed", tmp_path)  # (a rewrite recorded with the wrong access level)
    assert registered_prediction(Registry.open(registry.path).history("claim")) == "supported"
    with pytest.raises(ClaimError):
        amend(registry, "claim", {"id": "claim", "expect": "refuted", "threshold": 0}, "results-seen", "x", tmp_path)
    amend(registry, "claim", {"id": "claim", "expect": "supported", "threshold": 0}, "results-seen",
          "expectation restored to the prediction as first registered", tmp_path)
    assert Registry.open(registry.path).last("claim")["content"]["expect"] == "supported"


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(VERDICTS),
       st.lists(st.tuples(st.sampled_from(VERDICTS), st.sampled_from(("none", "blinded", "results-seen")),
                          st.booleans()), max_size=6))
def test_the_prediction_of_record_changes_only_by_a_recorded_correction(first, attempts):
    """Whatever amendments are tried, the prediction of record is the first registration's expect, or the
    latest clerical correction's; and no amendment made after results sets expect to anything else."""
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        registry = registered(root, expect=first)
        prediction = first
        for number, (expect, access, correct_error) in enumerate(attempts):
            content = {"id": "claim", "expect": expect, "threshold": number + 1}
            try:
                entry = amend(registry, "claim", content, access, "a change", root, correct_error=correct_error)
            except ClaimError:
                continue
            if entry.get("correct_error"):
                prediction = expect
            elif access == "results-seen":
                assert expect in (prediction, registry.history("claim")[-2]["content"]["expect"])
            assert registered_prediction(Registry.open(registry.path).history("claim")) == prediction
