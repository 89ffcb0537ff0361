"""The encoder seam: one small protocol between token batches and embeddings, and the text-level embedder built on it.

- `Encoder`: a packed batch in (int32 arrays per input name, nvembed_trt.encoding.PackedBatch), float32 unit rows
  out; it states the shapes one call accepts (`shape_limits`), its inputs and its recipe. Implementations:
  TorchEncoder and OnnxEncoder (encoders/local.py), TensorRTEncoder (encoders/tensorrt.py: EngineRunner).
- `TextEmbedder`: texts + one instruction in, float32 rows in input order out. `LocalEmbedder` is built once over a
  tokenizer and an Encoder (tokenise exactly as encode(), cut batches the encoder's shapes take, pool where the
  encoder emits token states). Servers that take text (Triton's KServe nv_embed model, the front door) implement it
  directly (ServedEmbedder, encoders/served.py): they tokenise and pack on their side.

validate, the precision gate, corpus jobs, evaluation and the benchmarks use these and nothing else to embed."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from ..encoding import PackedBatch, Row, batch_of, encode_rows
from ..errors import InputError
from ..packing import ShapeLimit
from ..pooling import cosine_rows, pool_or_check, pooled  # noqa: F401  (cosine_rows: part of the seam)

ANY_SHAPE = ShapeLimit("any", 1 << 16, 1 << 20)   # a runtime without optimisation profiles (torch, ONNX Runtime)


class Encoder(Protocol):
    name: str                             # torch | onnx | engine
    recipe: str                           # the registry's name (recipes.py)
    inputs: tuple[str, ...]               # the arrays each batch carries
    shape_limits: tuple[ShapeLimit, ...]  # the (rows, width) shapes one call accepts

    def run(self, arrays: dict[str, np.ndarray]) -> np.ndarray:
        """The encoder's raw output for one batch: embeddings (B, D) or token states (B, T, D)."""

    def encode(self, batch: PackedBatch) -> np.ndarray:
        """float32 (rows, D) unit vectors for one packed batch."""

    def close(self) -> None: ...


class TextEmbedder(Protocol):
    name: str
    recipe: str
    max_length: int

    def embed(self, texts: Sequence[str], instruction: str, batch_size: int | None = None) -> np.ndarray:
        """float32 (N, D) unit rows in input order."""

    def close(self) -> None: ...


def encode_packed(encoder, batch: PackedBatch) -> np.ndarray:
    """What every Encoder.encode is: its raw output pooled (token states) or checked (finite unit rows)."""
    return pool_or_check(encoder.run(batch.arrays), batch.pool_mask)


def accepts(limits: Sequence[ShapeLimit], rows: int, width: int) -> bool:
    return any(limit.covers(rows, width) for limit in limits)


class LocalEmbedder:
    """A TextEmbedder over a tokenizer and an Encoder in this process. Texts are tokenised as encode() does (at
    `max_length`, END truncation) and cut into batches of `batch_size` rows, each shrunk where the encoder's shapes
    take fewer rows at its width; `sort=True` forms the batches from length-sorted texts (longest first, as
    Embedder.encode does) and restores input order. The rows are returned as the encoder made them (pooled where it
    emits token states, not checked): validate and the gate measure them, a NaN is a figure there, not a crash."""

    def __init__(self, encoder, tokenizer, max_length: int, batch_size: int = 16, sort: bool = False,
                 name: str | None = None):
        tokenizer.check_max_length(max_length)
        self.encoder, self.tokenizer, self.max_length = encoder, tokenizer, max_length
        self.batch_size, self.sort = batch_size, sort
        self.name = name or encoder.name

    @property
    def recipe(self) -> str:
        return self.encoder.recipe

    def accepts(self, rows: int, width: int) -> bool:
        return accepts(self.encoder.shape_limits, rows, width)

    def rows(self, texts: Sequence[str], instruction: str) -> list[Row]:
        n = len(texts)
        return encode_rows(self.tokenizer, list(texts), [instruction] * n, ["END"] * n, self.max_length)

    def batches(self, lengths: Sequence[int], batch_size: int) -> list[list[int]]:
        """Positions of each batch: `batch_size` at a time in the order given, fewer where no shape takes that many
        rows at the batch's width."""
        out, start = [], 0
        while start < len(lengths):
            n = min(batch_size, len(lengths) - start)
            while n and not self.accepts(n, max(lengths[start:start + n])):
                n -= 1
            if n == 0:
                shapes = "; ".join(limit.describe() for limit in self.encoder.shape_limits)
                raise InputError(f"{self.name}: no encoder shape takes a row of {lengths[start]} tokens ({shapes})")
            out.append(list(range(start, start + n)))
            start += n
        return out

    def embed(self, texts: Sequence[str], instruction: str, batch_size: int | None = None) -> np.ndarray:
        if len(texts) == 0:
            raise InputError("no texts to embed (got an empty list)")
        batch_size = batch_size or self.batch_size
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise InputError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        rows = self.rows(texts, instruction)
        order = (np.argsort(-np.asarray([len(r.ids) for r in rows]), kind="stable") if self.sort
                 else np.arange(len(rows)))
        ordered = [rows[i] for i in order]
        out: np.ndarray | None = None
        for index in self.batches([len(r.ids) for r in ordered], batch_size):
            batch = batch_of(ordered, index, self.tokenizer.pad_id, self.encoder.inputs)
            got = pooled(self.encoder.run(batch.arrays), batch.pool_mask)
            if out is None:
                out = np.empty((len(rows), got.shape[1]), dtype=np.float32)
            out[order[index]] = got
        return out

    def close(self) -> None:
        self.encoder.close()
