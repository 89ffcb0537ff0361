"""Corpus embeddings of an evaluation, cached as Parquet shards with their provenance, reused when still valid.

    CACHE/<corpus sha256[:16]>/<embedder key>/embeddings/part-*.parquet   embed-corpus's shard schema (id,
                                                   embedding, n_tokens, truncated): one reader for both
    CACHE/<corpus sha256[:16]>/<embedder key>/cache.json                   data set, embedder identity, max length

The embedder key hashes what makes the vectors (runtime, recipe, graph/plan files by size and time, weights
fingerprint, served URL and model, max length). A rerun, `--compare`, or `validate` reuses the shards whose ids are
in the corpus, after a spot check: a few cached documents are embedded again and must agree (cosine >= 0.999),
so a graph rebuilt in place or a deployment changed behind the same URL is caught and the folder embedded afresh.
An interrupted run keeps its complete shards (each written whole: temp name, then rename) and resumes.

Large corpora go through `embed-corpus` (Ray Data, several workers or GPUs): with `ray=True` the missing documents
are written to passages.jsonl and embedded by embed_corpus() into the same folder layout."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np

from ..console import note, track
from ..errors import InputError
from ..pooling import cosine_rows
from ..corpus.shards import remove_temporaries, shard_paths, write_shard
from ..provenance import sidecar, write_json
from ..retrieval.beir import RetrievalSet
from .embedders import EvalEmbedder, identity_key

CACHE_JSON = "cache.json"
SHARD_ROWS = 2048
SPOT_CHECK_ROWS = 4
SPOT_CHECK_MIN_COSINE = 0.999
RAY_OUTPUT = "embed-corpus"        # embed_corpus()'s output folder inside a cache folder


def cache_folder(root: Path, dataset: RetrievalSet, embedder: EvalEmbedder) -> Path:
    return Path(root) / dataset.corpus_sha256()[:16] / identity_key(embedder.identity, embedder.max_length)


def read_shards(folder: Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(ids, float32 embeddings [n, D], truncated flags) of every shard in `folder` (an embed-corpus output or a
    cache folder)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    paths = shard_paths(folder)
    if not paths:
        return [], np.zeros((0, 0), np.float32), np.zeros(0, bool)
    table = pa.concat_tables([pq.read_table(p, columns=["id", "embedding", "truncated"]) for p in paths])
    column = table.column("embedding").combine_chunks()
    if column.type.value_type != pa.float32():
        raise InputError(f"{folder}: embeddings of {column.type.value_type} (a compact --embedding-type); an "
                         "evaluation reads float32 vectors and compacts them itself (eval --embedding-type)")
    dim = column.type.list_size
    vectors = column.values.to_numpy(zero_copy_only=False).reshape(-1, dim).astype(np.float32, copy=False)
    return table.column("id").to_pylist(), vectors, np.asarray(table.column("truncated").to_pylist(), bool)


def token_counts(tokenizer, texts: list[str], instruction: str, max_length: int) -> tuple[np.ndarray, np.ndarray]:
    """(tokens fed to the encoder, whether the text was cut) per text, by the model's tokenizer."""
    full = np.asarray([len(ids) for ids in tokenizer.encode_untruncated(texts, instruction)], np.int32)
    return np.minimum(full, max_length), full > max_length


def _spot_check(embedder: EvalEmbedder, texts: list[str], cached: np.ndarray) -> float:
    fresh = embedder.embed(texts, "")
    return float(cosine_rows(fresh, cached).min())


