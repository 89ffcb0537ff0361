"""The exported (eager) attention scales q before q·kᵀ (issue 11, defect 14).

In an fp16 graph the product q·kᵀ is an fp16 tensor: computed unscaled it overflows 65,504 once a scaled logit
exceeds 65,504/sqrt(d), i.e. 1,024 for the latent attention's head dim of 4,096, and one +inf logit turns the whole
softmax row into NaN. Scaling q first keeps the same logits finite; in fp32 both orders agree to rounding.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import nvembed_trt.model.latent as latent_module
from nvembed_trt.config import LatentAttentionConfig
from nvembed_trt.model.body import attend
from nvembed_trt.model.latent import LatentCrossAttention

FP16_MAX = torch.finfo(torch.float16).max  # 65,504


def old_order_attend(q, k, v, bias, impl="eager"):
    """The previous eager attention: unscaled product in the model dtype, scaled afterwards in fp32."""
    scores = torch.matmul(q, k.transpose(-1, -2)).float() * (q.shape[-1] ** -0.5)
    if bias is not None:
        scores = scores + bias.float()
    return torch.matmul(torch.softmax(scores, dim=-1).to(q.dtype), v)


@pytest.mark.parametrize("head_dim", [16, 40, 128, 4096])  # tiny body, tiny latent, Mistral body, NV-Embed latent
def test_fp32_eager_attention_matches_old_order_and_sdpa(head_dim):
    g = torch.Generator().manual_seed(head_dim)
    q, k, v = (torch.randn(2, 3, n, head_dim, generator=g) for n in (7, 9, 9))
    bias = torch.zeros(2, 1, 1, 9)
    bias[1, ..., 6:] = torch.finfo(torch.float32).min  # padded keys in the second row
    new = attend(q, k, v, bias, "eager")
    old = old_order_attend(q, k, v, bias)
    sdpa = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
    # measured: 0 (d = 16, 4096: the scale is a power of two), <= 7.8e-7 (d = 40, 128) on outputs of magnitude ~2
    assert (new - old).abs().max().item() <= 2e-6
    assert (new - sdpa).abs().max().item() <= 2e-6


def _loud_latent_attention() -> tuple[LatentCrossAttention, torch.Tensor, torch.Tensor]:
    """NV-Embed-v2's latent head dim (4,096, scale 1/64) with each token aligned to one latent: its q·k is
    4.8e4..1.1e5, so scaled logits of ~750..1,700, a peaked but well-defined softmax."""
    cfg = LatentAttentionConfig(num_latents=16, num_heads=2, head_dim=4096)
    module = LatentCrossAttention(64, cfg)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 64, generator=g)                                            # 8 token states
    latents = torch.cat([x.reshape(8, 64), torch.randn(8, 64, generator=g)])          # 8 aligned, 8 random
    inner = cfg.num_heads * cfg.head_dim
    with torch.no_grad():
        module.to_q.weight.copy_(torch.randn(inner, 64, generator=g) * (4.3 / 8))
        module.to_kv.weight[:inner] = module.to_q.weight                              # k of latent j = q of token j
        module.to_kv.weight[inner:] = torch.randn(inner, 64, generator=g) / 8
        module.to_out.weight.copy_(torch.randn(64, inner, generator=g) / 90)
    return module.eval(), x, latents


def test_fp16_latent_attention_does_not_overflow(monkeypatch):
    module, x, latents = _loud_latent_attention()
    with torch.no_grad():
        q = module.to_q(x).reshape(2, 4, 2, 4096)
        assert (q * q).sum(-1).max().item() > FP16_MAX          # the precondition: the unscaled product overflows
        assert (q * q).sum(-1).max().item() / 64 < FP16_MAX / 32  # while the scaled one is far from it
        reference = module(x, latents, "eager")                                       # fp32
        half = LatentCrossAttention(64, LatentAttentionConfig(num_latents=16, num_heads=2, head_dim=4096))
        half.load_state_dict(module.state_dict())
        half = half.half().eval()
        new = half(x.half(), latents.half(), "eager").float()
        monkeypatch.setattr(latent_module, "attend", old_order_attend)
        old = half(x.half(), latents.half(), "eager").float()
    # measured: the old order gives NaN in 320 of 512 outputs; the new one max abs 1.4e-3 on values up to 3.4,
    # min cosine 0.9999999 against fp32
    assert torch.isnan(old).sum().item() >= 100
    assert torch.isfinite(new).all()
    assert (new - reference).abs().max().item() <= 5e-3
    assert F.cosine_similarity(new.reshape(8, -1), reference.reshape(8, -1)).min().item() >= 0.9999
