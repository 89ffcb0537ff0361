"""nvembed-trt eval / eval-data: retrieval quality (nDCG@10, Recall@100, MRR@10, MAP) of any embedder on a BEIR-layout
data set, comparisons of two evaluations, and the project's own labelled set."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..errors import InputError
from ..evaluation.compact import EVAL_TYPES, RESCORE_MULTIPLIER, RESCORED_DEPTH


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="retrieval metrics of an embedder on a BEIR-layout data set, or compare two runs",
                       description="Embed a BEIR-layout data set (corpus.jsonl, queries.jsonl, qrels/SPLIT.tsv) with "
                                   "one embedder: queries with the task's instruction, documents with none (cached as "
                                   "Parquet shards); exact search; nDCG@10, Recall@100, MRR@10, MAP per query "
                                   "(ir-measures). With --compare A B: per-query deltas of two eval outputs, a "
                                   "paired bootstrap CI on nDCG@10, the queries whose top-10 changed most; exits 1 "
                                   "when --max-ndcg-drop is exceeded.")
    p.add_argument("--data", help="the data set folder (BEIR layout)")
    p.add_argument("--split", default="test", help="qrels/SPLIT.tsv (default test)")
    p.add_argument("--runtime", choices=("torch", "onnx", "engine", "url"),
                   help="torch: the PyTorch reference of --model; onnx: ONNX Runtime on --encoder; engine: a "
                        "TensorRT engine folder (GPU host); url: a deployment at --url")
    p.add_argument("--model", default="tiny",
                   help="preset or checkpoint folder: the reference (torch) and the tokenizer (default tiny)")
    p.add_argument("--encoder", help="onnx: an export or recipe folder (model.onnx); engine: an engine folder")
    p.add_argument("--url", help="http://host:port/v1 (nvembed-trt serve; API key from $NVEMBED_TRT_API_KEY) or "
                                 "host:port (Triton's KServe endpoint)")
    p.add_argument("--protocol", choices=("http", "grpc"), default="http", help="KServe protocol")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--task", help="an MTEB retrieval task (SciFact, NFCorpus, ...): its published instruction; "
                                      "default: the task the data set's folder name denotes")
    group.add_argument("--instruction", help="the query instruction: a task sentence or a whole "
                                             "'Instruct: ...\\nQuery: ' prefix ('' for none)")
    p.add_argument("--max-length", type=int, default=4096, help="tokens per text (default 4096, upstream encode())")
    p.add_argument("--batch-size", type=int, default=16, help="texts per encoder call")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="torch runtime")
    p.add_argument("--dtype", choices=("float32", "float16", "bfloat16"), default="float32", help="torch runtime")
    p.add_argument("--autocast", action="store_true",
                   help="torch on cuda: run under torch.autocast('cuda', float16) as upstream does on a GPU")
    p.add_argument("--top-k", type=int, default=1000, help="documents ranked per query (default 1000)")
    p.add_argument("--ignore-identical-ids", action=argparse.BooleanOptionalAction, default=None,
                   help="a document with the query's id is not a hit (default: as the task does; ArguAna, Quora)")
    p.add_argument("--output", help="eval: the output folder (report.json, report.md, per_query.jsonl, run.trec); "
                                    "--compare: a JSON file for the comparison")
    p.add_argument("--cache-dir", type=Path,
                   help="corpus embedding cache (default $NVEMBED_TRT_CACHE/eval, i.e. ~/.cache/nvembed-trt/eval)")
    p.add_argument("--no-cache", action="store_true", help="embed the corpus afresh and keep nothing")
    p.add_argument("--ray", action="store_true",
                   help="embed the corpus with embed-corpus on Ray Data (large corpora; the corpus extra)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --output folder")
    p.add_argument("--embedding-type", choices=EVAL_TYPES, default="float",
                   help="score the vectors as the front door's compact type: float16 (halves, exact search), int8 "
                        "codes (ranges calibrated on the "
                        "corpus vectors, dot product of the codes) or binary (Hamming distance on the packed sign "
                        "bits, then rescoring); default float")
    p.add_argument("--rescore-multiplier", type=int,
                   help=f"binary: rescore the best N x {RESCORED_DEPTH} by Hamming with the float query (default "
                        f"{RESCORE_MULTIPLIER}: {RESCORE_MULTIPLIER * RESCORED_DEPTH})")
    p.add_argument("--compare", nargs=2, metavar=("A", "B"), help="two eval output folders: B against A")
    p.add_argument("--max-ndcg-drop", type=float,
                   help="--compare: exit 1 when B's mean nDCG@10 is lower than A's by more than this")
    p.set_defaults(run=run)
    d = sub.add_parser("eval-data", help="write the project's labelled retrieval set (stdlib docstrings) as BEIR",
                       description="Write the labelled set the precision gate's ranking slice uses (summary lines "
                                   "of the standard library's docstrings as queries, their bodies as documents; "
                                   "disjoint from calibration) in BEIR's layout, with dataset.json saying how.")
    d.add_argument("--output", required=True, type=Path)
    d.add_argument("--queries", type=int, default=200,
                   help="judged queries, 4 distractor documents each (default 200, the gate's slice; at most 200)")
    d.add_argument("--overwrite", action="store_true")
    d.set_defaults(run=run_data)


def _evaluate(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from ..evaluation.compact import CompactSettings
    from ..evaluation.embedders import EmbedderSpec
    from ..evaluation.run import EvalSettings, run_eval
    from ..presets import cache_dir

    if not args.data or not args.runtime or not args.output:
        raise InputError("eval needs --data, --runtime and --output (or --compare A B)")
    cache = None if args.no_cache else str(args.cache_dir or cache_dir() / "eval")
    try:
        spec = EmbedderSpec(runtime=args.runtime, model=args.model, encoder=args.encoder, url=args.url,
                            protocol=args.protocol, max_length=args.max_length, batch_size=args.batch_size,
                            device=args.device, dtype=args.dtype, autocast=args.autocast)
        settings = EvalSettings(dataset=args.data, split=args.split, task=args.task, instruction=args.instruction,
                                embedder=spec, top_k=args.top_k, ignore_identical_ids=args.ignore_identical_ids,
                                output=args.output, cache_dir=cache, ray=args.ray, overwrite=args.overwrite,
                                compact=CompactSettings(embedding_type=args.embedding_type,
                                                        rescore_multiplier=args.rescore_multiplier))
    except ValidationError as exc:
        first = exc.errors()[0]
        raise InputError(f"--{str(first['loc'][-1]).replace('_', '-')}: {first['msg']}") from exc
    if settings.top_k < 10 or settings.embedder.batch_size < 1:
        raise InputError(f"--top-k must be >= 10 (got {settings.top_k}) and --batch-size >= 1 "
                         f"(got {settings.embedder.batch_size})")
    report, output = run_eval(settings)
    print((output / "report.md").read_text(), end="")
    print(f"wrote {output}/ (report.json, report.md, per_query.jsonl, run.trec)")
    return 0


def _compare(args: argparse.Namespace) -> int:
    from ..evaluation.compare import compare, compare_markdown
    from ..provenance import write_json

    if args.data or args.runtime:
        raise InputError("--compare takes two eval output folders; --data and --runtime are for a new evaluation")
    record = compare(args.compare[0], args.compare[1], args.max_ndcg_drop)
    print(compare_markdown(record), end="")
    if args.output:
        write_json(Path(args.output), record)
        print(f"wrote {args.output}")
    return 0 if record["passed"] else 1


def run(args: argparse.Namespace) -> int:
    return _compare(args) if args.compare else _evaluate(args)


def run_data(args: argparse.Namespace) -> int:
    from ..retrieval.beir import write_beir
    from ..retrieval.stdlib_set import stdlib_retrieval_set

    if not 1 <= args.queries <= 200:
        raise InputError(f"--queries must be 1..200, got {args.queries}")
    dataset = stdlib_retrieval_set(args.queries)
    write_beir(dataset, args.output, args.overwrite)
    print(json.dumps({"wrote": str(args.output), "documents": len(dataset.doc_ids),
                      "queries": len(dataset.query_ids), "instruction": dataset.provenance["instruction"]}))
    return 0
