"""What a run embeds: every row with a usable id that is neither done (in a shard or a worker's rejects from an
earlier run) nor a later occurrence of an id seen earlier in the input (files in sorted order, rows in file order:
the first occurrence wins, the others are rejected as duplicates). The result is a list of read chunks, each
naming its file, where to seek and which rows of it to read."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .scan import FileScan, reject


@dataclass(frozen=True)
class Chunk:
    file: int         # InputFile.index
    path: str
    format: str
    first: int        # first row of the chunk (line index or Parquet row)
    count: int        # rows in the chunk
    seek: int         # JSON Lines: byte offset of `first`; Parquet: the row group
    rows: np.ndarray  # int64: the rows of this chunk to embed (absolute positions, ascending; compact at scale)


@dataclass
class Plan:
    chunks: list[Chunk]
    todo: int             # rows to embed in this run
    done: int             # rows skipped because an earlier run embedded or rejected them
    duplicates: list[dict]
    input_rows: int       # rows with a usable id, over all files


def first_occurrences(ids: pa.Array) -> np.ndarray:
    """bool per row: True where the id is not null and appears for the first time."""
    valid = pc.is_valid(ids).to_numpy(zero_copy_only=False)
    code = pc.index_in(ids, value_set=pc.unique(ids.drop_null())).to_numpy(zero_copy_only=False)
    code = np.where(valid, np.nan_to_num(code, nan=-1), -1).astype(np.int64)
    first = np.full(int(code.max(initial=-1)) + 1, len(code), dtype=np.int64)
    positions = np.arange(len(code))
    np.minimum.at(first, code[valid], positions[valid])
    return valid & (first[np.maximum(code, 0)] == positions)


def make_plan(scans: list[FileScan], done: pa.Array) -> Plan:
    ids = pa.concat_arrays([s.ids for s in scans]) if scans else pa.array([], pa.string())
    valid = pc.is_valid(ids).to_numpy(zero_copy_only=False)
    first = first_occurrences(ids)
    already = pc.fill_null(pc.is_in(ids, value_set=done), False).to_numpy(zero_copy_only=False)
    todo = first & ~already
    owner = {}  # id -> (file, position) of its first occurrence, only for ids that repeat
    duplicates, chunks, base = [], [], 0
    repeated = valid & ~first
    if repeated.any():
        wanted = set(ids.filter(pa.array(repeated)).to_pylist())
        for scan in scans:
            for pos, value in enumerate(scan.ids.to_pylist()):
                if value in wanted and value not in owner:
                    owner[value] = reject(scan.file, pos, "", "")
    for scan in scans:
        local_todo, local_rep = todo[base:base + scan.rows], repeated[base:base + scan.rows]
        for pos in np.flatnonzero(local_rep).tolist():
            value = scan.ids[pos].as_py()
            first_at = owner[value]
            where = f"line {first_at['line']}" if "line" in first_at else f"row {first_at['row']}"
            duplicates.append(reject(scan.file, pos, "duplicate_id",
                                     f"duplicate id: first seen in {first_at['source']} {where}", value))
        for first_row, count, seek in scan.chunks:
            rows = np.flatnonzero(local_todo[first_row:first_row + count]).astype(np.int64) + first_row
            if rows.size:
                chunks.append(Chunk(scan.file.index, scan.file.path, scan.file.format, first_row, count, seek, rows))
        base += scan.rows
    return Plan(chunks, int(todo.sum()), int((first & already).sum()), duplicates, int(valid.sum()))
