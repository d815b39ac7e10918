"""A DNABERT-2-like masked LM (MosaicBERT), written from the published description for offline tests.

What it shares with DNABERT-2 (zhihan1996/DNABERT-2-117M, `bert_layers.py`): no position embeddings but
ALiBi (a per-head linear penalty on query-key distance), a fused query-key-value projection `Wqkv`,
padding removed inside the encoder (hidden states are (n_real_tokens, d_model) between blocks), attention
computed as softmax(q k^T / sqrt(d_head) + ALiBi + padding mask) followed by a dropout module, post-LN
blocks, a gated-linear-unit MLP (`gated_layers` -> GELU(gate) * value -> `wo`), and no attention
probabilities in its outputs. Module names follow the original, so a claim's `module_map` for DNABERT-2
works here. Loaded with `trust_remote_code: true` (the folder's config.json maps AutoModelForMaskedLM here).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from transformers import BertConfig, PreTrainedModel
from transformers.modeling_outputs import MaskedLMOutput


def alibi_slopes(n_heads: int) -> torch.Tensor:
    """(n_heads,) the geometric ALiBi slopes 2^(-8 h / n_heads), h = 1..n_heads."""
    return torch.tensor([2.0 ** (-8.0 * (h + 1) / n_heads) for h in range(n_heads)])


class BertEmbeddings(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, input_ids):
        types = torch.zeros_like(input_ids)
        return self.dropout(self.LayerNorm(self.word_embeddings(input_ids) + self.token_type_embeddings(types)))


class BertUnpadSelfAttention(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.n_heads = config.num_attention_heads
        self.d_head = config.hidden_size // config.num_attention_heads
        self.Wqkv = nn.Linear(config.hidden_size, 3 * config.hidden_size)
        self.dropout = nn.Dropout(config.attention_probs_dropout_prob)

    def forward(self, hidden, mask, bias):
        """hidden: (n_real, d); mask: (b, t) bool; bias: (b, heads, t, t) ALiBi + padding."""
        b, t = mask.shape
        qkv = hidden.new_zeros(b, t, 3 * hidden.shape[-1])
        qkv[mask] = self.Wqkv(hidden)
        q, k, v = qkv.view(b, t, 3, self.n_heads, self.d_head).permute(2, 0, 3, 1, 4)
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.d_head) + bias
        probabilities = self.dropout(torch.softmax(scores, dim=-1))
        context = (probabilities @ v).permute(0, 2, 1, 3).reshape(b, t, -1)
        return context[mask]


class BertSelfOutput(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, context, residual):
        return self.LayerNorm(self.dropout(self.dense(context)) + residual)


class BertUnpadAttention(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.self = BertUnpadSelfAttention(config)
        self.output = BertSelfOutput(config)

    def forward(self, hidden, mask, bias):
        return self.output(self.self(hidden, mask, bias), hidden)


class BertGatedLinearUnitMLP(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.d_mlp = config.intermediate_size
        self.gated_layers = nn.Linear(config.hidden_size, 2 * config.intermediate_size, bias=False)
        self.act = nn.GELU(approximate="none")
        self.wo = nn.Linear(config.intermediate_size, config.hidden_size)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, hidden):
        gated = self.gated_layers(hidden)
        gate, value = gated[:, : self.d_mlp], gated[:, self.d_mlp:]
        return self.layernorm(self.dropout(self.wo(self.act(gate) * value)) + hidden)


class BertLayer(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.attention = BertUnpadAttention(config)
        self.mlp = BertGatedLinearUnitMLP(config)

    def forward(self, hidden, mask, bias):
        return self.mlp(self.attention(hidden, mask, bias))


class BertEncoder(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.layer = nn.ModuleList([BertLayer(config) for _ in range(config.num_hidden_layers)])
        self.n_heads = config.num_attention_heads  # slopes are computed per call: a non-persistent buffer made
        # in __init__ is left uninitialised when from_pretrained builds the model on the meta device

    def forward(self, embedded, attention_mask):
        mask = attention_mask.bool()
        t = mask.shape[1]
        distance = (torch.arange(t, device=mask.device)[None, :] - torch.arange(t, device=mask.device)[:, None]).abs()
        slopes = alibi_slopes(self.n_heads).to(device=embedded.device, dtype=embedded.dtype)
        bias = -slopes[:, None, None] * distance  # (heads, t, t)
        bias = bias[None].masked_fill(~mask[:, None, None, :], torch.finfo(embedded.dtype).min)
        hidden = embedded[mask]  # padding removed: (n_real, d)
        for block in self.layer:
            hidden = block(hidden, mask, bias)
        out = embedded.new_zeros(embedded.shape)
        out[mask] = hidden
        return out


class BertModel(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.embeddings = BertEmbeddings(config)
        self.encoder = BertEncoder(config)

    def forward(self, input_ids, attention_mask=None, **ignored):
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        return (self.encoder(self.embeddings(input_ids), attention_mask),)


class BertPredictionHead(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.act = nn.GELU(approximate="none")
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size)

    def forward(self, hidden):
        return self.decoder(self.LayerNorm(self.act(self.dense(hidden))))


class BertForMaskedLM(PreTrainedModel):
    config_class = BertConfig
    base_model_prefix = "bert"

    def __init__(self, config):
        super().__init__(config)
        self.bert = BertModel(config)
        self.cls = BertPredictionHead(config)
        self.post_init()

    def _init_weights(self, module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=self.config.initializer_range)
            if getattr(module, "bias", None) is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    def get_output_embeddings(self):
        return self.cls.decoder

    def forward(self, input_ids, attention_mask=None, labels=None, **ignored):
        hidden = self.bert(input_ids, attention_mask)[0]
        return MaskedLMOutput(logits=self.cls(hidden), hidden_states=None, attentions=None)
