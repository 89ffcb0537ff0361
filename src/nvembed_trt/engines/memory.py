"""Arithmetic memory check for an engine profile: weights plus activations at the profile's largest shape.

Conservative on purpose: attention scores are counted as materialised (B x heads x T x T, fp32 softmax plus its
fp16 copy), as the ONNX graph spells them, although TensorRT often fuses attention and needs far less."""

from __future__ import annotations

import math

from ..checkpoint.loader import expected_shapes, meta_model
from ..config import NVEmbedConfig

GIB = 1024**3
ACTIVATION_BYTES = 2      # fp16 activations between the fp32 islands
SCORE_BYTES = 4 + 2       # fp32 softmax scores plus their fp16 copy


def weight_bytes(cfg: NVEmbedConfig, bytes_per_param: float = 2.0) -> int:
    params = sum(math.prod(s) for s in expected_shapes(meta_model(cfg)).values())
    return int(params * bytes_per_param)


def activation_bytes(cfg: NVEmbedConfig, batch: int, sequence: int) -> int:
    b, la = cfg.body, cfg.latent
    per_token = ACTIVATION_BYTES * (8 * b.hidden_size + 3 * b.intermediate_size + 4 * la.inner_dim)
    scores = batch * b.num_heads * sequence * sequence * SCORE_BYTES
    return batch * sequence * per_token + scores


def fits(cfg: NVEmbedConfig, weights: int, batch: int, sequence: int, workspace: int, memory: int) -> tuple[bool, int]:
    need = weights + activation_bytes(cfg, batch, sequence) + workspace
    return need <= memory, need
