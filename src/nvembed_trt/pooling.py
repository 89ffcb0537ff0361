"""Masked mean over pool_mask then L2 norm, in numpy: the pooling step outside the graph (ensemble mode)."""

from __future__ import annotations

import numpy as np


def masked_mean_l2_numpy(states: np.ndarray, pool_mask: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """states (B, T, D), pool_mask (B, T) -> float32 (B, D); same arithmetic as model.latent.masked_mean_l2."""
    weights = pool_mask.astype(np.float32)[..., None]                     # (B, T, 1)
    pooled = (states.astype(np.float32) * weights).sum(axis=1) / weights.sum(axis=1)
    norms = np.maximum(np.linalg.norm(pooled, axis=-1, keepdims=True), eps)
    return (pooled / norms).astype(np.float32)
