"""Retrieval evaluation throughput per runtime, and what the ranking slice adds to the precision gate, on this machine.

    python benchmarks/eval_throughput.py [--model tiny] [--max-length 64] [--workdir DIR]

Measured on the project's labelled set (stdlib docstrings: 200 judged queries, 1,000 documents):
  - `evaluate_embedder` with each runtime that runs on a CPU: the PyTorch reference, the ONNX export (ONNX Runtime),
    and one served deployment (`nvembed-trt serve` on free ports: the front door and Triton's KServe endpoint);
    corpus passages/s (nothing cached), queries/s, search + metrics seconds, and a second run from the cache;
  - the gate's cost: an fp32 graph gated against itself (verify_recipe), with the held-out slices alone and with the
    ranking slice, wall seconds each, so the slice's share of the gate's time is measured, not estimated.
Prints a table and writes benchmarks/results/<host>/eval-throughput.json with the CPU count and the load average
before and after: other jobs share these machines, and a loaded machine slows every figure here.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / platform.node()


def _runtimes(model: str, max_length: int, export: Path, served) -> dict:
    from nvembed_trt.evaluation.embedders import EmbedderSpec

    return {"torch": EmbedderSpec(runtime="torch", model=model, max_length=max_length),
            "onnx": EmbedderSpec(runtime="onnx", model=model, encoder=str(export), max_length=max_length),
            "front-door": EmbedderSpec(runtime="url", model=model, url=served.api_url, max_length=max_length),
            "kserve-http": EmbedderSpec(runtime="url", model=model, url=served.kserve["http"],
                                        max_length=max_length)}


def measure_runtimes(model: str, max_length: int, work: Path) -> list[dict]:
    from nvembed_trt.evaluation.cache import CorpusCache
    from nvembed_trt.evaluation.embedders import open_embedder
    from nvembed_trt.evaluation.run import evaluate_embedder
    from nvembed_trt.retrieval.stdlib_set import INSTRUCTION, stdlib_retrieval_set
    from nvembed_trt.export import onnx_from_model
    from nvembed_trt.serving.process import ServeProcess
    from nvembed_trt.source import resolve_model, tokenizer_for
    from nvembed_trt.triton.repository import RepoSettings, repo_from_encoder

    dataset = stdlib_retrieval_set()
    tokenizer = tokenizer_for(resolve_model(model, progress=False))
    export = onnx_from_model(model, work / "export", parity=False).directory
    repo = repo_from_encoder(model, export, work / "repo", RepoSettings(max_batch_size=8,
                                                                          max_length=max_length)).directory
    rows = []
    with ServeProcess(repo) as served:
        for name, spec in _runtimes(model, max_length, export, served).items():
            embedder = open_embedder(spec, tokenizer)
            try:
                figures = []
                for attempt in ("cold", "cached"):
                    cache = CorpusCache(work / "cache", dataset, embedder, tokenizer)
                    scored, cost = evaluate_embedder(dataset, embedder, tokenizer, INSTRUCTION, cache,
                                                     progress=False)
                    figures.append(cost["timing"])
            finally:
                embedder.close()
            cold, cached = figures
            rows.append({"runtime": name, "ndcg@10": round(scored.means["ndcg@10"], 5),
                         "passages_per_s": cold["passages_per_s"], "queries_per_s": cold["queries_per_s"],
                         "search_and_metrics_s": cold["search_and_metrics_seconds"],
                         "cold_total_s": cold["total_seconds"], "cached_total_s": cached["total_seconds"],
                         "cached_documents_reused": cached["documents_reused"]})
            print(rows[-1], flush=True)
    return rows


def measure_gate(model: str, work: Path) -> dict:
    """verify_recipe on the fp32 export against itself: held-out slices only, then with the ranking slice."""
    from nvembed_trt.retrieval.ranking import ranking_slice, slice_figures
    from nvembed_trt.precision.heldout import sliced_heldout
    from nvembed_trt.precision.verify import embed_heldout, graph_embedder
    from nvembed_trt.source import resolve_model, tokenizer_for

    tokenizer = tokenizer_for(resolve_model(model, progress=False))
    embedder = graph_embedder(work / "export" / "model.onnx", "fp32", "onnxruntime", tokenizer, 512)
    heldout, ranking = sliced_heldout(512), ranking_slice()
    start = time.perf_counter()
    embed_heldout(embedder, heldout)
    heldout_s = time.perf_counter() - start
    start = time.perf_counter()
    slice_figures(ranking, embedder.embed)
    ranking_s = time.perf_counter() - start
    # a gate embeds its candidate on both, and the fp32 reference once per graph (cached for further recipes)
    return {"runtime": "onnxruntime (fp32 graph, max length 512)", "heldout_rows": heldout.rows,
            "ranking_texts": len(ranking.doc_ids) + len(ranking.query_ids), "heldout_s": round(heldout_s, 2),
            "ranking_slice_s": round(ranking_s, 2),
            "ranking_share_of_gate": round(ranking_s / (heldout_s + ranking_s), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--workdir", type=Path)
    args = parser.parse_args()
    before = os.getloadavg()
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        work = Path(tmp)
        rows = measure_runtimes(args.model, args.max_length, work)
        gate = measure_gate(args.model, work)
    result = {"created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "host": platform.node(), "cpus": os.cpu_count(), "model": args.model, "max_length": args.max_length,
              "dataset": "stdlib-docstrings (200 queries, 1,000 documents)", "load_average_before": before,
              "load_average_after": os.getloadavg(), "runtimes": rows, "gate": gate}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "eval-throughput.json").write_text(json.dumps(result, indent=2) + "\n")
    print("| runtime | nDCG@10 | passages/s | queries/s | search+metrics s | cold s | cached s |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['runtime']} | {r['ndcg@10']} | {r['passages_per_s']} | {r['queries_per_s']} | "
              f"{r['search_and_metrics_s']} | {r['cold_total_s']} | {r['cached_total_s']} |")
    print(f"gate: held-out {gate['heldout_s']} s, ranking slice {gate['ranking_slice_s']} s "
          f"({gate['ranking_share_of_gate']:.0%} of the gate's embedding time); load average {before} -> "
          f"{result['load_average_after']}")
    print(f"wrote {RESULTS / 'eval-throughput.json'}")


if __name__ == "__main__":
    main()
