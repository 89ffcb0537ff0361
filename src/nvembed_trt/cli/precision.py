"""nvembed-trt precision / recipes: apply a named precision recipe, gated on held-out text."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import InputError
from ..precision import RECIPES, onnx_with_recipe, recipe_from_model
from ..precision.settings import StreamedRecipeSettings


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("precision", help="apply a precision recipe to an fp32 export or a checkpoint",
                       description="Writes <output>/model.onnx + precision.json only if the recipe's graph keeps "
                                   "its accuracy on every slice of the held-out set. --onnx starts from an fp32 "
                                   "export (every recipe); --model streams a checkpoint or preset tensor by "
                                   "tensor (the streamed recipes int8-wo, int4-wo, int8, fp8: any size).")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--onnx", type=Path, help="the fp32 export, e.g. export/tiny/model.onnx")
    src.add_argument("--model", help="preset name or checkpoint directory (streamed recipes)")
    p.add_argument("--recipe", required=True, choices=tuple(RECIPES))
    p.add_argument("--calibration", type=Path, help="calibration set folder (recipes that calibrate)")
    p.add_argument("--output", type=Path, help="default with --onnx: <export folder>/<recipe>/")
    p.add_argument("--max-length", type=int, default=512, help="the longest sequence the gate feeds (default 512)")
    p.add_argument("--overwrite", action="store_true")
    m = p.add_argument_group("with --model")
    m.add_argument("--reference-onnx", type=Path, help="fp32 export to gate against (default: the fp32 PyTorch model)")
    m.add_argument("--no-gate", action="store_true", default=None,
                   help="write without gating (models too large to run here); precision.json says so")
    m.add_argument("--gate-rows-per-slice", type=int, help="cut every held-out slice to N rows (large models)")
    m.add_argument("--ranges", type=Path, help="activation ranges from `nvembed-trt activation-ranges` (W8A8)")
    m.add_argument("--calibration-samples", type=int, help="calibration samples (default: the recipe's, 256)")
    m.add_argument("--calibration-dtype", choices=("float32", "bfloat16"), help="default float32")
    m.add_argument("--pooling", choices=("engine", "ensemble"), help="default engine")
    m.add_argument("--opset", type=int, help="the graph's opset (default 18; raised to 19/21 where Q/DQ needs)")
    m.add_argument("--fuse-projections", action=argparse.BooleanOptionalAction,
                   help="q/k/v and gate/up as one DequantizeLinear + MatMul + Split each, so TensorRT's builder "
                        "holds no second copy (default; --no-fuse-projections keeps separate quantised GEMMs)")
    p.set_defaults(run=run)
    r = sub.add_parser("recipes", help="list precision recipes", description="List the precision recipes.")
    r.set_defaults(run=list_recipes)


# the options of the --model group (None: not given) and the value each takes when not given
# the options only a recipe made from the model takes (their defaults: precision/settings.py)
MODEL_OPTIONS = ("reference_onnx", "no_gate", "gate_rows_per_slice", "ranges", "calibration_samples",
                 "calibration_dtype", "pooling", "opset", "fuse_projections")


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def run(args: argparse.Namespace) -> int:
    if args.onnx is not None:
        given = [_flag(n) for n in MODEL_OPTIONS if getattr(args, n) is not None]
        if given:
            verb = "is" if len(given) == 1 else "are"
            raise InputError(f"{', '.join(given)} {verb} for --model only (streamed from a checkpoint); --onnx "
                             f"recipes are always gated on held-out text and take no such option: drop "
                             f"{'it' if len(given) == 1 else 'them'}, or start from the checkpoint with --model")
        result = onnx_with_recipe(args.onnx, args.recipe, args.calibration, args.output, args.overwrite,
                                  args.max_length)
    else:
        if args.output is None:
            raise InputError("--model needs --output (e.g. export/<name>/<recipe>)")
        options = {name: getattr(args, name) for name in StreamedRecipeSettings.model_fields
                   if getattr(args, name, None) is not None}
        result = recipe_from_model(args.model, StreamedRecipeSettings(**options, gate=not args.no_gate))
    p = result.meta.parity
    gate = (f"min cosine {p['cosine_min']:.6f}, top-10 agreement {p['top10_agreement']:.3f} (worst slice "
            f"{min(p['slices'], key=lambda s: p['slices'][s]['cosine_min'])})" if p.get("gated", True) else
            "not gated")
    print(f"wrote {result.onnx_path}: {gate}, quantised nodes {result.meta.quantized_nodes or 'none'}; "
          f"report: {result.directory / result.meta.FILE}")
    return 0


def list_recipes(args: argparse.Namespace) -> int:
    for recipe in RECIPES.values():
        gate = f"min cosine >= {recipe.min_cosine}" + (
            f", top-10 agreement >= {recipe.min_top10}" if recipe.min_top10 is not None else "")
        made = "streamed from the checkpoint (any size)" if recipe.streamed else "from the fp32 export"
        print(f"{recipe.name}: {recipe.description}\n    gate on every held-out slice: {gate}; ranking slice: "
              f"nDCG@10 at most {recipe.max_ndcg10_drop} below fp32; verified with {recipe.verify_runtime}; "
              f"made {made}")
        if recipe.tiny_limitation:
            print(f"    cannot pass on tiny: {recipe.tiny_limitation}")
    return 0
