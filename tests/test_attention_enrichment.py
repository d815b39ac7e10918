"""attention_enrichment: known answers on the planted model and the matched-background machinery."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_qk_motif import (COMPOSITION_HEAD, CONTROL_HEAD, MOTIF_HEAD, PLANTED_DATA, criterion, evaluate, named,
                           write_claim)

from seqclaims.judging.judge import ERROR, EVALUATED
from seqclaims.inputs.datasets import build
from seqclaims.inputs.models import load_model
from seqclaims.inputs.motifs import load_motif
from seqclaims.methods import attention as att
from seqclaims.methods import composition as comp

RHO = [{"statistic": "rho", "op": ">=", "threshold": 2.0}]
SELECTION = [{"statistic": "max_rho", "op": ">=", "threshold": 2.0},
             {"statistic": "max_rho_selects_named", "op": ">=", "threshold": 0.9}]


def enrichment_claim(folder, claim_id, params, criteria):
    return write_claim(folder, claim_id, check="attention_enrichment", params=params, criteria=criteria)


@pytest.mark.parametrize("key_score", ["attention_received", "qk_weights"])
def test_planted_head_is_enriched_and_selected(tmp_path, key_score):
    result = evaluate(enrichment_claim(tmp_path, f"rho-{key_score.replace('_', '-')}",
                                       named(*MOTIF_HEAD, key_score=key_score), RHO + SELECTION))
    assert result.status == EVALUATED, result.reason
    assert result.verdict == "supported", [(c.statistic, c.estimate, c.ci_low, c.verdict) for c in result.criteria]
    assert criterion(result, "rho").ci_low > 10  # measured about 50
    assert (criterion(result, "max_rho").detail["layer"], criterion(result, "max_rho").detail["head"]) == MOTIF_HEAD


def test_composition_head_is_enriched_only_when_matched_on_the_tokens_gc_in_coarse_classes(tmp_path):
    shuffled = [{"statistic": "rho_over_shuffled", "op": ">", "threshold": 1.0}]
    old = evaluate(enrichment_claim(tmp_path, "composition-token-gc",
                                    named(*COMPOSITION_HEAD, composition_window="token", composition_bins=5), RHO))
    assert criterion(old, "rho").ci_low > 1.2  # within a coarse GC class site tokens are the AT-richer ones: 1.9
    new = evaluate(enrichment_claim(tmp_path, "composition-window-gc", named(*COMPOSITION_HEAD), RHO + shuffled))
    assert criterion(new, "rho").estimate == pytest.approx(1.0, abs=1e-6)  # the GC count it reads is matched
    assert criterion(new, "rho_over_shuffled").verdict == "fail"
    motif = evaluate(enrichment_claim(tmp_path, "motif-over-shuffled", named(*MOTIF_HEAD), shuffled))
    assert motif.verdict == "supported" and criterion(motif, "rho_over_shuffled").ci_low > 2


def test_named_control_head_is_not_enriched(tmp_path):
    result = evaluate(enrichment_claim(tmp_path, "rho-control", named(*CONTROL_HEAD), RHO))
    rho = criterion(result, "rho")
    assert result.verdict == "refuted" and 0.95 < rho.ci_low <= rho.ci_high < 1.05
    others = [row["rho"] for row in rho.detail["per_head"] if (row["layer"], row["head"]) != MOTIF_HEAD]
    assert max(abs(v - 1) for v in others) < 0.05


def test_enrichment_reads_the_extraction_that_qk_motif_made(tmp_path):
    evaluate(write_claim(tmp_path, "qk-first", params=named(*MOTIF_HEAD), criteria=[{"statistic": "r", "op": ">=",
                                                                                   "threshold": 0.5}]))
    result = evaluate(enrichment_claim(tmp_path, "rho-second", named(*MOTIF_HEAD), RHO))
    assert dict(result.cards[-1].facts)["activations"] == "cache"


def test_same_seed_gives_identical_statistics(tmp_path):
    path = enrichment_claim(tmp_path, "rho-determinism", named(*MOTIF_HEAD), RHO + SELECTION)
    assert [c.__dict__ for c in evaluate(path).criteria] == [c.__dict__ for c in evaluate(path).criteria]


def test_every_user_error_is_one_line(tmp_path):
    cases = {
        "two-thresholds": (named(0, 2, support_pvalue=0.001, support_fraction=0.9), RHO),
        "no-head": ({}, RHO),
        "bad-head": (named(0, 9), RHO),
    }
    for name, (params, criteria) in cases.items():
        result = evaluate(enrichment_claim(tmp_path, f"rho-error-{name}", params, criteria))
        assert result.status == ERROR and result.traceback is None, (name, result.reason)
        assert result.reason and "\n" not in result.reason


# ---------------------------------------------------------------------------------------------
# Matched background


@pytest.fixture(scope="module")
def planted_tokens():
    model = load_model("planted")
    dataset = build(PLANTED_DATA, seed=0)
    offsets = model.tokenize(dataset.sequences).offsets.numpy()
    covered = att.support_bases(dataset.sequences, load_motif("MA0108.3"), pvalue=1e-3)
    return dataset.sequences, offsets, covered


def token_classes(sequences, offsets, bins):
    """GC classes of each token's own bases (the matching before windows were matched)."""
    return comp.composition_classes(sequences, comp.window_spans(offsets, [len(s) for s in sequences], 1, "token"), bins)


