"""onnx_with_recipe: an fp32 export -> export/<name>/<recipe>/model.onnx + precision.json, written only after the
recipe's graph passes its accuracy gate on held-out text and its ranking budget on the labelled slice (a failing
recipe leaves nothing behind)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..calibration.dataset import MANIFEST, load_calibration
from ..console import note
from ..errors import InputError, NVEmbedError
from ..export.checks import fp32_island_problems, op_precisions
from ..artifacts.graph import ExportMeta, PrecisionMeta
from ..provenance import sha256_file
from ..source import resolve_model, tokenizer_for
from ..staging import check_output_dir, staged_directory
from .apply import apply_recipe, quantized_node_counts
from ..recipes import RECIPES, Recipe, get_recipe
from .heldout import sliced_heldout
from .settings import StreamedRecipeSettings
from .streamed import RANGES_FILE, calibration_arrays, collect_ranges, write_streamed_recipe
from .verify import torch_reference, verify_recipe
from ..retrieval.ranking import ranking_slice



class PrecisionGateError(NVEmbedError):
    def __init__(self, recipe: str, report: dict, problems: list[str]):
        self.report = report
        figures = (f"overall min cosine {report['cosine_min']:.6f}, p1 {report['cosine_p1']:.6f}, mean "
                   f"{report['cosine_mean']:.6f}, max abs {report['max_abs']:.3g}, top-10 agreement "
                   f"{report['top10_agreement']:.3f} over {report['rows']} held-out rows"
                   + _ranking_figures(report))
        super().__init__(f"recipe {recipe} failed its accuracy gate ({'; '.join(problems)}); {figures}; "
                         f"no model was written")


def _ranking_figures(report: dict) -> str:
    ranking = report.get("ranking")
    if not ranking:
        return ""
    return (f"; ranking slice nDCG@10 {ranking['ndcg10']:.4f} vs fp32 {ranking['ndcg10_reference']:.4f} (drop "
            f"{ranking['ndcg10_drop']:+.4f}, budget {ranking['budget']})")


@dataclass(frozen=True)
class PrecisionResult:
    directory: Path
    onnx_path: Path
    meta: PrecisionMeta


def _export_meta(onnx_path: Path) -> ExportMeta:
    meta = ExportMeta.read(onnx_path.parent)
    if meta.dtype != "float32":
        raise InputError(f"{onnx_path}: recipes start from a float32 export, this one is {meta.dtype}")
    return meta


def precision_meta(recipe: Recipe, **fields) -> PrecisionMeta:
    """precision.json for a recipe graph: the recipe's name (canonical) and its settings as applied."""
    return PrecisionMeta.new(recipe=recipe.name, recipe_settings=recipe.model_dump(), **fields)


def onnx_with_recipe(onnx_path: Path | str, recipe_name: str, calibration: Path | str | None = None,
                     output: Path | str | None = None, overwrite: bool = False,
                     max_length: int = 512) -> PrecisionResult:
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
    model = export_meta.model
    tokenizer = tokenizer_for(resolve_model(model.source, progress=False))
    if recipe.streamed:  # made from the export's checkpoint tensor by tensor, gated against this fp32 export
        return recipe_from_model(model.source, StreamedRecipeSettings(
            recipe=recipe.name, calibration=calibration, output=output, overwrite=overwrite, reference_onnx=onnx_path,
            max_length=max_length, pooling=export_meta.signature.pooling, opset=export_meta.opset))
    inputs = tuple(export_meta.signature.inputs)
    calib = (load_calibration(Path(calibration), recipe.calibration_length, recipe.calibration_samples, inputs,
                              tokenizer.pad_id) if recipe.needs_calibration else None)
    with staged_directory(output, overwrite) as staging:
        candidate = staging / "model.onnx"
        note(f"{recipe.name}: {recipe.description}")
        apply_recipe(recipe, onnx_path, candidate, calib)
        report, problems = verify_recipe(recipe, candidate, onnx_path, tokenizer, sliced_heldout(max_length))
        precisions = candidate_precisions(candidate)
        problems += fp32_island_problems(precisions)
        if problems:
            raise PrecisionGateError(recipe.name, report, problems)
        meta = precision_meta(recipe, source_onnx=str(onnx_path), source_onnx_sha256=sha256_file(onnx_path),
                              model=model, calibration=_calibration_meta(calibration) if recipe.needs_calibration
                              else None, quantized_nodes=quantized_node_counts(candidate), op_precisions=precisions,
                              parity=report, model_bytes=_size(candidate))
        meta.write(staging)
    note(f"{recipe.name}: min cosine {report['cosine_min']:.6f}, top-10 agreement {report['top10_agreement']:.3f} "
         f"on {report['rows']} held-out rows{_ranking_figures(report)}; wrote {output / 'model.onnx'}")
    return PrecisionResult(output, output / "model.onnx", meta)


