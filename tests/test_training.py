"""The organism models: recipe reproducibility, loading by name, k-mer baselines, held-out hygiene."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from seqclaims.errors import InputError
from seqclaims.inputs.models import folder_hash, load_model, run_with_cache
from seqclaims.methods import baselines as bl
from seqclaims.organisms import organism_card
from seqclaims.organisms import training as tr
from seqclaims.paths import fixtures_dir

EMBEDDED = ("organism", "organism-6mer")
REPRO_STEPS = 3


def _card(name: str) -> dict:
    return json.loads((fixtures_dir() / "models" / name / "card.json").read_text())


# ---------------------------------------------------------------------------------------------
# The shipped models


@pytest.mark.parametrize("name", EMBEDDED)
def test_retraining_reproduces_the_recorded_first_steps(name):
    card = _card(name)
    recipe = tr.Recipe(**card["recipe"])
    curve = json.loads((fixtures_dir() / "models" / name / "curve.json").read_text())["train"]
    threads = torch.get_num_threads()
    torch.set_num_threads(card["training"]["threads"])
    try:
        _, _, state = tr.train(recipe.model_copy(update={"eval_every": 0}), max_steps=REPRO_STEPS, checkpoint=False,
                               log=lambda line: None)
    finally:
        torch.set_num_threads(threads)
    recorded = [point["loss"] for point in curve[:REPRO_STEPS]]
    rerun = [point["loss"] for point in state.curve]
    assert [p["step"] for p in curve[:REPRO_STEPS]] == [1, 2, 3]
    assert rerun == pytest.approx(recorded, abs=card["training"]["reproducibility_tolerance_nats"])
    assert state.tokens_seen == curve[REPRO_STEPS - 1]["tokens_seen"]


@pytest.mark.parametrize("name", EMBEDDED)
def test_embedded_model_loads_by_name_offline(name, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    loaded = load_model(name)
    config = loaded.model.config
    assert loaded.architecture == "EsmForMaskedLM"
    assert config.position_embedding_type == "rotary"
    assert config.hidden_dropout_prob == 0.0 and config.attention_probs_dropout_prob == 0.0
    assert config.token_dropout is False
    assert loaded.max_length >= 514
    k = _card(name)["recipe"]["k"]
    assert loaded.tokenization.k == k
    sequence = "ACGT" * (512 * k // 4)
    batch = loaded.tokenize([sequence])
    out = run_with_cache(loaded, batch, ["logits", "layer.0.attn.pattern"])
    assert out["logits"].shape == (1, 512 + 2, config.vocab_size)
    assert torch.allclose(out["layer.0.attn.pattern"].sum(-1), torch.ones(1, loaded.n_heads, 514), atol=1e-4)
    as_folder = load_model({"path": str(fixtures_dir() / "models" / name)})
    assert torch.equal(run_with_cache(as_folder, batch, ["logits"])["logits"], out["logits"])


@pytest.mark.parametrize("name", EMBEDDED)
def test_card_records_the_files_it_ships(name):
    folder = fixtures_dir() / "models" / name
    card = _card(name)
    assert card["folder_sha256"] == folder_hash(folder)
    assert card["files_sha256"] == organism_card.file_digests(folder)
    listed = dict(line.split()[::-1] for line in (folder / "sha256sums.txt").read_text().splitlines())
    assert listed == card["files_sha256"]
    evaluation = card["evaluation"]
    assert evaluation["best_baseline"] in evaluation["predictors"]
    readme = (folder / "README.md").read_text()
    assert evaluation["best_baseline"] in readme and "curve.png" in readme
    assert (folder / "curve.png").stat().st_size < 200_000


@pytest.mark.parametrize(("name", "tokenization"), [("organism", "single"), ("organism-6mer", "6mer")])
def test_default_recipes_are_the_shipped_ones(name, tokenization):
    assert _card(name)["recipe_sha256"] == tr.recipe_for(tokenization).digest()


def test_fixtures_stay_under_50_mb():
    total = sum(p.stat().st_size for p in fixtures_dir().rglob("*") if p.is_file())
    assert total < 50 * 2**20


def test_organism_beats_or_card_says_by_how_much():
    evaluation = _card("organism")["evaluation"]
    margin = evaluation["accuracy_minus_best_baseline"]
    model = evaluation["predictors"]["model"]["accuracy"][0]
    best = evaluation["predictors"][evaluation["best_baseline"]]["accuracy"][0]
    assert margin[0] == pytest.approx(model - best, abs=1e-4)
    readme = (fixtures_dir() / "models" / "organism" / "README.md").read_text()
    phrase = "beats the best k-mer baseline" if margin[1] > 0 else "best k-mer baseline"
    assert phrase in readme
    assert evaluation["n_tokens"] >= 100_000


# ---------------------------------------------------------------------------------------------
# Baselines


def test_context_index_reads_left_then_right_neighbours():
    codes = bl.nucleotide_codes(np.frombuffer(b"ACGTN", dtype=np.uint8))[None]  # A0 C1 G2 T3 N-1
    spec = bl.ContextSpec("s", left=2, right=1)
    index = bl.context_index(codes, np.zeros(5, int), np.arange(5), spec)
    # position 2 (G): left C (nearest, 4**0), A (4**1), right T (4**2)
    assert index.tolist() == [-1, -1, 1 * 1 + 0 * 4 + 3 * 16, -1, -1]


def test_baseline_counts_and_probabilities_on_a_toy_sequence():
    codes = bl.nucleotide_codes(np.frombuffer(b"AACAG", dtype=np.uint8))
    markov1 = bl.fit_context_model([codes], bl.ContextSpec("markov-1", 1, 0), pseudocount=0.5)
    # transitions: A->A, A->C, C->A, A->G
    expected = np.zeros((4, 4))
    expected[0, [0, 1, 2]] = 1
    expected[1, 0] = 1
    assert np.array_equal(markov1.counts, expected)
    assert markov1.probs[0] == pytest.approx(np.array([1.5, 1.5, 1.5, 0.5]) / 5)
    symmetric = bl.fit_context_model(bl.both_strands(codes), bl.ContextSpec("symmetric-1", 1, 1), pseudocount=0)
    # forward AAC, ACA, CAG; reverse complement CTGTT: CTG, TGT, GTT
    assert symmetric.counts.sum() == 6
    assert symmetric.counts[0 + 4 * 1, 0] == 1  # A _ C -> A
    assert symmetric.counts[3 + 4 * 3, 2] == 1  # T _ T -> G
    probs = bl.predict(markov1, codes[None], np.zeros(2, int), np.array([0, 2]))
    assert probs[0] == pytest.approx((markov1.counts.sum(0) + 0.5) / (4 + 2))  # no left context: marginal
    correct, bits = bl.score(probs, np.array([0, 3]))  # truth: A at 0; T (never seen after A) at 2
    assert bits[1] == pytest.approx(-math.log2(0.5 / 5))
    assert correct.tolist() == [True, False]


def test_kmer_chain_baseline_is_the_product_of_nucleotide_predictions():
    rng = np.random.default_rng(1)
    windows = rng.integers(0, 4, size=(3, 24)).astype(np.int8)
    fitted = bl.fit_context_model(list(rng.integers(0, 4, size=(2, 500)).astype(np.int8)), bl.ContextSpec("m2", 2, 0))
    rows, cols = np.array([0, 1, 2]), np.array([1, 2, 3])  # 3-mer token positions
    correct, bits = tr._kmer_chain_baseline(fitted, windows, rows, cols, 3)
    for i, (r, c) in enumerate(zip(rows, cols)):
        nucleotide = bl.predict(fitted, windows, np.full(3, r), c * 3 + np.arange(3))
        truth = windows[r, c * 3 : c * 3 + 3]
        assert bits[i] == pytest.approx(-np.log2(nucleotide[np.arange(3), truth]).sum())
        joint = {}
        for kmer in np.ndindex(4, 4, 4):
            trial = windows.copy()
            trial[r, c * 3 : c * 3 + 3] = kmer
            p = bl.predict(fitted, trial, np.full(3, r), c * 3 + np.arange(3))
            joint[kmer] = np.log(p[np.arange(3), list(kmer)]).sum()
        assert correct[i] == (max(joint, key=joint.get) == tuple(truth))


# ---------------------------------------------------------------------------------------------
# Data: windows, masking, held-out hygiene


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**16), length=st.sampled_from([6, 12, 18]))
def test_sampled_windows_lie_inside_the_region_and_avoid_n(seed, length):
    sequence = np.frombuffer(b"ACGTNACGTACGTTTNNACGATCGATCGGGCATNACGTAGCTAGCTAGGA" * 3, dtype=np.uint8)
    region = tr.Region.of(bl.nucleotide_codes(sequence), start=1000)
    windows, starts = tr.sample_windows(region, np.random.default_rng(seed), 16, length)
    assert windows.shape == (16, length) and (windows >= 0).all()
    assert (starts >= 1000).all() and (starts + length <= 1000 + len(sequence)).all()
    for window, start in zip(windows, starts):
        forward = region.codes[start - 1000 : start - 1000 + length]
        assert np.array_equal(window, forward) or np.array_equal(window, bl.reverse_complement_codes(forward))


def test_sampling_from_a_region_without_clean_windows_is_an_input_error():
    region = tr.Region.of(bl.nucleotide_codes(np.frombuffer(b"ACGTNACGTN", dtype=np.uint8)))
    with pytest.raises(InputError, match="free of N"):
        tr.sample_windows(region, np.random.default_rng(0), 4, 5)


def test_training_windows_never_reach_the_held_out_region():
    recipe = tr.recipe_for("single")
    region = tr.train_region(recipe)
    end = tr.train_end(recipe)
    assert region.start == 0 and len(region.codes) == end
    for step in range(5):
        windows, starts = tr.sample_windows(region, tr.step_rng(recipe, step), 64, 512)
        assert (starts + 512 <= end).all()
    held = tr.heldout_region(recipe)
    assert held.start == end


def _run_lengths(rows: np.ndarray) -> np.ndarray:
    """Lengths of the runs of True in each row of a (n, L) bool array, all rows together."""
    padded = np.pad(rows, ((0, 0), (1, 1))).astype(np.int8)
    change = np.diff(padded, axis=1)
    return np.flatnonzero(change.ravel() == -1) - np.flatnonzero(change.ravel() == 1)


def test_span_mask_covers_the_rate_with_varied_gaps():
    mask = tr.span_mask(np.random.default_rng(0), 200, 512, 0.15, 2.0, 10)
    assert abs(mask.mean() - 0.15) < 0.01
    gaps, spans = _run_lengths(~mask), _run_lengths(mask)
    assert gaps.min() == 1 and gaps.max() > 40 and len(np.unique(gaps)) > 30
    assert np.mean(spans == 1) > 0.3 and spans.max() >= 10


def test_batches_are_a_function_of_seed_and_step():
    recipe = tr.recipe_for("6mer", tokens_per_batch=512)
    tokenizer = tr.build_tokenizer(recipe)
    vocab = tr.Vocabulary.of(tokenizer, 6)
    region = tr.Region.of(np.random.default_rng(0).integers(0, 4, 20_000).astype(np.int8))
    a = tr.make_batch(recipe, region, vocab, 7)
    b = tr.make_batch(recipe, region, vocab, 7)
    c = tr.make_batch(recipe, region, vocab, 8)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not (a[0].shape == c[0].shape and torch.equal(a[0], c[0]))
    inputs, labels = a
    assert (inputs[:, 0] == tokenizer.cls_token_id).all() and (inputs[:, -1] == tokenizer.sep_token_id).all()
    predicted = labels != tr.IGNORE
    kmer_ids = torch.from_numpy(vocab.kmer_ids)
    assert torch.isin(labels[predicted], kmer_ids).all()
    assert ((inputs == tokenizer.mask_token_id) <= predicted).all()


def test_vocabulary_maps_kmers_like_the_tokenizer():
    recipe = tr.recipe_for("6mer")
    tokenizer = tr.build_tokenizer(recipe)
    vocab = tr.Vocabulary.of(tokenizer, 6)
    sequence = "ACGTTGCATTTAGGCCAT"
    codes = bl.nucleotide_codes(np.frombuffer(sequence.encode(), dtype=np.uint8))[None]
    expected = tokenizer(sequence, add_special_tokens=False)["input_ids"]
    assert vocab.token_ids(codes)[0].tolist() == expected


def test_sparse_positions_keep_their_distance():
    positions = tr.sparse_positions(np.random.default_rng(0), 50, 512, margin=6, block=10, gap=6)
    assert positions.min() >= 6 and positions.max() <= 512 - 6
    assert np.diff(positions, axis=1).min() >= 6


# ---------------------------------------------------------------------------------------------
# Model and schedule


def test_local_heads_attend_to_their_offsets_at_initialisation():
    recipe = tr.recipe_for("single", d_model=64, n_heads=4, n_layers=2, d_mlp=64,
                           local_heads=((-2, -1, 1, 2), (-4, -3, 3, 4)))
    tokenizer = tr.build_tokenizer(recipe)
    model = tr.build_model(recipe, tokenizer)
    model.set_attn_implementation("eager")
    ids = torch.from_numpy(tr.frame(np.random.default_rng(0).integers(5, 9, size=(2, 300)), 2, 3))
    with torch.no_grad():
        patterns = model(input_ids=ids, output_attentions=True).attentions  # per layer (2, heads, q, k)
    queries = torch.arange(20, 280)
    for layer, offsets in enumerate(recipe.local_heads):
        for head, offset in enumerate(offsets):
            pattern = patterns[layer][:, head, queries]
            assert (pattern.argmax(-1) == queries + offset).float().mean() > 0.95
            assert pattern[:, torch.arange(len(queries)), queries + offset].mean() > 0.5


def test_local_heads_for_missing_layers_are_an_input_error():
    recipe = tr.recipe_for("single", n_layers=1, local_heads=((-1, 1), (-2, 2)))
    with pytest.raises(InputError, match="local_heads"):
        tr.build_model(recipe, tr.build_tokenizer(recipe))


def test_a_resumed_run_continues_exactly_where_it_stopped(tmp_path, monkeypatch):
    monkeypatch.setenv("SEQCLAIMS_CACHE", str(tmp_path))
    recipe = tr.recipe_for("single", n_layers=1, d_model=32, n_heads=4, d_mlp=64, local_heads=((-1, 1),),
                           window_tokens=(32,), window_weights=(1.0,), tokens_per_batch=256, steps=10,
                           warmup_steps=2, eval_every=0)
    quiet = dict(log=lambda line: None)
    _, _, whole = tr.train(recipe, max_steps=5, checkpoint=False, **quiet)
    tr.train(recipe, max_steps=3, **quiet)
    assert tr.checkpoint_path(recipe).is_file()
    model, _, resumed = tr.train(recipe, max_steps=5, **quiet)
    assert [p["step"] for p in resumed.curve] == [1, 2, 3, 4, 5]
    assert [p["loss"] for p in resumed.curve] == pytest.approx([p["loss"] for p in whole.curve], abs=1e-6)
    assert resumed.tokens_seen == whole.tokens_seen == 5 * 256


def test_learning_rate_warms_up_then_decays_to_the_floor():
    recipe = tr.recipe_for("single", steps=1000, warmup_steps=100, lr=1e-3, min_lr_ratio=0.1)
    rates = np.array([tr.learning_rate(recipe, s) for s in range(1000)])
    assert rates[0] == pytest.approx(1e-5) and rates[99] == pytest.approx(1e-3)
    assert (np.diff(rates[100:]) <= 0).all() and rates[-1] == pytest.approx(1e-4, rel=1e-3)


def test_recipe_digest_changes_with_any_field():
    base = tr.recipe_for("single")
    assert base.digest() == tr.recipe_for("single").digest()
    assert base.digest() != tr.recipe_for("single", seed=1).digest()
    assert base.digest() != tr.recipe_for("single", mean_span=3.0).digest()


def test_cli_offers_train_organism():
    from seqclaims.cli import build_parser

    args = build_parser().parse_args(["train-organism", "--tokenization", "6mer", "--steps", "5", "--minutes", "1"])
    assert args.run is tr.run_train_organism and args.tokenization == "6mer" and args.steps == 5


# ---------------------------------------------------------------------------------------------
# Kept checkpoints: organism@step0 (the initialisation) and organism@step200


def test_train_keeps_the_requested_checkpoints_as_model_folders(tmp_path, monkeypatch):
    monkeypatch.setenv("SEQCLAIMS_CACHE", str(tmp_path / "cache"))
    recipe = tr.recipe_for("single", n_layers=1, d_model=32, n_heads=4, d_mlp=64, local_heads=((-1, 1),),
                           window_tokens=(32,), window_weights=(1.0,), tokens_per_batch=256, steps=10,
                           warmup_steps=2, eval_every=0)
    folder = tmp_path / "model"
    model, _, _ = tr.train(recipe, max_steps=3, keep=tr.checkpoint_keeper(folder, recipe, lambda line: None),
                           keep_steps=(0, 2), log=lambda line: None)
    kept = sorted(p.name for p in (folder / "checkpoints").iterdir())
    assert kept == ["step0", "step2"]
    facts = json.loads((folder / "checkpoints" / "step2" / "checkpoint.json").read_text())
    assert facts["step"] == 2 and facts["recipe_sha256"] == recipe.digest() and facts["tokens_seen"] == 2 * 256
    initial = tr.build_model(recipe, tr.build_tokenizer(recipe)).state_dict()
    from transformers import EsmForMaskedLM

    step0 = EsmForMaskedLM.from_pretrained(str(folder / "checkpoints" / "step0")).state_dict()
    assert all(torch.equal(initial[name], step0[name]) for name in initial)
    step2 = EsmForMaskedLM.from_pretrained(str(folder / "checkpoints" / "step2")).state_dict()
    assert not all(torch.equal(initial[name], step2[name]) for name in initial)


def test_the_shipped_initialisation_is_the_recipes_initial_model():
    card = _card("organism")
    recipe = tr.Recipe(**card["recipe"])
    initial = tr.build_model(recipe, tr.build_tokenizer(recipe)).state_dict()
    shipped = load_model("organism@step0").model.state_dict()
    assert all(torch.equal(initial[name], shipped[name]) for name in initial)
    for name in ("organism@step0", "organism@step200"):
        folder = fixtures_dir() / "models" / "organism" / "checkpoints" / name.split("@")[1]
        facts = json.loads((folder / "checkpoint.json").read_text())
        assert facts["recipe_sha256"] == card["recipe_sha256"] and f"step{facts['step']}" == name.split("@")[1]
    assert folder_hash(fixtures_dir() / "models" / "organism") == card["folder_sha256"]  # checkpoints/ not part of it


def test_keep_checkpoints_must_be_a_list_of_steps():
    assert tr.parse_steps("200, 0,200") == (0, 200)
    assert tr.parse_steps("") == ()
    with pytest.raises(InputError, match="--keep-checkpoints 'a,1' is not a comma-separated list of steps"):
        tr.parse_steps("a,1")
