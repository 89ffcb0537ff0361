"""Weight and activation quantisation arithmetic, one tensor at a time (numpy/torch, no graph).

Weights arrive as the MatMul's right-hand side W [K, N] (input channels K, output channels N), the layout of the
pre-transposed export. Scales are fp16 (what a strongly typed fp16 TensorRT network wants: every scale of one
MatMul has one dtype) and rounded *up* from amax / qmax, so no value clips; quantised values are computed against
the fp16 scale actually stored, so the graph dequantises exactly what was meant.

- int8 weight-only and W8A8 weights: symmetric per output channel, scale [N], DequantizeLinear axis=1.
- int4 weight-only: symmetric blocks of `block` input channels per output channel, scale [K/block, N],
  DequantizeLinear axis=0, block_size=block (opset 21, INT4 storage, two values a byte).
- fp8 (E4M3) weights: per output channel, scale [N], amax mapped to 448.
- activations: one per-tensor scale from the calibrated amax.
"""

from __future__ import annotations

import ml_dtypes
import numpy as np
import torch

INT8_MAX, INT4_MAX, FP8_MAX = 127.0, 7.0, 448.0
FP16_TINY = float(np.finfo(np.float16).smallest_subnormal)


def fp16_scale(amax: np.ndarray | float, qmax: float) -> np.ndarray:
    """amax / qmax as fp16, rounded up to the next fp16 so amax / scale <= qmax; zero ranges get the smallest."""
    want = np.atleast_1d(np.maximum(np.asarray(amax, dtype=np.float64) / qmax, FP16_TINY))
    scale = want.astype(np.float16)
    low = scale.astype(np.float64) < want
    scale[low] = np.nextafter(scale[low], np.float16(np.inf))
    return scale.reshape(np.shape(amax))


def _as_f32(w: torch.Tensor | np.ndarray) -> torch.Tensor:
    return (torch.from_numpy(w) if isinstance(w, np.ndarray) else w).to(torch.float32)


def int8_per_channel(w: torch.Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """W [K, N] -> (int8 [K, N], fp16 scale [N])."""
    w = _as_f32(w)
    scale = fp16_scale(w.abs().amax(dim=0).numpy(), INT8_MAX)
    q = torch.round(w / torch.from_numpy(scale.astype(np.float32))).clamp_(-INT8_MAX, INT8_MAX)
    return q.to(torch.int8).numpy(), scale


def int4_blocked(w: torch.Tensor | np.ndarray, block: int) -> tuple[np.ndarray, np.ndarray]:
    """W [K, N] -> (int4 [K, N] as ml_dtypes.int4, fp16 scale [K/block, N]). K must be a multiple of block."""
    w = _as_f32(w)
    k, n = w.shape
    if k % block:
        raise ValueError(f"int4 blocks of {block} need the input dimension to be a multiple of it, got {k}")
    blocks = w.reshape(k // block, block, n)
    scale = fp16_scale(blocks.abs().amax(dim=1).numpy(), INT4_MAX)
    s = torch.from_numpy(scale.astype(np.float32))[:, None, :]
    q = torch.round(blocks / s).clamp_(-8, INT4_MAX).reshape(k, n).to(torch.int8).numpy()
    return q.astype(ml_dtypes.int4), scale


def fp8_per_channel(w: torch.Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """W [K, N] -> (float8_e4m3fn [K, N], fp16 scale [N])."""
    w = _as_f32(w)
    scale = fp16_scale(w.abs().amax(dim=0).numpy(), FP8_MAX)
    scaled = (w / torch.from_numpy(scale.astype(np.float32))).clamp_(-FP8_MAX, FP8_MAX).numpy()
    return scaled.astype(ml_dtypes.float8_e4m3fn), scale


def dequantize(q: np.ndarray, scale: np.ndarray, block: int | None = None) -> np.ndarray:
    """The float32 weight a DequantizeLinear of (q, scale) gives (for tests and error reports)."""
    values = q.astype(np.float32)
    s = scale.astype(np.float32)
    if block:
        s = np.repeat(s, block, axis=0)
    return values * s


WEIGHT_FORMATS = {"int8": (int8_per_channel, INT8_MAX), "fp8": (fp8_per_channel, FP8_MAX)}
ACTIVATION_QMAX = {"int8": INT8_MAX, "fp8": FP8_MAX}
