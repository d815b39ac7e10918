"""Planted readers: tiny models whose mechanisms are set by construction, for known answers.

A residual stream of 8 channels; channels 0-3 hold the base (one-hot embedding). Blocks add their mixer's
output (module map `{layers: reader.layers, mixer: mixer, embed: reader.embed}`; hooks
`layer.{l}.resid_post`, `layer.{l}.mixer.out`). Loaded with `trust_remote_code: true`.

- `reads: codon` (one block): channels 4-6 hold the posterior over the three hypotheses "this base is at
  codon position k", from the codon-position-specific base log-odds (`codon_log_odds`, 4 x 3) summed over
  `window` bases on each side (a convolution), softmax over k: sharp and cycling with the reading frame in
  coding sequence, flat elsewhere or with the bases of each codon permuted (the gram family's known answer).
- `reads: position` (one block, its adversary): channels 4-6 are one-hot of the position mod 3.
- `reads: circuit` (two blocks, the feature_circuit family's known answer): block 0 writes channel 4, "a
  TATA starts here" (1 where the four bases read TATA, else 0); block 1 writes channel 5, "a TATA within
  `window` bases" (the maximum of channel 4 over the window); the LM head's logit of T is `scale` times
  channel 5 and every other logit is 0. The circuit from the sequence to the T logit is: the TATA latent
  at layer 0, then the nearby-TATA latent at layer 1.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import MaskedLMOutput

BASES = "ACGT"


class PlantedReaderConfig(PretrainedConfig):
    model_type = "planted_reader"

    def __init__(self, vocab_size=10, reads="codon", window=30, scale=2.0, codon_log_odds=None, base_ids=None,
                 **kwargs):
        super().__init__(**kwargs)
        self.vocab_size, self.reads, self.window, self.scale = vocab_size, reads, window, scale
        self.codon_log_odds = codon_log_odds or [[0.0] * 3 for _ in BASES]
        self.base_ids = base_ids or list(range(4))
        self.hidden_size = 8
        self.num_hidden_layers = 2 if reads == "circuit" else 1


class PhaseMixer(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.reads, self.scale = config.reads, config.scale
        width = 2 * config.window + 1
        self.conv = nn.Conv1d(4, 3, width, padding=config.window, bias=False)
        log_odds = torch.tensor(config.codon_log_odds, dtype=torch.float32)  # (4 bases, 3 codon positions)
        offsets = torch.arange(width) - config.window
        with torch.no_grad():  # hypothesis k at base i: base i + o sits at codon position (o + k) mod 3
            for k in range(3):
                self.conv.weight[k] = log_odds[:, (offsets + k) % 3]

    def forward(self, hidden, attention_mask):
        bases = hidden[..., :4] * attention_mask[..., None].to(hidden.dtype)
        if self.reads == "position":
            positions = torch.arange(hidden.shape[1], device=hidden.device) % 3
            phase = nn.functional.one_hot(positions, 3).to(hidden.dtype).expand(hidden.shape[0], -1, -1)
        else:
            phase = torch.softmax(self.conv(bases.transpose(1, 2)).transpose(1, 2), dim=-1)
        out = torch.zeros_like(hidden)
        out[..., 4:7] = self.scale * phase
        return out


class TataMixer(nn.Module):
    """Block 0 of `reads: circuit`: channel 4 = 1 where the four bases starting here read TATA."""

    def forward(self, hidden, attention_mask):
        bases = hidden[..., :4] * attention_mask[..., None].to(hidden.dtype)
        pattern = [BASES.index(b) for b in "TATA"]
        padded = nn.functional.pad(bases, (0, 0, 0, 3))
        matches = sum(padded[:, i:i + hidden.shape[1], base] for i, base in enumerate(pattern))
        out = torch.zeros_like(hidden)
        out[..., 4] = torch.relu(matches - 3.0)
        return out


class NearbyMixer(nn.Module):
    """Block 1 of `reads: circuit`: channel 5 = the maximum of channel 4 within `window` bases."""

    def __init__(self, config):
        super().__init__()
        self.window = config.window

    def forward(self, hidden, attention_mask):
        site = (hidden[..., 4] * attention_mask.to(hidden.dtype))[:, None]
        nearby = nn.functional.max_pool1d(site, 2 * self.window + 1, stride=1, padding=self.window)[:, 0]
        out = torch.zeros_like(hidden)
        out[..., 5] = nearby
        return out


class ReaderBlock(nn.Module):
    def __init__(self, config, layer: int = 0):
        super().__init__()
        if config.reads == "circuit":
            self.mixer = TataMixer() if layer == 0 else NearbyMixer(config)
        else:
            self.mixer = PhaseMixer(config)

    def forward(self, hidden, attention_mask):
        return hidden + self.mixer(hidden, attention_mask)


class Reader(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.embed = nn.Embedding(config.vocab_size, config.hidden_size)
        with torch.no_grad():
            self.embed.weight.zero_()
            for channel, token in enumerate(config.base_ids):
                self.embed.weight[token, channel] = 1.0
        self.layers = nn.ModuleList([ReaderBlock(config, layer) for layer in range(config.num_hidden_layers)])

    def forward(self, input_ids, attention_mask):
        hidden = self.embed(input_ids)
        for block in self.layers:
            hidden = block(hidden, attention_mask)
        return (hidden,)


class PlantedReaderForMaskedLM(PreTrainedModel):
    config_class = PlantedReaderConfig
    base_model_prefix = "reader"

    def __init__(self, config):
        super().__init__(config)
        self.reader = Reader(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    def _init_weights(self, module):
        if isinstance(module, nn.Linear):
            nn.init.zeros_(module.weight)
            if self.config.reads == "circuit":
                with torch.no_grad():
                    module.weight[self.config.base_ids[BASES.index("T")], 5] = self.config.scale

    def get_output_embeddings(self):
        return self.lm_head

    def forward(self, input_ids, attention_mask=None, labels=None, **ignored):
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        return MaskedLMOutput(logits=self.lm_head(self.reader(input_ids, attention_mask)[0]))
