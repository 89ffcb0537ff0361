"""The retrieval cost of the compact embedding types, on the project's labelled set (stdlib docstrings: 200 judged
queries, 1,000 documents).

    python benchmarks/compact_retrieval.py [--model tiny] [--runtime torch] [--max-length 512] [--publish]

The corpus and queries are embedded once (float32, as the embedder gives them), then scored as `nvembed-trt eval
--embedding-type` scores them (nvembed_trt.evaluation.compact, over the front door's own binarisation and int8
codes): float (cosine), float16 (halves, exact search), int8 (codes from per-dimension ranges calibrated on the corpus
vectors, dot product of the codes), binary (Hamming distance on the packed sign bits) without and with rescoring at
several multipliers. Per type: nDCG@10, Recall@100, MRR@10, bytes per vector, the queries whose top 10 differs from
float's, and the nDCG@10 change against float with a 95 % paired bootstrap interval over the queries.

With --model tiny the weights are random (deterministic): the figures show each type's cost relative to float on
that model, not NV-Embed-v2's retrieval quality nor its compact types' cost. Writes
benchmarks/results/<host>/compact-retrieval.json (--publish: also published/cpu-2core-24gib/)."""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / platform.node()
PUBLISHED = HERE / "published" / "cpu-2core-24gib"
MULTIPLIERS = (1, 4, 10)
NAME = "compact-retrieval.json"


def embed_set(model: str, runtime: str, max_length: int, work: Path):
    """(data set, queries, documents, embedder label): the labelled set embedded once in float32."""
    from nvembed_trt.evaluation.embedders import EmbedderSpec, open_embedder
    from nvembed_trt.retrieval.stdlib_set import INSTRUCTION, stdlib_retrieval_set
    from nvembed_trt.source import resolve_model, tokenizer_for

    dataset = stdlib_retrieval_set()
    tokenizer = tokenizer_for(resolve_model(model, progress=False))
    encoder = None
    if runtime == "onnx":
        from nvembed_trt.export import onnx_from_model

        encoder = str(onnx_from_model(model, work / "export", parity=False).directory)
    spec = EmbedderSpec(runtime=runtime, model=model, encoder=encoder, max_length=max_length)
    embedder = open_embedder(spec, tokenizer)
    try:
        docs = embedder.embed(dataset.doc_texts, "")
        queries = embedder.embed(dataset.query_texts, INSTRUCTION)
    finally:
        embedder.close()
    return dataset, queries, docs, spec.label()


def measure(dataset, queries, docs) -> list[dict]:
    import numpy as np

    from nvembed_trt.evaluation.compact import CompactSettings, binary_scored, score_compact
    from nvembed_trt.evaluation.compare import paired_bootstrap

    def row(name: str, scored, how: dict) -> dict:
        delta = np.asarray([scored.per_query[q]["ndcg@10"] - base.per_query[q]["ndcg@10"] for q in dataset.query_ids])
        low, high = paired_bootstrap(delta)
        changed = sum(mine[:10] != theirs[:10] for mine, theirs in zip(scored.ranked, base.ranked))
        return {"type": name, "bytes_per_vector": how.get("bytes_per_vector", 4 * docs.shape[1]),
                "top10_changed": int(changed),
                **{k: round(v, 5) for k, v in scored.means.items()}, "ndcg@10_vs_float": round(float(delta.mean()), 5),
                "ndcg@10_vs_float_ci95": [round(low, 5), round(high, 5)], "how": how["how"],
                "search_s": round(how["search_s"], 3) if how.get("search_s") is not None else None}

    def timed(settings):
        start = time.perf_counter()
        scored, how = score_compact(dataset, queries, docs, settings)
        return scored, how | {"search_s": time.perf_counter() - start}

    base, how = timed(CompactSettings())
    rows = [row("float32", base, how)]
    halves, how = timed(CompactSettings(embedding_type="float16"))
    rows.append(row("float16", halves, how))
    codes, how = timed(CompactSettings(embedding_type="int8"))
    rows.append(row("int8", codes, how) | {"ranges": how["ranges"]["method"]})
    for multiplier in MULTIPLIERS:
        scored, how = timed(CompactSettings(embedding_type="binary", rescore_multiplier=multiplier))
        if multiplier == MULTIPLIERS[0]:
            plain = binary_scored(dataset, queries, docs, multiplier)[0]
            rows.append(row("binary (Hamming only)", plain, how | {
                "how": "sign bits packed MSB first (ubinary); ranked by Hamming distance alone", "search_s": None}))
        rows.append(row(f"binary + rescore x{multiplier} ({how['rescored_candidates']} candidates)", scored, how))
    return rows


def compact_markdown(payload: dict) -> str:
    """The table of one run (printed here; the Results page renders the published one)."""
    lines = [f"{payload['dataset']}, {payload['embedder']}, max length {payload['max_length']}, "
             f"{payload['dimensions']} dimensions; {payload['cpus']} CPUs, 1-minute load average "
             f"{payload['load_average_before'][0]:.1f} before and {payload['load_average_after'][0]:.1f} after.", "",
             f"**{payload['caveat']}**", "",
             "| type | bytes/vector | nDCG@10 | vs float (95 % CI) | top-10s changed | Recall@100 | MRR@10 | "
             "search + metrics s |",
             "|---|---|---|---|---|---|---|---|"]
    for r in payload["rows"]:
        low, high = r["ndcg@10_vs_float_ci95"]
        lines.append(f"| {r['type']} | {r['bytes_per_vector']:,} | {r['ndcg@10']:.4f} | {r['ndcg@10_vs_float']:+.4f} "
                     f"[{low:+.4f}, {high:+.4f}] | {r['top10_changed']} | {r['recall@100']:.4f} | {r['mrr@10']:.4f} | "
                     f"{'–' if r['search_s'] is None else r['search_s']} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--runtime", choices=("torch", "onnx"), default="torch")
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--publish", action="store_true", help=f"also copy the JSON to {PUBLISHED}")
    args = parser.parse_args()
    before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        dataset, queries, docs, label = embed_set(args.model, args.runtime, args.max_length, Path(tmp))
        embed_s = time.perf_counter() - start
    rows = measure(dataset, queries, docs)
    caveat = ("tiny has random (deterministic) weights: these figures show what each compact type costs relative to "
              "float on this model, not NV-Embed-v2's retrieval quality" if args.model == "tiny" else
              f"model {args.model}")
    result = {"created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"), "host": platform.node(),
              "cpus": os.cpu_count(), "model": args.model, "embedder": label, "max_length": args.max_length,
              "dimensions": int(docs.shape[1]), "embed_s": round(embed_s, 1),
              "dataset": f"stdlib docstrings ({len(dataset.query_ids)} judged queries, {len(dataset.doc_ids):,} "
                         "documents)", "caveat": caveat, "load_average_before": before,
              "load_average_after": os.getloadavg(), "rows": rows}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / NAME).write_text(json.dumps(result, indent=2) + "\n")
    print(compact_markdown(result), end="")
    print(f"wrote {RESULTS / NAME}")
    if args.publish:
        shutil.copyfile(RESULTS / NAME, PUBLISHED / NAME)
        print(f"published {PUBLISHED / NAME}")


if __name__ == "__main__":
    main()
