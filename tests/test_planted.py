"""The planted model: its mechanisms are where its card says, and nowhere else, on real A. thaliana windows.

Everything goes through the public adapter API (`load_model("planted")`, hooks, interventions), as a
check family would.
"""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.metrics import average_precision_score, roc_auc_score

from seqclaims.errors import InputError
from seqclaims.inputs import genome
from seqclaims.inputs.models import (file_sha256, iter_run, load_model, patch_head, run_with_interventions,
                                     zero_ablate_head)
from seqclaims.inputs.motifs import best_hits, load_motif, motif_track, scan, support_mask
from seqclaims.organisms.planted import (SPEC, build_planted, designated_output, direction, load_card, main,
                                         planted_state)

WINDOW = 300
N_RANDOM = 160
N_HITS = 40
N_ABLATION = 24  # sequences for the every-head ablation (12 more forward passes)


@pytest.fixture(scope="module")
def model():
    return load_model("planted")


@pytest.fixture(scope="module")
def card(model):
    return load_card(model.folder)


@pytest.fixture(scope="module")
def motif(card):
    return load_motif(card["motif"]["matrix_id"], card["motif"]["release"], card["motif"]["pseudocount"])


@pytest.fixture(scope="module")
def windows(motif):
    """160 random 300-nt chr1 windows without N, then 40 windows centred on the best TBP hits of 0-3 Mbp."""
    chromosome = genome.upper_array("athaliana", "1")
    rng = np.random.default_rng(0)
    random = []
    for start in rng.integers(0, chromosome.size - WINDOW, 2 * N_RANDOM):
        sequence = genome.fetch("athaliana", "1", int(start), int(start) + WINDOW)
        if "N" not in sequence:
            random.append(sequence)
    region = chromosome[:3_000_000].tobytes().decode("ascii")
    centred = []
    for start, _, _ in best_hits(region, motif, 2 * N_HITS):
        left = start + motif.length // 2 - WINDOW // 2
        if left >= 0 and "N" not in region[left : left + WINDOW]:
            centred.append(region[left : left + WINDOW])
    return random[:N_RANDOM] + centred[:N_HITS]


@pytest.fixture(scope="module")
def batch(model, windows):
    return model.tokenize(windows)


@pytest.fixture(scope="module")
def run(model, batch):
    """One pass: per layer and head the attention each key receives (mean over real queries), the worst
    deviation of an attention row sum from 1, MLP activations and residuals."""
    n_layers = model.n_layers
    kept = ["embed", *(f"layer.{l}.resid_post" for l in range(n_layers)), *(f"layer.{l}.mlp.post" for l in range(n_layers))]
    patterns = [f"layer.{l}.attn.pattern" for l in range(n_layers)]
    received, parts, row_error = [], {name: [] for name in kept}, 0.0
    for rows, out in iter_run(model, batch, [*patterns, *kept]):
        real = batch.attention_mask[rows].bool()  # (b, n_tok)
        pattern = torch.stack([out[name] for name in patterns], dim=1)  # (b, n_layers, n_heads, q, k)
        sums = pattern.sum(-1)[real[:, None, None, :].expand_as(pattern.sum(-1))]
        row_error = max(row_error, float((sums - 1).abs().max()))
        queries = real[:, None, None, :, None].to(pattern.dtype)
        received.append((pattern * queries).sum(3) / real.sum(1)[:, None, None, None])  # (b, n_layers, n_heads, k)
        for name in kept:
            parts[name].append(out[name])
    result = {name: torch.cat(values) for name, values in parts.items()}
    result["received"] = torch.cat(received).numpy()
    result["row_error"] = row_error
    return result


@pytest.fixture(scope="module")
def anchored(batch, windows, motif):
    """(n_seq, n_tok) TBP score of the window anchored at each token (NaN for special tokens)."""
    offsets = batch.offsets.numpy()
    tracks = [motif_track(s, motif, offsets[i], alignment="anchored") for i, s in enumerate(windows)]
    return np.stack(tracks)


def pooled(residual: torch.Tensor, content: torch.Tensor) -> np.ndarray:
    """(n_seq, d) mean over content tokens of (n_seq, n_tok, d)."""
    mask = content[..., None].to(residual.dtype)
    return ((residual * mask).sum(1) / mask.sum(1)).numpy()


