"""Masked mean over pool_mask then L2 norm, in numpy: pooling outside the graph (encoders that emit token states),
the check that an encoder's embeddings are finite unit vectors, each row's own token states out of a padded batch
(`token_rows`), and `cosine_rows`, the one row-by-row comparison of
two sets of embeddings (validate, the precision gate, export parity, smoke, the eval cache)."""

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


def pooled(values: np.ndarray, pool_mask: np.ndarray) -> np.ndarray:
    """float32 (B, D) embeddings: pooled from token states (B, T, D), or embeddings (B, D) as they are."""
    if values.ndim == 3:
        empty = np.flatnonzero(pool_mask.sum(axis=1) == 0)
        if empty.size:
            raise InputError(f"row {int(empty[0])} has no token to pool (its pool_mask is all zero)")
        return masked_mean_l2_numpy(values, pool_mask)
    return values.astype(np.float32, copy=False)


def pool_or_check(values: np.ndarray, pool_mask: np.ndarray) -> np.ndarray:
    """pooled(), and each row must be a finite unit vector (an encoder fault shows here, not in a client's
    index)."""
    embeddings = pooled(values, pool_mask)
    norms = np.linalg.norm(embeddings, axis=1)
    bad = np.flatnonzero(~np.isfinite(norms) | (np.abs(norms - 1.0) > NORM_TOLERANCE))
    if bad.size:
        raise InputError(f"encoder output row {int(bad[0])} is not a finite unit vector (norm {norms[bad[0]]:.4f}, "
                         f"allowed 1 ± {NORM_TOLERANCE})")
    return embeddings


def token_rows(states: np.ndarray, lengths: list[int], which: list[int]) -> list[np.ndarray]:
    """Rows `which` of a batch padded on the right (tokenizer.pad_rows), each cut to its own tokens: row b's first
    lengths[b] positions, every real token of it (instruction included), as float32 copies (lengths[b], D)."""
    if not which:
        return []
    if states.ndim != 3:
        raise InputError(f"the encoder gives pooled embeddings {states.shape}, not token states (B, T, D)")
    if len(lengths) != states.shape[0] or max(lengths) > states.shape[1]:
        raise InputError(f"token states {states.shape} do not cover {len(lengths)} rows of up to {max(lengths)} "
                         f"tokens")
    return [np.array(states[b, :lengths[b]], dtype=np.float32) for b in which]


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-row cosine of two (N, D) arrays, computed in float64."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
