"""The single-GPU path for the full-size model: ModelOpt's PyTorch quantisation with a forward loop over the
calibration set (on the GPU in fp16 there; on the CPU for tiny), then export of the Q/DQ graph, then the same
held-out gate as the ONNX recipes. ModelOpt's quantisers export through the TorchScript exporter (torch.export
cannot trace their data-dependent checks), so this path uses `dynamo=False`."""

from __future__ import annotations

import warnings
from pathlib import Path

import onnx
import torch

from ..calibration.dataset import load_calibration
from ..console import note, quiet_logger
from ..embedder import torch_device, torch_dtype
from ..errors import InputError
from ..export.checks import fp32_island_problems
from ..export.signature import GraphSignature
from ..export.wrapper import ExportWrapper
from ..provenance import sha256_file
from ..source import load_source, resolve_model
from ..staging import check_output_dir, staged_directory
from .apply import quantized_node_counts
from .pipeline import (PrecisionGateError, PrecisionResult, _calibration_meta, candidate_precisions,
                       precision_meta)
from ..recipes import get_recipe
from .heldout import sliced_heldout
from .verify import verify_recipe

# FP8 is left out here: ModelOpt exports its FP8 quantisers as TensorRT-only custom ops (trt::TRT_FP8QuantizeLinear)
# that ONNX Runtime cannot run, so the accuracy gate could not verify them; the ONNX fp8 recipe is verified.
MODELOPT_CONFIGS = {"int8": "INT8_DEFAULT_CFG"}
TORCHSCRIPT_OPSET = {"int8": 17}


def _forward_loop(calibration: dict, device: torch.device, batch_size: int = 16):
    names = ("input_ids", "attention_mask", "pool_mask")

    def loop(model: torch.nn.Module) -> None:
        count = len(calibration["input_ids"])
        for start in range(0, count, batch_size):
            model(*(torch.from_numpy(calibration[n][start:start + batch_size]).to(device) for n in names))
    return loop


def onnx_from_torch_ptq(spec: str, recipe_name: str, calibration: Path | str, reference_onnx: Path | str,
                        output: Path | str, device: str = "cpu", dtype: str = "float32",
                        overwrite: bool = False, max_length: int = 512) -> PrecisionResult:
    """Quantise `spec` in PyTorch with ModelOpt and write output/model.onnx + precision.json if the gate passes."""
    import modelopt.torch.quantization as mtq

    recipe = get_recipe(recipe_name)
    if recipe.quantize_mode not in MODELOPT_CONFIGS:
        raise InputError(f"the PyTorch quantisation path takes recipe {', '.join(MODELOPT_CONFIGS)}, got "
                         f"{recipe.name} (use `nvembed-trt precision` for the other recipes)")
    reference_onnx, output = Path(reference_onnx), Path(output)
    if not reference_onnx.is_file():
        raise InputError(f"reference ONNX not found: {reference_onnx} (export the fp32 graph first)")
    check_output_dir(output, overwrite)
    dev = torch_device(device)
    source = resolve_model(spec)
    model, tokenizer = load_source(source, dev, torch_dtype(dtype), attention_impl="eager")
    sig = GraphSignature("engine", source.config.embedding_dim)
    calib = load_calibration(Path(calibration), recipe.calibration_length, recipe.calibration_samples,
                             tuple(sig.inputs), tokenizer.pad_id)
    calib = {k: v.astype("int64") for k, v in calib.items()}
    with torch.no_grad(), quiet_logger("modelopt"):
        mtq.quantize(model, getattr(mtq, MODELOPT_CONFIGS[recipe.quantize_mode]), _forward_loop(calib, dev))
    with staged_directory(output, overwrite) as staging:
        candidate = staging / "model.onnx"
        _export_qdq(model, sig, candidate, TORCHSCRIPT_OPSET[recipe.quantize_mode], dev)
        report, problems = verify_recipe(recipe, candidate, reference_onnx, tokenizer, sliced_heldout(max_length))
        problems += fp32_island_problems(candidate_precisions(candidate))
        if problems:
            raise PrecisionGateError(recipe.name, report, problems)
        meta = precision_meta(recipe, path="modelopt-torch-ptq",
                              modelopt_config=MODELOPT_CONFIGS[recipe.quantize_mode], model=source.describe(),
                              device=device, dtype=dtype, reference_onnx=str(reference_onnx),
                              reference_onnx_sha256=sha256_file(reference_onnx),
                              calibration=_calibration_meta(calibration),
                              quantized_nodes=quantized_node_counts(candidate), parity=report)
        meta.write(staging)
    note(f"{recipe.name} (PyTorch PTQ): min cosine {report['cosine_min']:.6f}, top-10 agreement "
         f"{report['top10_agreement']:.3f}; wrote {output / 'model.onnx'}")
    return PrecisionResult(output, output / "model.onnx", meta)


def _export_qdq(model: torch.nn.Module, sig: GraphSignature, path: Path, opset: int, device: torch.device) -> None:
    args = tuple(torch.ones(2, 8, dtype=torch.int32, device=device) + i for i in range(len(sig.inputs)))
    axes = {name: {0: "batch", 1: "sequence"} for name in sig.inputs} | {"embeddings": {0: "batch"}}
    with warnings.catch_warnings(), quiet_logger("torch.onnx"):
        warnings.simplefilter("ignore")
        torch.onnx.export(ExportWrapper(model, "engine"), args, str(path), dynamo=False, opset_version=opset,
                          input_names=list(sig.inputs), output_names=list(sig.outputs), dynamic_axes=axes)
    proto = onnx.load(str(path))  # gather the exporter's per-tensor files (large models) into one data file
    external = sum(len(t.raw_data) for t in proto.graph.initializer) > 2 * 1024**3
    for stray in path.parent.glob("*"):
        if stray != path:
            stray.unlink()
    onnx.save_model(proto, str(path), save_as_external_data=external, all_tensors_to_one_file=True,
                    location=path.name + ".data", size_threshold=1024)
