"""nvembed-trt validate / bench: parity of every runtime and recipe on this host, and latency/throughput."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..embedder import DEVICES, DTYPES, Embedder
from ..recipes import RECIPES
from ..validation.bench import run_bench
from ..validation.runtimes import discover, torch_runtime
from ..validation.validate import run_validation

RUNTIMES = ("torch", "onnx", "engine", "triton")


def _choices(allowed) -> callable:
    def parse(text: str) -> list[str]:
        items = [x for x in text.split(",") if x]
        unknown = [x for x in items if x not in allowed]
        if unknown or not items:
            raise argparse.ArgumentTypeError(f"unknown {unknown or text!r}; choose from {', '.join(allowed)}")
        return items
    return parse


def _positive_ints(text: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers >= 1, got {text!r}")
    return values


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="preset name or checkpoint directory")
    p.add_argument("--name", help="artifact name under export/, engines/, triton_repo/ (default: the model's)")
    p.add_argument("--runtimes", type=_choices(RUNTIMES), default=list(RUNTIMES),
                   help=f"comma list of {', '.join(RUNTIMES)}")
    p.add_argument("--recipes", type=_choices(tuple(RECIPES)), help="comma list of recipes (default: every one found)")
    p.add_argument("--device", choices=DEVICES, default="cpu")
    p.add_argument("--output-dir", type=Path, help="default: benchmarks/results/<host>/")
    p.add_argument("--tritonserver", type=Path, help="the tritonserver for the triton runtime (NVIDIA's image for a "
                                                     "TensorRT plan: /opt/tritonserver/bin/tritonserver); default "
                                                     "the one bundled with nvidia-pytriton")


def add_parser(sub: argparse._SubParsersAction) -> None:
    v = sub.add_parser("validate", help="compare every runtime and recipe with the fp32 reference",
                       description="Embed a real-text validation set with every runtime and recipe available here "
                                   "and compare with the PyTorch reference (fp32, no autocast, unless told); the "
                                   "report states the reference used. Exits 1 when a threshold fails.")
    _common(v)
    v.add_argument("--pairs", type=int, default=160, help="query/passage pairs of the validation set")
    v.add_argument("--ranking-queries", type=int, default=200,
                   help="judged queries of the ranking slice (4 distractor documents each; at most 200)")
    v.add_argument("--reference-dtype", choices=tuple(DTYPES), default="float32",
                   help="weight dtype of the PyTorch reference (default float32; thresholds assume it)")
    v.add_argument("--reference-autocast", action="store_true",
                   help="run the reference under torch.autocast('cuda', float16) as upstream does on a GPU "
                        "(needs --device cuda; with float32 weights this is upstream's GPU forward)")
    v.set_defaults(run=run_validate)
    b = sub.add_parser("bench", help="latency and throughput of every runtime, with physical floors on GPUs",
                       description="Latency p50/p90/p99 and throughput over batch x sequence grids, Triton over a "
                                   "concurrency sweep, ensemble overhead, tokenizer speed, SLO check.")
    _common(b)
    b.add_argument("--dtype", choices=tuple(DTYPES), default="float32", help="PyTorch runtime dtype")
    b.add_argument("--batch", type=_positive_ints, default=[1, 8, 32])
    b.add_argument("--seq", type=_positive_ints, default=[32, 128, 512, 2048])
    b.add_argument("--concurrency", type=_positive_ints, default=[1, 8, 32])
    b.add_argument("--slo-ms", type=float, default=150.0, help="p95 bound for a one-query request")
    b.add_argument("--warmup", type=int, default=2)
    b.add_argument("--iters", type=int, default=10)
    b.set_defaults(run=run_bench_cli)


def _setup(args, dtype="float32", autocast=False):
    embedder = Embedder.from_model(args.model, args.device, dtype, progress=False, autocast=autocast)
    name = args.name or Path(args.model).name
    found, missing = discover(name, embedder, args.runtimes, args.recipes, tritonserver=args.tritonserver)
    return embedder, name, found, missing


def run_validate(args: argparse.Namespace) -> int:
    embedder, name, found, missing = _setup(args, args.reference_dtype, args.reference_autocast)
    try:
        report, path = run_validation(args.model, torch_runtime(embedder), found, missing, args.pairs, args.output_dir,
                                      args.ranking_queries)
    finally:
        for runtime in found:
            runtime.close()
    print(path.with_suffix(".md").read_text(), end="")
    print(f"wrote {path} and {path.with_suffix('.md')}")
    return 0 if report["passed"] else 1


def run_bench_cli(args: argparse.Namespace) -> int:
    embedder, name, found, missing = _setup(args, args.dtype)
    try:
        report, path = run_bench(args.model, embedder.tokenizer, found, missing, args.batch,
                                 args.seq, args.concurrency, args.slo_ms, args.warmup,
                                 args.iters, cfg=embedder.model.cfg, results_dir=args.output_dir)
    finally:
        for runtime in found:
            runtime.close()
    print(path.with_suffix(".md").read_text(), end="")
    print(f"wrote {path}, {path.with_suffix('.md')} and plots beside them")
    return 0
