"""Calibration tensors tokenised exactly as serving does, bucketed by length, plus manifest.json.

calibration/<name>/bucket-00064.npz holds input_ids, attention_mask and pool_mask (int32) of every sample whose
token length falls in (previous bucket, 64], padded to 64 with the pad id. `load_calibration` gathers the samples
up to a length into fixed-shape arrays, the form ModelOpt's ONNX calibration takes.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..provenance import sidecar, write_json
from ..staging import check_output_dir, staged_directory
from ..tokenizer import EmbeddingTokenizer, INPUT_TYPES
from .corpus import Corpus

BUCKETS = (16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768)
MANIFEST = "manifest.json"
MIN_SAMPLES = 16


@dataclass(frozen=True)
class CalibrationResult:
    directory: Path
    manifest: dict


def _bucket_of(length: int) -> int:
    return next(b for b in BUCKETS if length <= b)


def _rows(corpus: Corpus, tokenizer: EmbeddingTokenizer, max_length: int) -> list[tuple[list[int], int]]:
    """(token ids, masked instruction positions) per sample, tokenised as serving does."""
    rows = []
    for kind in ("passage", "query"):
        texts = [s.text for s in corpus.samples if s.input_type == kind]
        if texts:
            instruction = INPUT_TYPES[kind]
            masked = tokenizer.instruction_length(instruction)
            rows += [(ids, masked) for ids in tokenizer.encode_ids(texts, instruction, max_length)]
    return rows


def _bucket_arrays(rows: list[tuple[list[int], int]], width: int, pad_id: int) -> dict[str, np.ndarray]:
    input_ids = np.full((len(rows), width), pad_id, dtype=np.int32)
    attention = np.zeros((len(rows), width), dtype=np.int32)
    for i, (ids, _) in enumerate(rows):
        input_ids[i, : len(ids)] = ids
        attention[i, : len(ids)] = 1
    pool = attention.copy()
    for i, (_, masked) in enumerate(rows):
        pool[i, :masked] = 0
    return {"input_ids": input_ids, "attention_mask": attention, "pool_mask": pool}


def calibration_from_corpus(corpus: Corpus, tokenizer: EmbeddingTokenizer, output: Path, max_length: int = 512,
                            model: dict | None = None, overwrite: bool = False) -> CalibrationResult:
    """Tokenise the corpus, write one .npz per length bucket and manifest.json (atomically, as a folder)."""
    tokenizer.check_max_length(max_length)
    if len(corpus.samples) < MIN_SAMPLES:
        raise InputError(f"a calibration corpus needs at least {MIN_SAMPLES} samples, got {len(corpus.samples)}")
    check_output_dir(output, overwrite)
    rows = _rows(corpus, tokenizer, max_length)
    by_bucket: dict[int, list] = {}
    for row in rows:
        by_bucket.setdefault(_bucket_of(len(row[0])), []).append(row)
    with staged_directory(output, overwrite) as staging:
        for width, bucket_rows in sorted(by_bucket.items()):
            np.savez(staging / f"bucket-{width:05d}.npz", **_bucket_arrays(bucket_rows, width, tokenizer.pad_id))
        lengths = [len(ids) for ids, _ in rows]
        manifest = sidecar(
            "calibration-set", samples=len(rows),
            queries=sum(s.input_type == "query" for s in corpus.samples), max_length=max_length,
            buckets={str(w): len(r) for w, r in sorted(by_bucket.items())},
            length_histogram={str(b): c for b, c in sorted(Counter(_bucket_of(n) for n in lengths).items())},
            length_stats={"min": min(lengths), "mean": round(float(np.mean(lengths)), 1), "max": max(lengths)},
            truncated=sum(n == max_length for n in lengths), corpus_sha256=corpus.sha256(),
            corpus=corpus.provenance, model=model, pad_id=tokenizer.pad_id)
        write_json(staging / MANIFEST, manifest)
    return CalibrationResult(output, manifest)


def load_calibration(directory: Path, length: int, max_samples: int, names: tuple[str, ...],
                     pad_id: int = 2) -> dict[str, np.ndarray]:
    """Fixed-shape arrays [N, length] from the buckets up to `length` (evenly thinned to max_samples)."""
    if not (directory / MANIFEST).is_file():
        raise InputError(f"{directory}: not a calibration set (no {MANIFEST}); run `nvembed-trt calibrate`")
    parts = [np.load(p) for p in sorted(directory.glob("bucket-*.npz")) if int(p.stem.split("-")[1]) <= length]
    if not parts:
        raise InputError(f"{directory}: no calibration samples of at most {length} tokens")
    arrays = {}
    for name in names:
        fill = pad_id if name == "input_ids" else 0
        padded = [np.pad(p[name], ((0, 0), (0, length - p[name].shape[1])), constant_values=fill) for p in parts]
        arrays[name] = np.concatenate(padded)
    count = len(next(iter(arrays.values())))
    keep = np.linspace(0, count - 1, num=min(max_samples, count)).round().astype(int)
    return {name: a[keep] for name, a in arrays.items()}
