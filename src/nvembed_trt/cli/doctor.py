"""nvembed-trt doctor: what this host has and lacks for each stage (nvembed_trt.doctor)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("doctor", help="what this host has and lacks for each stage, with the fixes",
                       description="GPUs (compute capability, memory, driver, CUDA), torch, TensorRT / TensorRT-RTX, "
                                   "the NGC image for the installed TensorRT, disk for a full-size build, ONNX Runtime "
                                   "providers, tritonserver and its backends. Exit status: with --gpu, 0 when this "
                                   "host can build and serve that profile, else 1; without, 0 when no check failed.")
    p.add_argument("--gpu", metavar="PROFILE", help="GPU profile to judge (`nvembed-trt gpus` lists them)")
    p.add_argument("--tritonserver", type=Path, help="a tritonserver to check (NGC layout: backends/ beside bin/)")
    p.add_argument("--dir", type=Path, default=Path("."), help="where engines would be built (free disk)")
    p.add_argument("--json", action="store_true", help="print the diagnosis as JSON")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..doctor import diagnose

    diagnosis = diagnose(args.gpu, args.tritonserver, args.dir)
    print(json.dumps(diagnosis.to_json(), indent=2) if args.json else diagnosis.render())
    return 0 if diagnosis.ok else 1
