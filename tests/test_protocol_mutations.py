"""The families' statistical protocol, guarded against plausible slips in the code that decides conclusions.

Each test runs a claim on the planted model and fails under one named change of that code:
- the correction over heads dropped from qk_motif's max_r_p;
- the GC-matched contrast computed when matching keeps the whole test split (the matched subset would
  repeat the unmatched contrast), or when the matched classes' GC still differs.
The unit scoring's guards (chance, the resampling unit) are in test_unit_scoring.py.
"""

from __future__ import annotations

import claim_files
import pytest
from claim_files import criterion, evaluate

PLANTED_DATA = {"dataset": "motif_sites", "matrix": "MA0108.3", "n": 200}


# ---------------------------------------------------------------------------------------------
# qk_motif: the selected head's p-value is corrected over every head tested


def test_the_selected_heads_p_value_is_corrected_over_every_head_tested(tmp_path):
    """The planted motif head beats all 199 permutations on the test split: uncorrected p = 1/200. Over the
    12 heads tested, Holm makes that 12/200 = 0.06, so `max_r_p < 0.05` is out of reach (inconclusive);
    uncorrected it would pass."""
    permutations = 199
    path = claim_files.write_claim(tmp_path, "selected-head-p", check="qk_motif", data=PLANTED_DATA,
                                   params={"layer": 0, "head": 2, "permutations": permutations},
                                   criteria=[{"statistic": "r", "op": ">=", "threshold": 0.5},
                                             {"statistic": "max_r_p", "op": "<", "threshold": 0.05}],
                                   correction="holm")
    result = evaluate(path)
    heads = criterion(result, "r").detail["n_heads_tested"]
    p = criterion(result, "max_r_p")
    assert (p.detail["layer"], p.detail["head"]) == (0, 2) and heads == 12  # the head selected on train
    assert p.estimate == pytest.approx(heads / (permutations + 1))
    assert p.detail["correction"] == "holm"
    assert p.verdict == "inconclusive" and p.reason == "unreachable criterion"


# ---------------------------------------------------------------------------------------------
# probe: the GC-matched contrast exists only where matching changes the data and balances GC

CHEAP_PROBE = {"layer": 0, "c_grid": [1.0], "inner_folds": 2, "kmer_k": 2, "random_label_permutations": 0}
MATCHED = [{"statistic": "auroc_minus_gc_matched", "op": ">", "threshold": 0.0}]


def probe_claim(tmp_path, claim_id: str, *, gc_match: bool, caliper: float):
    path = claim_files.write_claim(tmp_path, claim_id, check="probe", criteria=MATCHED,
                                   data={**PLANTED_DATA, "n": 500, "gc_match": gc_match},
                                   params={**CHEAP_PROBE, "gc_caliper": caliper})
    return criterion(evaluate(path), "auroc_minus_gc_matched")


def test_an_already_gc_matched_test_split_has_no_matched_contrast(tmp_path):
    """motif_sites is GC-matched at construction: matching keeps every test window, so the matched contrast
    would only repeat auroc_minus_gc. It is missing, with the reason."""
    matched = probe_claim(tmp_path, "already-matched", gc_match=True, caliper=0.01)
    assert matched.verdict == "inconclusive" and matched.estimate is None
    assert "already GC-matched" in matched.reason


def test_a_matching_that_leaves_the_classes_gc_apart_has_no_matched_contrast(tmp_path):
    """Without matching at construction and with a loose caliper (0.06), about 38 of the 50 test positives
    find a partner, but the matched classes' mean GC still differs by 0.12 to 0.25 standard deviations
    (depending on the matching order): the contrast would not be GC-matched."""
    matched = probe_claim(tmp_path, "loose-caliper", gc_match=False, caliper=0.06)
    assert matched.verdict == "inconclusive" and matched.estimate is None
    assert "GC distributions of the matched classes still differ" in matched.reason
