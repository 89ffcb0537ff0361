"""nvembed-trt bench-serving: the served path against its encoder alone, in one run (ratios, overhead, padding)."""

from __future__ import annotations

import argparse
from pathlib import Path

from .validate import _positive_ints


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench-serving", help="served throughput and overhead against the encoder alone",
                       description="Start `serve` on free ports; on a seeded mixed-length workload of real text "
                                   "measure the bare encoder in its best packed batches (the ceiling), texts/s "
                                   "through /v1/embeddings and KServe at each concurrency, one-query overhead and "
                                   "padding efficiency; print served/ceiling ratios; write JSON, Markdown and a plot.")
    p.add_argument("--repo", required=True, type=Path, help="a repository made by nvembed-trt triton-repo")
    p.add_argument("--concurrency", type=_positive_ints, default=[1, 8, 64], help="front-door clients (default "
                                                                                  "1,8,64)")
    p.add_argument("--kserve-concurrency", type=_positive_ints, default=[8, 64], help="KServe clients (default 8,64)")
    p.add_argument("--texts", type=int, default=1200, help="texts in the workload (default 1200)")
    p.add_argument("--iters", type=int, default=200, help="one-query requests for the overhead (default 200)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--serve-arg", action="append", default=[], help="extra `serve` option (repeatable), e.g. "
                                                                     "--serve-arg=--max-batch-tokens=8192")
    p.add_argument("--tritonserver", type=Path, help="the tritonserver `serve` starts (NVIDIA's image for a TensorRT "
                                                     "plan: /opt/tritonserver/bin/tritonserver)")
    p.add_argument("--aiperf", type=Path, help="an aiperf executable (pip install aiperf, in its own venv) for an "
                                               "independent cross-check at concurrency 8")
    p.add_argument("--output-dir", type=Path, help="default: benchmarks/results/<host>/")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..validation.serving_bench import run_serving_bench

    serve_args = tuple(args.serve_arg) + (("--tritonserver", str(args.tritonserver)) if args.tritonserver else ())
    report, path = run_serving_bench(args.repo, args.concurrency, args.texts, args.iters, args.seed,
                                     args.kserve_concurrency, serve_args, args.output_dir, args.aiperf)
    print(path.with_suffix(".md").read_text(), end="")
    print(f"wrote {path}, {path.with_suffix('.md')} and {path.parent / (path.stem + '-serving.png')}")
    return 0
