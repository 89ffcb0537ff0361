"""Fleet drift: what a mixed fleet's clients see when two deployments of the same model answer differently (H100
fp8 and L40S fp16 behind one service, an index built on one and queried on the other). Both front doors embed the
held-out retrieval set (standard-library docstrings: summary lines as queries, bodies as passages, never the
calibration text); the report gives the row cosine between them, the top-10 agreement of retrieval when the index
is A's and the queries B's (the mixed fleet) and when both are B's, each engine's fingerprint, and whether the
drift is within the budget."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..calibration.corpus import stdlib_retrieval_set
from ..client import EmbeddingClient
from ..precision.verify import top_k_agreement


@dataclass(frozen=True)
class DriftBudget:
    min_cosine: float = 0.99       # every row, queries and passages
    min_top10: float = 0.9         # mean top-10 agreement of the mixed fleet (A's index, B's queries) with A alone


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def fleet_drift(url_a: str, url_b: str, budget: DriftBudget = DriftBudget(), pairs: int = 160,
                api_key: str | None = None) -> dict:
    queries, passages, source = stdlib_retrieval_set(pairs)
    sides = {}
    for name, url in (("a", url_a), ("b", url_b)):
        client = EmbeddingClient(url, api_key=api_key)
        engine = client.front_door.metadata()["fingerprint"]["header"]
        sides[name] = (client.embed(queries, "query", truncate="END"), client.embed(passages, "passage",
                                                                                      truncate="END"), engine)
    (qa, pa, engine_a), (qb, pb, engine_b) = sides["a"], sides["b"]
    cosines = np.concatenate([_cosines(qa, qb), _cosines(pa, pb)])
    mixed, both_b = top_k_agreement(qa, pa, qb, pa), top_k_agreement(qa, pa, qb, pb)
    failures = []
    if cosines.min() < budget.min_cosine:
        failures.append(f"min cosine {cosines.min():.5f} < {budget.min_cosine} (--min-cosine)")
    if mixed < budget.min_top10:
        failures.append(f"mixed-fleet top-10 agreement {mixed:.3f} < {budget.min_top10} (--min-top10)")
    return {"a": {"url": url_a, "engine": engine_a}, "b": {"url": url_b, "engine": engine_b},
            "set": {**source, "queries": len(queries), "passages": len(passages)},
            "cosine": {"min": float(cosines.min()), "mean": float(cosines.mean())},
            "top10_agreement": {"index_a_queries_b": mixed, "all_b": both_b},
            "budget": {"min_cosine": budget.min_cosine, "min_top10": budget.min_top10},
            "within_budget": not failures, "failures": failures}
