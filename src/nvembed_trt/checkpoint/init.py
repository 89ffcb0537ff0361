"""Deterministic random weights, one tensor at a time, independent of shard layout and load order.

Each tensor has its own generator seeded from (seed, key), so a sharded and a single-file checkpoint written with
the same seed hold identical weights. Scales keep activations O(1) through the network: linear weights
N(0, 1/fan_in), norm weights 1 + N(0, 0.01), biases N(0, 0.01), embeddings and latents N(0, 1).
"""

from __future__ import annotations

import zlib

import torch


def _generator(key: str, seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 0x9E3779B1 + zlib.crc32(key.encode()))


def random_tensor(key: str, shape: tuple[int, ...], seed: int) -> torch.Tensor:
    """A float32 CPU tensor for checkpoint key `key`."""
    noise = torch.randn(shape, generator=_generator(key, seed))
    module = key.rsplit(".", 2)[-2] if key.count(".") >= 1 else key
    if key.endswith(".bias"):
        return 0.1 * noise
    if "norm" in module:
        return 1.0 + 0.1 * noise
    if key.endswith("latents") or "embed_tokens" in key:
        return noise
    return noise / shape[-1] ** 0.5
