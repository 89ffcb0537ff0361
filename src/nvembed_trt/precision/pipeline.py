"""onnx_with_recipe: an fp32 export -> export/<name>/<recipe>/model.onnx + precision.json, written only after the
recipe's graph passes its accuracy gate on held-out text (a failing recipe leaves nothing behind)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..calibration.dataset import MANIFEST, load_calibration
from ..console import note
from ..errors import InputError, NVEmbedError
from ..export.checks import fp32_island_problems, op_precisions
from ..provenance import sha256_file, sidecar, write_json
from ..source import resolve_model, tokenizer_for
from ..staging import check_output_dir, staged_directory
from .apply import apply_recipe, quantized_node_counts
from .recipes import get_recipe
from .verify import heldout_set, verify_recipe

PRECISION_JSON = "precision.json"


class PrecisionGateError(NVEmbedError):
    def __init__(self, recipe: str, report: dict, problems: list[str]):
        self.report = report
        figures = (f"min cosine {report['cosine_min']:.6f}, p1 {report['cosine_p1']:.6f}, mean "
                   f"{report['cosine_mean']:.6f}, max abs {report['max_abs']:.3g}, top-10 agreement "
                   f"{report['top10_agreement']:.3f} over {report['rows']} held-out rows")
        super().__init__(f"recipe {recipe} failed its accuracy gate ({'; '.join(problems)}); {figures}; "
                         f"no model was written")


@dataclass(frozen=True)
class PrecisionResult:
    directory: Path
    onnx_path: Path
    meta: dict


def _export_meta(onnx_path: Path) -> dict:
    meta_file = onnx_path.parent / "export.json"
    if not meta_file.is_file():
        raise InputError(f"{onnx_path.parent}: no export.json beside the graph; export it with nvembed-trt export")
    meta = json.loads(meta_file.read_text())
    if meta.get("dtype") != "float32":
        raise InputError(f"{onnx_path}: recipes start from a float32 export, this one is {meta.get('dtype')}")
    return meta


def onnx_with_recipe(onnx_path: Path | str, recipe_name: str, calibration: Path | str | None = None,
                     output: Path | str | None = None, overwrite: bool = False,
                     heldout_pairs: int = 160) -> PrecisionResult:
    recipe = get_recipe(recipe_name)
    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise InputError(f"ONNX file not found: {onnx_path}")
    export_meta = _export_meta(onnx_path)
    if recipe.needs_calibration and calibration is None:
        raise InputError(f"recipe {recipe.name} needs a calibration set (--calibration DIR; make one with "
                         f"`nvembed-trt calibrate`)")
    output = Path(output) if output else onnx_path.parent / recipe.name
    check_output_dir(output, overwrite)
    model = export_meta["model"]
    tokenizer = tokenizer_for(resolve_model(model["checkpoint"] or model["spec"], progress=False))
    inputs = tuple(export_meta["signature"]["inputs"])
    calib = (load_calibration(Path(calibration), recipe.calibration_length, recipe.calibration_samples, inputs,
                              tokenizer.pad_id) if recipe.needs_calibration else None)
    with staged_directory(output, overwrite) as staging:
        candidate = staging / "model.onnx"
        note(f"{recipe.name}: {recipe.description}")
        apply_recipe(recipe, onnx_path, candidate, calib)
        report, problems = verify_recipe(recipe, candidate, onnx_path, tokenizer, heldout_set(heldout_pairs))
        precisions = candidate_precisions(candidate)
        problems += fp32_island_problems(precisions)
        if problems:
            raise PrecisionGateError(recipe.name, report, problems)
        meta = sidecar("precision-graph", recipe=recipe.model_dump(), source_onnx=str(onnx_path),
                       source_onnx_sha256=sha256_file(onnx_path), model=model,
                       calibration=_calibration_meta(calibration) if recipe.needs_calibration else None,
                       quantized_nodes=quantized_node_counts(candidate), op_precisions=precisions,
                       parity=report, model_bytes=_size(candidate))
        write_json(staging / PRECISION_JSON, meta)
    note(f"{recipe.name}: min cosine {report['cosine_min']:.6f}, top-10 agreement {report['top10_agreement']:.3f} "
         f"on {report['rows']} held-out rows; wrote {output / 'model.onnx'}")
    return PrecisionResult(output, output / "model.onnx", meta)


def _calibration_meta(directory) -> dict:
    manifest = Path(directory) / MANIFEST
    data = json.loads(manifest.read_text())
    return {"directory": str(directory), "manifest_sha256": sha256_file(manifest),
            "corpus_sha256": data.get("corpus_sha256"), "samples": data.get("samples")}


def candidate_precisions(path: Path) -> dict:
    import onnx

    return op_precisions(onnx.shape_inference.infer_shapes(onnx.load(str(path), load_external_data=False)))


def _size(path: Path) -> int:
    data = path.with_name(path.name + ".data")
    return path.stat().st_size + (data.stat().st_size if data.exists() else 0)
