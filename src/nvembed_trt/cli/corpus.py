"""nvembed-trt embed-corpus: JSON Lines / Parquet corpora -> resumable Parquet shards of embeddings, on Ray Data."""

from __future__ import annotations

import argparse

from ..errors import InputError
from ..tokenizer import INPUT_TYPES, TRUNCATE_MODES


def add_parser(sub: argparse._SubParsersAction) -> None:
    from ..corpus.settings import (DEFAULT_BATCH_ROWS, DEFAULT_BATCH_TOKENS, DEFAULT_MAX_LENGTH,
                                   DEFAULT_SHARD_ROWS)
    from ..serving.compact import EMBEDDING_TYPES

    p = sub.add_parser("embed-corpus", help="embed a whole corpus on Ray (local or a cluster), resumably",
                       description="Embed JSON Lines / Parquet files on Ray Data: read tasks feed an actor pool (one "
                                   "encoder per actor) that packs length-sorted token-budget batches and writes "
                                   "Parquet shards (id, embedding, n_tokens, truncated). Rerunning the same command "
                                   "embeds only what is missing. Bad rows go to OUTPUT/rejects.jsonl with the reason.")
    p.add_argument("--input", required=True, action="append", dest="inputs", metavar="PATH",
                   help="a .jsonl/.parquet file, a folder (all such files under it) or a glob; repeatable")
    p.add_argument("--output", required=True, help="output folder (created; an earlier run's folder is resumed)")
    p.add_argument("--model", required=True, help="preset name or checkpoint directory (tokenizer, fingerprint)")
    p.add_argument("--runtime", required=True, choices=("onnx", "engine", "torch", "triton"),
                   help="onnx: ONNX Runtime on --encoder; engine: TensorRT plan in --encoder (one GPU per worker); "
                        "torch: the PyTorch reference; triton: a running server at --url")
    p.add_argument("--encoder", help="export/recipe folder (model.onnx) or engine folder (model.plan)")
    p.add_argument("--url", help="triton: host:port (Triton KServe) or http://host:port/v1 (the front door of "
                                 "`nvembed-trt serve`; its API key from $NVEMBED_TRT_API_KEY)")
    p.add_argument("--protocol", choices=("http", "grpc"), default="http", help="triton: KServe protocol")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--input-type", choices=tuple(INPUT_TYPES), help="query: the standard instruction")
    group.add_argument("--instruction", help="instruction prefix for every row")
    p.add_argument("--truncate", default="END", type=str.upper, choices=TRUNCATE_MODES,
                   help="END keeps the start (default); START keeps the end (BOS and the instruction stay); NONE "
                        "rejects over-long rows")
    p.add_argument("--max-length", type=int,
                   help=f"tokens per row (default {DEFAULT_MAX_LENGTH}, or the engine's / server's limit)")
    p.add_argument("--batch-tokens", type=int,
                   help=f"padded tokens per encoder call, rows x longest row (default: the engine's smallest "
                        f"profile capacity, else {DEFAULT_BATCH_TOKENS})")
    p.add_argument("--batch-rows", type=int, default=DEFAULT_BATCH_ROWS, help="rows per encoder call at most")
    p.add_argument("--shard-rows", type=int, default=DEFAULT_SHARD_ROWS,
                   help="rows per worker call, sorted and packed together and written as one shard")
    p.add_argument("--workers", type=int, help="actors (default: one per GPU, or the cluster's CPUs less one)")
    p.add_argument("--cpus-per-worker", type=float, default=1.0)
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="torch runtime")
    p.add_argument("--dtype", choices=("float32", "float16", "bfloat16"), default="float32", help="torch runtime")
    p.add_argument("--text-column", default="text")
    p.add_argument("--id-column", default="id")
    p.add_argument("--embedding-type", choices=EMBEDDING_TYPES, default="float",
                   help="store the vectors as the front door serves this type: float32, float16 (half floats), "
                        "binary / ubinary (sign bits packed, dimensions / 8 int8 / uint8 values), int8 / uint8 "
                        "(scaled by --output-ranges)")
    p.add_argument("--output-ranges", help="int8 / uint8: a repository (or folder) holding the output_ranges.json "
                                           "`nvembed-trt output-ranges` calibrated")
    p.add_argument("--ray-address", help="auto, host:port or ray://host:10001 (default: $RAY_ADDRESS, as set by "
                                         "`ray job submit`, else a private local Ray)")
    p.add_argument("--overwrite", action="store_true", help="start over in a folder an earlier run wrote")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from ..corpus import CorpusSettings, embed_corpus

    fields = {k: v for k, v in vars(args).items() if k not in ("command", "run")}
    try:
        settings = CorpusSettings(**fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise InputError(f"--{str(first['loc'][0]).replace('_', '-')}: {first['msg']}") from exc
    meta = embed_corpus(settings)
    counts, last = meta["counts"], meta["runs"][-1]
    kind = meta["output"]["embedding_type"]
    dim = (f" of {meta['output']['dim']} {kind if kind != 'float' else 'float32'} values"
           if meta["output"]["dim"] else "")
    print(f"wrote {counts['embedded']:,} embeddings{dim} in {meta['output']['shards']} shard(s) to "
          f"{settings.output}/embeddings/ ({last['embedded']:,} this run at {last['rows_per_s'] or 0:,.1f} rows/s); "
          f"{counts['rejected']:,} rejected: {settings.output}/rejects.jsonl; how it was made: "
          f"{settings.output}/corpus.json")
    return 0
