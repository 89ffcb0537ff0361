"""Retrieval in a compact embedding type: the float vectors the embedder gives (cached or fresh), turned into the
type the front door serves (serving.compact: one definition of each type), then searched in that type.

- `float`: exact search by dot product of the unit vectors (scoring.score, unchanged).
- `float16`: queries and documents rounded to halves (compact.float16), then exact search by their dot product (in
  float32, as a vector database's half-float index computes it).
- `int8`: queries and documents as int8 codes from per-dimension ranges calibrated on this corpus's own vectors
  (compact.calibrated_ranges: min and max per dimension); the score is the dot product of the codes (int32).
- `binary`: the sign bits packed (compact.ubinary); first by Hamming distance (popcount of the XOR, ties by corpus
  order), then sentence-transformers' rescoring: the best `rescore_multiplier` x 10 by Hamming are scored again by
  the float query . the document's unpacked bits as +-1 and re-ordered; the rest keep their Hamming order after them.
  (sentence-transformers multiplies by the 0/1 bits; q . (2b - 1) = 2 q . b - sum(q), the same order per query.)
  Both rankings are measured: the report's metrics are the rescored ones, `without_rescoring` the Hamming ones."""

from __future__ import annotations

from typing import Literal, get_args

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from ..retrieval.beir import RetrievalSet
from ..retrieval.metrics import mean_metrics, per_query_metrics
from ..retrieval.scoring import Scored, TOP_K, score
from ..retrieval.search import Ranking, top_k
from ..serving.compact import OutputRanges, calibrated_ranges, compact

EvalType = Literal["float", "float16", "int8", "binary"]
EVAL_TYPES = get_args(EvalType)
RESCORE_MULTIPLIER = 4          # sentence-transformers' blog figure: 4 x top-10 candidates rescored
RESCORED_DEPTH = 10             # the depth the candidates are a multiple of (nDCG@10)
POPCOUNT = np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1).sum(axis=1).astype(np.int32)  # byte -> bits
BLOCK_BYTES = 64 << 20          # per block of queries: their [block, documents] scores, or XORed bytes, at most