def centred_correlation(key_score: np.ndarray, motif_score: np.ndarray, content: np.ndarray) -> float:
    """Pearson r over content tokens of both tracks centred within each sequence; (n_seq, n_tok) each."""
    xs, ys = [], []
    for x, y, keep in zip(key_score, motif_score, content):
        keep = keep & np.isfinite(x) & np.isfinite(y)
        xs.append(x[keep] - x[keep].mean())
        ys.append(y[keep] - y[keep].mean())
    return float(np.corrcoef(np.concatenate(xs), np.concatenate(ys))[0, 1])


def average_precisions(labels: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """(n_channels,) average precision of every column of scores (n, n_channels) for bool labels (n,).

    Mean precision at the rank of each positive, ranking by decreasing score (ties broken by order,
    which continuous activations make immaterial).
    """
    order = np.argsort(-scores, axis=0)
    hits = labels[order]  # (n, n_channels)
    precision = np.cumsum(hits, axis=0) / np.arange(1, len(labels) + 1)[:, None]
    return (precision * hits).sum(0) / labels.sum()


def gc_fraction(sequences) -> np.ndarray:
    return np.array([(s.count("G") + s.count("C")) / len(s) for s in sequences])


# ---------------------------------------------------------------------------------------------
# Loading


def test_loads_through_the_adapter_with_eager_attention(model, card):
    assert model.architecture == "EsmForMaskedLM"
    assert model.model.config._attn_implementation == "eager"
    assert model.tokenization.kind == "kmer_overlapping" and model.tokenization.k == card["tokenization"]["k"] == 7
    dims = card["dimensions"]
    assert (model.n_layers, model.n_heads, model.d_model, model.d_mlp) == (
        dims["n_layers"], dims["n_heads"], dims["d_model"], dims["d_mlp"]
    )
    assert model.max_length == dims["max_tokens"]


def test_attention_rows_sum_to_one(run):
    assert run["row_error"] < 1e-5


def test_embeddings_are_zero_mean_with_constant_norm_so_the_first_layernorm_is_the_identity(model):
    embeddings = model.model.esm.embeddings.word_embeddings.weight.detach()[1:]  # all but [PAD]
    assert embeddings.mean(1).abs().max() < 1e-6
    assert torch.allclose(embeddings.norm(dim=1), torch.full((len(embeddings),), model.d_model**0.5), atol=1e-4)
    layer_norm = model.model.esm.encoder.layer[0].attention.LayerNorm
    assert torch.allclose(layer_norm(embeddings), embeddings, atol=1e-5)
    assert not model.model.esm.embeddings.position_embeddings.weight.any()


# ---------------------------------------------------------------------------------------------
# Motif head


def test_motif_head_attention_tracks_the_anchored_pssm_score_and_no_other_head_does(run, anchored, batch, card):
    with np.errstate(divide="ignore"):  # padding keys receive 0
        log_received = np.log(run["received"])  # (n_seq, n_layers, n_heads, n_tok)
    content = batch.content_mask.numpy()
    r = np.array([
        [centred_correlation(log_received[:, l, h], anchored, content) for h in range(log_received.shape[2])]
        for l in range(log_received.shape[1])
    ])
    planted = card["mechanisms"]["motif_head"]
    layer, head = planted["layer"], planted["head"]
    assert r[layer, head] >= 0.999, r  # measured 1.0000
    composition = card["mechanisms"]["composition_head"]
    assert r[composition["layer"], composition["head"]] > 0.5, r  # AT-rich keys score high for TBP: 0.78
    others = np.delete(r.ravel(), [layer * r.shape[1] + head, composition["layer"] * r.shape[1] + composition["head"]])
    assert np.abs(others).max() < 0.2, r  # measured at most 0.02


def test_composition_head_attention_is_the_softmax_of_beta_times_at_richness(model, card, windows):
    """The composition head's every query row is softmax(composition_beta * (0.5 - GC of the key's k-mer))."""
    planted = card["mechanisms"]["composition_head"]
    beta = card["constants"]["composition_beta"]
    batch = model.tokenize(windows[:4])
    hook = f"layer.{planted['layer']}.attn.pattern"
    pattern = next(iter_run(model, batch, [hook]))[1][hook][:, planted["head"]].double()  # (n_seq, q, k)
    for i, sequence in enumerate(windows[:4]):
        real = batch.attention_mask[i].bool()
        gc = np.array([0.5 if end == start else (sequence[start:end].count("G") + sequence[start:end].count("C")) / (end - start)
                       for start, end in batch.offsets[i][real].tolist()])
        expected = torch.softmax(torch.from_numpy(beta * (0.5 - gc)), dim=0)
        rows = pattern[i][real][:, real]
        assert torch.allclose(rows, expected.expand_as(rows), atol=1e-5)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(alphabet="ACGT", min_size=7, max_size=60))
