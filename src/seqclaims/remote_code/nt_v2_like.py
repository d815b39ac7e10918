"""A Nucleotide-Transformer-v2-like masked LM, written from the published description for offline tests.

What it shares with NT v2 (InstaDeepAI/nucleotide-transformer-v2-*, custom ESM code): an ESM encoder with
rotary position embeddings, pre-LayerNorm blocks, non-overlapping 6-mer tokens, and a gated MLP (SwiGLU:
`intermediate.dense` -> SiLU(gate) * value -> `output.dense`) without feed-forward biases
(`add_bias_fnn: false`). Module names are ESM's, so the built-in ESM module map reads it. Loaded with
`trust_remote_code: true` (the folder's config.json maps AutoModelForMaskedLM here).
"""

from __future__ import annotations

from torch import nn
from transformers.models.esm import modeling_esm


class GatedIntermediate(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, 2 * config.intermediate_size, bias=config.add_bias_fnn)

    def forward(self, hidden_states):
        gate, value = self.dense(hidden_states).chunk(2, dim=-1)
        return nn.functional.silu(gate) * value


class GatedOutput(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.dense = nn.Linear(config.intermediate_size, config.hidden_size, bias=config.add_bias_fnn)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, hidden_states, input_tensor):
        return self.dropout(self.dense(hidden_states)) + input_tensor


class EsmForMaskedLM(modeling_esm.EsmForMaskedLM):
    def __init__(self, config):
        super().__init__(config)
        for layer in self.esm.encoder.layer:
            layer.intermediate = GatedIntermediate(config)
            layer.output = GatedOutput(config)
        self.post_init()
