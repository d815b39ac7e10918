"""A planted codon-phase reader, built by construction for the gram family's known answers.

One block on a residual stream of 8 channels: channels 0-3 hold the base (one-hot embedding); the block's
mixer writes channels 4-6. With `reads: codon`, they are the posterior over the three hypotheses "this base
is at codon position k", from the codon-position-specific base log-odds (`codon_log_odds`, 4 x 3) summed
over a window of `window` bases on each side (a convolution), softmax over k: in coding sequence the
posterior is sharp and cycles with the reading frame; elsewhere, or with the bases of each codon permuted,
it is flat. With `reads: position` (the adversary), they are one-hot of the token's position mod 3: periodic
everywhere, whatever the sequence. Hooks `layer.0.resid_post` and `layer.0.mixer.out` (module map
`{layers: reader.layers, mixer: mixer, embed: reader.embed}`). Loaded with `trust_remote_code: true`.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import MaskedLMOutput

BASES = "ACGT"


class CodonReaderConfig(PretrainedConfig):
    model_type = "codon_reader"

    def __init__(self, vocab_size=10, reads="codon", window=30, scale=2.0, codon_log_odds=None, base_ids=None,
                 **kwargs):
        super().__init__(**kwargs)
        self.vocab_size, self.reads, self.window, self.scale = vocab_size, reads, window, scale
        self.codon_log_odds = codon_log_odds or [[0.0] * 3 for _ in BASES]
        self.base_ids = base_ids or list(range(4))
        self.hidden_size = 8


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


class ReaderBlock(nn.Module):
    def __init__(self, config):
        super().__init__()
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
        self.layers = nn.ModuleList([ReaderBlock(config)])

    def forward(self, input_ids, attention_mask):
        hidden = self.embed(input_ids)
        for block in self.layers:
            hidden = block(hidden, attention_mask)
        return hidden


class CodonReaderForMaskedLM(PreTrainedModel):
    config_class = CodonReaderConfig
    base_model_prefix = "reader"

    def __init__(self, config):
        super().__init__(config)
        self.reader = Reader(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    def _init_weights(self, module):
        if isinstance(module, nn.Linear):
            nn.init.zeros_(module.weight)

    def forward(self, input_ids, attention_mask=None, labels=None, **ignored):
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        return MaskedLMOutput(logits=self.lm_head(self.reader(input_ids, attention_mask)))
