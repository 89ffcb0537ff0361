"""Make a recipe's graph from the fp32 export with ModelOpt (AutoCast or Q/DQ quantisation)."""

from __future__ import annotations

import re
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import onnx

from ..console import quiet_logger
from ..recipes import Recipe


def apply_recipe(recipe: Recipe, source: Path, dest: Path, calibration: dict[str, np.ndarray] | None) -> None:
    """Write dest (model.onnx, + model.onnx.data when the source has external data)."""
    external = source.with_name(source.name + ".data").exists()
    if recipe.method == "copy":
        shutil.copyfile(source, dest)
        if external:
            shutil.copyfile(source.with_name(source.name + ".data"), dest.with_name(dest.name + ".data"))
        return
    with quiet_logger("modelopt"):
        if recipe.method == "autocast":
            _autocast(recipe, source, dest, calibration, external)
        else:
            _quantize(recipe, source, dest, calibration, external)


def _autocast(recipe: Recipe, source: Path, dest: Path, calibration: dict, external: bool) -> None:
    from modelopt.onnx.autocast import convert_to_mixed_precision

    calib_file = dest.with_name("calibration-inputs.npz")
    np.savez(calib_file, **calibration)
    try:
        model = convert_to_mixed_precision(onnx_path=str(source), low_precision_type=recipe.low_precision,
                                           keep_io_types=True, calibration_data=str(calib_file),
                                           providers=["cpu"], op_types_to_exclude=list(recipe.fp32_op_types))
    finally:
        calib_file.unlink(missing_ok=True)
    del model.graph.value_info[:]  # stale types make ONNX Runtime fail on buffer reuse (KNOWLEDGE §3)
    onnx.save_model(model, str(dest), save_as_external_data=external, all_tensors_to_one_file=True,
                    location=dest.name + ".data", size_threshold=1024)


def activation_matmuls(path: Path) -> list[str]:
    """Names of MatMul nodes with no weight input (attention's QK^T and PV): kept in float by W8A8 recipes."""
    graph = onnx.load(str(path), load_external_data=False).graph
    weights = {t.name for t in graph.initializer}
    return [n.name for n in graph.node if n.op_type == "MatMul" and not any(i in weights for i in n.input)]


def _quantize(recipe: Recipe, source: Path, dest: Path, calibration: dict, external: bool) -> None:
    from modelopt.onnx.quantization import quantize

    excluded = activation_matmuls(source) if recipe.weights_only_gemms else []
    quantize(onnx_path=str(source), quantize_mode=recipe.quantize_mode, calibration_data=calibration,
             calibration_method=recipe.calibration_method, calibration_eps=["cpu"],
             op_types_to_quantize=list(recipe.op_types_to_quantize), output_path=str(dest),
             use_external_data_format=external, nodes_to_exclude=[f"^{re.escape(n)}$" for n in excluded],
             high_precision_dtype=recipe.high_precision_dtype,
             op_types_to_exclude_fp16=list(recipe.fp32_op_types))  # ModelOpt's default casts norms to fp16


def quantized_node_counts(path: Path) -> dict[str, int]:
    """How many nodes of each type consume a DequantizeLinear output (the quantised ops)."""
    graph = onnx.load(str(path), load_external_data=False).graph
    dq_outputs = {out for node in graph.node if node.op_type == "DequantizeLinear" for out in node.output}
    counts = Counter(node.op_type for node in graph.node
                     if node.op_type != "QuantizeLinear" and any(i in dq_outputs for i in node.input))
    return dict(sorted(counts.items()))
