"""The full-size engine on this machine: checkpoint -> export (fp16, external data) -> TensorRT-RTX build per GPU
profile, each step its own process measured with wait4 (wall time, peak RSS), with the engine's size, how the plan
was serialized and the strongly typed network's layer precisions from engine.json; then a Triton repository
generated from the first engine (its consistency checks run when it is made: max batch, shapes and profiles from
engine.json), so the only step left for a GPU host is serving.

    flock /tmp/nvembed-heavy.lock python benchmarks/engine_scale.py --workdir /work/bigdata/engine-scale \\
        [--model nv-embed-v2] [--gpus l40s,rtx-6000-ada] [--recipes fp16,int8-wo,int4-wo] [--strip-weights] [--keep]
        [--memory-limit-gib 20]

--memory-limit-gib runs each build in a memory cgroup of that size (root; measured/memlimit.py) after evicting
the graph's data file from the page cache: peak RSS then shows what the build needs on a machine of that size,
not the mapped weights the kernel keeps resident while memory is free.

Recipes other than fp16 are made with `nvembed-trt precision --no-gate` from the checkpoint (streamed; the gates
run on tiny and full-width-2l); the W8A8 recipes (int8, fp8) need activation ranges first: benchmarks/quant_scale.py.
Needs ~16 GB of disk for the checkpoint, ~16 GB per graph and ~16 GB per fp16
engine (the repository copies one more): the steps delete what they no longer need unless --keep.
Results merge into benchmarks/published/cpu-2core-24gib/engine-scale.json (one entry per recipe, newest wins).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

from nvembed_trt.artifacts import EngineMeta, ExportMeta, PrecisionMeta
from measured.steps import drop_file_cache
from measured.steps import file_bytes as _size
from measured.steps import machine_facts
from measured.steps import measured_step as measured

HOST = "cpu-2core-24gib"
PUBLISHED = Path(__file__).resolve().parent / "published" / HOST / "engine-scale.json"
TARGET_PEAK_GIB = 20.0


def _graph(cli: str, ckpt: Path, workdir: Path, recipe: str) -> tuple[Path, dict, dict]:
    """(model.onnx, step, facts) of the recipe's graph."""
    if recipe == "fp16":
        out = workdir / "onnx-fp16"
        step = measured([cli, "export", "--model", str(ckpt), "--output", str(out), "--dtype", "float16",
                         "--no-parity", "--overwrite"])
        facts = {}
        if step["exit"] == 0:
            meta = ExportMeta.read(out)
            facts = {"graph_bytes": _size(out, "model.onnx", "model.onnx.data"),
                     "graph_nodes": meta.graph["nodes"], "export_timings_s": meta.timings_s}
        return out / "model.onnx", step, facts
    out = workdir / f"onnx-{recipe}"
    step = measured([cli, "precision", "--model", str(ckpt), "--recipe", recipe, "--output", str(out), "--no-gate",
                     "--overwrite"])
    facts = {}
    if step["exit"] == 0:
        meta = PrecisionMeta.read(out)
        facts = {"graph_bytes": _size(out, "model.onnx", "model.onnx.data"),
                 "initializer_bytes": meta.initializer_bytes, "quantise_timings_s": meta.timings_s}
    return out / "model.onnx", step, facts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--model", default="nv-embed-v2")
    parser.add_argument("--checkpoint", type=Path, help="an existing checkpoint directory (skips writing one)")
    parser.add_argument("--gpus", default="l40s,rtx-6000-ada")
    parser.add_argument("--recipes", default="fp16")
    parser.add_argument("--strip-weights", action="store_true", help="also build a weight-stripped plan per GPU")
    parser.add_argument("--no-repo", action="store_true", help="skip the Triton repository check")
    parser.add_argument("--keep", action="store_true", help="keep checkpoint, graphs and engines (tens of GB)")
    parser.add_argument("--memory-limit-gib", type=float, help="run each build in a memory cgroup of this size")
    args = parser.parse_args()
    w8a8 = [r for r in args.recipes.split(",") if r in ("int8", "fp8")]
    if w8a8:
        sys.exit(f"{', '.join(w8a8)}: W8A8 recipes need activation ranges first; run benchmarks/quant_scale.py "
                 f"--recipes {','.join(w8a8)} (calibration streamed layer by layer, then quantise and build)")
    cli = shutil.which("nvembed-trt") or sys.exit("nvembed-trt is not on PATH (make install)")
    args.workdir.mkdir(parents=True, exist_ok=True)
    results = json.loads(PUBLISHED.read_text()) if PUBLISHED.is_file() else {"host": HOST, "recipes": {}}
    results.update({**machine_facts(), "model": args.model, "target_peak_rss_gib": TARGET_PEAK_GIB})
    ckpt = args.checkpoint
    if ckpt is None:
        ckpt = args.workdir / f"{args.model}-checkpoint"
        shutil.rmtree(ckpt, ignore_errors=True)
        step = measured([cli, "checkpoint", "--model", args.model, "--output", str(ckpt)])
        results["checkpoint"] = {**step, "bytes": sum(f.stat().st_size for f in ckpt.iterdir() if f.is_file())}
        if step["exit"] != 0:
            sys.exit("checkpoint failed")
    gpus = args.gpus.split(",")
    for recipe in args.recipes.split(","):
        onnx_path, step, facts = _graph(cli, ckpt, args.workdir, recipe)
        entry = {"created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "graph": {**step, **facts},
                 "engines": {}}
        if step["exit"] == 0:
            for i, gpu in enumerate(gpus):
                for stripped in ((False, True) if args.strip_weights else (False,)):
                    key = gpu + ("-stripped" if stripped else "")
                    engine = args.workdir / "engines" / gpu / args.model / (recipe + ("-stripped" if stripped else ""))
                    cmd = [cli, "build", "--onnx", str(onnx_path), "--gpu", gpu, "--flavor", "tensorrt-rtx",
                           "--output", str(engine), "--overwrite"] + (["--strip-weights"] if stripped else [])
                    if args.memory_limit_gib:
                        drop_file_cache(onnx_path.with_name(onnx_path.name + ".data"))
                    build = measured(cmd, memory_limit_gib=args.memory_limit_gib)
                    if build["exit"] == 0:
                        meta = EngineMeta.read(engine)
                        build.update(meta.model_dump(mode="json", include={
                            "flavor", "flavor_version", "build_s", "engine_bytes", "weights", "network_precision",
                            "layer_precision"}))
                        build["serialization"] = meta.builder.serialization
                        build["host_memory_gib"] = meta.builder.host_memory_gib
                        build["aot_targets"] = meta.gpu.aot_targets
                        build["under_target"] = build["peak_rss_gib"] <= TARGET_PEAK_GIB
                        if i == 0 and not stripped and not args.no_repo:
                            # a TensorRT-RTX plan is no Triton encoder: check its profile's repository, write none
                            repo = args.workdir / "triton-repo"
                            check = meta.flavor == "tensorrt-rtx"
                            where = ["--check"] if check else ["--output", str(repo), "--overwrite"]
                            entry["triton_repo"] = {**measured([cli, "triton-repo", "--model", str(ckpt), "--encoder",
                                                                str(engine)] + where), "checked_only": check}
                            shutil.rmtree(repo, ignore_errors=True)
                    entry["engines"][key] = build
                    if not args.keep:
                        shutil.rmtree(engine, ignore_errors=True)
                    results["recipes"][recipe] = entry
                    PUBLISHED.parent.mkdir(parents=True, exist_ok=True)
                    PUBLISHED.write_text(json.dumps(results, indent=2) + "\n")
        results["recipes"][recipe] = entry
        PUBLISHED.parent.mkdir(parents=True, exist_ok=True)
        PUBLISHED.write_text(json.dumps(results, indent=2) + "\n")
        if not args.keep:
            shutil.rmtree(onnx_path.parent, ignore_errors=True)
    if not args.keep and args.checkpoint is None:
        shutil.rmtree(ckpt, ignore_errors=True)
    print(engine_markdown(results))
    print(f"wrote {PUBLISHED}")


