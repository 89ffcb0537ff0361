"""--input for embed-corpus: a file, a folder (every JSON Lines and Parquet file under it) or a glob, resolved to a
sorted list of files with their format; Parquet schemas are checked before any work starts."""

from __future__ import annotations

import glob
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..errors import InputError

Format = Literal["jsonl", "parquet"]
SUFFIXES: dict[str, Format] = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".parquet": "parquet"}
TEXT_TYPES = ("string", "large_string", "binary", "large_binary")
ID_TYPES = ("string", "large_string", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64")


@dataclass(frozen=True)
class InputFile:
    index: int      # position in the sorted input list: shard names and the plan refer to it
    path: str
    format: Format


def _format(path: Path) -> Format:
    fmt = SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise InputError(f"input {path}: unknown format {path.suffix or '(no suffix)'!r}; embed-corpus reads "
                         f"{', '.join(SUFFIXES)} files")
    return fmt


def _expand(spec: str) -> list[Path]:
    path = Path(spec).expanduser()
    if path.is_file():
        return [path]
    if path.is_dir():
        found = [p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES
                 and not any(part.startswith((".", "_")) for part in p.relative_to(path).parts)]
        if not found:
            raise InputError(f"input folder {spec} holds no {', '.join(SUFFIXES)} files")
        return found
    if glob.has_magic(spec):
        found = [Path(p) for p in glob.glob(str(path), recursive=True) if Path(p).is_file()]
        if not found:
            raise InputError(f"input pattern {spec!r} matches no files")
        return found
    raise InputError(f"input not found: {spec} (give a file, a folder or a glob such as 'data/*.parquet')")


def resolve_inputs(specs: list[str], text_column: str, id_column: str) -> list[InputFile]:
    """Files named by the specs, deduplicated and sorted by path; Parquet files must carry both columns."""
    if not specs:
        raise InputError("no --input given")
    paths = sorted({p.resolve() for spec in specs for p in _expand(spec)})
    files = [InputFile(i, str(p), _format(p)) for i, p in enumerate(paths)]
    for f in files:
        if f.format == "parquet":
            check_parquet_schema(f.path, text_column, id_column)
    return files


def check_parquet_schema(path: str, text_column: str, id_column: str) -> None:
    import pyarrow.parquet as pq

    try:
        schema = pq.read_schema(path)
    except Exception as exc:  # noqa: BLE001  (pyarrow raises ArrowInvalid, OSError, ...)
        raise InputError(f"input {path}: not a readable Parquet file ({exc})") from exc
    for role, name, allowed, flag in (("text", text_column, TEXT_TYPES, "--text-column"),
                                      ("id", id_column, ID_TYPES, "--id-column")):
        if name not in schema.names:
            raise InputError(f"input {path}: no {role} column {name!r} (columns: {', '.join(schema.names)}); "
                             f"choose one with {flag}")
        kind = str(schema.field(name).type)
        if kind not in allowed:
            raise InputError(f"input {path}: {role} column {name!r} has type {kind}; it must be one of "
                             f"{', '.join(allowed)}")
