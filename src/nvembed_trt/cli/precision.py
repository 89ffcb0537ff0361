"""nvembed-trt precision / recipes: apply a named precision recipe to an fp32 export, gated on held-out text."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..precision import RECIPES, onnx_with_recipe


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("precision", help="apply a precision recipe to an fp32 ONNX export",
                       description="Writes export/<name>/<recipe>/model.onnx + precision.json only if the "
                                   "recipe's graph keeps its accuracy on held-out text.")
    p.add_argument("--onnx", required=True, type=Path, help="the fp32 export, e.g. export/tiny/model.onnx")
    p.add_argument("--recipe", required=True, choices=tuple(RECIPES))
    p.add_argument("--calibration", type=Path, help="calibration set folder (recipes other than fp32)")
    p.add_argument("--output", type=Path, help="default: <export folder>/<recipe>/")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(run=run)
    r = sub.add_parser("recipes", help="list precision recipes", description="List the precision recipes.")
    r.set_defaults(run=list_recipes)


def run(args: argparse.Namespace) -> int:
    result = onnx_with_recipe(args.onnx, args.recipe, args.calibration, args.output, args.overwrite)
    p = result.meta["parity"]
    print(f"wrote {result.onnx_path}: min cosine {p['cosine_min']:.6f}, top-10 agreement "
          f"{p['top10_agreement']:.3f}, quantised nodes {result.meta['quantized_nodes'] or 'none'}; "
          f"report: {result.directory / 'precision.json'}")
    return 0


def list_recipes(args: argparse.Namespace) -> int:
    for recipe in RECIPES.values():
        gate = f"min cosine >= {recipe.min_cosine}" + (
            f", top-10 agreement >= {recipe.min_top10}" if recipe.min_top10 is not None else "")
        print(f"{recipe.name}: {recipe.description}\n    gate: {gate}; verified with {recipe.verify_runtime}")
    return 0
