"""One export wrapper for both pooling modes: integer inputs in, float32 out."""

from __future__ import annotations

import torch
from torch import nn

from ..model import NVEmbedModel
from .signature import Pooling


class ExportWrapper(nn.Module):
    """engine: (input_ids, attention_mask, pool_mask) -> embeddings (B, D), pooled and L2-normalised in fp32.
    ensemble: (input_ids, attention_mask) -> token_states (B, T, D) in fp32, pooled later by Triton."""

    def __init__(self, model: NVEmbedModel, pooling: Pooling):
        super().__init__()
        self.model, self.pooling = model, pooling

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                pool_mask: torch.Tensor | None = None) -> torch.Tensor:
        if self.pooling == "engine":
            return self.model(input_ids, attention_mask, pool_mask)                    # (B, D) fp32
        return self.model.token_states(input_ids, attention_mask).float()             # (B, T, D) fp32
