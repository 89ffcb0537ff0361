"""The read stage: a Ray Data datasource over the planned chunks, one read task per chunk, each yielding Arrow blocks
of (file, row, id, text, kind, error). A row whose text cannot be embedded (missing, not a string, empty, not
UTF-8) keeps its id and carries the reject kind and reason; the worker writes it to the rejects.

A read operator is not fused into the worker's actor pool (Ray Data fuses a map into a following actor map, and
then bundles whole chunks into one actor call), so reads run as their own tasks and feed the pool block by block,
and a Parquet row group is streamed in blocks rather than loaded whole."""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Iterator

import numpy as np
import pyarrow as pa

from .plan import Chunk
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
            return None, "not_utf8", (f"text is not valid UTF-8 at byte {exc.start} "
                                      f"({value[exc.start:exc.start + 4]!r})")
    if not isinstance(value, str):
        return None, "bad_text", f"text must be a string, got {type(value).__name__}"
    if not value:
        return None, "empty", "empty text"
    return value, None, None


def _jsonl_rows(chunk: Chunk, text_column: str, id_column: str) -> Iterator[tuple]:
    wanted = set(chunk.rows.tolist())
    with open(chunk.path, "rb") as fh:
        fh.seek(chunk.seek)
        for index in range(chunk.first, chunk.first + chunk.count):
            raw = fh.readline()
            if index not in wanted:
                continue
            line = raw.rstrip(b"\r\n")
            if index == 0:
                line = line.removeprefix(b"\xef\xbb\xbf")
            record = json.loads(line.decode("utf-8"))  # the scan checked it parses and has a usable id
            id_, _ = normalise_id(record[id_column])
            yield (index, id_, *_text(record.get(text_column), text_column))


def _parquet_rows(chunk: Chunk, text_column: str, id_column: str) -> Iterator[tuple]:
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    wanted = np.asarray(chunk.rows, dtype=np.int64)
    start = chunk.first
    batches = pq.ParquetFile(chunk.path).iter_batches(batch_size=BLOCK_ROWS, row_groups=[chunk.seek],
                                                     columns=[id_column, text_column])
    for batch in batches:
        end = start + batch.num_rows
        take = wanted[(wanted >= start) & (wanted < end)]
        if take.size:
            part = batch.take(pa.array(take - start))
            ids = pc.cast(part.column(id_column), pa.string()).to_pylist()
            texts = pc.cast(part.column(text_column), pa.large_binary()).to_pylist()  # decoded per row below
            for index, id_, text in zip(take.tolist(), ids, texts):
                yield (index, id_, *_text(text, text_column))
        start = end


def _block(file: int, buffer: list) -> pa.Table:
    """An Arrow table with explicit types: a column of only nulls would otherwise reach the worker as NaN floats."""
    index, ids, texts, kinds, errors = zip(*buffer)
    return pa.Table.from_arrays([pa.array(np.full(len(buffer), file, dtype=np.int32)), pa.array(index, pa.int64()),
                                 pa.array(ids, pa.string()), pa.array(texts, pa.large_string()),
                                 pa.array(kinds, pa.string()), pa.array(errors, pa.string())], schema=BLOCK_SCHEMA)


def read_chunk(chunk: Chunk, text_column: str, id_column: str, block_rows: int = BLOCK_ROWS) -> Iterator[pa.Table]:
    rows = (_jsonl_rows if chunk.format == "jsonl" else _parquet_rows)(chunk, text_column, id_column)
    buffer = []
    for row in rows:
        buffer.append(row)
        if len(buffer) == block_rows:
            yield _block(chunk.file, buffer)
            buffer = []
    if buffer:
        yield _block(chunk.file, buffer)


def _read_chunks(chunks: list[Chunk], text_column: str, id_column: str) -> Iterable[pa.Table]:
    for chunk in chunks:
        yield from read_chunk(chunk, text_column, id_column)


def planned_datasource(chunks: list[Chunk], text_column: str, id_column: str):
    """A ray.data Datasource over the chunks (built here so this module imports without Ray)."""
    from ray.data.block import BlockMetadata
    from ray.data.datasource import Datasource, ReadTask

    class PlannedChunks(Datasource):
        def estimate_inmemory_data_size(self) -> int | None:
            return None

        def get_read_tasks(self, parallelism: int, per_task_row_limit: int | None = None,
                           data_context=None) -> list[ReadTask]:
            groups = np.array_split(np.arange(len(chunks)), max(1, min(parallelism, len(chunks))))
            tasks = []
            for group in groups:
                members = [chunks[i] for i in group]
                meta = BlockMetadata(num_rows=sum(len(c.rows) for c in members), size_bytes=None, exec_stats=None,
                                     input_files=sorted({c.path for c in members}))
                tasks.append(ReadTask(functools.partial(_read_chunks, members, text_column, id_column), meta,
                                      schema=BLOCK_SCHEMA, per_task_row_limit=per_task_row_limit))
            return tasks

        def get_name(self) -> str:
            return "ReadCorpus"

    return PlannedChunks()