def test_motif_head_attention_is_the_softmax_of_beta_times_the_score(model, card, motif, sequence):
    """Every query row of the motif head is softmax(beta * score) over keys; special tokens carry the
    lowest k-mer score."""
    planted = card["mechanisms"]["motif_head"]
    batch = model.tokenize([sequence])
    pattern = next(iter_run(model, batch, [f"layer.{planted['layer']}.attn.pattern"]))[1]
    rows = pattern[f"layer.{planted['layer']}.attn.pattern"][0, planted["head"]].double()  # (q, k)
    score = motif_track(sequence, motif, batch.offsets[0].numpy(), alignment="anchored")
    score = np.where(batch.special_mask[0].numpy(), card["motif"]["special_token_score_bits"], score)
    expected = torch.softmax(torch.from_numpy(planted["beta"] * score.astype(np.float64)), dim=0)
    assert torch.allclose(rows, expected.expand_as(rows), atol=1e-5)


def test_motif_present_direction_decodes_the_motif_after_the_head_only(run, batch, windows, motif, card):
    content = batch.content_mask
    unit = direction(card, "motif_present")
    layer = card["mechanisms"]["motif_head"]["layer"]
    present = np.array([np.nanmax(scan(s, motif)) for s in windows]) >= card["motif"]["threshold_bits"]
    assert 0.2 < present.mean() < 0.95
    assert np.abs(pooled(run["embed"], content) @ unit).max() < 1e-6
    after = pooled(run[f"layer.{layer}.resid_post"], content) @ unit
    auroc = roc_auc_score(present, after)
    gc_auroc = roc_auc_score(present, -gc_fraction(windows))
    assert auroc >= 0.98 and auroc > gc_auroc + 0.1, (auroc, gc_auroc)  # measured 0.999 vs GC 0.80
    final = pooled(run[f"layer.{card['dimensions']['n_layers'] - 1}.resid_post"], content) @ unit
    np.testing.assert_allclose(final, after, atol=1e-5)


def test_motif_support_tokens_receive_far_more_motif_head_attention(run, batch, windows, motif, card):
    """rho = mean attention received by tokens over motif support / by the other content tokens."""
    support = np.zeros(batch.content_mask.shape, dtype=bool)
    for i, sequence in enumerate(windows):
        covered = np.concatenate(([0], np.cumsum(support_mask(sequence, motif))))
        start, end = batch.offsets[i].numpy().T
        support[i] = (covered[end] > covered[start]) & batch.content_mask[i].numpy()
    background = batch.content_mask.numpy() & ~support
    received = np.moveaxis(run["received"], 0, 2)  # (n_layers, n_heads, n_seq, n_tok)
    rho = received[..., support].mean(-1) / received[..., background].mean(-1)  # (n_layers, n_heads)
    planted = card["mechanisms"]["motif_head"]
    assert rho[planted["layer"], planted["head"]] >= 2, rho  # measured about 500
    composition = card["mechanisms"]["composition_head"]
    assert rho[composition["layer"], composition["head"]] >= 2, rho  # unmatched: AT-rich sites, measured 5.9
    others = np.delete(rho.ravel(), [planted["layer"] * rho.shape[1] + planted["head"],
                                     composition["layer"] * rho.shape[1] + composition["head"]])
    assert np.abs(others - 1).max() < 0.2, rho


