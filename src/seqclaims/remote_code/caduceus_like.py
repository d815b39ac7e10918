"""A Caduceus-like bidirectional state-space masked LM, written from the published description for offline tests.

What it shares with Caduceus (and PlantCAD2, built on it): single-nucleotide tokens, no attention, blocks of
RMSNorm -> BiMamba mixer -> residual, where BiMamba runs a Mamba mixer (transformers' `MambaMixer`) over the
sequence and over its reverse and adds the two (weights shared by default, as Caduceus does), a final
RMSNorm and a masked-LM head. The reverse pass reverses each sequence's real tokens only, so padding never
reaches a real token. Left out: Caduceus's reverse-complement equivariance (RC-PS). Module names:
`caduceus.layers.{l}.mixer`, so hooks `layer.{l}.resid_post` and `layer.{l}.mixer.out`. Loaded with
`trust_remote_code: true`.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import MambaConfig, PreTrainedModel
from transformers.modeling_outputs import MaskedLMOutput
from transformers.models.mamba.modeling_mamba import MambaMixer, MambaRMSNorm


def reversed_real(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """(b, t, d) with each row's first lengths[i] positions reversed; padding positions stay in place."""
    t = x.shape[1]
    positions = torch.arange(t, device=x.device)[None, :]
    index = torch.where(positions < lengths[:, None], lengths[:, None] - 1 - positions, positions)
    return torch.gather(x, 1, index[..., None].expand_as(x))


class BiMambaMixer(nn.Module):
    def __init__(self, config, layer_idx):
        super().__init__()
        self.forward_mixer = MambaMixer(config, layer_idx=layer_idx)
        self.reverse_mixer = None if config.bidirectional_weight_tie else MambaMixer(config, layer_idx=layer_idx)

    def forward(self, hidden, attention_mask):
        lengths = attention_mask.sum(dim=1)
        mask = attention_mask.to(hidden.dtype)[..., None]
        ahead = self.forward_mixer(hidden * mask) * mask
        backward_mixer = self.reverse_mixer or self.forward_mixer
        behind = reversed_real(backward_mixer(reversed_real(hidden * mask, lengths)) * mask, lengths)
        return ahead + behind


class CaduceusBlock(nn.Module):
    def __init__(self, config, layer_idx):
        super().__init__()
        self.norm = MambaRMSNorm(config.hidden_size, eps=config.layer_norm_epsilon)
        self.mixer = BiMambaMixer(config, layer_idx)

    def forward(self, hidden, attention_mask):
        return hidden + self.mixer(self.norm(hidden), attention_mask)


class CaduceusModel(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.embeddings = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList([CaduceusBlock(config, i) for i in range(config.num_hidden_layers)])
        self.norm_f = MambaRMSNorm(config.hidden_size, eps=config.layer_norm_epsilon)

    def forward(self, input_ids, attention_mask=None, **ignored):
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        hidden = self.embeddings(input_ids)
        for block in self.layers:
            hidden = block(hidden, attention_mask)
        return (self.norm_f(hidden),)


class CaduceusForMaskedLM(PreTrainedModel):
    config_class = MambaConfig
    base_model_prefix = "caduceus"

    def __init__(self, config):
        super().__init__(config)
        self.caduceus = CaduceusModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    def _init_weights(self, module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=self.config.initializer_range)
            if getattr(module, "bias", None) is not None:
                nn.init.zeros_(module.bias)

    def get_output_embeddings(self):
        return self.lm_head

    def forward(self, input_ids, attention_mask=None, labels=None, **ignored):
        hidden = self.caduceus(input_ids, attention_mask)[0]
        return MaskedLMOutput(logits=self.lm_head(hidden))


# ---------------------------------------------------------------------------------------------
# The layout of the released Caduceus / PlantCAD2 code: mamba_ssm-style blocks that return (hidden, residual)
# (the residual stream is their sum), a backbone under `caduceus.backbone`, no attention_mask argument (the
# whole sequence, padding included, is reversed), as in kuleshov-group's modeling_caduceus.py.


class ResidualPairBlock(nn.Module):
    def __init__(self, config, layer_idx):
        super().__init__()
        self.norm = MambaRMSNorm(config.hidden_size, eps=config.layer_norm_epsilon)
        self.mixer = BiMambaMixer(config, layer_idx)

    def forward(self, hidden, residual):
        residual = hidden if residual is None else hidden + residual
        normed = self.norm(residual)
        everything = torch.ones(normed.shape[:2], dtype=torch.long, device=normed.device)
        return self.mixer(normed, everything), residual


class ReleasedLayoutBackbone(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.embeddings = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList([ResidualPairBlock(config, i) for i in range(config.num_hidden_layers)])
        self.norm_f = MambaRMSNorm(config.hidden_size, eps=config.layer_norm_epsilon)

    def forward(self, input_ids):
        hidden, residual = self.embeddings(input_ids), None
        for block in self.layers:
            hidden, residual = block(hidden, residual)
        return self.norm_f(hidden + residual)


class ReleasedLayoutCaduceus(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.backbone = ReleasedLayoutBackbone(config)

    def forward(self, input_ids, inputs_embeds=None, output_hidden_states=None, return_dict=None):
        return (self.backbone(input_ids),)


class ReleasedLayoutCaduceusForMaskedLM(CaduceusForMaskedLM):
    def __init__(self, config):
        PreTrainedModel.__init__(self, config)
        self.caduceus = ReleasedLayoutCaduceus(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    def forward(self, input_ids, inputs_embeds=None, labels=None, output_hidden_states=None, return_dict=None):
        return MaskedLMOutput(logits=self.lm_head(self.caduceus(input_ids)[0]))
