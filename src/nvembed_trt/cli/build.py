"""nvembed-trt build / gpus: TensorRT engines per GPU profile."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..engines import FLAVORS, BuildSettings, engine_from_onnx, gpu_registry
from ..engines.builder import PROFILING_VERBOSITY


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("build", help="build a TensorRT engine for a GPU profile",
                       description="Strongly typed TensorRT build of an ONNX graph with the GPU profile's "
                                   "optimisation profiles; writes model.plan and engine.json.")
    p.add_argument("--onnx", required=True, type=Path, help="e.g. export/tiny/fp16/model.onnx")
    p.add_argument("--gpu", required=True, choices=tuple(gpu_registry()), help="GPU profile (`nvembed-trt gpus`)")
    p.add_argument("--output", required=True, type=Path, help="e.g. engines/<gpu>/<name>/<recipe>/")
    p.add_argument("--flavor", choices=("auto", *FLAVORS), default="auto",
                   help="auto: tensorrt on the target GPU if installed, else tensorrt-rtx (ahead of time, on CPU)")
    p.add_argument("--version-compatible", action="store_true", help="TensorRT version-compatible engine")
    p.add_argument("--hardware-compatible", action="store_true", help="Ampere+ hardware-compatible engine")
    p.add_argument("--timing-cache", type=Path,
                   help="default: <output>/../../timing-<flavor>-<version>-<device>.cache (a mismatching one is "
                        "discarded with a note)")
    p.add_argument("--strip-weights", action="store_true",
                   help="weight-stripped plan (STRIP_PLAN + REFIT_IDENTICAL): a small file, filled on the serving "
                        "host by `nvembed-trt refit` (needs a GPU) from the same ONNX weights")
    p.add_argument("--profiling-verbosity", choices=PROFILING_VERBOSITY, default="detailed",
                   help="what the engine inspector can tell (detailed: per-layer precisions and tactics)")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(run=run)
    g = sub.add_parser("gpus", help="list GPU profiles", description="List GPU profiles and their engine profiles.")
    g.set_defaults(run=list_gpus)


def run(args: argparse.Namespace) -> int:
    settings = BuildSettings(**{name: getattr(args, name) for name in BuildSettings.model_fields})
    result = engine_from_onnx(args.onnx, args.output, settings)
    stripped = ", weights stripped: run `nvembed-trt refit` on the serving host" if args.strip_weights else ""
    print(f"wrote {result.plan_path} ({result.meta.engine_bytes / 1e6:.1f} MB{stripped}, {result.meta.flavor} "
          f"{result.meta.flavor_version}); metadata: {result.directory / result.meta.FILE}")
    return 0


def list_gpus(args: argparse.Namespace) -> int:
    for gpu in gpu_registry().values():
        print(f"{gpu.name}: {gpu.description}; compute capability {gpu.compute_capability}, {gpu.memory_gib:g} GiB; "
              f"flavors {', '.join(gpu.flavors)}; serving max batch {gpu.serving.max_batch_size}, max sequence "
              f"{gpu.serving.max_sequence_length}")
        for p in gpu.profiles:
            print(f"    {p.name}: batch {p.batch.min}/{p.batch.opt}/{p.batch.max}, sequence "
                  f"{p.sequence.min}/{p.sequence.opt}/{p.sequence.max} (min/opt/max)")
    return 0