def _anon(step: dict) -> str:
    """The sampled anonymous peak (what an OOM kill counts; the rest of RSS is file-backed, mapped weights)."""
    return f"{step['peak_anon_gib']:.2f} GiB" if step.get("peak_anon_gib") is not None else "–"


def _gb(n: int | None) -> str:
    return "-" if not n else f"{n / 1e9:.2f} GB"


def engine_markdown(results: dict) -> str:
    """The Results page's table of a published engine-scale.json."""
    lines = [f"{results['model']}, random weights; {results['cpus']} CPUs, "
             f"{results['memory_gib']} GiB, TensorRT-RTX ahead of time, target peak RSS <= "
             f"{results['target_peak_rss_gib']:g} GiB\n",
             "| recipe | step | target | wall | peak RSS | of it anonymous | output | matmul precision |",
             "|---|---|---|---|---|---|---|---|"]
    ck = results.get("checkpoint")
    if ck:
        lines.append(f"| - | checkpoint | - | {ck['wall_s']:.0f} s | {ck['peak_rss_gib']:.2f} GiB | {_anon(ck)} | "
                     f"{_gb(ck['bytes'])} | - |")
    for recipe, entry in results["recipes"].items():
        g = entry["graph"]
        lines.append(f"| {recipe} | {'export' if recipe == 'fp16' else 'quantise'} | - | {g['wall_s']:.0f} s | "
                     f"{g['peak_rss_gib']:.2f} GiB | {_anon(g)} | "
                     f"{_gb(g.get('graph_bytes')) if g['exit'] == 0 else 'failed'} | - |")
        for key, b in entry["engines"].items():
            if b["exit"] != 0:
                lines.append(f"| {recipe} | build | {key} | {b['wall_s']:.0f} s | {b['peak_rss_gib']:.2f} GiB | "
                             f"{_anon(b)} | failed (exit {b['exit']}) | - |")
                continue
            mm = b["network_precision"].get("MATRIX_MULTIPLY", {})
            limit = f", {b['memory_limit']['limit_gib']:g} GiB cgroup" if b.get("memory_limit") else ""
            lines.append(f"| {recipe} | build | {key} ({', '.join(b['aot_targets'] or [])}{limit}) | {b['wall_s']:.0f} s | "
                         f"{b['peak_rss_gib']:.2f} GiB | {_anon(b)} | {_gb(b['engine_bytes'])} plan"
                         f"{' (weights stripped)' if b['weights'].get('stripped') else ''} | "
                         f"{', '.join(f'{k} {v}' for k, v in sorted(mm.items()))} |")
        if entry.get("triton_repo"):
            t, first = entry["triton_repo"], next(iter(entry["engines"].values()))
            rtx = first.get("flavor") == "tensorrt-rtx"
            if t.get("checked_only"):
                outcome = ("consistent (checked, nothing written; Triton needs a tensorrt build of this profile)"
                           if rtx else "consistent (checked, nothing written)") if t["exit"] == 0 else \
                    f"inconsistent (exit {t['exit']})"
            else:
                outcome = "consistent" if t["exit"] == 0 else (
                    "refused: a TensorRT-RTX plan is no Triton tensorrt_plan" if rtx and t["exit"] == 2
                    else f"failed (exit {t['exit']})")
            lines.append(f"| {recipe} | triton-repo | {next(iter(entry['engines']))} | {t['wall_s']:.0f} s | "
                         f"{t['peak_rss_gib']:.2f} GiB | {_anon(t)} | {outcome} | - |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
