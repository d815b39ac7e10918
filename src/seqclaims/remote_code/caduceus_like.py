"""A Caduceus-like bidirectional state-space masked LM, written from the published description for offline tests.

What it shares with Caduceus (and PlantCAD2, built on it): single-nucleotide tokens, no attention, blocks of
RMSNorm -> BiMamba mixer -> residual, where BiMamba runs a Mamba mixer (transformers' `MambaMixer`) over the
sequence and over its reverse and adds the two (weights shared by default, as Caduceus does), a final
RMSNorm and a masked-LM head. The reverse pass reverses each sequence's real tokens only, so padding never
reaches a real token. With `rcps: true` in the config, Caduceus-PS's reverse-complement equivariance by
parameter sharing: the channels are two halves, the second read as the reverse complement strand with its
channels in reverse order; the embedding, each block's norm and mixer and the LM head apply one set of
weights to the first half and to the reverse complement of the second, so every layer's hidden states h obey
h(rc(x))[i] = flip(h(x)[L-1-i]) (flip: all channels in reverse order) and the logits of rc(x) at i are the
complement's logits of x at L-1-i. Module names:
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


def reverse_complement_half(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """The reverse-complement strand's view of a (b, t, d) half: real positions reversed, channels reversed."""
    return reversed_real(x, lengths).flip(-1)


def half_config(config):
    """The config an inner module sees under RC-PS: half the channels."""
    inner = config.__class__.from_dict(config.to_dict())
    inner.hidden_size = config.hidden_size // 2
    inner.intermediate_size = config.intermediate_size // 2
    return inner


class RCPS(nn.Module):
    """Apply `inner` to the first channel half and, through the reverse complement, to the second."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, hidden, attention_mask, *rest):
        lengths = attention_mask.sum(dim=1)
        first, second = hidden.chunk(2, dim=-1)
        second_as_forward = reverse_complement_half(second, lengths)
        out_second = reverse_complement_half(self.inner(second_as_forward, attention_mask, *rest), lengths)
        return torch.cat([self.inner(first, attention_mask, *rest), out_second], dim=-1)


class MaskedNorm(MambaRMSNorm):
    """RMSNorm with the mixer's call signature, so RC-PS can wrap it."""

    def __init__(self, config):
        super().__init__(config.hidden_size, eps=config.layer_norm_epsilon)

    def forward(self, hidden, attention_mask=None):
        return super().forward(hidden)


def complement_of(input_ids: torch.Tensor, complement_ids: list[int]) -> torch.Tensor:
    return torch.tensor(complement_ids, device=input_ids.device)[input_ids]


class RCPSEmbedding(nn.Module):
    """Token t -> [E(t), flip(E(complement(t)))]."""

    def __init__(self, config):
        super().__init__()
        self.embedding = nn.Embedding(config.vocab_size, config.hidden_size // 2)
        self.complement_ids = list(config.complement_map)  # not a buffer: loading builds modules on meta

    def forward(self, input_ids):
        return torch.cat([self.embedding(input_ids), self.embedding(complement_of(input_ids, self.complement_ids)).flip(-1)], dim=-1)


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


def rc_equivariant(config) -> bool:
    return bool(getattr(config, "rcps", False))


def strand_shared(config, build):
    """`build(config)` as is, or under RC-PS on half the channels."""
    return RCPS(build(half_config(config))) if rc_equivariant(config) else build(config)


class CaduceusBlock(nn.Module):
    def __init__(self, config, layer_idx):
        super().__init__()
        self.norm = strand_shared(config, MaskedNorm)
        self.mixer = strand_shared(config, lambda c: BiMambaMixer(c, layer_idx))

    def forward(self, hidden, attention_mask):
        return hidden + self.mixer(self.norm(hidden, attention_mask), attention_mask)


class CaduceusModel(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.embeddings = (RCPSEmbedding(config) if rc_equivariant(config)
                           else nn.Embedding(config.vocab_size, config.hidden_size))
        self.layers = nn.ModuleList([CaduceusBlock(config, i) for i in range(config.num_hidden_layers)])
        self.norm_f = strand_shared(config, MaskedNorm)

    def forward(self, input_ids, attention_mask=None, **ignored):
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        hidden = self.embeddings(input_ids)
        for block in self.layers:
            hidden = block(hidden, attention_mask)
        return (self.norm_f(hidden, attention_mask),)


class RCPSLMHead(nn.Module):
    """logits(v) = W[v] . first half + W[complement(v)] . flip(second half): one weight matrix, both strands."""

    def __init__(self, config):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(config.vocab_size, config.hidden_size // 2))
        self.complement_ids = list(config.complement_map)  # not a buffer: loading builds modules on meta

    def forward(self, hidden):
        first, second = hidden.chunk(2, dim=-1)
        return first @ self.weight.T + second.flip(-1) @ self.weight[self.complement_ids].T


class CaduceusForMaskedLM(PreTrainedModel):
    config_class = MambaConfig
    base_model_prefix = "caduceus"

    def __init__(self, config):
        super().__init__(config)
        self.caduceus = CaduceusModel(config)
        self.lm_head = (RCPSLMHead(config) if rc_equivariant(config)
                        else nn.Linear(config.hidden_size, config.vocab_size, bias=False))
        self.post_init()

    def _init_weights(self, module):
        if isinstance(module, (nn.Linear, nn.Embedding, RCPSLMHead)):
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
