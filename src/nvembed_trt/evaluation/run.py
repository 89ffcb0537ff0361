"""One retrieval evaluation: embed queries (with the task's instruction) and documents (none, cached), then
scoring.score (exact search, metrics per query: the part the precision gate and `validate` share), or in a compact
type (compact.score_compact: int8 codes, or binary by Hamming distance with rescoring). The output
folder (written whole or not at all):

    report.json     sidecar: data set (hashes), embedder identity, instruction, max length, means, timings
    report.md       the same for people
    per_query.jsonl one line per judged query: its metrics and its top-10 document ids
    run.trec        the top-k ranking in TREC run format (query Q0 doc rank score tag), for trec_eval/ir-measures
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from ..console import note
from ..provenance import sidecar, write_json
from ..staging import staged_directory
from ..retrieval.beir import RetrievalSet, read_beir
from .cache import CorpusCache, token_counts
from .compact import CompactSettings, score_compact
from .embedders import EvalEmbedder, EmbedderSpec, identity_key, open_embedder
from .instructions import IGNORE_IDENTICAL_IDS, query_instruction, task_name
from ..retrieval.metrics import HEADLINE, MEASURES
from ..retrieval.scoring import TOP_K, Scored

REPORT, PER_QUERY, RUN = "report.json", "per_query.jsonl", "run.trec"


class EvalSettings(BaseModel):
    """What `nvembed-trt eval` runs: a BEIR folder and split, one embedder, the query instruction."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dataset: str
    split: str = "test"
    task: str | None = None              # an MTEB task name (its published instruction)
    instruction: str | None = None       # a task sentence or a whole "Instruct: ...\nQuery: " prefix
    embedder: EmbedderSpec
    top_k: int = TOP_K
    ignore_identical_ids: bool | None = None   # None: as the task does (ArguAna, Quora: yes)
    output: str
    cache_dir: str | None = None         # None: no corpus cache
    ray: bool = False                    # corpus through embed-corpus (Ray Data)
    overwrite: bool = False
    compact: CompactSettings = CompactSettings()   # the type the vectors are scored in (float: as given)


def _write_outputs(folder: Path, report: dict, scored: Scored) -> None:
    write_json(folder / REPORT, report)
    (folder / "report.md").write_text(report_markdown(report), encoding="utf-8")
    top = scored.top()
    with (folder / PER_QUERY).open("w", encoding="utf-8") as fh:
        for q in scored.query_ids:
            fh.write(json.dumps({"query_id": q, **scored.per_query[q], "top10": top[q]}) + "\n")
    tag = report["embedder"]["label"].replace(" ", "_")
    with (folder / RUN).open("w", encoding="utf-8") as fh:
        for q, docs, scores in zip(scored.query_ids, scored.ranked, scored.scores):
            fh.writelines(f"{q} Q0 {d} {r + 1} {s:.6f} {tag}\n" for r, (d, s) in enumerate(zip(docs, scores)))


def evaluate_embedder(dataset: RetrievalSet, embedder: EvalEmbedder, tokenizer, instruction: str,
                      cache: CorpusCache | None, top_k: int = TOP_K, ignore_identical_ids: bool = False,
                      ray: bool = False, progress: bool = True, compact: CompactSettings = CompactSettings()
                      ) -> tuple[Scored, dict]:
    """Embed (documents from the cache where valid), search in `compact`'s type, score; returns the figures and what
    it cost (`scoring`: the type and how it was searched)."""
    started = time.perf_counter()
    if cache is not None:
        docs, doc_truncated = cache.embeddings(progress, ray)
        cache_stats = cache.stats
    else:
        docs = embedder.embed(dataset.doc_texts, "")
        doc_truncated = token_counts(tokenizer, dataset.doc_texts, "", embedder.max_length)[1]
        cache_stats = {"folder": None, "reused": 0, "embedded": len(docs), "seconds": time.perf_counter() - started}
    t0 = time.perf_counter()
    queries = embedder.embed(dataset.query_texts, instruction)
    query_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    scored, scoring = score_compact(dataset, queries, docs, compact, identity_key(embedder.identity,
                                    embedder.max_length), top_k, ignore_identical_ids)
    search_s = time.perf_counter() - t0
    embedded = cache_stats["embedded"]
    timing = {"corpus_seconds": round(cache_stats["seconds"], 3), "documents_embedded": embedded,
              "documents_reused": cache_stats["reused"],
              "passages_per_s": round(embedded / cache_stats["seconds"], 2) if embedded else None,
              "query_seconds": round(query_s, 3), "queries_per_s": round(len(queries) / query_s, 2),
              "search_and_metrics_seconds": round(search_s, 3),
              "total_seconds": round(time.perf_counter() - started, 3)}
    truncation = {"documents_truncated": int(doc_truncated.sum()),
                  "queries_truncated": int(token_counts(tokenizer, dataset.query_texts, instruction,
                                                        embedder.max_length)[1].sum())}
    return scored, {"timing": timing, "cache": cache_stats, "truncation": truncation, "scoring": scoring}


