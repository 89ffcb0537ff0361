"""The ranking slice of the precision gate and of `validate`: the project's labelled set (stdlib_set.py) embedded by
the fp32 reference and by a candidate, nDCG@10 of each, and the verdict against the recipe's budget
(Recipe.max_ndcg10_drop in recipes.py). A refusal names the drop, the budget and the queries that lost
most, with their text."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .beir import RetrievalSet
from .metrics import HEADLINE
from .scoring import Scored, score
from .stdlib_set import INSTRUCTION, QUERIES, stdlib_retrieval_set

EmbedFn = Callable[[list[str], str], np.ndarray]   # (texts, instruction prefix) -> float32 unit rows
WORST = 5


def ranking_slice(queries: int | None = None) -> RetrievalSet:
    """The gate's labelled set; `queries` cuts it (with 4 distractors per query) for models too large to embed the
    whole set on a CPU."""
    return stdlib_retrieval_set(min(queries or QUERIES, QUERIES))


def sorted_embed(embed: EmbedFn, texts: list[str], instruction: str) -> np.ndarray:
    """`embed` on texts sorted by length (batches pad little), rows returned in input order."""
    order = np.argsort([-len(t) for t in texts], kind="stable")
    got = embed([texts[i] for i in order], instruction)
    out = np.empty_like(got)
    out[order] = got
    return out


def slice_figures(dataset: RetrievalSet, embed: EmbedFn) -> Scored:
    """Rankings and metrics of one embedder on the slice (queries with its instruction, documents with none)."""
    return score(dataset, sorted_embed(embed, dataset.query_texts, INSTRUCTION),
                 sorted_embed(embed, dataset.doc_texts, ""), top_k=100)


def ranking_check(dataset: RetrievalSet, reference: Scored, got: Scored, budget: float,
                  worst: int = WORST) -> tuple[dict, list[str]]:
    """nDCG@10 of reference and candidate, the drop, the queries that lost most; a problem when drop > budget."""
    texts = dict(zip(dataset.query_ids, dataset.query_texts))
    deltas = {q: got.per_query[q][HEADLINE] - reference.per_query[q][HEADLINE] for q in dataset.query_ids}
    overlap = {q: len(set(a) & set(b)) / 10 for (q, a), b in zip(reference.top().items(), got.top().values())}
    losers = sorted(deltas, key=lambda q: (deltas[q], overlap[q], q))[:worst]
    drop = reference.means[HEADLINE] - got.means[HEADLINE]
    report = {"dataset": dataset.describe(), "ndcg10_reference": reference.means[HEADLINE],
              "ndcg10": got.means[HEADLINE], "ndcg10_drop": drop, "budget": budget,
              "metrics": got.means, "reference_metrics": reference.means,
              "top10_overlap": float(np.mean(list(overlap.values()))),
              "worst_queries": [{"query_id": q, "text": texts[q], "delta": deltas[q], "top10_overlap": overlap[q]}
                                for q in losers], "passed": drop <= budget}
    problems = [] if report["passed"] else [
        f"ranking slice: nDCG@10 {got.means[HEADLINE]:.4f} vs reference {reference.means[HEADLINE]:.4f}, drop "
        f"{drop:.4f} > budget {budget}; worst queries: "
        + "; ".join(f"{q} {texts[q][:60]!r} ({deltas[q]:+.3f})" for q in losers)]
    return report, problems
