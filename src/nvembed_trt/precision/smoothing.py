"""SmoothQuant: move activation outliers into the weights, per input channel, folded into the op before the GEMM.

For a GEMM group sharing one input X (q/k/v after input_layernorm, gate/up after post_attention_layernorm, ...)
s_j = amax(X_j)^alpha / amax(W_j)^(1-alpha), then X / s is produced by the preceding op (its weight, and bias,
divided by s) and every weight of the group takes W * s on its input channels. The product is unchanged in real
arithmetic; the activation's per-tensor int8 range shrinks to max_j amax(X_j) / s_j.

Where the preceding op is a norm: q/k/v, gate/up, latent to_q (LayerNorm, weight and bias), to_kv (the latents'
LayerNorm), the feed-forward's first linear. Where it is a linear: down_proj (up_proj's output rows: down's input
is silu(gate) * up), latent to_out (to_kv's value rows: attention is linear in V), the feed-forward's second
linear (the GEGLU value half of net.0, rows and bias). o_proj is left unsmoothed: its input mixes heads that share
one value head (grouped-query attention), so one factor per value channel would have to serve four heads.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ..calibration.streamed import ActivationRanges
from ..config import NVEmbedConfig

BODY, BLOCKS = "embedding_model.layers.", "latent_attention_model.cross_attend_blocks."


@dataclass(frozen=True)
class Group:
    gemms: tuple[str, ...]                                   # weight keys sharing the input
    divide: tuple[tuple[str, int | None, int | None], ...]   # (tensor key, row start, row stop) divided by s


def smoothing_groups(cfg: NVEmbedConfig) -> list[Group]:
    groups = []
    for i in range(cfg.body.num_layers):
        p = f"{BODY}{i}."
        groups += [
            Group(tuple(f"{p}self_attn.{n}_proj.weight" for n in "qkv"), ((f"{p}input_layernorm.weight", None, None),)),
            Group((f"{p}mlp.gate_proj.weight", f"{p}mlp.up_proj.weight"),
                  ((f"{p}post_attention_layernorm.weight", None, None),)),
            Group((f"{p}mlp.down_proj.weight",), ((f"{p}mlp.up_proj.weight", None, None),)),
        ]
    inner, ff_half = cfg.latent.inner_dim, cfg.body.hidden_size * cfg.latent.ff_mult
    b0, b1 = f"{BLOCKS}0.", f"{BLOCKS}1."
    groups += [
        Group((f"{b0}fn.to_q.weight",), ((f"{b0}norm.weight", None, None), (f"{b0}norm.bias", None, None))),
        Group((f"{b0}fn.to_kv.weight",), ((f"{b0}norm_context.weight", None, None),
                                          (f"{b0}norm_context.bias", None, None))),
        Group((f"{b0}fn.to_out.weight",), ((f"{b0}fn.to_kv.weight", inner, 2 * inner),)),
        Group((f"{b1}fn.net.0.weight",), ((f"{b1}norm.weight", None, None), (f"{b1}norm.bias", None, None))),
        Group((f"{b1}fn.net.2.weight",), ((f"{b1}fn.net.0.weight", 0, ff_half), (f"{b1}fn.net.0.bias", 0, ff_half))),
    ]
    return groups


@dataclass
class Smoothing:
    alpha: float
    factors: dict[str, np.ndarray] = field(default_factory=dict)          # gemm key -> s over its input channels
    divisions: dict[str, list[tuple[np.ndarray, int | None, int | None]]] = field(default_factory=dict)

    @classmethod
    def from_ranges(cls, cfg: NVEmbedConfig, ranges: ActivationRanges, alpha: float) -> Smoothing:
        smoothing = cls(alpha)
        for group in smoothing_groups(cfg):
            act = ranges.activation[group.gemms[0]].astype(np.float64)
            weight = np.max([ranges.weight[k] for k in group.gemms], axis=0).astype(np.float64)
            s = np.where((act > 0) & (weight > 0),
                         np.power(np.maximum(act, 1e-12), alpha) / np.power(np.maximum(weight, 1e-12), 1 - alpha), 1.0)
            s = np.clip(s, 1e-4, 1e4).astype(np.float32)
            for key in group.gemms:
                smoothing.factors[key] = s
            for key, start, stop in group.divide:
                smoothing.divisions.setdefault(key, []).append((s, start, stop))
        return smoothing

    def apply(self, key: str, tensor: torch.Tensor) -> torch.Tensor:
        """The smoothed checkpoint tensor: weights of smoothed GEMMs times s on their input channels, the
        producing norm or linear divided by s on its output channels."""
        if key not in self.factors and key not in self.divisions:
            return tensor
        out = tensor.to(torch.float32).clone()
        if key in self.factors:
            out *= torch.from_numpy(self.factors[key])[None, :]
        for s, start, stop in self.divisions.get(key, []):
            s_t = torch.from_numpy(s)
            rows = out[start:stop]
            rows /= s_t if rows.dim() == 1 else s_t[:, None]
        return out

    def smoothed_amax(self, key: str, ranges: ActivationRanges) -> float:
        if key not in self.factors:
            return ranges.per_tensor(key)
        return float(np.max(ranges.activation[key] / self.factors[key]))

    def loader(self, load):
        return lambda key: self.apply(key, load(key))

    def describe(self) -> dict:
        smoothed = sorted(self.factors)
        return {"alpha": self.alpha, "smoothed_gemms": len(smoothed),
                "factor_range": [float(min(s.min() for s in self.factors.values())),
                                 float(max(s.max() for s in self.factors.values()))] if smoothed else None}
