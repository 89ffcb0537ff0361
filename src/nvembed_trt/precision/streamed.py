"""Streamed recipes (weight-only int8/int4, W8A8 int8/fp8): a checkpoint -> a quantised fp16 graph, at any size.

Nothing is held whole: the graph is traced on the meta device, activation ranges (W8A8) are collected one decoder
layer at a time, and each weight is read, smoothed, quantised and written to the external data file one tensor at
a time. Peak memory is about one decoder layer (calibration) or one weight tensor (writing).
"""

from __future__ import annotations

import time
from functools import lru_cache
from pathlib import Path

import numpy as np
import onnx_ir as ir
import torch
from onnxscript.optimizer import optimize_ir

from ..calibration.dataset import load_calibration
from ..calibration.streamed import ActivationRanges, gemm_keys, streamed_ranges
from ..checkpoint.layout import tensor_infos
from ..checkpoint.loader import check_keys, expected_shapes, meta_model
from ..console import note, quiet_logger
from ..export.fusion import fuse_sibling_matmuls, fusion_record
from ..export.progress import streaming_callback
from ..export.signature import INDEX_DTYPE
from ..export.trace import trace_onnx
from ..export.weights import bind_weights, checkpoint_loader, random_loader
from ..source import ModelSource
from .qdq_writer import QuantSpec, quantize_graph
from ..recipes import Recipe
from .smoothing import Smoothing

PROTOBUF_LIMIT = 2 * 1024**3
RANGES_FILE = "activation-ranges.npz"


@lru_cache(maxsize=2)
def _traced(cfg, pooling: str, opset: int) -> ir.Model:
    return trace_onnx(cfg, torch.float16, pooling, opset)


def traced_fp16(cfg, pooling: str, opset: int) -> ir.Model:
    """The fp16 export's graph (weights not bound), traced once per process and cloned for each use."""
    return _traced(cfg, pooling, opset).clone()


def source_loader(source: ModelSource):
    shapes = expected_shapes(meta_model(source.config))
    if source.checkpoint is not None:
        check_keys(shapes, tensor_infos(source.checkpoint), str(source.checkpoint))
        return checkpoint_loader(source.checkpoint), shapes
    return random_loader(shapes, source.preset.seed), shapes


def calibration_arrays(recipe: Recipe, calibration: Path, pad_id: int, samples: int | None = None,
                       length: int | None = None) -> dict[str, np.ndarray]:
    names = ("input_ids", "attention_mask", "pool_mask")
    arrays = load_calibration(Path(calibration), length or recipe.calibration_length,
                              samples or recipe.calibration_samples, names, pad_id)
    return {k: v.astype(INDEX_DTYPE) for k, v in arrays.items()}


def collect_ranges(source: ModelSource, calibration: dict[str, np.ndarray], dtype: torch.dtype = torch.float32,
                   batch_size: int = 16, progress: bool = True) -> ActivationRanges:
    load, _ = source_loader(source)
    return streamed_ranges(source.config, load, calibration, dtype, batch_size, progress)


def write_streamed_recipe(source: ModelSource, recipe: Recipe, dest: Path, *, pooling: str = "engine",
                          opset: int = 18, ranges: ActivationRanges | None = None,
                          external_data_threshold: int = PROTOBUF_LIMIT, progress: bool = True,
                          fuse_projections: bool = True) -> dict:
    """dest/model.onnx (+ model.onnx.data) for a streamed recipe; returns what the sidecar records. Sibling
    projections (q/k/v, gate/up) are fused after quantising, as in the fp16 export (export/fusion.py): the same
    quantised values and scales, concatenated, so TensorRT's builder makes no second copy of them."""
    if recipe.method == "w8a8" and ranges is None:
        raise ValueError(f"recipe {recipe.name} needs activation ranges")
    cfg = source.config
    timings: dict[str, float] = {}
    load, shapes = source_loader(source)
    smoothing = (Smoothing.from_ranges(cfg, ranges, recipe.smoothquant_alpha)
                 if recipe.smoothquant_alpha is not None else None)
    start = time.perf_counter()
    model = traced_fp16(cfg, pooling, opset)
    bind_weights(model, smoothing.loader(load) if smoothing else load, shapes, torch.float16)
    with quiet_logger("onnxscript"):
        optimize_ir(model)  # before quantising: constant folding must never see a DequantizeLinear
    timings["trace_s"] = time.perf_counter() - start
    spec = QuantSpec(recipe.weight_format, recipe.quantize_mode if recipe.method == "w8a8" else None,
                     recipe.block_size)
    done = quantize_graph(model, cfg, load, gemm_keys(cfg), spec, ranges, smoothing)
    cache = done.pop("cache")
    fused = fuse_sibling_matmuls(model.graph) if fuse_projections else []
    weight_bytes = _initializer_bytes(model)
    external = weight_bytes > external_data_threshold
    path = dest / "model.onnx"
    start = time.perf_counter()
    if external:
        if progress:
            with streaming_callback(f"quantising and streaming weights to {path.name}.data", weight_bytes) as cb:
                ir.save(model, path, external_data="model.onnx.data", size_threshold_bytes=1024, callback=cb)
        else:
            ir.save(model, path, external_data="model.onnx.data", size_threshold_bytes=1024)
    else:
        ir.save(model, path)
    timings["write_s"] = time.perf_counter() - start
    note(f"{recipe.name}: {len(done['gemms'])} weight GEMMs quantised ({spec.weights} weights"
         + (f", {spec.activations} activations" if spec.activations else ", weight-only") +
         f"), {weight_bytes / 1e9:.3f} GB of initializers, opset {done['opset']}, in {timings['write_s']:.1f} s")
    return {"quantization": {"weights": spec.weights, "activations": spec.activations,
                             "block_size": spec.block_size if spec.weights == "int4" else None,
                             "opset": done["opset"], "gemms": done["gemms"], "weight_reads": cache.loads,
                             "smoothing": smoothing.describe() if smoothing else None},
            "fused_projections": fusion_record(fuse_projections, fused),
            "initializer_bytes": weight_bytes, "external_data": external,
            "timings_s": {k: round(v, 2) for k, v in timings.items()}}


def _initializer_bytes(model: ir.Model) -> int:
    total = 0
    for value in model.graph.initializers.values():
        tensor = value.const_value
        if tensor is None:
            continue
        count = int(np.prod([int(d) for d in tensor.shape], dtype=np.int64))
        total += (count + 1) // 2 if tensor.dtype == ir.DataType.INT4 else count * int(tensor.dtype.itemsize)
    return total