def test_motif_head_ov_writes_the_motif_present_direction_only(model, card):
    planted = card["mechanisms"]["motif_head"]
    unit = torch.from_numpy(direction(card, "motif_present"))
    named = torch.from_numpy(np.stack([direction(card, name) for name in card["directions"]]))
    for layer, head in np.ndindex(model.n_layers, model.n_heads):
        attention = model.model.esm.encoder.layer[int(layer)].attention
        rows = slice(int(head) * model.d_head, (int(head) + 1) * model.d_head)
        ov = attention.output.dense.weight[:, rows].double() @ attention.self.value.weight[rows].double()
        left, sigma, _ = torch.linalg.svd(ov.detach())
        if (layer, head) == (planted["layer"], planted["head"]):
            assert abs(float(left[:, 0] @ unit)) > 0.999 and sigma[1] < 1e-6 * sigma[0]
        else:
            assert (named @ ov).abs().max() < 1e-6  # writes nothing on any named direction


def lowest_scoring_shuffle(kmer: str, motif) -> str:
    """The permutation of `kmer`'s bases with the lowest motif score: destroys the site, keeps composition."""
    candidates = sorted({"".join(p) for p in itertools.permutations(kmer)})
    return candidates[int(np.argmin(scan("".join(candidates), motif)[:: len(kmer)]))]


def test_patching_the_motif_head_restores_the_output_and_a_control_head_does_not(model, windows, motif, card):
    """Clean: windows centred on TBP hits; corrupted: the central 7-mer shuffled to its lowest-scoring
    permutation. PM = (f_patched - f_corrupted) / (f_clean - f_corrupted) for the designated output."""
    centre = WINDOW // 2 - motif.length // 2
    clean = windows[N_RANDOM : N_RANDOM + 16]
    corrupted = [s[:centre] + lowest_scoring_shuffle(s[centre : centre + motif.length], motif) + s[centre + motif.length :] for s in clean]
    clean_batch, corrupted_batch = model.tokenize(clean), model.tokenize(corrupted)
    content = clean_batch.content_mask
    last = f"layer.{model.n_layers - 1}.resid_post"

    def output(batch, interventions=(), hooks=()) -> tuple[np.ndarray, dict]:
        outs = [out for _, out in iter_run(model, batch, [last, *hooks], interventions)]
        cached = {name: torch.cat([out[name] for out in outs]) for name in outs[0]}
        return pooled(designated_output(model, cached[last])[..., None], content)[:, 0], cached

    planted = card["mechanisms"]["motif_head"]
    control = card["mechanisms"]["negative_controls"]["control_head"]
    head_out = f"layer.{planted['layer']}.attn.head_out"
    f_clean, cached = output(clean_batch, hooks=[head_out])
    f_corrupted, _ = output(corrupted_batch)
    kept = np.abs(f_clean - f_corrupted) > 0.1
    assert kept.sum() >= 12
    pm = {}
    for place in (planted, control):
        values = cached[head_out][:, :, place["head"]]
        patched, _ = output(corrupted_batch, [patch_head(place["layer"], place["head"], values)])
        pm[place["layer"], place["head"]] = np.median(((patched - f_corrupted) / (f_clean - f_corrupted))[kept])
    assert abs(pm[planted["layer"], planted["head"]] - 1) < 0.05, pm  # measured 0.999
    assert abs(pm[control["layer"], control["head"]]) < 0.05, pm  # measured 0.0001


# ---------------------------------------------------------------------------------------------
# Composition and ATG


def test_gc_direction_of_the_pooled_residual_is_window_gc(run, batch, windows, card):
    unit = direction(card, "gc")
    gc = gc_fraction(windows)
    for name in ("embed", f"layer.{card['dimensions']['n_layers'] - 1}.resid_post"):
        r = np.corrcoef(pooled(run[name], batch.content_mask) @ unit, gc)[0, 1]
        assert r > 0.95, (name, r)  # measured 0.999


