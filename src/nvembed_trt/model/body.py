"""The bidirectional Mistral-7B body: RMSNorm, RoPE, grouped-query attention with a key padding mask, SwiGLU.

Module and parameter names follow the official checkpoint (`embedding_model.layers.{i}.self_attn.q_proj.weight`
and so on), so `state_dict()` keys are the checkpoint keys. Export-friendly: no data-dependent Python branching,
no in-place writes on inputs; dtype and device come from the parameters.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from ..config import BodyConfig

AttentionImpl = Literal["sdpa", "eager"]


class RMSNorm(nn.Module):
    """y = w * x / rms(x), computed in fp32 whatever the model dtype (as upstream)."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x32.to(x.dtype)


def rotary_cos_sin(seq_len: int, head_dim: int, theta: float, dtype: torch.dtype,
                   device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin tables (T, head_dim) for positions 0..T-1, computed in fp32 then cast."""
    exponent = torch.arange(0, head_dim, 2, dtype=torch.int64, device=device).float() / head_dim
    inv_freq = 1.0 / (theta ** exponent)                                            # (d/2,)
    positions = torch.arange(seq_len, dtype=torch.int64, device=device).float()      # (T,)
    freqs = positions[:, None] * inv_freq[None, :]                                   # (T, d/2)
    angles = torch.cat([freqs, freqs], dim=-1)                                       # (T, d)
    return angles.cos().to(dtype), angles.sin().to(dtype)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate-half RoPE on x (B, H, T, d) with tables (T, d)."""
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos + torch.cat([-x2, x1], dim=-1) * sin


def padding_bias(attention_mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Additive key mask (B, 1, 1, T): 0 on real tokens, finfo(dtype).min on padding (upstream's fill)."""
    keep = attention_mask[:, None, None, :].to(dtype)
    return (1.0 - keep) * torch.finfo(dtype).min


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor | None,
           impl: AttentionImpl) -> torch.Tensor:
    """softmax(q k^T / sqrt(d) + bias) v for (B, H, Tq, d) queries and (B, H, Tk, d) keys/values.

    "sdpa" is memory-lean (fused kernels on GPU); "eager" spells the softmax out in fp32, which is what an fp16
    ONNX graph must keep (a strongly typed TensorRT build honours exactly these types). "eager" scales q by
    1/sqrt(d) *before* the product (as PyTorch's own math SDPA does): in an fp16 graph the product q k^T is an fp16
    tensor, and unscaled it overflows 65,504 when a scaled logit exceeds 65,504/sqrt(d) (1,024 for the latent
    attention's d = 4,096), where the scaled product stays finite. In fp32 both orders agree to rounding."""
    if impl == "sdpa":
        return F.scaled_dot_product_attention(q, k, v, attn_mask=None if bias is None else bias.to(q.dtype))
    scores = torch.matmul(q * (q.shape[-1] ** -0.5), k.transpose(-1, -2)).float()  # (B, H, Tq, Tk) fp32
    if bias is not None:
        scores = scores + bias.float()
    return torch.matmul(torch.softmax(scores, dim=-1).to(q.dtype), v)


class SelfAttention(nn.Module):
    """Grouped-query attention over all non-padding tokens: no causal mask, no sliding window."""

    def __init__(self, cfg: BodyConfig):
        super().__init__()
        self.num_heads, self.num_kv_heads, self.head_dim = cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
        self.q_proj = nn.Linear(cfg.hidden_size, cfg.num_heads * cfg.head_dim, bias=False)
        self.k_proj = nn.Linear(cfg.hidden_size, cfg.num_kv_heads * cfg.head_dim, bias=False)
        self.v_proj = nn.Linear(cfg.hidden_size, cfg.num_kv_heads * cfg.head_dim, bias=False)
        self.o_proj = nn.Linear(cfg.num_heads * cfg.head_dim, cfg.hidden_size, bias=False)

    def _heads(self, x: torch.Tensor, n: int) -> torch.Tensor:
        b, t, _ = x.shape
        return x.reshape(b, t, n, self.head_dim).transpose(1, 2)                     # (B, n, T, d)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, bias: torch.Tensor,
                impl: AttentionImpl) -> torch.Tensor:
        b, t, _ = x.shape
        q = apply_rotary(self._heads(self.q_proj(x), self.num_heads), cos, sin)       # (B, H, T, d)
        k = apply_rotary(self._heads(self.k_proj(x), self.num_kv_heads), cos, sin)    # (B, Hkv, T, d)
        v = self._heads(self.v_proj(x), self.num_kv_heads)                           # (B, Hkv, T, d)
        group = self.num_heads // self.num_kv_heads
        k = k.repeat_interleave(group, dim=1)                                         # (B, H, T, d)
        v = v.repeat_interleave(group, dim=1)
        out = attend(q, k, v, bias, impl)                                             # (B, H, T, d)
        return self.o_proj(out.transpose(1, 2).reshape(b, t, self.num_heads * self.head_dim))


class SwiGLU(nn.Module):
    """down(silu(gate(x)) * up(x))."""

    def __init__(self, cfg: BodyConfig):
        super().__init__()
        self.gate_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.up_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.down_proj = nn.Linear(cfg.intermediate_size, cfg.hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nn.Module):
    """Pre-norm residual block: x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, cfg: BodyConfig):
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.self_attn = SelfAttention(cfg)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.mlp = SwiGLU(cfg)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, bias: torch.Tensor,
                impl: AttentionImpl) -> torch.Tensor:
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, bias, impl)
        return x + self.mlp(self.post_attention_layernorm(x))


class BidirectionalMistral(nn.Module):
    """token ids (B, T) + attention mask (B, T) -> last hidden states (B, T, D)."""

    def __init__(self, cfg: BodyConfig):
        super().__init__()
        self.cfg = cfg
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.num_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                impl: AttentionImpl = "sdpa") -> torch.Tensor:
        x = self.embed_tokens(input_ids)                                              # (B, T, D)
        cos, sin = rotary_cos_sin(input_ids.shape[1], self.cfg.head_dim, self.cfg.rope_theta, x.dtype, x.device)
        bias = padding_bias(attention_mask, x.dtype)                                  # (B, 1, 1, T)
        for layer in self.layers:
            x = layer(x, cos, sin, bias, impl)
        return self.norm(x)
