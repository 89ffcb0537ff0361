"""NV-Embed-v2: bidirectional Mistral body + latent attention + masked mean pooling + L2 norm."""

from __future__ import annotations

import torch
from torch import nn

from ..config import NVEmbedConfig
from .body import AttentionImpl, BidirectionalMistral
from .latent import LatentAttention, masked_mean_l2


class NVEmbedModel(nn.Module):
    """forward(input_ids, attention_mask, pool_mask) -> embeddings (B, D) float32, L2-normalised.

    `token_states` gives the latent-attention output per token (B, T, D) before pooling, for graphs that leave
    pooling to a later step. `attention_impl` chooses SDPA (memory-lean, default) or an explicit fp32 softmax.
    """

    def __init__(self, cfg: NVEmbedConfig, attention_impl: AttentionImpl = "sdpa"):
        super().__init__()
        self.cfg = cfg
        self.attention_impl: AttentionImpl = attention_impl
        self.embedding_model = BidirectionalMistral(cfg.body)
        self.latent_attention_model = LatentAttention(cfg.body.hidden_size, cfg.latent)

    def token_states(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.embedding_model(input_ids, attention_mask, self.attention_impl)  # (B, T, D)
        return self.latent_attention_model(hidden, self.attention_impl)                # (B, T, D)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                pool_mask: torch.Tensor) -> torch.Tensor:
        states = self.token_states(input_ids, attention_mask)                         # (B, T, D)
        return masked_mean_l2(states, pool_mask, self.cfg.latent.output_normalize)    # (B, D)

    @property
    def dtype(self) -> torch.dtype:
        return self.embedding_model.embed_tokens.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.embedding_model.embed_tokens.weight.device