def run_eval(settings: EvalSettings, progress: bool = True) -> tuple[dict, Path]:
    """`nvembed-trt eval`: read the data set (strictly, before any embedding), evaluate, write the folder."""
    from ..source import resolve_model, tokenizer_for

    dataset = read_beir(settings.dataset, settings.split)
    instruction, source = query_instruction(dataset.name, settings.task, settings.instruction)
    known = task_name(settings.task or dataset.name)
    ignore = settings.ignore_identical_ids if settings.ignore_identical_ids is not None else \
        known in IGNORE_IDENTICAL_IDS
    output = Path(settings.output)
    tokenizer = tokenizer_for(resolve_model(settings.embedder.model, progress=False))
    with staged_directory(output, settings.overwrite) as staging:
        embedder = open_embedder(settings.embedder, tokenizer)
        try:
            cache = CorpusCache(Path(settings.cache_dir), dataset, embedder, tokenizer) if settings.cache_dir \
                else None
            if progress:
                note(f"{dataset.name} ({settings.split}): {len(dataset.query_ids):,} judged queries, "
                     f"{len(dataset.doc_ids):,} documents; {embedder.name} ({embedder.recipe}); queries: {source}")
            scored, cost = evaluate_embedder(dataset, embedder, tokenizer, instruction, cache, settings.top_k,
                                             ignore, settings.ray, progress, settings.compact)
        finally:
            embedder.close()
        report = sidecar("retrieval-eval", dataset=dataset.describe(),
                         embedder={"label": settings.embedder.label(), "recipe": embedder.recipe,
                                   "spec": settings.embedder.model_dump(), "identity": embedder.identity},
                         task=known, instruction=instruction, instruction_source=source,
                         max_length=embedder.max_length, top_k=settings.top_k, ignore_identical_ids=ignore,
                         metrics=scored.means, headline=HEADLINE, **cost)
        _write_outputs(staging, report, scored)
    return report, output


def _scoring_lines(scoring: dict | None) -> list[str]:
    if not scoring:
        return []
    lines = [f"- scored as {scoring['type']}: {scoring['how']}"]
    if "ranges" in scoring:
        lines.append(f"- int8 ranges: {scoring['ranges']['method']}")
    if "without_rescoring" in scoring:
        lines.append(f"- binary without rescoring (Hamming order only): nDCG@10 "
                     f"{scoring['without_rescoring'][HEADLINE]:.5f}; the table below is with rescoring")
    return lines


def report_markdown(report: dict) -> str:
    d, m, t = report["dataset"], report["metrics"], report["timing"]
    lines = [f"# Retrieval evaluation: {d['name']} ({d['split']})", "",
             f"- embedder: {report['embedder']['label']} (recipe {report['embedder']['recipe']}), max length "
             f"{report['max_length']} tokens",
             f"- queries: {d['queries']:,} judged; documents: {d['documents']:,}; judgements: {d['judgements']:,}",
             f"- query instruction: {report['instruction']!r} ({report['instruction_source']})",
             f"- truncated at max length: {report['truncation']['documents_truncated']:,} documents, "
             f"{report['truncation']['queries_truncated']:,} queries",
             f"- time: corpus {t['corpus_seconds']} s ({t['documents_embedded']:,} embedded, "
             f"{t['documents_reused']:,} from the cache), queries {t['query_seconds']} s "
             f"({t['queries_per_s']} /s), search + metrics {t['search_and_metrics_seconds']} s",
             *_scoring_lines(report.get("scoring")), "",
             "| " + " | ".join(MEASURES) + " |", "|" + "---|" * len(MEASURES),
             "| " + " | ".join(f"{m[k]:.5f}" for k in MEASURES) + " |"]
    return "\n".join(lines) + "\n"
