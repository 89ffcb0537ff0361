"""Measure the full-size path on this machine: write an official-layout sharded checkpoint of nv-embed-v2 with
random weights, then export it to fp16 ONNX. Prints wall time and peak RSS per step (each step runs as its own
process, measured with wait4) and writes benchmarks/results/<host>/export-scale.json.

    python benchmarks/export_scale.py --workdir /big/disk [--model nv-embed-v2] [--dtype float16]

Needs about 32 GB of free disk for the full-size model (15.7 GB checkpoint + 15.7 GB ONNX data).
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
from pathlib import Path

from nvembed_trt.artifacts import ExportMeta
from measured.steps import machine_facts, measured_step

RESULTS = Path(__file__).resolve().parent / "results" / platform.node()


def measured(cmd: list[str]) -> dict:
    step = measured_step(cmd)
    if step["exit"] != 0:
        sys.exit(f"step failed ({step['exit']}): {' '.join(cmd)}")
    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--model", default="nv-embed-v2")
    parser.add_argument("--dtype", default="float16", choices=("float32", "float16"))
    parser.add_argument("--keep", action="store_true", help="keep the checkpoint and export")
    args = parser.parse_args()
    cli = shutil.which("nvembed-trt") or sys.exit("nvembed-trt is not on PATH (make install)")
    ckpt, onnx_dir = args.workdir / f"{args.model}-checkpoint", args.workdir / f"{args.model}-onnx-{args.dtype}"
    shutil.rmtree(ckpt, ignore_errors=True)
    shutil.rmtree(onnx_dir, ignore_errors=True)
    steps = {"write_checkpoint": measured([cli, "checkpoint", "--model", args.model, "--output", str(ckpt)]),
             "export": measured([cli, "export", "--model", str(ckpt), "--output", str(onnx_dir),
                                 "--dtype", args.dtype, "--no-parity"])}
    export_meta = ExportMeta.read(onnx_dir)
    result = {"host": platform.node(), **machine_facts(),
              "model": args.model, "dtype": args.dtype, "steps": steps,
              "export_timings_s": export_meta.timings_s, "weight_bytes": export_meta.weight_bytes,
              "graph_nodes": export_meta.graph["nodes"]}
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "export-scale.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print("| step | wall | peak RSS |\n|---|---|---|")
    for name, step in steps.items():
        print(f"| {name} | {step['wall_s']} s | {step['peak_rss_gib']} GiB |")
    print(f"wrote {out}")
    if not args.keep:
        shutil.rmtree(ckpt)
        shutil.rmtree(onnx_dir)


if __name__ == "__main__":
    main()