class CompactSettings(BaseModel):
    """The type an evaluation scores in (`eval --embedding-type`, `--rescore-multiplier`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    embedding_type: EvalType = "float"
    rescore_multiplier: int | None = Field(None, ge=1)   # binary only: candidates = this x 10 (default 4)

    @field_validator("rescore_multiplier")
    @classmethod
    def _binary_only(cls, value: int | None, info: ValidationInfo) -> int | None:
        kind = info.data.get("embedding_type")
        if value is not None and kind != "binary":
            raise ValueError(f"only with --embedding-type binary (it rescores Hamming candidates), not {kind}")
        return value

    @property
    def multiplier(self) -> int:
        return self.rescore_multiplier or RESCORE_MULTIPLIER


def _exclusions(dataset: RetrievalSet, ignore_identical_ids: bool) -> list[int | None] | None:
    if not ignore_identical_ids:
        return None
    position = {d: i for i, d in enumerate(dataset.doc_ids)}
    return [position.get(q) for q in dataset.query_ids]


def _rank(score_block, n_queries: int, n_docs: int, row_bytes: int, k: int,
          exclude: list[int | None] | None) -> Ranking:
    """The k best documents per query (ties by corpus order) from `score_block(q0, q1)` -> [q1 - q0, documents]
    scores, a block of queries at a time so memory stays bounded (`row_bytes`: bytes one query's block costs)."""
    k = min(k, n_docs)
    block = max(1, BLOCK_BYTES // max(1, row_bytes))
    indices, scores = np.empty((n_queries, k), np.int64), np.empty((n_queries, k), np.float64)
    for q0 in range(0, n_queries, block):
        rows = score_block(q0, min(q0 + block, n_queries)).astype(np.float64)
        for row, doc in enumerate((exclude or [])[q0:q0 + block]):
            if doc is not None:
                rows[row, doc] = -np.inf
        columns = np.broadcast_to(np.arange(n_docs), rows.shape)
        indices[q0:q0 + len(rows)], scores[q0:q0 + len(rows)] = top_k(rows, columns, k)
    return Ranking(indices, scores)


def _scored(dataset: RetrievalSet, ranking: Ranking) -> Scored:
    ranked = [[dataset.doc_ids[i] for i, s in zip(row, scores) if np.isfinite(s)]
              for row, scores in zip(ranking.indices, ranking.scores)]
    per_query = per_query_metrics(dataset.qrels, dataset.query_ids, ranked)
    return Scored(dataset.query_ids, ranked, ranking.scores.astype(np.float32), per_query, mean_metrics(per_query))


def eval_ranges(docs: np.ndarray, dataset: RetrievalSet, identity: str) -> OutputRanges:
    """int8 ranges calibrated on the corpus vectors themselves (the OutputRanges model the front door reads)."""
    low, high = calibrated_ranges(docs)
    return OutputRanges.new(encoder_sha256=identity, texts=len(docs), corpus=dataset.describe(), low=low, high=high,
                            method=f"per-dimension min and max of the {len(docs):,} corpus vectors of this "
                                   "evaluation (its own documents, embedded as evaluated)")


def int8_codes(queries: np.ndarray, docs: np.ndarray, ranges: OutputRanges) -> tuple[np.ndarray, np.ndarray]:
    return compact(queries, "int8", ranges).astype(np.int32), compact(docs, "int8", ranges).astype(np.int32)


def hamming(q_bits: np.ndarray, d_bits: np.ndarray) -> np.ndarray:
    """[queries, documents] Hamming distances of packed sign bits (ubinary rows): popcount of the XOR."""
    xor = np.bitwise_xor(q_bits[:, None, :], d_bits[None, :, :])                       # [queries, documents, D/8]
    return POPCOUNT[xor].sum(axis=-1, dtype=np.int32)


def rescore(queries: np.ndarray, d_bits: np.ndarray, by_hamming: Ranking, candidates: int) -> Ranking:
    """The first `candidates` of each Hamming ranking re-ordered by float query . +-1 document bits (ties: Hamming
    order); the rest of the ranking after them, as it was. Scores: the rescored values for the head, then values
    below the head's lowest in Hamming order, so a consumer reading scores sees the same order."""
    head = by_hamming.indices[:, :candidates]                                           # [queries, c]
    values = np.empty(head.shape, np.float64)
    block = max(1, BLOCK_BYTES // (4 * candidates * queries.shape[1]))
    for q0 in range(0, len(head), block):
        bits = np.unpackbits(d_bits[head[q0:q0 + block]], axis=-1, count=queries.shape[1])   # [block, c, D] 0/1
        signs = bits.astype(np.float32) * 2 - 1
        values[q0:q0 + block] = np.einsum("qd,qcd->qc", queries[q0:q0 + block].astype(np.float32), signs)
    values[~np.isfinite(by_hamming.scores[:, :candidates])] = -np.inf                  # excluded stay excluded
    order = np.lexsort((np.broadcast_to(np.arange(candidates), head.shape), -values), axis=1)
    indices = by_hamming.indices.copy()
    indices[:, :candidates] = np.take_along_axis(head, order, 1)
    scores = np.empty(indices.shape, np.float64)
    scores[:, :candidates] = np.take_along_axis(values, order, 1)
    tail = by_hamming.scores[:, candidates:]
    floor = np.where(np.isfinite(values), values, np.inf).min(axis=1, keepdims=True)
    scores[:, candidates:] = np.where(np.isfinite(tail), floor - np.arange(1, tail.shape[1] + 1), -np.inf)
    return Ranking(indices, scores)


def score_compact(dataset: RetrievalSet, queries: np.ndarray, docs: np.ndarray, settings: CompactSettings,
                  identity: str = "", top_k: int = TOP_K, ignore_identical_ids: bool = False
                  ) -> tuple[Scored, dict]:
    """The ranking and metrics in `settings.embedding_type`, and what the report says about how it was scored."""
    kind = settings.embedding_type
    if kind == "float":
        return score(dataset, queries, docs, top_k, ignore_identical_ids), {
            "type": "float", "how": "dot product of the float32 unit vectors (cosine), exact search"}
    if kind == "float16":
        halves = [compact(v, "float16").astype(np.float32) for v in (queries, docs)]
        return score(dataset, *halves, top_k, ignore_identical_ids), {
            "type": "float16", "bytes_per_vector": int(2 * docs.shape[1]),
            "how": "queries and documents rounded to IEEE halves (round to nearest even); dot product of the halves "
                   "(computed in float32), exact search"}
    exclude = _exclusions(dataset, ignore_identical_ids)
    if kind == "int8":
        ranges = eval_ranges(docs, dataset, identity)
        q, d = int8_codes(queries, docs, ranges)
        ranking = _rank(lambda q0, q1: q[q0:q1] @ d.T, len(q), len(d), 8 * len(d), top_k, exclude)
        scored = _scored(dataset, ranking)
        return scored, {"type": "int8", "bytes_per_vector": int(docs.shape[1]),
                        "how": "queries and documents as int8 codes (value = round((x - low) / ((high - low) / "
                               "255)) clipped to 0..255, minus 128); score = the codes' int32 dot product",
                        "ranges": {"method": ranges.method, "texts": ranges.texts}}
    plain, scored, candidates = binary_scored(dataset, queries, docs, settings.multiplier, top_k, exclude)
    return scored, {"type": "binary", "bytes_per_vector": int(-(-docs.shape[1] // 8)),
                    "how": "sign bits packed MSB first (ubinary); documents ranked by Hamming distance, then the "
                           f"best {candidates} ({settings.multiplier} x {RESCORED_DEPTH}) rescored by the "
                           "float query . the document's unpacked bits as +-1 (sentence-transformers' scheme)",
                    "rescore_multiplier": settings.multiplier, "rescored_candidates": candidates,
                    "without_rescoring": plain.means}


def binary_scored(dataset: RetrievalSet, queries: np.ndarray, docs: np.ndarray, multiplier: int, top_k: int = TOP_K,
                  exclude: list[int | None] | None = None) -> tuple[Scored, Scored, int]:
    """(by Hamming distance alone, rescored, candidates rescored) of the packed sign bits."""
    q, d = compact(queries, "ubinary"), compact(docs, "ubinary")
    by_hamming = _rank(lambda q0, q1: -hamming(q[q0:q1], d), len(q), len(d), max(8, d.shape[1]) * len(d), top_k,
                       exclude)
    candidates = min(multiplier * RESCORED_DEPTH, by_hamming.indices.shape[1])
    return _scored(dataset, by_hamming), _scored(dataset, rescore(queries, d, by_hamming, candidates)), candidates
