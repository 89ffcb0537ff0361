"""An independent NV-Embed-v2 for parity tests: transformers' MistralModel with a bidirectional padding mask,
plus the latent-attention block written out plainly from raw checkpoint tensors. Shares no model code with
nvembed_trt; it reads the safetensors files directly."""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from transformers import MistralConfig, MistralModel


def read_state(checkpoint: Path) -> dict[str, torch.Tensor]:
    state: dict[str, torch.Tensor] = {}
    for shard in sorted(checkpoint.glob("*.safetensors")):
        state.update({k: v.float() for k, v in load_file(shard).items()})
    return state


class IndependentNVEmbed:
    def __init__(self, checkpoint: Path, cfg):
        self.state = read_state(checkpoint)
        b = cfg.body
        hf_cfg = MistralConfig(vocab_size=b.vocab_size, hidden_size=b.hidden_size,
                               intermediate_size=b.intermediate_size, num_hidden_layers=b.num_layers,
                               num_attention_heads=b.num_heads, num_key_value_heads=b.num_kv_heads,
                               head_dim=b.head_dim, rms_norm_eps=b.rms_norm_eps, rope_theta=b.rope_theta,
                               max_position_embeddings=b.max_position_embeddings, sliding_window=None)
        hf_cfg._attn_implementation = "eager"
        self.body = MistralModel(hf_cfg).eval()
        body_state = {k.removeprefix("embedding_model."): v for k, v in self.state.items()
                      if k.startswith("embedding_model.")}
        self.body.load_state_dict(body_state, strict=True)
        self.heads, self.head_dim = cfg.latent.num_heads, cfg.latent.head_dim

    def _w(self, name: str) -> torch.Tensor:
        return self.state["latent_attention_model." + name]

    def latent_block(self, h: torch.Tensor) -> torch.Tensor:
        d = h.shape[-1]
        x = F.layer_norm(h, (d,), self._w("cross_attend_blocks.0.norm.weight"),
                         self._w("cross_attend_blocks.0.norm.bias"), 1e-5)
        lat = F.layer_norm(self._w("latents"), (d,), self._w("cross_attend_blocks.0.norm_context.weight"),
                           self._w("cross_attend_blocks.0.norm_context.bias"), 1e-5)
        q = x @ self._w("cross_attend_blocks.0.fn.to_q.weight").T
        kv = lat @ self._w("cross_attend_blocks.0.fn.to_kv.weight").T
        k, v = kv[:, : kv.shape[1] // 2], kv[:, kv.shape[1] // 2:]
        q = q.reshape(*q.shape[:2], self.heads, self.head_dim)
        k = k.reshape(k.shape[0], self.heads, self.head_dim)
        v = v.reshape(v.shape[0], self.heads, self.head_dim)
        attn = torch.softmax(torch.einsum("bthd,lhd->bhtl", q, k) / math.sqrt(self.head_dim), dim=-1)
        out = torch.einsum("bhtl,lhd->bthd", attn, v).reshape(*h.shape[:2], -1)
        h = h + out @ self._w("cross_attend_blocks.0.fn.to_out.weight").T
        y = F.layer_norm(h, (d,), self._w("cross_attend_blocks.1.norm.weight"),
                         self._w("cross_attend_blocks.1.norm.bias"), 1e-5)
        y = F.linear(y, self._w("cross_attend_blocks.1.fn.net.0.weight"), self._w("cross_attend_blocks.1.fn.net.0.bias"))
        value, gate = y.chunk(2, dim=-1)
        y = F.linear(value * F.gelu(gate), self._w("cross_attend_blocks.1.fn.net.2.weight"),
                     self._w("cross_attend_blocks.1.fn.net.2.bias"))
        return h + y

    @torch.no_grad()
    def __call__(self, input_ids, attention_mask, pool_mask) -> torch.Tensor:
        bsz, t = input_ids.shape
        mask = (1.0 - attention_mask[:, None, None, :].float()) * torch.finfo(torch.float32).min
        hidden = self.body(input_ids=input_ids, attention_mask=mask.expand(bsz, 1, t, t)).last_hidden_state
        h = self.latent_block(hidden)
        m = pool_mask.float()
        pooled = (h * m[..., None]).sum(1) / m.sum(1, keepdim=True)
        return F.normalize(pooled, p=2, dim=-1)
