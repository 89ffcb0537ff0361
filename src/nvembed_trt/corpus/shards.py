"""The output folder of embed-corpus and how it is written so that a killed job can be resumed:

    OUTPUT/embeddings/part-<run>-<file>-<row>.parquet   id, embedding (fixed-size list of float32, or of the
                                             compact type's float16 / int8 / uint8 values: --embedding-type), n_tokens,
                                             truncated; the folder reads as one table (pyarrow, pandas, Ray)
    OUTPUT/rejects/part-<...>.jsonl          rows a worker rejected (empty text, over-long under NONE, ...)
    OUTPUT/rejects/scan.jsonl                rows without a usable id or with a duplicate id (redone each run)
    OUTPUT/rejects.jsonl                     all rejects with their reason, merged at the end of a run
    OUTPUT/corpus.json                       the sidecar (settings when a run starts; counts when it ends)

Every file is written to a temporary name and renamed, a shard before its rejects part, so a shard on disk is
complete and the ids in shards and rejects parts are exactly the rows already done."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import NVEmbedError
from ..provenance import atomic_path

SIDECAR = "corpus.json"
REJECTS = "rejects.jsonl"
REJECT_PARTS = "rejects"
SCAN_REJECTS = "scan.jsonl"
SHARDS = "embeddings"
SHARD_GLOB = "part-*.parquet"


VALUE_TYPES = {np.dtype(np.float32): pa.float32(), np.dtype(np.float16): pa.float16(), np.dtype(np.int8): pa.int8(),
               np.dtype(np.uint8): pa.uint8()}


def shard_schema(dim: int, value_type: pa.DataType = pa.float32()) -> pa.Schema:
    return pa.schema([("id", pa.string()), ("embedding", pa.list_(value_type, dim)),
                      ("n_tokens", pa.int32()), ("truncated", pa.bool_())])


def write_shard(output: Path, name: str, ids: list[str], embeddings: np.ndarray, n_tokens: np.ndarray,
                truncated: np.ndarray) -> Path:
    """`embeddings`: [rows, values] float32 (float64 is stored as float32), float16, int8 or uint8 (compact types)."""
    rows, dim = embeddings.shape
    dtype = embeddings.dtype if embeddings.dtype in VALUE_TYPES else np.dtype(np.float32)
    value_type = VALUE_TYPES[dtype]
    flat = pa.array(np.ascontiguousarray(embeddings, dtype=dtype).reshape(-1), value_type)
    table = pa.Table.from_arrays([pa.array(ids, pa.string()), pa.FixedSizeListArray.from_arrays(flat, dim),
                                  pa.array(n_tokens, pa.int32()), pa.array(truncated, pa.bool_())],
                                 schema=shard_schema(dim, value_type))
    dest = output / SHARDS / f"{name}.parquet"
    dest.parent.mkdir(exist_ok=True)
    with atomic_path(dest) as tmp:
        pq.write_table(table, tmp)
    return dest


def write_jsonl(dest: Path, records: list[dict]) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(dest) as tmp:
        tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def shard_paths(output: Path) -> list[Path]:
    return sorted((output / SHARDS).glob(SHARD_GLOB))


def worker_reject_paths(output: Path) -> list[Path]:
    return sorted((output / REJECT_PARTS).glob("part-*.jsonl"))


def remove_temporaries(output: Path) -> int:
    """Temporary files a killed run left behind (never renamed into place, so never counted)."""
    stale = [p for folder in (output, output / SHARDS, output / REJECT_PARTS) if folder.is_dir()
             for p in folder.glob(".*.tmp")]
    for path in stale:
        path.unlink(missing_ok=True)
    return len(stale)


def shard_ids(output: Path) -> pa.ChunkedArray:
    """The id column of every shard (rows already embedded)."""
    chunks = []
    for path in shard_paths(output):
        try:
            chunks.append(pq.read_table(path, columns=["id"]).column("id").combine_chunks())
        except Exception as exc:  # noqa: BLE001  (a damaged file: it was not written by an interrupted run)
            raise NVEmbedError(f"{path} is not a readable shard ({exc}); shards are written atomically, so it "
                               f"was damaged afterwards: delete it and rerun to embed its rows again") from exc
    return pa.chunked_array(chunks, pa.string())


def done_ids(output: Path) -> pa.Array:
    """Ids already embedded or rejected by a worker: a rerun skips them."""
    rejected = [r["id"] for path in worker_reject_paths(output) for r in read_jsonl(path) if r.get("id")]
    return pa.concat_arrays([*shard_ids(output).chunks, pa.array(rejected, pa.string())])


def merge_rejects(output: Path) -> list[dict]:
    """rejects.jsonl: the scan's rejects and every worker's, ordered by source and position."""
    records = [r for path in [output / REJECT_PARTS / SCAN_REJECTS, *worker_reject_paths(output)]
               if path.is_file() for r in read_jsonl(path)]
    records.sort(key=lambda r: (r["source"], r.get("line", r.get("row", 0))))
    write_jsonl(output / REJECTS, records)
    return records
