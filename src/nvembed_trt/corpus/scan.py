"""Scan one input file (a Ray task per file): its sha256, row count, the id of every row, where to seek to read a
chunk of rows again, and the rows that cannot be embedded because they have no usable id (a line that is not
UTF-8 or not a JSON object, an id that is missing, empty, or neither a string nor an integer).

Positions: a JSON Lines row is a line (0-based index; rejects report the 1-based line number), a Parquet row is
its 0-based row index. Rows that are not embedded (blank lines, rejects) have a null id."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field

import pyarrow as pa

from .inputs import InputFile


@dataclass
class FileScan:
    file: InputFile
    sha256: str
    bytes: int
    rows: int                                   # lines (JSON Lines, blank ones included) or Parquet rows
    ids: pa.Array                               # string, one per row; null where the row is not embeddable
    chunks: list[tuple[int, int, int]]          # (first row, row count, byte offset; Parquet: row group index)
    rejects: list[dict] = field(default_factory=list)


def reject(file: InputFile, position: int, kind: str, reason: str, id_: str | None = None) -> dict:
    """One line of rejects.jsonl: the id (when known), where the row is, a kind to count by, and the reason."""
    where = {"line": position + 1} if file.format == "jsonl" else {"row": position}
    return {"id": id_, "source": file.path, **where, "kind": kind, "reason": reason}


def normalise_id(value) -> tuple[str | None, str | None]:
    """(id as a string, None) or (None, the reason it cannot be used). Integer ids are written in decimal."""
    if isinstance(value, str):
        return (value, None) if value else (None, "the id is an empty string")
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value), None
    return None, f"the id must be a string or an integer, got {type(value).__name__}"


def scan_jsonl(file: InputFile, id_column: str, chunk_rows: int) -> FileScan:
    digest, ids, chunks, rejects = hashlib.sha256(), [], [], []
    offset = 0
    with open(file.path, "rb") as fh:
        for index, raw in enumerate(fh):
            if index % chunk_rows == 0:
                chunks.append((index, 0, offset))
            digest.update(raw)
            offset += len(raw)
            ids.append(None)
            line = raw.rstrip(b"\r\n")
            if index == 0:
                line = line.removeprefix(b"\xef\xbb\xbf")  # a UTF-8 byte-order mark
            if not line.strip():
                continue
            try:
                record = json.loads(line.decode("utf-8"))
            except UnicodeDecodeError as exc:
                rejects.append(reject(file, index, "not_utf8", f"not valid UTF-8 at byte {exc.start} "
                                                   f"({line[exc.start:exc.start + 4]!r})"))
                continue
            except json.JSONDecodeError as exc:
                rejects.append(reject(file, index, "not_json", f"not valid JSON ({exc.msg})"))
                continue
            if not isinstance(record, dict):
                rejects.append(reject(file, index, "not_object",
                                      f"a JSON line must be an object, got {type(record).__name__}"))
                continue
            if id_column not in record:
                rejects.append(reject(file, index, "no_id", f"no id field {id_column!r}"))
                continue
            ids[index], why = normalise_id(record[id_column])
            if why:
                rejects.append(reject(file, index, "bad_id", why))
    rows = len(ids)
    chunks = [(first, min(chunk_rows, rows - first), at) for first, _, at in chunks]
    return FileScan(file, digest.hexdigest(), offset, rows, pa.array(ids, pa.string()), chunks, rejects)


def scan_parquet(file: InputFile, id_column: str) -> FileScan:
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from ..provenance import sha256_file

    handle = pq.ParquetFile(file.path)
    column = handle.read(columns=[id_column]).column(id_column).combine_chunks()
    ids = column if pa.types.is_string(column.type) else pc.cast(column, pa.string())
    rejects = []
    missing = pc.or_(pc.is_null(ids), pc.equal(ids, "")).to_numpy(zero_copy_only=False)
    for index in missing.nonzero()[0].tolist():
        why = "the id is an empty string" if ids[index].is_valid else f"no id (null in column {id_column!r})"
        rejects.append(reject(file, index, "no_id" if ids[index].is_valid is False else "bad_id", why))
    if len(rejects):
        ids = pc.if_else(pa.array(~missing), ids, pa.scalar(None, pa.string()))
    chunks, first = [], 0
    for group in range(handle.metadata.num_row_groups):
        count = handle.metadata.row_group(group).num_rows
        chunks.append((first, count, group))
        first += count
    return FileScan(file, sha256_file(file.path), os.path.getsize(file.path), handle.metadata.num_rows,
                    ids.cast(pa.string()), chunks, rejects)


def scan_file(file: InputFile, id_column: str, chunk_rows: int) -> FileScan:
    return scan_jsonl(file, id_column, chunk_rows) if file.format == "jsonl" else scan_parquet(file, id_column)