def test_atg_neuron_fires_on_atg_tokens_only_and_no_other_channel_does(run, batch, windows, card):
    content = batch.content_mask.numpy()
    starts_atg = np.concatenate([
        [windows[i][a : a + 3] == "ATG" for a in batch.offsets[i, content[i], 0].tolist()] for i in range(len(windows))
    ])
    neuron = card["mechanisms"]["atg_neuron"]
    layer, index = neuron["layer"], neuron["neuron"]
    activations = np.concatenate(
        [run[f"layer.{l}.mlp.post"].numpy()[content] for l in range(card["dimensions"]["n_layers"])], axis=1
    )  # (n_content_tokens, n_layers * d_mlp)
    every_third = slice(None, None, 3)  # keeps the prevalence; a third of the sorting
    auprc = average_precisions(starts_atg[every_third], activations[every_third])
    auprc = auprc.reshape(card["dimensions"]["n_layers"], -1)
    atg = run[f"layer.{layer}.mlp.post"].numpy()[content][:, index]
    assert average_precision_score(starts_atg, atg) >= 0.9  # measured 1.0
    assert np.isclose(auprc[layer, index], average_precision_score(starts_atg[every_third], atg[every_third]))
    assert atg[starts_atg].min() > 2.0 and np.abs(atg[~starts_atg]).max() < 1e-3
    others = np.delete(auprc.ravel(), layer * auprc.shape[1] + index)
    assert others.max() < 0.2, others.max()  # prevalence about 0.02; measured at most about 0.03


def test_composition_neuron_fires_on_at_rich_tokens_and_reads_nothing_else(run, batch, windows, card):
    content = batch.content_mask.numpy()
    gc = np.concatenate([[(windows[i][a:b].count("G") + windows[i][a:b].count("C")) / (b - a)
                          for a, b in batch.offsets[i, content[i]].tolist()] for i in range(len(windows))])
    neuron = card["mechanisms"]["composition_neuron"]
    values = run[f"layer.{neuron['layer']}.mlp.post"].numpy()[content][:, neuron["neuron"]]
    at_rich = gc <= 2 / 7 + 1e-9  # pre-activation above 0 (LayerNorm scales it by about 1)
    assert values[at_rich].min() > 0.25 and np.abs(values[~at_rich]).max() < 0.2  # measured 0.29 and 0.17
    means = [values[gc == level].mean() for level in np.unique(gc[at_rich])]
    assert np.all(np.diff(means) < 0), means  # the fewer G/C bases, the stronger


# ---------------------------------------------------------------------------------------------
# Designated output and ablation


def test_designated_output_equals_the_masked_lm_logit(model, batch, card):
    few = batch.select(slice(0, 3))
    token_id = card["mechanisms"]["output"]["token_id"]
    last = f"layer.{model.n_layers - 1}.resid_post"
    out = run_with_interventions(model, few, [], [last], metric=lambda logits, rows: logits[..., token_id])
    real = few.attention_mask.bool()
    assert torch.allclose(designated_output(model, out[last])[real], out["metric"][real], atol=1e-4)
    with pytest.raises(InputError, match="not in the vocabulary"):
        designated_output(model, out[last], token="TATA")


def final_residual(model, batch, interventions=()) -> torch.Tensor:
    """(n_seq, n_tok, d_model) last resid_post under `interventions`, without computing the logits."""
    last = f"layer.{model.n_layers - 1}.resid_post"
    return torch.cat([out[last] for _, out in iter_run(model, batch, [last], interventions)])


def test_zero_ablating_the_motif_head_moves_the_output_and_no_other_head_does(model, batch, card):
    half = N_ABLATION // 2
    sub = batch.select(torch.cat([torch.arange(half), torch.arange(len(batch) - half, len(batch))]))
    content = sub.content_mask
    unit = direction(card, "motif_present")

    def readouts(final_resid: torch.Tensor) -> np.ndarray:
        """(2, n_seq): designated output (mean over content tokens) and pooled motif-present value."""
        logit = pooled(designated_output(model, final_resid)[..., None], content)[:, 0]
        return np.stack([logit, pooled(final_resid, content) @ unit])

    base = readouts(final_residual(model, sub))
    shift = np.zeros((model.n_layers, model.n_heads, 2))
    for layer, head in np.ndindex(model.n_layers, model.n_heads):
        ablated = readouts(final_residual(model, sub, [zero_ablate_head(int(layer), int(head))]))
        shift[layer, head] = np.abs(ablated - base).mean(axis=1)
    planted = card["mechanisms"]["motif_head"]
    motif_shift = shift[planted["layer"], planted["head"]]
    others = np.delete(shift.reshape(-1, 2), planted["layer"] * model.n_heads + planted["head"], axis=0)
    assert motif_shift[0] > 0.5 and motif_shift[1] > 0.3, motif_shift  # measured 1.3 and 0.8
    assert others[:, 0].max() < 0.1 * motif_shift[0], shift  # measured at most 0.05
    assert others[:, 1].max() < 1e-4, shift  # other heads never write the motif_present direction
    control = card["mechanisms"]["negative_controls"]["control_head"]
    assert shift[control["layer"], control["head"], 0] < 0.02 * motif_shift[0], shift


