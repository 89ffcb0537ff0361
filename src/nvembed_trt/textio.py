"""Input texts from JSON Lines ({"text": ...} per line) or plain text (one input per line), and .npy output."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from .errors import InputError
from .provenance import atomic_path, sha256_bytes

InputFormat = Literal["auto", "jsonl", "txt"]
JSONL_SUFFIXES = {".jsonl", ".ndjson", ".json"}


def _decode(data: bytes, name: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{name}: not valid UTF-8 at byte {exc.start} ({data[exc.start:exc.start + 4]!r}); "
                         f"save the file as UTF-8") from exc


def parse_jsonl_records(data: bytes, name: str) -> list[dict]:
    """The JSON objects of a JSON Lines file, each checked to hold a string "text"; errors name the line."""
    records = []
    for lineno, line in enumerate(_decode(data, name).removeprefix("\ufeff").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{name}:{lineno}: not valid JSON ({exc.msg})") from exc
        if not isinstance(record, dict) or not isinstance(record.get("text"), str):
            raise InputError(f"{name}:{lineno}: each JSON line must be an object with a string field 'text'")
        records.append({**record, "_line": lineno})
    return records


def parse_texts(data: bytes, name: str, fmt: InputFormat = "auto") -> list[str]:
    """Texts from raw bytes. auto: JSON Lines when the name ends in .jsonl/.ndjson/.json, or (stdin) when the
    first non-blank line starts with '{'; otherwise plain text, where blank lines are skipped."""
    text = _decode(data, name).removeprefix("\ufeff")
    if fmt == "auto":
        first = next((ln for ln in text.splitlines() if ln.strip()), "")
        by_name = Path(name).suffix.lower() in JSONL_SUFFIXES
        fmt = "jsonl" if by_name or (name == "<stdin>" and first.lstrip().startswith("{")) else "txt"
    texts = ([r["text"] for r in parse_jsonl_records(data, name)] if fmt == "jsonl"
             else [ln for ln in text.splitlines() if ln.strip()])
    if not texts:
        raise InputError(f"{name}: holds no inputs (empty file or only blank lines)")
    return texts


@dataclass(frozen=True)
class InputTexts:
    texts: list[str]
    name: str     # file path or "<stdin>"
    sha256: str   # of the raw bytes read


def read_texts(source: str, fmt: InputFormat = "auto") -> InputTexts:
    """Read inputs from a file path, or from standard input when source is '-'."""
    if source == "-":
        data, name = sys.stdin.buffer.read(), "<stdin>"
    else:
        path = Path(source)
        if not path.is_file():
            raise InputError(f"input file not found: {source}")
        data, name = path.read_bytes(), str(path)
    return InputTexts(parse_texts(data, name, fmt), name, sha256_bytes(data))


def check_output_path(path: Path, suffix: str = ".npy") -> None:
    """Fail before any work is done if the output cannot be written."""
    if path.suffix != suffix:
        raise InputError(f"output must end in {suffix}, got {path}")
    if path.is_dir():
        raise InputError(f"output {path} is a directory")


def save_embeddings(path: Path, embeddings: np.ndarray) -> None:
    """Write float32 (N, D) to path atomically (temp name, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, tmp.open("wb") as fh:
        np.save(fh, embeddings.astype(np.float32, copy=False))