def recipe_from_model(spec: str, settings: StreamedRecipeSettings) -> PrecisionResult:
    """A streamed recipe (weight-only or W8A8) straight from a checkpoint or preset, at any size; sibling
    projections fused after quantising unless `fuse_projections=False` (export/fusion.py).

    The gate compares against `reference_onnx` (an fp32 export) when given, else the fp32 PyTorch model.
    `gate=False` is for models too large to run here (the full 7.85B on a 24 GiB machine): precision.json then
    says the graph was not gated. `ranges` reuses activation ranges collected before (W8A8). The settings'
    fields: precision/settings.py."""
    import torch

    from ..calibration.streamed import ActivationRanges
    from ..export.signature import check_opset, check_pooling

    recipe, calibration, ranges, gate = get_recipe(settings.recipe), settings.calibration, settings.ranges, settings.gate
    reference_onnx, max_length, progress = settings.reference_onnx, settings.max_length, settings.progress
    pooling, opset, gate_rows_per_slice = settings.pooling, settings.opset, settings.gate_rows_per_slice
    if not recipe.streamed:
        raise InputError(f"recipe {recipe.name} is made from an fp32 export: nvembed-trt precision --onnx "
                         f"<export>/model.onnx --recipe {recipe.name}; streamed recipes: "
                         f"{', '.join(n for n, r in RECIPES.items() if r.streamed)}")
    check_pooling(pooling)
    check_opset(opset)
    if recipe.needs_calibration and calibration is None and ranges is None:
        raise InputError(f"recipe {recipe.name} needs a calibration set (--calibration DIR; make one with "
                         f"`nvembed-trt calibrate`) or activation ranges collected before (--ranges FILE)")
    if settings.calibration_dtype not in ("float32", "bfloat16"):
        raise InputError(f"calibration dtype must be float32 or bfloat16, got {settings.calibration_dtype!r}")
    source = resolve_model(spec, progress=progress)
    output, overwrite = settings.output, settings.overwrite
    check_output_dir(output, overwrite)
    tokenizer = tokenizer_for(source)
    with staged_directory(output, overwrite) as staging:
        note(f"{recipe.name}: {recipe.description}")
        range_set = None
        if recipe.needs_calibration:
            if ranges is not None:
                range_set = ActivationRanges.load(Path(ranges))
            else:
                arrays = calibration_arrays(recipe, Path(calibration), tokenizer.pad_id, settings.calibration_samples)
                range_set = collect_ranges(source, arrays, getattr(torch, settings.calibration_dtype),
                                           progress=progress)
                note(f"activation ranges of {len(range_set.activation)} GEMMs from {len(arrays['input_ids'])} "
                     f"samples, layer by layer, in {range_set.meta['seconds']:.1f} s")
            range_set.save(staging / RANGES_FILE)
        written = write_streamed_recipe(source, recipe, staging, pooling=pooling, opset=opset, ranges=range_set,
                                        progress=progress, fuse_projections=settings.fuse_projections)
        candidate = staging / "model.onnx"
        report = {"gated": False, "why": "gate=False (the model is too large to run on this host)"}
        if gate:
            heldout = sliced_heldout(max_length)
            if gate_rows_per_slice:
                heldout = heldout.subset(gate_rows_per_slice)
            reference = reference_onnx if reference_onnx is not None else torch_reference(source)
            report, problems = verify_recipe(recipe, candidate, reference, tokenizer, heldout,
                                             ranking=ranking_slice(gate_rows_per_slice))
            report["gated"] = True
            report["reference"] = str(reference_onnx) if reference_onnx else "fp32 PyTorch reference"
            precisions = candidate_precisions(candidate)
            problems += fp32_island_problems(precisions)
            if problems:
                raise PrecisionGateError(recipe.name, report, problems)
        meta = precision_meta(recipe, model=source.describe(),
                              source_onnx=str(reference_onnx) if reference_onnx else None,
                              source_onnx_sha256=sha256_file(Path(reference_onnx)) if reference_onnx else None,
                              calibration=(_calibration_meta(calibration) if calibration is not None else
                                           {"ranges_file": str(ranges)}) if recipe.needs_calibration else None,
                              activation_ranges=(range_set.meta | {"file": RANGES_FILE}) if range_set else None,
                              quantized_nodes=quantized_node_counts(candidate),
                              op_precisions=candidate_precisions(candidate), parity=report,
                              model_bytes=_size(candidate), **written)
        meta.write(staging)
    if report.get("gated"):
        note(f"{recipe.name}: min cosine {report['cosine_min']:.6f}, top-10 agreement "
             f"{report['top10_agreement']:.3f} on {report['rows']} held-out rows in {len(report['slices'])} "
             f"slices{_ranking_figures(report)}; wrote {output / 'model.onnx'}")
    else:
        note(f"{recipe.name}: not gated ({report['why']}); wrote {output / 'model.onnx'}")
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
