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
    p.add_argument("--open-loop", choices=("queries", "mixed"), help="a simulated repository (triton-repo "
                   "--simulate) loaded open-loop at 20-100 %% of its capacity and at saturation with each --workers "
                   "count: latency, duty cycle, CPU per request and text, cores to feed the GPU (docs/scaling.md)")
    p.add_argument("--workers", default="1,2", help="front-door worker counts for --open-loop (default 1,2)")
    p.add_argument("--seconds", type=float, default=8.0, help="seconds per load level for --open-loop (default 8)")
    p.set_defaults(run=run)

    g = sub.add_parser("loadgen", help="open-loop load on a running front door: Poisson arrivals at a set rate",
                       description="Send /v1/embeddings requests at Poisson arrival times at --rate per second for "
                                   "--duration seconds, whatever the server answers (open loop), over raw keep-alive "
                                   "connections; print latency percentiles of the answered (200) requests, counted "
                                   "from each request's scheduled arrival, status counts, the achieved rate and the "
                                   "generator's own CPU per request.")
    g.add_argument("--url", default="http://127.0.0.1:8080/v1", help="the front door (default %(default)s)")
    g.add_argument("--rate", type=float, required=True, help="requests per second")
    g.add_argument("--duration", type=float, default=10.0, help="seconds of arrivals (default 10)")
    g.add_argument("--warmup", type=float, default=1.0, help="first seconds sent but not counted (default 1)")
    g.add_argument("--input", required=True, help="texts (JSON Lines or plain text), used in turn")
    g.add_argument("--texts-per-request", type=int, default=1)
    g.add_argument("--input-type", choices=("query", "passage"), default="query")
    g.add_argument("--model", help="the served model id (default: the first of GET /v1/models)")
    g.add_argument("--api-key", help="the front door's API key (default: $NVEMBED_TRT_API_KEY)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--output", type=Path, help="also write the report as JSON here")
    g.set_defaults(run=run_loadgen)


def run(args: argparse.Namespace) -> int:
    if args.open_loop:
        from ..validation.open_loop_bench import markdown, run_open_loop_bench

        report, path = run_open_loop_bench(args.repo, args.open_loop, tuple(_positive_ints(args.workers)),
                                           args.seconds, seed=args.seed, results_dir=args.output_dir)
        path.with_suffix(".md").write_text(markdown(report))
        print(markdown(report), end="")
        print(f"wrote {path} and {path.with_suffix('.md')}")
        return 0
    from ..validation.serving_bench import run_serving_bench

    serve_args = tuple(args.serve_arg) + (("--tritonserver", str(args.tritonserver)) if args.tritonserver else ())
    report, path = run_serving_bench(args.repo, args.concurrency, args.texts, args.iters, args.seed,
                                     args.kserve_concurrency, serve_args, args.output_dir, args.aiperf)
    print(path.with_suffix(".md").read_text(), end="")
    print(f"wrote {path}, {path.with_suffix('.md')} and {path.parent / (path.stem + '-serving.png')}")
    return 0


def run_loadgen(args: argparse.Namespace) -> int:
    import os

    import orjson

    from ..client import FrontDoorClient
    from ..errors import InputError
    from ..provenance import sidecar, write_json
    from ..serving.settings import API_KEY_ENV
    from ..textio import read_texts
    from ..validation.loadgen import LoadSpec, run_open_loop

    if not args.rate > 0 or not args.duration > args.warmup >= 0 or args.texts_per_request < 1:
        raise InputError(f"need --rate > 0, --duration > --warmup >= 0 and --texts-per-request >= 1, got "
                         f"{args.rate}, {args.duration}, {args.warmup}, {args.texts_per_request}")
    key = args.api_key or os.environ.get(API_KEY_ENV)
    model = args.model or FrontDoorClient(args.url, api_key=key).model
    texts = read_texts(args.input).texts
    n = args.texts_per_request
    groups = [[texts[(i + j) % len(texts)] for j in range(n)] for i in range(0, len(texts), n)]
    bodies = tuple(orjson.dumps({"model": model, "input": g, "input_type": args.input_type,
                                 "encoding_format": "base64"}) for g in groups)
    headers = (("Content-Type", "application/json"),) + ((("Authorization", f"Bearer {key}"),) if key else ())
    report = run_open_loop(LoadSpec(args.url.rstrip("/") + "/embeddings", args.rate, args.duration, bodies,
                                    (n,) * len(bodies), headers, args.warmup, seed=args.seed))
    if args.output:
        write_json(args.output, sidecar("open-loop-load", url=args.url, model=model, input_type=args.input_type,
                                        texts_per_request=n, **report))
    p = {k: "-" if report[k] is None else f"{report[k]:.1f}" for k in ("p50_ms", "p90_ms", "p99_ms")}
    print(f"offered {report['offered_per_s']:g}/s ({report['sent']} sent, {report['not_sent']} not sent) -> "
          f"{report['achieved_per_s']:.1f} answered 200/s ({report['texts_per_s']:.1f} texts/s); latency from the "
          f"scheduled arrival p50 {p['p50_ms']} ms, p90 {p['p90_ms']} ms, p99 {p['p99_ms']} ms; statuses "
          f"{report['statuses']}; generator CPU {report['generator_cpu_us_per_request']:.0f} us/request, send lag "
          f"p99 {report['send_lag_p99_ms']:.1f} ms")
    return 0
