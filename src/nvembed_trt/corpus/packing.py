"""Token-budget packing: sort rows by length (longest first), cut the sorted list into batches whose padded cost
(rows x the batch's longest row) stays within the budget, so each batch is clipped to its own longest row and
short texts travel together. The caller scatters results back to input order with the returned indices."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from ..errors import InputError

Fits = Callable[[int, int], bool]  # (rows, width) -> can the encoder take this shape?


def check_budget(batch_tokens: int, max_length: int) -> None:
    """The budget must hold one row of the longest allowed length, or some rows could never be batched."""
    if isinstance(batch_tokens, bool) or not isinstance(batch_tokens, int) or batch_tokens < max_length:
        raise InputError(f"--batch-tokens must be an integer >= --max-length ({max_length}) so the longest row "
                         f"fits a batch, got {batch_tokens!r}")


def pack(lengths: Sequence[int], batch_tokens: int, max_rows: int, fits: Fits | None = None) -> list[np.ndarray]:
    """Index arrays into `lengths`, one per batch: rows sorted by length descending (stable), each batch as long
    as rows x longest <= batch_tokens, rows <= max_rows and fits(rows, longest) allow. A single row is always a
    batch. The concatenation of the batches is a permutation of range(len(lengths))."""
    if max_rows < 1:
        raise InputError(f"max rows per batch must be >= 1, got {max_rows}")
    lengths = np.asarray(lengths, dtype=np.int64)
    order = np.argsort(-lengths, kind="stable")
    batches, start = [], 0
    while start < len(order):
        width = int(lengths[order[start]])           # sorted descending: the first row is the batch's longest
        end = start + 1
        while (end < len(order) and end - start < max_rows and (end - start + 1) * width <= batch_tokens
               and (fits is None or fits(end - start + 1, width))):
            end += 1
        batches.append(order[start:end])
        start = end
    return batches


def padded_tokens(lengths: Sequence[int], batches: list[np.ndarray]) -> int:
    """Tokens the encoder computes for these batches (rows x longest, padding included)."""
    lengths = np.asarray(lengths)
    return int(sum(len(b) * int(lengths[b].max()) for b in batches))
