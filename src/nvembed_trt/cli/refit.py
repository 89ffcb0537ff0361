"""nvembed-trt refit: fill a weight-stripped plan (`build --strip-weights`) on the serving host (needs a GPU)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("refit", help="fill a weight-stripped engine with its ONNX weights (needs a GPU)",
                       description="Refit an engine built with `nvembed-trt build --strip-weights` from the ONNX graph "
                                   "it was built from (engine.json names it), in place. Needs the GPU the engine "
                                   "targets and the flavor that built it.")
    p.add_argument("--engine", required=True, type=Path, help="engine directory (model.plan + engine.json)")
    p.add_argument("--onnx", type=Path, help="the graph it was built from (default: engine.json's onnx)")
    p.add_argument("--no-sha256-check", action="store_true",
                   help="skip comparing the graph's sha256 with engine.json (a copied graph with the same weights)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..engines.refit import refit_engine

    plan = refit_engine(args.engine, args.onnx, check_sha256=not args.no_sha256_check)
    print(f"refitted {plan} ({plan.stat().st_size / 1e6:.1f} MB)")
    return 0
