"""Encoded rows -> packed int32 batches -> the encoder -> pooled float32 embeddings in input order.

The one mechanism behind the serving front door (asynchronous, over gRPC) and Triton's nv_embed model (BLS): rows
are packed by nvembed_trt.packing so that every batch is covered by one encoder shape, padded only to the batch's
longest row, each row keeping its own instruction's pool mask."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from .packing import Packer
from .pooling import pool_or_check
from .tokenizer.embedding import pad_rows

INPUT_NAMES = ("input_ids", "attention_mask", "pool_mask")


@dataclass(frozen=True)
class Row:
    ids: list[int]   # what reaches the encoder
    masked: int      # leading positions left out of the pool mask (BOS + instruction)


@dataclass(frozen=True)
class PackedBatch:
    index: list[int]                 # positions of these rows in the caller's list
    arrays: dict[str, np.ndarray]    # int32 (B, T) per encoder input
    pool_mask: np.ndarray            # int32 (B, T)
    real_tokens: int
    padded_tokens: int


def batch_of(rows: Sequence[Row], index: list[int], pad_id: int, inputs: Sequence[str] = INPUT_NAMES) -> PackedBatch:
    """The int32 arrays of rows[index], padded to their longest row."""
    members = [rows[i] for i in index]
    ids, attention, pool = pad_rows([r.ids for r in members], [r.masked for r in members], pad_id)
    arrays = {"input_ids": ids, "attention_mask": attention, "pool_mask": pool}
    return PackedBatch(index, {n: arrays[n] for n in inputs}, pool, int(attention.sum()), ids.size)


def pack(rows: Sequence[Row], packer: Packer, pad_id: int, inputs: Sequence[str] = INPUT_NAMES) -> list[PackedBatch]:
    return [batch_of(rows, index, pad_id, inputs) for index in packer.plan([len(r.ids) for r in rows])]


def embed_rows(rows: Sequence[Row], packer: Packer, pad_id: int, inputs: Sequence[str], dim: int,
               run: Callable[[dict[str, np.ndarray]], np.ndarray]) -> np.ndarray:
    """Synchronous: float32 (N, D) in the order of `rows`; `run` maps one batch's arrays to the encoder's output."""
    out = np.empty((len(rows), dim), dtype=np.float32)
    for batch in pack(rows, packer, pad_id, inputs):
        out[batch.index] = pool_or_check(run(batch.arrays), batch.pool_mask)
    return out


def encode_rows(tok, texts: Sequence[str], instructions: Sequence[str], truncates: Sequence[str],
                max_length: int, budget=None) -> list[Row]:
    """One tokenizer call per (instruction, truncate) group; TooLongError names the input's own index; `budget` (a
    TokenBudget) bounds the characters tokenised."""
    from .tokenizer.bounded import TooLongError

    groups: dict[tuple[str, str], list[int]] = {}
    for i, key in enumerate(zip(instructions, truncates)):
        groups.setdefault(key, []).append(i)
    rows: list[Row | None] = [None] * len(texts)
    for (instruction, truncate), members in groups.items():
        try:
            encoded = tok.encode([texts[i] for i in members], instruction, max_length, truncate, budget)
        except TooLongError as exc:
            raise TooLongError(members[exc.index], exc.tokens, exc.exact, exc.max_length) from None
        masked = tok.instruction_length(instruction)
        for i, enc in zip(members, encoded):
            if masked >= len(enc.ids):
                from .errors import InputError

                raise InputError(f"input {i}: max_length {max_length} leaves no token to pool after the "
                                 f"instruction ({masked} masked positions); raise max_length or shorten the "
                                 f"instruction")
            rows[i] = Row(enc.ids, masked)
    return rows  # type: ignore[return-value]