def test_background_weights_balance_each_cell_and_stay_in_the_flank(planted_tokens):
    sequences, offsets, covered = planted_tokens
    support = att.token_support(covered, offsets)
    distance = att.distance_to_support(covered, offsets)
    classes = token_classes(sequences, offsets, 5)
    matched = att.matched_tokens(support, distance, classes, flank=30, bins=5)
    background = matched.background > 0
    assert not (background & support).any() and (distance[background] <= 30).all()
    assert (distance[support & (classes >= 0)] == 0).all()
    for row in range(len(sequences)):
        for cls in range(5):
            cell = classes[row] == cls
            assert matched.background[row, cell].sum() == pytest.approx(matched.support[row, cell].sum())
    assert matched.support.sum() + matched.n_unmatched == (support & (classes >= 0)).sum()


def test_uniform_attention_has_rho_one_and_a_composition_preference_is_matched_away(planted_tokens):
    sequences, offsets, covered = planted_tokens
    support = att.token_support(covered, offsets)
    distance = att.distance_to_support(covered, offsets)
    classes = token_classes(sequences, offsets, 5)
    uniform = np.where(classes >= 0, 1.0, np.nan)[None]
    prefers_at = np.where(classes >= 0, 2.0 ** (4 - classes), np.nan)[None]  # TBP sites are AT-rich
    matched = att.matched_tokens(support, distance, classes, flank=50, bins=5)
    unmatched = att.matched_tokens(support, distance, np.where(classes >= 0, 0, -1), flank=50, bins=1)
    rho = {name: att.ratio_from_sums(att.enrichment_sums(a, m).sum(axis=0))[0]
           for name, a, m in (("uniform", uniform, matched), ("matched", prefers_at, matched),
                              ("unmatched", prefers_at, unmatched))}
    assert rho["uniform"] == pytest.approx(1.0)
    assert rho["matched"] == pytest.approx(1.0)
    assert rho["unmatched"] > 1.3, rho  # an AT-preferring head looks enriched without composition matching


@settings(max_examples=40, deadline=None)
@given(flags=st.lists(st.booleans(), min_size=1, max_size=60), width=st.integers(1, 6))
def test_distance_to_support_is_the_gap_to_the_nearest_covered_base(flags, width):
    covered = np.array(flags)
    offsets = att.surrogate_offsets(["A" * len(flags)], "kmer_overlapping", k=min(width, len(flags)))
    distance = att.distance_to_support([covered], offsets)[0]
    hits = np.flatnonzero(covered)
    for t, (a, b) in enumerate(offsets[0]):
        if b <= a:
            continue
        expected = 0 if covered[a:b].any() else (np.min(np.minimum(np.abs(hits - a), np.abs(hits - (b - 1))))
                                                  if hits.size else np.inf)
        assert distance[t] == expected
