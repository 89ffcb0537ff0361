"""Vectors in, rankings and metrics out: exact search of the queries in the documents, then the metrics per query.
The pure part of an evaluation, shared by `nvembed-trt eval`, the precision gate's ranking slice and `validate`."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .beir import RetrievalSet
from .metrics import mean_metrics, per_query_metrics
from .search import exact_search

TOP_K = 1000


@dataclass(frozen=True)
class Scored:
    """Rankings and metrics of one embedder on one data set."""

    query_ids: list[str]
    ranked: list[list[str]]            # top-k document ids per query, best first
    scores: np.ndarray                 # float32 [queries, k]
    per_query: dict[str, dict[str, float]]
    means: dict[str, float]

    def top(self, k: int = 10) -> dict[str, list[str]]:
        return {q: r[:k] for q, r in zip(self.query_ids, self.ranked)}


def score(dataset: RetrievalSet, queries: np.ndarray, docs: np.ndarray, top_k: int = TOP_K,
          ignore_identical_ids: bool = False) -> Scored:
    """Exact search of `queries` (rows of dataset.query_ids) in `docs` (rows of dataset.doc_ids), then metrics."""
    exclude = None
    if ignore_identical_ids:
        position = {d: i for i, d in enumerate(dataset.doc_ids)}
        exclude = [position.get(q) for q in dataset.query_ids]
    ranking = exact_search(queries, docs, top_k, exclude)
    ranked = [[dataset.doc_ids[i] for i, s in zip(row, scores) if np.isfinite(s)]
              for row, scores in zip(ranking.indices, ranking.scores)]
    per_query = per_query_metrics(dataset.qrels, dataset.query_ids, ranked)
    return Scored(dataset.query_ids, ranked, ranking.scores, per_query, mean_metrics(per_query))
