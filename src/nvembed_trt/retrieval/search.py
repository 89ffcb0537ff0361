"""Exact search: every query against every document, by dot product of unit vectors (cosine), in blocks so memory
stays bounded whatever the corpus size. No approximate index: a regression cannot hide behind one. Ties are broken
by corpus order, so a ranking is a pure function of the scores."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

QUERY_BLOCK = 1024       # queries per block
DOC_BLOCK = 32768        # documents per block: 1024 x 32768 float32 scores = 128 MiB


@dataclass(frozen=True)
class Ranking:
    """Top-k document indices and scores per query, best first: int64 / float32 [queries, k]."""

    indices: np.ndarray
    scores: np.ndarray


def top_k(scores: np.ndarray, columns: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the k best (score desc, then column asc) of `scores` whose column numbers are `columns`."""
    if scores.shape[1] > k:
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        scores, columns = np.take_along_axis(scores, part, 1), np.take_along_axis(columns, part, 1)
    order = np.lexsort((columns, -scores), axis=1)
    return np.take_along_axis(columns, order, 1), np.take_along_axis(scores, order, 1)


def exact_search(queries: np.ndarray, docs: np.ndarray, k: int, exclude: list[int | None] | None = None,
                 query_block: int = QUERY_BLOCK, doc_block: int = DOC_BLOCK) -> Ranking:
    """The k best documents for every query. `exclude[i]`: a document index query i may not retrieve (its own
    id, for tasks whose queries are also documents), or None."""
    k = min(k, len(docs))
    indices = np.empty((len(queries), k), np.int64)
    scores = np.empty((len(queries), k), np.float32)
    for q0 in range(0, len(queries), query_block):
        q = queries[q0:q0 + query_block]
        best_i = np.empty((len(q), 0), np.int64)
        best_s = np.empty((len(q), 0), np.float32)
        for d0 in range(0, len(docs), doc_block):
            block = q @ docs[d0:d0 + doc_block].T                                  # [queries, block]
            if exclude is not None:
                for row, doc in enumerate(exclude[q0:q0 + len(q)]):
                    if doc is not None and d0 <= doc < d0 + block.shape[1]:
                        block[row, doc - d0] = -np.inf
            columns = np.broadcast_to(np.arange(block.shape[1]), block.shape)
            if block.shape[1] > k:                   # the block's own k best first: merge 2k columns, not the block
                columns = np.argpartition(-block, k - 1, axis=1)[:, :k]
                block = np.take_along_axis(block, columns, 1)
            best_i, best_s = top_k(np.concatenate([best_s, block], 1), np.concatenate([best_i, columns + d0], 1), k)
        indices[q0:q0 + len(q)], scores[q0:q0 + len(q)] = best_i, best_s
    return Ranking(indices, scores)
