"""The labelled retrieval set the project builds from text it already uses (no download): the docstrings of the
Python standard library's functions and classes, read with `ast` (never imported).

- query: a docstring's summary line (4-20 words), asked with the instruction QUERY_TASK below;
- its one relevant document (grade 1): the rest of the same docstring (8-120 words), id `<module>.<qualname>`;
- distractors: the bodies of other docstrings, 4 per query, spread over every module.

Summaries or bodies that occur twice are dropped (a judgement must be unambiguous), and so is any text of the
calibration corpus (the language reference, `pydoc_data.topics`): the slice is disjoint from calibration. The gate's
held-out slices use the same docstrings for cosine figures; this set adds judgements. Deterministic for a given
Python; the provenance records the Python version and the hashes. `nvembed-trt eval-data --output DIR` writes it
in BEIR's layout."""

from __future__ import annotations

import ast
import sysconfig
from functools import lru_cache
from pathlib import Path

from ..tokenizer import instruction_for_task
from .beir import RetrievalSet

QUERY_TASK = "Given a one-line summary of a Python function or class, retrieve the rest of its documentation"
INSTRUCTION = instruction_for_task(QUERY_TASK)
QUERIES = 200
DISTRACTORS_PER_QUERY = 4
NAME = "stdlib-docstrings"


def _docstrings() -> list[tuple[str, str, str]]:
    """(id, summary, body) of every function and class docstring in the stdlib's top-level modules."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    found = []
    for path in sorted(stdlib.glob("*.py")):
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        stack = [(node, path.stem) for node in tree.body]
        while stack:
            node, prefix = stack.pop(0)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = f"{prefix}.{node.name}"
                doc = ast.get_docstring(node)
                if doc:
                    summary, _, body = doc.strip().partition("\n")
                    found.append((name, " ".join(summary.split()), " ".join(body.split())))
                if isinstance(node, ast.ClassDef):
                    stack += [(child, name) for child in node.body]
    return found


def _spread(items: list, count: int) -> list:
    step = len(items) / count
    return [items[int(i * step)] for i in range(count)]


@lru_cache(maxsize=2)
def stdlib_retrieval_set(queries: int = QUERIES, distractors_per_query: int = DISTRACTORS_PER_QUERY) -> RetrievalSet:
    from ..calibration.corpus import python_reference_corpus

    calibration = {s.text for s in python_reference_corpus().samples}
    rows = [(i, s, b) for i, s, b in _docstrings() if s not in calibration and b not in calibration]
    summaries, bodies, ids = {}, {}, {}
    for key, summary, body in rows:
        summaries[summary] = summaries.get(summary, 0) + 1
        bodies[body] = bodies.get(body, 0) + 1
        ids[key] = ids.get(key, 0) + 1
    unique = [(i, s, b) for i, s, b in rows if summaries[s] == bodies[b] == ids[i] == 1 and b]
    judged = [r for r in unique if 4 <= len(r[1].split()) <= 20 and 8 <= len(r[2].split()) <= 120
              and not r[1].startswith((">>>", ":"))]
    if len(judged) < queries * (1 + distractors_per_query):
        raise RuntimeError(f"the standard library gives only {len(judged)} usable docstrings")
    picked = _spread(judged, queries * (1 + distractors_per_query))
    pairs, distractors = picked[::1 + distractors_per_query], [r for i, r in enumerate(picked)
                                                              if i % (1 + distractors_per_query)]
    docs = sorted(pairs + distractors)
    dataset = RetrievalSet(NAME, "test", [d[0] for d in docs], [d[2] for d in docs],
                           [f"q:{p[0]}" for p in pairs], [p[1] for p in pairs], {f"q:{p[0]}": {p[0]: 1} for p in pairs})
    provenance = {"source": "Python standard library docstrings (functions and classes), summary line -> body",
                  "python": sysconfig.get_python_version(), "stdlib": sysconfig.get_paths()["stdlib"],
                  "instruction": INSTRUCTION, "disjoint_from": "calibration corpus (pydoc_data.topics)",
                  "sha256": {"corpus": dataset.corpus_sha256(), "queries": dataset.queries_sha256()}}
    return RetrievalSet(dataset.name, dataset.split, dataset.doc_ids, dataset.doc_texts, dataset.query_ids,
                        dataset.query_texts, dataset.qrels, provenance)
