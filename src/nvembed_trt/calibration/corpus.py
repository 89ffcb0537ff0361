"""Real text for calibration and for held-out verification, available without network.

- Calibration (built in): the Python language reference shipped with every CPython (`pydoc_data.topics`),
  split into paragraphs; passages are paragraphs and runs of consecutive paragraphs (varied length), queries are
  the paragraphs' first sentences, embedded with the standard query instruction.
- Held-out (never calibration): docstrings of the standard-library modules (read with `ast`, not imported); the
  summary line is a query and the rest of the docstring its passage, which gives a retrieval set.
- User corpora: JSON Lines ({"text": ..., optional "input_type": "query"|"passage"}), plain text (one per line)
  or Parquet (a "text" column; needs pyarrow).
"""

from __future__ import annotations

import ast
import hashlib
import platform
import re
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ..errors import InputError
from ..textio import parse_jsonl_records, parse_texts

InputType = Literal["query", "passage"]


@dataclass(frozen=True)
class Sample:
    text: str
    input_type: InputType = "passage"


@dataclass(frozen=True)
class Corpus:
    samples: list[Sample]
    provenance: dict = field(default_factory=dict)

    def sha256(self) -> str:
        digest = hashlib.sha256()
        for s in self.samples:
            digest.update(f"{s.input_type}\x00{s.text}\x01".encode())
        return digest.hexdigest()


def _paragraphs(text: str, min_chars: int = 40) -> list[str]:
    paragraphs = (" ".join(p.split()) for p in re.split(r"\n\s*\n", text))
    return [p for p in paragraphs if len(p) >= min_chars]


def _first_sentence(paragraph: str, max_words: int = 24) -> str:
    sentence = re.split(r"(?<=[.?!:])\s", paragraph, maxsplit=1)[0]
    return " ".join(sentence.split()[:max_words])


def python_reference_corpus() -> Corpus:
    """At least 1,000 samples from the Python language reference: passages of 1, 2, 4 and 8 paragraphs, plus
    one query per paragraph. Deterministic for a given Python version."""
    import pydoc_data.topics as topics_module

    paragraphs = [p for key in sorted(topics_module.topics) for p in _paragraphs(topics_module.topics[key])]
    samples = [Sample(p) for p in paragraphs]
    for run in (2, 4, 8):
        samples += [Sample(" ".join(paragraphs[i:i + run])) for i in range(0, len(paragraphs) - run, run * 3)]
    queries = (_first_sentence(p) for p in paragraphs[::2])
    samples += [Sample(q, "query") for q in queries if len(q.split()) >= 4]
    source = Path(topics_module.__file__)
    return Corpus(samples, {"source": "python-reference", "file": source.name,
                            "file_sha256": hashlib.sha256(source.read_bytes()).hexdigest(),
                            "python": sysconfig.get_python_version(),
                            "licence": "Python Software Foundation License (CPython documentation)"})


def stdlib_retrieval_set(max_pairs: int = 160) -> tuple[list[str], list[str], dict]:
    """Held-out (query, passage) pairs from standard-library module docstrings, in a fixed order."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    queries, passages = [], []
    for path in sorted(stdlib.glob("*.py")):
        try:
            doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
        except (SyntaxError, UnicodeDecodeError):
            continue
        if not doc:
            continue
        summary, _, body = doc.strip().partition("\n")
        body = " ".join(body.split())
        if len(summary) >= 12 and len(body) >= 80:
            queries.append(summary.strip())
            passages.append(body)
        if len(queries) == max_pairs:
            break
    return queries, passages, {"source": "stdlib-docstrings", "stdlib": str(stdlib), "pairs": len(queries),
                               "asked": max_pairs, "python": platform.python_version()}


def stdlib_shortfall(asked: int, available: int, python: str) -> str:
    """What a report says where this Python's standard library holds fewer pairs than were asked for (one wording for
    validate and validate --compare); empty where it held enough."""
    if available >= asked:
        return ""
    return f"{asked} asked, {available} available from the standard library of Python {python}"


def read_user_corpus(path: Path) -> Corpus:
    """A user's corpus: .parquet (column 'text'), JSON Lines or plain text (see textio)."""
    if not path.is_file():
        raise InputError(f"corpus file not found: {path}")
    data = path.read_bytes()
    provenance = {"source": "user", "file": str(path), "file_sha256": hashlib.sha256(data).hexdigest()}
    if path.suffix.lower() == ".parquet":
        return Corpus([Sample(t) for t in _parquet_texts(path)], provenance)
    if path.suffix.lower() in {".jsonl", ".ndjson", ".json"}:
        return Corpus(_jsonl_samples(data, str(path)), provenance)
    return Corpus([Sample(t) for t in parse_texts(data, str(path), "txt")], provenance)


def _jsonl_samples(data: bytes, name: str) -> list[Sample]:
    samples = []
    for record in parse_jsonl_records(data, name):
        kind = record.get("input_type", "passage")
        if kind not in ("query", "passage"):
            raise InputError(f"{name}:{record['_line']}: input_type must be 'query' or 'passage', got {kind!r}")
        samples.append(Sample(record["text"], kind))
    if not samples:
        raise InputError(f"{name}: holds no inputs (empty file or only blank lines)")
    return samples


def _parquet_texts(path: Path) -> list[str]:
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise InputError(f"{path}: reading Parquet needs pyarrow (pip install pyarrow)") from exc
    table = pq.read_table(path)
    if "text" not in table.column_names:
        raise InputError(f"{path}: no 'text' column (columns: {', '.join(table.column_names)})")
    texts = [t for t in table.column("text").to_pylist() if isinstance(t, str) and t.strip()]
    if not texts:
        raise InputError(f"{path}: the 'text' column holds no non-empty strings")
    return texts
