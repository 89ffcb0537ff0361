"""Compact embeddings (NIM's `embedding_type`): the model's float32 unit vectors in fewer bytes.

- `float16`: each value rounded to the nearest IEEE half (numpy's float16: round to nearest even); half the bytes of
  float32, a relative error of at most 2^-11 per value (values below 2^-14 lose precision as subnormals). Our
  extension beyond NIM's list; JSON carries the half's exact value, base64 its little-endian 2-byte halves.

- `ubinary`: one bit a dimension, 1 where the value is > 0, packed most-significant bit first (`numpy.packbits`):
  D/8 bytes, each 0..255. This is NIM's, Cohere's and sentence-transformers' (`quantize_embeddings`) definition.
- `binary`: the same bytes as signed int8, `ubinary - 128` (-128..127), as Cohere and sentence-transformers give it.
  Hamming distance between two rows is the popcount of the XOR of their `ubinary` bytes (or of their `binary` bytes
  + 128).

- `uint8`: each dimension scaled by ranges calibrated on the model's output distribution (not per request), as
  sentence-transformers' `quantize_embeddings` with calibration embeddings: step = (high - low) / 255, value =
  round((x - low) / step) clipped to 0..255 (sentence-transformers truncates and lets values wrap; we round and clip).
- `int8`: the uint8 value minus 128.

The ranges live in the repository's output_ranges.json (`nvembed-trt output-ranges` writes it from the served
encoder's own answers on the shipped calibration text; `OutputRanges` is its one model and reader). Without it,
int8 and uint8 are refused with 400 (OUTPUT_RANGES_MISSING). Light: NumPy and pydantic only."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..artifacts.sidecar import Sidecar

NIM_TYPES = ("float", "binary", "ubinary", "int8", "uint8")           # NIM's list, in its API reference's order
EMBEDDING_TYPES = ("float", "float16", *NIM_TYPES[1:])                # NIM's and ours: half floats
CALIBRATED_TYPES = ("int8", "uint8")                                  # need the repository's output ranges
UNCALIBRATED_TYPES = tuple(t for t in EMBEDDING_TYPES if t not in CALIBRATED_TYPES)   # served by every repository
OUTPUT_RANGES_FILE = "output_ranges.json"
OUTPUT_RANGES_MISSING = ("needs per-dimension output ranges calibrated on the model's output distribution and stored "
                         f"with the repository ({OUTPUT_RANGES_FILE}, written by `nvembed-trt output-ranges`); this "
                         "repository carries none. Served types: " + ", ".join(UNCALIBRATED_TYPES))


class OutputRanges(Sidecar):
    """output_ranges.json in a repository: per-dimension [low, high] of its encoder's answers on a calibration set
    (one model, one reader: `OutputRanges.find(repo)`)."""

    FILE = OUTPUT_RANGES_FILE
    ARTIFACT = "output-ranges"
    MADE_BY = "nvembed-trt output-ranges --repo {folder}"

    encoder_sha256: str                # the repository's encoder these ranges were measured on
    texts: int
    corpus: dict
    method: str
    low: list[float]
    high: list[float]

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        low, high = np.asarray(self.low, np.float32), np.asarray(self.high, np.float32)
        return low, np.maximum(high, low + np.float32(1e-12))   # a constant dimension keeps a non-zero step


def calibrated_ranges(vectors: np.ndarray) -> tuple[list[float], list[float]]:
    """Per-dimension min and max of (N, D) float rows (sentence-transformers' calibration)."""
    return np.min(vectors, axis=0).tolist(), np.max(vectors, axis=0).tolist()


def uint8(vectors: np.ndarray, ranges: OutputRanges) -> np.ndarray:
    low, high = ranges.arrays()
    steps = (high - low) / np.float32(255)
    return np.clip(np.rint((np.asarray(vectors, np.float32) - low) / steps), 0, 255).astype(np.uint8)


def int8(vectors: np.ndarray, ranges: OutputRanges) -> np.ndarray:
    return (uint8(vectors, ranges).astype(np.int16) - 128).astype(np.int8)


def ubinary(vectors: np.ndarray) -> np.ndarray:
    """(N, D) float -> (N, ceil(D/8)) uint8: bit = value > 0, most-significant bit first."""
    return np.packbits(np.asarray(vectors) > 0, axis=-1)


def binary(vectors: np.ndarray) -> np.ndarray:
    """(N, D) float -> (N, ceil(D/8)) int8: the ubinary bytes minus 128."""
    return (ubinary(vectors).astype(np.int16) - 128).astype(np.int8)


def float16(vectors: np.ndarray) -> np.ndarray:
    """(N, D) float -> (N, D) float16, each value rounded to the nearest half (ties to even)."""
    return np.asarray(vectors, np.float32).astype(np.float16)


def compact(vectors: np.ndarray, embedding_type: str, ranges: OutputRanges | None = None) -> np.ndarray:
    """The rows in `embedding_type` (float rows are returned as they are)."""
    if embedding_type == "float":
        return vectors
    if embedding_type == "float16":
        return float16(vectors)
    if embedding_type == "ubinary":
        return ubinary(vectors)
    if embedding_type == "binary":
        return binary(vectors)
    if ranges is None:
        raise ValueError(f"embedding_type {embedding_type!r} {OUTPUT_RANGES_MISSING}")
    return uint8(vectors, ranges) if embedding_type == "uint8" else int8(vectors, ranges)


def write_output_ranges(repo: Path, embed, samples: list[tuple[str, str]], corpus: dict) -> OutputRanges:
    """Measure the repository's output ranges from `embed(texts, input_type) -> (N, D) float32` (its served encoder)
    on `samples` ((text, input_type) pairs: passages and queries) and write them to repo/output_ranges.json."""
    from ..triton.meta import RepoMeta

    encoder_sha256 = RepoMeta.read(repo).encoder_sha256
    groups = {kind: [text for text, k in samples if k == kind] for kind in ("passage", "query")}
    vectors = np.concatenate([embed(texts, kind) for kind, texts in groups.items() if texts])
    low, high = calibrated_ranges(vectors)
    ranges = OutputRanges.new(
        encoder_sha256=encoder_sha256, texts=len(vectors), corpus=corpus, low=low, high=high,
        method=f"per-dimension min and max of the served encoder's float answers to {len(groups['passage'])} "
               f"passages and {len(groups['query'])} queries (truncate END)")
    ranges.write(repo)
    return ranges
