"""The recipe tables of the Results page (docs/results.md), generated (never typed by hand).

    # gate every recipe on a model (failing ones too: their figures are recorded) -> published JSON
    python benchmarks/recipes_table.py measure --export export/tiny --calibration calibration/tiny \\
        --out benchmarks/published/cpu-2core-24gib/recipes-tiny.json
    python benchmarks/recipes_table.py measure --model full-width-2l --calibration calibration/fw2l \\
        --rows-per-slice 8 --max-length 64 --recipes int8-wo,int4-wo,int8,fp8 \\
        --out benchmarks/published/cpu-2core-24gib/recipes-full-width-2l.json
    # print the markdown from the published JSON (tiny, full-width-2l, quant-scale.json); the Results page
    # (benchmarks/results_page.py) includes it
    python benchmarks/recipes_table.py print
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import shutil
import sys
import tempfile
from pathlib import Path

PUBLISHED = Path(__file__).resolve().parent / "published" / "cpu-2core-24gib"
H100_BYTES_PER_S = 3.0e12  # measured device copy on our lent H100 (KNOWLEDGE §5)


def measure(args: argparse.Namespace) -> None:
    from nvembed_trt.precision import RECIPES, PrecisionGateError, onnx_with_recipe, recipe_from_model
    from nvembed_trt.precision.settings import StreamedRecipeSettings

    names = args.recipes.split(",") if args.recipes else list(RECIPES)
    results = {}
    scratch = Path(tempfile.mkdtemp(prefix="recipes-table-"))
    try:
        for name in names:
            out = scratch / name
            try:
                if args.export:
                    result = onnx_with_recipe(Path(args.export) / "model.onnx", name, args.calibration, out,
                                              max_length=args.max_length)
                else:
                    result = recipe_from_model(args.model, StreamedRecipeSettings(
                        recipe=name, calibration=args.calibration, output=out, max_length=args.max_length,
                        gate_rows_per_slice=args.rows_per_slice, calibration_samples=args.calibration_samples))
                report, bytes_, passed = result.meta.parity, result.meta.model_bytes, True
            except PrecisionGateError as exc:
                report, bytes_, passed = exc.report, None, False
            results[name] = {"passed": passed, "model_bytes": bytes_,
                             **{k: report[k] for k in ("rows", "cosine_min", "cosine_p1", "cosine_mean", "max_abs",
                                                       "top10_agreement", "slices")}}
            print(f"{name}: {'pass' if passed else 'FAIL'} min {report['cosine_min']:.6f}", flush=True)
            shutil.rmtree(out, ignore_errors=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    payload = {"created_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
               "model": args.model or args.export, "max_length": args.max_length,
               "rows_per_slice": args.rows_per_slice, "recipes": results}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(payload, indent=1) + "\n")
    print(f"wrote {args.out}")


def _weight_bytes() -> dict[str, int]:
    """Full-size weight bytes per recipe, by arithmetic from the config (GEMM weights quantised, the rest fp16)."""
    from nvembed_trt.calibration.streamed import gemm_keys
    from nvembed_trt.checkpoint.loader import expected_shapes, meta_model
    from nvembed_trt.presets import PRESETS

    cfg = PRESETS["nv-embed-v2"].config
    shapes = expected_shapes(meta_model(cfg))
    gemms = set(gemm_keys(cfg))
    total = sum(math.prod(s) for s in shapes.values())
    gemm = sum(math.prod(shapes[k]) for k in gemms)
    out_channels = sum(shapes[k][0] for k in gemms)
    rest = total - gemm
    return {"fp32": 4 * total, "fp16": 2 * total, "bf16": 2 * total,
            "int8": gemm + 2 * out_channels + 2 * rest, "int8-entropy": gemm + 2 * out_channels + 2 * rest,
            "fp8": gemm + 2 * out_channels + 2 * rest, "int8-wo": gemm + 2 * out_channels + 2 * rest,
            "int4-wo": gemm // 2 + 2 * (gemm // 128) + 2 * rest}


def _load(name: str, machine: Path) -> dict | None:
    path = machine / name
    return json.loads(path.read_text()) if path.is_file() else None


def _step_cell(step: dict | None, made_bytes: int | None) -> str:
    """wall, peak RSS (its anonymous part and the memory cgroup it ran in, where measured) and the size made."""
    if not step:
        return "–"
    if step["exit"] != 0:
        return f"failed after {step['wall_s'] / 60:.1f} min at {step['peak_rss_gib']:.2f} GiB (exit {step['exit']})"
    extra = [f"{step['peak_anon_gib']:.2f} anonymous"] if step.get("peak_anon_gib") is not None else []
    if step.get("memory_limit"):
        extra.append(f"{step['memory_limit']['limit_gib']:g} GiB cgroup")
    return (f"{step['wall_s'] / 60:.1f} min, {step['peak_rss_gib']:.2f} GiB" + (f" ({', '.join(extra)})" if extra else "")
            + (f", {made_bytes / 1e9:.2f} GB" if made_bytes else ""))


def render(machine: Path = PUBLISHED) -> str:
    from nvembed_trt.precision import RECIPES

    tiny, fw = _load("recipes-tiny.json", machine), _load("recipes-full-width-2l.json", machine)
    scale, es = _load("quant-scale.json", machine), _load("engine-scale.json", machine)
    weights = _weight_bytes()
    lines = ["| recipe | tiny min cosine | tiny top-10 (worst slice) | tiny gate | full-width-2l min cosine | "
             "full-width-2l top-10 (worst slice) | full-size weight bytes | H100 batch-1 floor (arithmetic) | "
             "full-size quantise | full-size build |", "|---|---|---|---|---|---|---|---|---|---|"]
    for name, recipe in RECIPES.items():
        t = (tiny or {}).get("recipes", {}).get(name)
        f = (fw or {}).get("recipes", {}).get(name)
        s = (scale or {}).get("recipes", {}).get(name)

        def worst(r):
            return f"{min(v['top10_agreement'] for v in r['slices'].values()):.3f}"
        tiny_cells = (f"{t['cosine_min']:.6f} | {worst(t)} | {'pass' if t['passed'] else 'fails (registry says why)'}"
                      if t else "– | – | not measured")
        fw_cells = f"{f['cosine_min']:.6f} ({'pass' if f['passed'] else 'fails'}) | {worst(f)}" if f else "– | –"
        q = s["steps"]["quantise"] if s else None
        b = s["steps"].get("build") if s else None
        quant = _step_cell(q, s and s.get("graph_bytes"))
        build = _step_cell(b, s and s.get("engine_bytes"))
        if name == "fp16" and es and "fp16" in es.get("recipes", {}):  # made by engine_scale.py: export, build
            entry = es["recipes"]["fp16"]
            quant = "export " + _step_cell(entry["graph"], entry["graph"].get("graph_bytes"))
            first = next(iter(entry["engines"].values()), None)
            build = _step_cell(first, first and first.get("engine_bytes"))
        w = weights[name]
        lines.append(f"| {name} | {tiny_cells} | {fw_cells} | {w / 1e9:.2f} GB | {w / H100_BYTES_PER_S * 1e3:.2f} ms | "
                     f"{quant} | {build} |")
    if tiny:
        lines += ["", f"Per slice on tiny ({tiny['recipes'][next(iter(tiny['recipes']))]['rows']} held-out rows, "
                  f"max length {tiny['max_length']}): min cosine / top-10 agreement", ""]
        slices = list(next(iter(tiny["recipes"].values()))["slices"])
        lines += ["| slice | " + " | ".join(tiny["recipes"]) + " |", "|---" * (len(tiny["recipes"]) + 1) + "|"]
        for piece in slices:
            cells = [f"{r['slices'][piece]['cosine_min']:.4f} / {r['slices'][piece]['top10_agreement']:.3f}"
                     for r in tiny["recipes"].values()]
            lines.append(f"| {piece} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("measure")
    src = m.add_mutually_exclusive_group(required=True)
    src.add_argument("--export", help="an fp32 export folder (every recipe)")
    src.add_argument("--model", help="a preset or checkpoint (streamed recipes, gated against PyTorch fp32)")
    m.add_argument("--calibration", required=True)
    m.add_argument("--recipes", help="comma list (default: every recipe)")
    m.add_argument("--max-length", type=int, default=512)
    m.add_argument("--rows-per-slice", type=int)
    m.add_argument("--calibration-samples", type=int)
    m.add_argument("--out", required=True)
    sub.add_parser("print")
    args = parser.parse_args()
    if args.cmd == "measure":
        measure(args)
    else:
        print(render())


if __name__ == "__main__":
    sys.exit(main())