class CorpusCache:
    """The cached corpus embeddings of one (data set, embedder) pair."""

    def __init__(self, root: Path, dataset: RetrievalSet, embedder: EvalEmbedder, tokenizer):
        self.dataset, self.embedder, self.tokenizer = dataset, embedder, tokenizer
        self.folder = cache_folder(Path(root).resolve(), dataset, embedder)
        self.stats = {"folder": str(self.folder), "reused": 0, "embedded": 0, "seconds": 0.0, "discarded": None}

    def _describe(self, complete: bool) -> dict:
        return sidecar("eval-corpus-cache", dataset=self.dataset.describe(), embedder=self.embedder.identity,
                       max_length=self.embedder.max_length, complete=complete)

    def _valid_rows(self) -> dict[str, tuple[np.ndarray, bool]]:
        """Cached rows still valid for this corpus and embedder; an invalid folder is removed (and said so)."""
        remove_temporaries(self.folder)
        rows = self._read()
        if not rows:
            return {}
        ids = list(rows)
        vectors = np.stack([v for v, _ in rows.values()])
        position = {d: i for i, d in enumerate(self.dataset.doc_ids)}
        problem = None
        if any(d not in position for d in ids):
            problem = "it holds ids that are not in the corpus"
        else:
            sample = np.linspace(0, len(ids) - 1, min(SPOT_CHECK_ROWS, len(ids))).astype(int)
            texts = [self.dataset.doc_texts[position[ids[i]]] for i in sample]
            agreement = _spot_check(self.embedder, texts, vectors[sample])
            if not agreement >= SPOT_CHECK_MIN_COSINE:
                problem = (f"{len(sample)} documents embedded again agree only to cosine {agreement:.6f} "
                           f"(< {SPOT_CHECK_MIN_COSINE}): the embedder changed behind the same identity")
        if problem:
            note(f"corpus cache {self.folder}: discarded, {problem}")
            self.stats["discarded"] = problem
            shutil.rmtree(self.folder)
            return {}
        return rows

    def _read(self) -> dict[str, tuple[np.ndarray, bool]]:
        """Every cached row: shards embedded here and those embed-corpus wrote (RAY_OUTPUT)."""
        rows = {}
        for folder in (self.folder, self.folder / RAY_OUTPUT):
            rows.update({d: (v, t) for d, v, t in zip(*read_shards(folder))})
        return rows

    def embeddings(self, progress: bool = True, ray: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """(float32 [documents, D] in corpus order, truncated flags), embedding only what the cache lacks."""
        started = time.perf_counter()
        self.folder.mkdir(parents=True, exist_ok=True)
        rows = self._valid_rows()
        self.folder.mkdir(parents=True, exist_ok=True)      # again: an invalid folder was removed
        self.stats["reused"] = len(rows)
        missing = [i for i, d in enumerate(self.dataset.doc_ids) if d not in rows]
        write_json(self.folder / CACHE_JSON, self._describe(complete=False))
        if missing and ray:
            from .ray_corpus import embed_with_ray

            embed_with_ray(self.embedder, self.dataset, missing, self.folder, self.folder / RAY_OUTPUT)
        elif missing:
            self._embed_inline(missing, progress)
        if missing:
            rows = self._read()
        write_json(self.folder / CACHE_JSON, self._describe(complete=True))
        self.stats["embedded"] = len(missing)
        self.stats["seconds"] = round(time.perf_counter() - started, 3)
        vectors = np.stack([rows[d][0] for d in self.dataset.doc_ids])
        return vectors, np.asarray([rows[d][1] for d in self.dataset.doc_ids], bool)

    def _embed_inline(self, missing: list[int], progress: bool) -> None:
        chunks = range(0, len(missing), SHARD_ROWS)
        stamp = time.strftime("%Y%m%dT%H%M%S")
        for start in (track(chunks, f"embedding {len(missing):,} documents", len(chunks)) if progress else chunks):
            index = missing[start:start + SHARD_ROWS]
            texts = [self.dataset.doc_texts[i] for i in index]
            vectors = self.embedder.embed(texts, "")
            n_tokens, truncated = token_counts(self.tokenizer, texts, "", self.embedder.max_length)
            write_shard(self.folder, f"part-{stamp}-{index[0]:010d}", [self.dataset.doc_ids[i] for i in index],
                        vectors, n_tokens, truncated)
