"""The read stage (Ray tasks): a planned chunk in, its rows out as blocks of (file, row, id, text, kind, error). A
row whose text cannot be embedded (missing, not a string, empty, not UTF-8) keeps its id and carries the reject
kind and reason; the worker writes it to the rejects."""

from __future__ import annotations

import json
from collections.abc import Iterator

import numpy as np
import pyarrow as pa

from .scan import normalise_id

BLOCK_ROWS = 1024

BLOCK_SCHEMA = pa.schema([("file", pa.int32()), ("row", pa.int64()), ("id", pa.string()), ("text", pa.large_string()),
                          ("kind", pa.string()), ("error", pa.string())])


def _text(value, text_column: str) -> tuple[str | None, str | None, str | None]:
    """(text, None, None) or (None, reject kind, reason)."""
    if value is None:
        return None, "no_text", f"no text in {text_column!r}"
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError as exc:
            return None, "not_utf8", f"text is not valid UTF-8 at byte {exc.start} ({value[exc.start:exc.start + 4]!r})"
    if not isinstance(value, str):
        return None, "bad_text", f"text must be a string, got {type(value).__name__}"
    if not value:
        return None, "empty", "empty text"
    return value, None, None


def _jsonl_rows(path: str, seek: int, first: int, count: int, rows: list[int], text_column: str,
                id_column: str) -> Iterator[tuple]:
    wanted = set(rows)
    with open(path, "rb") as fh:
        fh.seek(seek)
        for index in range(first, first + count):
            raw = fh.readline()
            if index not in wanted:
                continue
            line = raw.rstrip(b"\r\n")
            if index == 0:
                line = line.removeprefix(b"\xef\xbb\xbf")
            record = json.loads(line.decode("utf-8"))  # the scan checked it parses and has a usable id
            id_, _ = normalise_id(record[id_column])
            yield (index, id_, *_text(record.get(text_column), text_column))


def _parquet_rows(path: str, group: int, first: int, rows: list[int], text_column: str,
                  id_column: str) -> Iterator[tuple]:
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    table = pq.ParquetFile(path).read_row_group(group, columns=[id_column, text_column])
    table = table.take(pa.array(np.asarray(rows, dtype=np.int64) - first))
    ids = table.column(id_column)
    ids = pc.cast(ids, pa.string()).to_pylist()
    texts = table.column(text_column)
    texts = pc.cast(texts, pa.large_binary()).to_pylist()  # decoded per row: a bad row is a reject, not a crash
    for index, id_, text in zip(rows, ids, texts):
        yield (index, id_, *_text(text, text_column))


def _block(file: int, buffer: list):
    """An Arrow table with explicit types: a column of only nulls would otherwise reach the worker as NaN floats."""
    index, ids, texts, kinds, errors = zip(*buffer)
    return pa.Table.from_arrays([pa.array(np.full(len(buffer), file, dtype=np.int32)), pa.array(index, pa.int64()),
                                 pa.array(ids, pa.string()), pa.array(texts, pa.large_string()),
                                 pa.array(kinds, pa.string()), pa.array(errors, pa.string())], schema=BLOCK_SCHEMA)


def read_chunks(batch: dict[str, np.ndarray], text_column: str, id_column: str,
                block_rows: int = BLOCK_ROWS) -> Iterator:
    """map_batches generator over chunk descriptors (see plan.Chunk)."""
    for i in range(len(batch["file"])):
        file, path, fmt = int(batch["file"][i]), str(batch["path"][i]), str(batch["format"][i])
        first, count, seek = int(batch["first"][i]), int(batch["count"][i]), int(batch["seek"][i])
        rows = [int(r) for r in batch["rows"][i]]
        source = (_jsonl_rows(path, seek, first, count, rows, text_column, id_column) if fmt == "jsonl"
                  else _parquet_rows(path, seek, first, rows, text_column, id_column))
        buffer = []
        for row in source:
            buffer.append(row)
            if len(buffer) == block_rows:
                yield _block(file, buffer)
                buffer = []
        if buffer:
            yield _block(file, buffer)
