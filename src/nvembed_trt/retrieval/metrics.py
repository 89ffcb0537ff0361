"""Retrieval metrics from ir-measures (trec_eval's definitions through pytrec_eval and its other providers):
nDCG@10 (the headline), Recall@100, MRR@10 and MAP, per query and averaged over the judged queries.

Every provider gets the same strict order: the run handed to ir-measures scores each document by its rank (k - rank)
rather than by its cosine, so a tie is broken the same way (corpus order) for every measure and every runtime."""

from __future__ import annotations

import numpy as np

from ..errors import InputError

MEASURES = {"ndcg@10": "nDCG@10", "recall@100": "R@100", "mrr@10": "RR@10", "map": "AP"}
HEADLINE = "ndcg@10"


def _ir_measures():
    try:
        import ir_measures
    except ImportError as exc:
        raise InputError("retrieval metrics need ir-measures: pip install ir-measures") from exc
    return ir_measures


def per_query_metrics(qrels: dict[str, dict[str, int]], query_ids: list[str], ranked_ids: list[list[str]]
                      ) -> dict[str, dict[str, float]]:
    """{query id: {metric: value}} for every judged query (a query whose run is empty scores 0)."""
    ir_measures = _ir_measures()
    measures = {ir_measures.parse_measure(v): k for k, v in MEASURES.items()}
    run = {q: {d: float(len(docs) - r) for r, d in enumerate(docs)} for q, docs in zip(query_ids, ranked_ids)}
    out = {q: dict.fromkeys(MEASURES, 0.0) for q in query_ids}
    for metric in ir_measures.iter_calc(list(measures), qrels, run):
        out[metric.query_id][measures[metric.measure]] = float(metric.value)
    return out


def mean_metrics(per_query: dict[str, dict[str, float]]) -> dict[str, float]:
    return {m: float(np.mean([v[m] for v in per_query.values()])) for m in MEASURES}
