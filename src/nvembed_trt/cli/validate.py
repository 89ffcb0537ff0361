"""nvembed-trt validate / bench: parity of every runtime and recipe on this host, and latency/throughput."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..embedder import DEVICES, DTYPES, Embedder
from ..errors import InputError
from ..recipes import RECIPES
from ..serving.settings import API_KEY_ENV
from ..validation.bench import run_bench
from ..validation.drift import DriftBudget
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


def _common(p: argparse.ArgumentParser, model_required: bool = True) -> None:
    p.add_argument("--model", required=model_required,
                   help="preset name or checkpoint directory" + ("" if model_required else " (not with --compare)"))
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
                                   "report states the reference used. Exits 1 when a threshold fails. With "
                                   "--compare A B: the drift a mixed fleet of two deployments of one model would "
                                   "see instead (no --model, no reference).")
    _common(v, model_required=False)
    v.add_argument("--pairs", type=int, default=160, help="query/passage pairs of the validation set (or of the "
                                                          "held-out set --compare embeds)")
    v.add_argument("--ranking-queries", type=int, default=200,
                   help="judged queries of the ranking slice (4 distractor documents each; at most 200)")
    v.add_argument("--reference-dtype", choices=tuple(DTYPES), default="float32",
                   help="weight dtype of the PyTorch reference (default float32; thresholds assume it)")
    v.add_argument("--reference-autocast", action="store_true",
                   help="run the reference under torch.autocast('cuda', float16) as upstream does on a GPU "
                        "(needs --device cuda; with float32 weights this is upstream's GPU forward)")
    fleet = v.add_argument_group("mixed fleet (--compare)")
    fleet.add_argument("--compare", nargs=2, metavar=("A", "B"),
                       help="two model repository folders (served here on free loopback ports, one after the other, "
                            "with --tritonserver if given) or front-door URLs (http://host:port/v1; API key from "
                            f"${API_KEY_ENV}): the row cosine and the top-10 agreement when the index is A's and the "
                            "queries B's, both engines' fingerprints; exits 1 past the budget")
    fleet.add_argument("--min-cosine", type=float, help=f"budget: the lowest row cosine between A and B (default "
                                                         f"{DriftBudget.min_cosine})")
    fleet.add_argument("--min-top10", type=float, help="budget: the lowest mean top-10 agreement of A's index queried "
                                                       f"with B's queries, against A alone (default "
                                                       f"{DriftBudget.min_top10})")
    fleet.add_argument("--report", type=Path, help="also write the drift report as JSON here")
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


def run_compare(args: argparse.Namespace) -> int:
    from .triton import report_drift

    if args.model:
        raise InputError(f"--compare measures two deployments against each other and takes no --model (got "
                         f"{args.model!r})")
    budget = {"min_cosine": args.min_cosine, "min_top10": args.min_top10}
    budget = DriftBudget(**{name: value for name, value in budget.items() if value is not None})
    return report_drift(*args.compare, budget, args.pairs, args.report, tritonserver=args.tritonserver)


def run_validate(args: argparse.Namespace) -> int:
    if args.compare:
        return run_compare(args)
    given = [flag for flag, value in (("--min-cosine", args.min_cosine), ("--min-top10", args.min_top10),
                                      ("--report", args.report)) if value is not None]
    if given:
        raise InputError(f"{', '.join(given)}: only with --compare A B (the drift budget and its report)")
    if not args.model:
        raise InputError("validate needs --model (a preset name or checkpoint directory), or --compare A B to "
                         "measure the drift between two deployments")
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
