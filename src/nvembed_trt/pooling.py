"""Masked mean over pool_mask then L2 norm, in numpy: pooling outside the graph (encoders that emit token states),
and the check that an encoder's embeddings are finite unit vectors."""

from __future__ import annotations

import numpy as np

from .errors import InputError

NORM_TOLERANCE = 1e-3


def masked_mean_l2_numpy(states: np.ndarray, pool_mask: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """states (B, T, D), pool_mask (B, T) -> float32 (B, D); same arithmetic as model.latent.masked_mean_l2."""
    weights = pool_mask.astype(np.float32)[..., None]                     # (B, T, 1)
    pooled = (states.astype(np.float32) * weights).sum(axis=1) / weights.sum(axis=1)
    norms = np.maximum(np.linalg.norm(pooled, axis=-1, keepdims=True), eps)
    return (pooled / norms).astype(np.float32)


def pool_or_check(values: np.ndarray, pool_mask: np.ndarray) -> np.ndarray:
    """float32 (B, D) embeddings: pooled from token states (B, T, D), or embeddings (B, D) as they are; either
    way each row must be a finite unit vector (an encoder fault shows here, not in a client's index)."""
    if values.ndim == 3:
        empty = np.flatnonzero(pool_mask.sum(axis=1) == 0)
        if empty.size:
            raise InputError(f"row {int(empty[0])} has no token to pool (its pool_mask is all zero)")
        embeddings = masked_mean_l2_numpy(values, pool_mask)
    else:
        embeddings = values.astype(np.float32, copy=False)
    norms = np.linalg.norm(embeddings, axis=1)
    bad = np.flatnonzero(~np.isfinite(norms) | (np.abs(norms - 1.0) > NORM_TOLERANCE))
    if bad.size:
        raise InputError(f"encoder output row {int(bad[0])} is not a finite unit vector (norm {norms[bad[0]]:.4f}, "
                         f"allowed 1 ± {NORM_TOLERANCE})")
    return embeddings
