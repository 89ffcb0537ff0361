"""Compact embeddings (NIM's `embedding_type`): the model's float32 unit vectors as sign bits, packed.

- `ubinary`: one bit a dimension, 1 where the value is > 0, packed most-significant bit first (`numpy.packbits`):
  D/8 bytes, each 0..255. This is NIM's, Cohere's and sentence-transformers' (`quantize_embeddings`) definition.
- `binary`: the same bytes as signed int8, `ubinary - 128` (-128..127), as Cohere and sentence-transformers give it.
  Hamming distance between two rows is the popcount of the XOR of their `ubinary` bytes (or of their `binary` bytes
  + 128).

`int8`/`uint8` need per-dimension ranges calibrated on the model's output distribution and stored with the model;
a repository carries none yet, so they are refused with 400 (see OUTPUT_RANGES_MISSING). Light: NumPy only."""

from __future__ import annotations

import numpy as np

EMBEDDING_TYPES = ("float", "binary", "ubinary", "int8", "uint8")   # NIM's list, in its API reference's order
SERVED_TYPES = ("float", "binary", "ubinary")
OUTPUT_RANGES_MISSING = ("needs per-dimension output ranges calibrated on the model's output distribution and stored "
                         "with the repository; this repository carries none. Served types: " + ", ".join(SERVED_TYPES))


def ubinary(vectors: np.ndarray) -> np.ndarray:
    """(N, D) float -> (N, ceil(D/8)) uint8: bit = value > 0, most-significant bit first."""
    return np.packbits(np.asarray(vectors) > 0, axis=-1)


def binary(vectors: np.ndarray) -> np.ndarray:
    """(N, D) float -> (N, ceil(D/8)) int8: the ubinary bytes minus 128."""
    return (ubinary(vectors).astype(np.int16) - 128).astype(np.int8)


def compact(vectors: np.ndarray, embedding_type: str) -> np.ndarray:
    """The rows in `embedding_type` (float rows are returned as they are)."""
    if embedding_type == "float":
        return vectors
    if embedding_type == "ubinary":
        return ubinary(vectors)
    if embedding_type == "binary":
        return binary(vectors)
    raise ValueError(f"embedding_type {embedding_type!r} {OUTPUT_RANGES_MISSING}")
