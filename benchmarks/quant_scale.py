"""Full-size quantised recipes on this machine: quantise (streamed from the checkpoint) -> build (TensorRT-RTX),
each step its own process, measured with wait4 (wall time, peak RSS), with the sizes of what it wrote.

    python benchmarks/quant_scale.py --checkpoint /work/bigdata/nv-embed-v2-ckpt --workdir /work/bigdata/quant \\
        --recipes int8-wo,int4-wo,int8,fp8 [--gpu l40s] [--calibration-samples 32] [--no-build] [--keep]

W8A8 recipes share one `activation-ranges` step (the model streamed layer by layer over the calibration set).
Results merge into benchmarks/published/<host>/quant-scale.json (one entry per recipe, newest wins), so recipes
can be run one at a time; every step needing more than 4 GiB should run under `flock /tmp/nvembed-heavy.lock`.
The full-size graphs are not gated here (the fp32 reference does not fit 24 GiB): the recipes are gated on tiny
and on full-width-2l (benchmarks/recipes_table.py).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

from nvembed_trt.artifacts import EngineMeta, PrecisionMeta
from measured.steps import drop_file_cache
from measured.steps import file_bytes as _size
from measured.steps import machine_facts
from measured.steps import measured_step as measured

HOST = "cpu-2core-24gib"
PUBLISHED = Path(__file__).resolve().parent / "published" / HOST / "quant-scale.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--recipes", default="int8-wo,int4-wo,int8,fp8")
    parser.add_argument("--gpu", default="l40s")
    parser.add_argument("--calibration-samples", type=int, default=32)
    parser.add_argument("--calibration-dtype", default="bfloat16", choices=("float32", "bfloat16"))
    parser.add_argument("--no-build", action="store_true", help="quantise only")
    parser.add_argument("--keep", action="store_true", help="keep graphs and engines (tens of GB)")
    parser.add_argument("--memory-limit-gib", type=float,
                        help="run each build in a memory cgroup of this size (root; see engine_scale.py)")
    args = parser.parse_args()
    cli = shutil.which("nvembed-trt") or sys.exit("nvembed-trt is not on PATH (make install)")
    args.workdir.mkdir(parents=True, exist_ok=True)
    results = json.loads(PUBLISHED.read_text()) if PUBLISHED.is_file() else {"host": HOST, "recipes": {}}
    results.update({**machine_facts(), "checkpoint": str(args.checkpoint)})
    recipes = args.recipes.split(",")
    shared: dict = {}
    if any(r in ("int8", "fp8") for r in recipes):
        calib = args.workdir / "calibration"
        if not (calib / "manifest.json").is_file():
            shared["calibrate"] = measured([cli, "calibrate", "--model", str(args.checkpoint), "--output", str(calib),
                                            "--max-length", "512", "--overwrite"])
        ranges = args.workdir / "activation-ranges.npz"
        shared["activation_ranges"] = measured([cli, "activation-ranges", "--model", str(args.checkpoint),
                                                "--calibration", str(calib), "--output", str(ranges),
                                                "--samples", str(args.calibration_samples), "--length", "128",
                                                "--dtype", args.calibration_dtype])
        if shared["activation_ranges"]["exit"] != 0:
            sys.exit("activation ranges failed")
        results["activation_ranges"] = {**shared["activation_ranges"],
                                        **json.loads(ranges.with_suffix(".json").read_text())}
        results["activation_ranges"].pop("versions", None)
    for recipe in recipes:
        graph = args.workdir / recipe
        steps = {}
        cmd = [cli, "precision", "--model", str(args.checkpoint), "--recipe", recipe, "--output", str(graph),
               "--no-gate", "--overwrite"]
        if recipe in ("int8", "fp8"):
            cmd += ["--ranges", str(args.workdir / "activation-ranges.npz")]
        steps["quantise"] = measured(cmd)
        entry = {"steps": steps, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        if steps["quantise"]["exit"] == 0:
            meta = PrecisionMeta.read(graph)
            entry["graph_bytes"] = _size(graph, "model.onnx", "model.onnx.data")
            entry["initializer_bytes"] = meta.initializer_bytes
            entry["quantized_nodes"] = meta.quantized_nodes
            entry["opset"] = meta.quantization["opset"]
            entry["quantise_timings_s"] = meta.timings_s
            entry["fused_projection_groups"] = (meta.fused_projections or {}).get("groups", 0)
            if not args.no_build:
                engine = args.workdir / f"engine-{recipe}"
                if args.memory_limit_gib:
                    drop_file_cache(graph / "model.onnx.data")
                steps["build"] = measured([cli, "build", "--onnx", str(graph / "model.onnx"), "--gpu", args.gpu,
                                           "--flavor", "tensorrt-rtx", "--output", str(engine), "--overwrite"],
                                          memory_limit_gib=args.memory_limit_gib)
                if steps["build"]["exit"] == 0:
                    entry["engine_bytes"] = _size(engine, "model.plan")
                    entry["engine"] = EngineMeta.read(engine).model_dump(
                        mode="json", include={"flavor", "gpu", "build_s", "layer_precision", "network_precision"})
                if not args.keep:
                    shutil.rmtree(engine, ignore_errors=True)
        if not args.keep:
            shutil.rmtree(graph, ignore_errors=True)
        results["recipes"][recipe] = entry
        PUBLISHED.parent.mkdir(parents=True, exist_ok=True)
        PUBLISHED.write_text(json.dumps(results, indent=2) + "\n")
        print(json.dumps({recipe: {k: v for k, v in entry.items() if k != "quantized_nodes"}}, indent=1))
    print(f"wrote {PUBLISHED}")


if __name__ == "__main__":
    main()
