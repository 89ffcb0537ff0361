"""Latent-attention block and pooling.

Each token state is a query over 512 learned latents (the same for every row), then a GEGLU feed-forward, both
residual. No token-to-token mixing happens here: the block is per token; pooling is a masked mean then L2 norm.
Names follow the checkpoint: `latent_attention_model.cross_attend_blocks.{0,1}...`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import LatentAttentionConfig
from .body import AttentionImpl, attend


class FP32LayerNorm(nn.LayerNorm):
    """LayerNorm computed in fp32 and cast back (what upstream gets from autocast, and what fp16 engines keep)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.layer_norm(x.float(), self.normalized_shape, self.weight.float(), self.bias.float(), self.eps)
        return y.to(x.dtype)


class LatentCrossAttention(nn.Module):
    """Queries from token states, keys and values from the latents; softmax scale 1/sqrt(head_dim); no mask."""

    def __init__(self, dim: int, cfg: LatentAttentionConfig):
        super().__init__()
        self.num_heads, self.head_dim = cfg.num_heads, cfg.head_dim
        self.to_q = nn.Linear(dim, cfg.inner_dim, bias=False)
        self.to_kv = nn.Linear(dim, 2 * cfg.inner_dim, bias=False)
        self.to_out = nn.Linear(cfg.inner_dim, dim, bias=False)

    def forward(self, x: torch.Tensor, latents: torch.Tensor, impl: AttentionImpl = "sdpa") -> torch.Tensor:
        b, t, _ = x.shape
        n = latents.shape[0]
        q = self.to_q(x).reshape(b, t, self.num_heads, self.head_dim).transpose(1, 2)   # (B, H, T, dh)
        k, v = self.to_kv(latents).chunk(2, dim=-1)                                     # (L, H*dh) each
        k = k.reshape(n, self.num_heads, self.head_dim).transpose(0, 1)                 # (H, L, dh)
        v = v.reshape(n, self.num_heads, self.head_dim).transpose(0, 1)                 # (H, L, dh)
        out = attend(q, k.expand(b, -1, -1, -1), v.expand(b, -1, -1, -1), None, impl)  # (B, H, T, dh)
        return self.to_out(out.transpose(1, 2).reshape(b, t, self.num_heads * self.head_dim))


class CrossAttentionBlock(nn.Module):
    """cross_attend_blocks.0: fn(norm(h), norm_context(latents))."""

    def __init__(self, dim: int, cfg: LatentAttentionConfig):
        super().__init__()
        self.norm = FP32LayerNorm(dim, eps=cfg.layer_norm_eps)
        self.norm_context = FP32LayerNorm(dim, eps=cfg.layer_norm_eps)
        self.fn = LatentCrossAttention(dim, cfg)

    def forward(self, h: torch.Tensor, latents: torch.Tensor, impl: AttentionImpl = "sdpa") -> torch.Tensor:
        return self.fn(self.norm(h), self.norm_context(latents), impl)


class GEGLU(nn.Module):
    """First half is the value, second half the gate, exact (erf) gelu."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        value, gate = x.chunk(2, dim=-1)
        return value * F.gelu(gate)


class FeedForward(nn.Module):
    def __init__(self, dim: int, mult: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, dim * mult * 2), GEGLU(), nn.Linear(dim * mult, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class FeedForwardBlock(nn.Module):
    """cross_attend_blocks.1: fn(norm(h))."""

    def __init__(self, dim: int, cfg: LatentAttentionConfig):
        super().__init__()
        self.norm = FP32LayerNorm(dim, eps=cfg.layer_norm_eps)
        self.fn = FeedForward(dim, cfg.ff_mult)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.fn(self.norm(h))


class LatentAttention(nn.Module):
    """Per-token states (B, T, D) -> per-token states (B, T, D), before pooling."""

    def __init__(self, dim: int, cfg: LatentAttentionConfig):
        super().__init__()
        self.latents = nn.Parameter(torch.empty(cfg.num_latents, dim))
        self.cross_attend_blocks = nn.ModuleList([CrossAttentionBlock(dim, cfg), FeedForwardBlock(dim, cfg)])

    def forward(self, h: torch.Tensor, impl: AttentionImpl = "sdpa") -> torch.Tensor:
        cross_attn, feed_forward = self.cross_attend_blocks
        h = h + cross_attn(h, self.latents, impl)
        return h + feed_forward(h)


def masked_mean_l2(states: torch.Tensor, pool_mask: torch.Tensor, normalize: bool = True) -> torch.Tensor:
    """Mean of states (B, T, D) over positions where pool_mask (B, T) is 1, in fp32, then L2 norm (eps 1e-12)."""
    weights = pool_mask.to(torch.float32).unsqueeze(-1)                               # (B, T, 1)
    summed = (states.float() * weights).sum(dim=1)                                   # (B, D)
    pooled = summed / weights.sum(dim=1)                                             # (B, D)
    return F.normalize(pooled, p=2.0, dim=-1, eps=1e-12) if normalize else pooled
