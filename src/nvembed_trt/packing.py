"""Length-aware packing under a token budget, for the shapes an encoder accepts (TEI's max_batch_tokens).

An encoder accepts a set of (rows, width) shapes: a TensorRT engine one optimisation profile each (batch min..max x
sequence min..max), an ONNX graph any shape up to the repository's limits. Rows are sorted by length, longest first,
and each batch takes the longest remaining row's width and as many following rows as one shape allows and the token
budget (rows x width, padded cost) admits; a row much shorter than the batch's width (it would pad more than
max(SLACK_TOKENS, (1 - min_fill) x width)) starts a new batch instead. Every batch is covered by one shape by
construction, and padding is only the difference to the batch's longest row. Imports numpy-free stdlib only: used by the serving front door and by
Triton's nv_embed model."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

MIN_FILL = 0.5       # a row joins a batch only if it fills at least this fraction of the batch's width...
SLACK_TOKENS = 32    # ...or pads it by at most this many tokens (short rows are cheap to pad)


@dataclass(frozen=True)
class ShapeLimit:
    """One shape range the encoder accepts (an engine optimisation profile, or an ONNX encoder's whole range)."""

    __pydantic_config__ = {"extra": "forbid"}   # checked as part of repo.json (plain data: no pydantic import here)

    name: str
    max_batch: int
    max_sequence: int
    min_batch: int = 1
    min_sequence: int = 1

    def covers(self, rows: int, width: int) -> bool:
        return self.min_batch <= rows <= self.max_batch and self.min_sequence <= width <= self.max_sequence

    def describe(self) -> str:
        return (f"{self.name}: batch {self.min_batch}..{self.max_batch} x sequence "
                f"{self.min_sequence}..{self.max_sequence}")


def default_batch_tokens(limits: Sequence[ShapeLimit]) -> int:
    """The token budget derived from the shapes: the smallest shape's full capacity (rows x width), so a full
    batch of any shape stays within the memory its engine was sized for."""
    return min(limit.max_batch * limit.max_sequence for limit in limits)


class Packer:
    def __init__(self, limits: Iterable[ShapeLimit], max_batch_tokens: int | None = None, min_fill: float = MIN_FILL):
        self.limits = tuple(limits)
        if not self.limits:
            raise ValueError("a packer needs at least one shape limit")
        self.max_batch_tokens = max_batch_tokens or default_batch_tokens(self.limits)
        self.min_fill = min_fill
        self.rows_at = lru_cache(maxsize=None)(self._rows_at)

    @property
    def max_width(self) -> int:
        return max(limit.max_sequence for limit in self.limits)

    def covered(self, rows: int, width: int) -> bool:
        return any(limit.covers(rows, width) for limit in self.limits)

    def _rows_at(self, width: int) -> int:
        """The most rows a batch of this width may hold: every count up to it is covered and within budget."""
        rows = 0
        while self.covered(rows + 1, width) and (rows == 0 or (rows + 1) * width <= self.max_batch_tokens):
            rows += 1
        return rows

    def uncovered_widths(self, max_length: int) -> list[int]:
        """Widths up to max_length that not even a single row may take (no shape covers (1, width))."""
        return [w for w in range(1, max_length + 1) if self.rows_at(w) == 0]

    def plan(self, lengths: Sequence[int]) -> list[list[int]]:
        """Indices into `lengths`, grouped into batches (longest first); raises ValueError for a row no shape
        covers."""
        order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
        batches, start = [], 0
        while start < len(order):
            width = lengths[order[start]]
            rows = self.rows_at(width)
            if rows == 0:
                shapes = "; ".join(limit.describe() for limit in self.limits)
                raise ValueError(f"no encoder shape accepts a row of {width} tokens ({shapes})")
            slack = max(SLACK_TOKENS, (1.0 - self.min_fill) * width)
            end = start + 1
            while end < min(len(order), start + rows) and width - lengths[order[end]] <= slack:
                end += 1
            batches.append(order[start:end])
            start = end
        return batches