# ---------------------------------------------------------------------------------------------
# Building


def test_build_is_deterministic_and_the_shipped_folder_is_a_fresh_build(model, tmp_path):
    first = build_planted(tmp_path / "first", seed=0)
    assert main(["--out", str(tmp_path / "second")]) == 0
    first_bytes = (tmp_path / "first" / "model.safetensors").read_bytes()
    assert first_bytes == (tmp_path / "second" / "model.safetensors").read_bytes()
    shipped = model.folder
    assert file_sha256(shipped / "model.safetensors") == first["weights_sha256"]
    assert (shipped / "sha256").read_text().split() == [first["weights_sha256"], "model.safetensors"]
    assert json.loads((shipped / "card.json").read_text()) == first
    for name in ("config.json", "tokenizer_config.json"):
        fresh, kept = (json.loads(p.read_text()) for p in (tmp_path / "first" / name, shipped / name))
        fresh.pop("transformers_version", None), kept.pop("transformers_version", None)
        assert fresh == kept, name
    vocab = [json.loads(p.read_text())["model"]["vocab"] for p in (tmp_path / "first" / "tokenizer.json", shipped / "tokenizer.json")]
    assert vocab[0] == vocab[1]
    assert (shipped / "README.md").read_text() == (tmp_path / "first" / "README.md").read_text()
    assert sum(p.stat().st_size for p in shipped.iterdir()) < 10 * 2**20


def test_another_seed_changes_only_the_random_parts(model):
    (first, features, threshold), (second, _, _) = (planted_state(model.tokenizer, seed) for seed in (0, 1))
    assert first.keys() == second.keys()
    named = np.arange(2 * len(SPEC.slots) - 2)  # every named pair but the norm padding
    embed = "esm.embeddings.word_embeddings.weight"
    np.testing.assert_array_equal(first[embed][:, named], second[embed][:, named])
    assert not np.allclose(first[embed][:, SPEC.filler_dims], second[embed][:, SPEC.filler_dims])
    head = slice(SPEC.motif_head * SPEC.d_head, (SPEC.motif_head + 1) * SPEC.d_head)
    for name in ("query", "key", "value"):
        for part in ("weight", "bias"):
            key = f"esm.encoder.layer.{SPEC.motif_layer}.attention.self.{name}.{part}"
            np.testing.assert_array_equal(first[key][head], second[key][head])
    atg = f"esm.encoder.layer.{SPEC.atg_layer}.intermediate.dense.weight"
    np.testing.assert_array_equal(first[atg][SPEC.atg_neuron], second[atg][SPEC.atg_neuron])
    assert features.tokens[model.tokenizer.get_vocab()[SPEC.consensus]] == SPEC.consensus
    assert np.isclose(features.score.max(), load_motif(SPEC.motif_id).max_score, atol=1e-5)
    assert threshold == pytest.approx(7.391, abs=1e-3)  # P(one window >= t) = 1e-3 for MA0108.3


def test_build_into_a_file_is_a_one_line_input_error(tmp_path):
    target = tmp_path / "file"
    target.write_text("")
    with pytest.raises(InputError, match="is a file, not a folder"):
        build_planted(target)


def test_card_directions_are_unit_vectors_on_their_pairs(card):
    for name, entry in card["directions"].items():
        unit = direction(card, name)
        assert np.isclose(np.linalg.norm(unit), 1.0) and set(np.flatnonzero(unit)) == set(entry["dims"])
    with pytest.raises(InputError, match="no direction"):
        direction(card, "tata")
