"""nvembed-trt quantize-torch: ModelOpt PyTorch PTQ with a forward loop (the single-GPU path for full size)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..embedder import DEVICES, DTYPES
from ..precision.torch_ptq import MODELOPT_CONFIGS, onnx_from_torch_ptq


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("quantize-torch", help="quantise in PyTorch with ModelOpt, export the Q/DQ graph",
                       description="Calibrate ModelOpt's quantisers with a forward loop over the calibration set "
                                   "(use --device cuda --dtype float16 for the full model on one 80 GB GPU), "
                                   "export the Q/DQ graph and gate it on held-out text like `precision`.")
    p.add_argument("--model", required=True, help="preset name or checkpoint directory")
    p.add_argument("--recipe", required=True, choices=tuple(MODELOPT_CONFIGS))
    p.add_argument("--calibration", required=True, type=Path)
    p.add_argument("--reference-onnx", required=True, type=Path, help="the unquantised export to compare with")
    p.add_argument("--output", required=True, type=Path, help="e.g. export/<name>/int8-torch/")
    p.add_argument("--device", choices=DEVICES, default="cpu")
    p.add_argument("--dtype", choices=tuple(DTYPES), default="float32")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    result = onnx_from_torch_ptq(args.model, args.recipe, args.calibration, args.reference_onnx, args.output,
                                 args.device, args.dtype, args.overwrite)
    p = result.meta.parity
    print(f"wrote {result.onnx_path}: min cosine {p['cosine_min']:.6f}, top-10 agreement "
          f"{p['top10_agreement']:.3f}; report: {result.directory / result.meta.FILE}")
    return 0
