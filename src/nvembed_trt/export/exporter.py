"""onnx_from_model: a preset or checkpoint directory -> a checked ONNX graph with export.json.

Steps: trace on the meta device (no weights in memory) -> bind initializers lazily to the checkpoint shards ->
optimise (sequence ops removed, small constants folded) -> fuse sibling projections (fp16 exports by default:
q/k/v and gate/up as one MatMul + Split, see fusion.py) -> stream weights into model.onnx(.data) one tensor at a
time -> check names, shapes and values -> rename the finished folder into place. A failure leaves nothing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import onnx_ir as ir
import torch
from onnxscript.optimizer import optimize_ir

from ..checkpoint.layout import tensor_infos
from ..checkpoint.loader import check_keys, expected_shapes, load_model, meta_model, random_model
from ..console import note, quiet_logger
from ..embedder import torch_device
from ..errors import InputError
from ..artifacts.graph import DTYPE_RECIPES, ExportMeta
from ..provenance import sha256_file
from ..source import ModelSource, resolve_model, tokenizer_for
from ..staging import check_output_dir, staged_directory
from .fusion import fuse_sibling_matmuls, fusion_record
from .checks import PARITY_THRESHOLDS, ExportValidationError, graph_report, parity_report
from .progress import streaming_callback
from .signature import GraphSignature, check_opset, check_pooling
from .slim import slim_if_valid
from .trace import trace_onnx
from .weights import bind_weights, checkpoint_loader, random_loader

EXPORT_DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "float16": torch.float16}
PROTOBUF_LIMIT = 2 * 1024**3  # a single .onnx protobuf cannot exceed 2 GiB


@dataclass(frozen=True)
class ExportResult:
    directory: Path
    onnx_path: Path
    meta: ExportMeta


def _reference_loader(source: ModelSource, device: torch.device):
    def load():
        if source.checkpoint is not None:
            return load_model(source.checkpoint, device, torch.float32, progress=False)
        return random_model(source.config, device, torch.float32, source.preset.seed, progress=False)
    return load


def _weights_bytes(model: ir.Model) -> int:
    return sum(v.const_value.nbytes for v in model.graph.initializers.values() if v.const_value is not None)


def onnx_from_model(spec: str, output: Path | str, *, opset: int = 18, pooling: str = "engine",
                    dtype: str = "float32", device: str = "cpu", external_data_threshold: int = PROTOBUF_LIMIT,
                    parity: bool = True, slim: bool = False, overwrite: bool = False,
                    fuse_projections: bool | None = None) -> ExportResult:
    """Export `spec` (preset name or checkpoint directory) to output/model.onnx; see the module docstring.
    fuse_projections: None fuses for float16 (the engine-ready graph) and keeps float32 exports one GEMM per
    checkpoint weight (the precision recipes calibrate and report each projection)."""
    check_opset(opset)
    sig_pooling = check_pooling(pooling)
    if dtype not in EXPORT_DTYPES:
        raise InputError(f"export dtype must be one of {', '.join(EXPORT_DTYPES)}, got {dtype!r}")
    dev = torch_device(device)
    fuse = dtype == "float16" if fuse_projections is None else fuse_projections
    output = Path(output)
    check_output_dir(output, overwrite)  # before resolving, which may write a preset's checkpoint
    source = resolve_model(spec)
    with staged_directory(output, overwrite) as staging:
        meta = _export_into(staging, source, opset, sig_pooling, dtype, dev, external_data_threshold, parity, slim,
                            fuse)
    return ExportResult(output, output / "model.onnx", meta)


def _export_into(staging: Path, source: ModelSource, opset: int, pooling, dtype: str, device: torch.device,
                 external_data_threshold: int, parity: bool, slim: bool, fuse: bool) -> ExportMeta:
    cfg, torch_dt = source.config, EXPORT_DTYPES[dtype]
    sig = GraphSignature(pooling, cfg.embedding_dim)
    shapes = expected_shapes(meta_model(cfg))
    if source.checkpoint is not None:
        check_keys(shapes, tensor_infos(source.checkpoint), str(source.checkpoint))
        load = checkpoint_loader(source.checkpoint)
    else:
        load = random_loader(shapes, source.preset.seed)
    timings: dict[str, float] = {}
    start = time.perf_counter()
    model = trace_onnx(cfg, torch_dt, pooling, opset)
    timings["trace_s"] = time.perf_counter() - start
    note(f"traced {cfg.body.num_layers}-layer graph on the meta device in {timings['trace_s']:.1f} s "
         f"(opset {opset}, {dtype}, pooling in {pooling})")
    transposed = bind_weights(model, load, shapes, torch_dt)
    start = time.perf_counter()
    with quiet_logger("onnxscript"):
        optimize_ir(model)
    timings["optimize_s"] = time.perf_counter() - start
    fused = fuse_sibling_matmuls(model.graph) if fuse else []
    if fused:
        note(f"fused {len(fused)} groups of sibling projections into one MatMul + Split each "
             f"(e.g. {fused[0]['weight']})")
    weight_bytes = _weights_bytes(model)
    external = weight_bytes > external_data_threshold
    onnx_path = staging / "model.onnx"
    start = time.perf_counter()
    if external:
        with streaming_callback(f"streaming weights to {onnx_path.name}.data", weight_bytes) as callback:
            ir.save(model, onnx_path, external_data="model.onnx.data", size_threshold_bytes=1024,
                    callback=callback)
    else:
        ir.save(model, onnx_path)
    timings["write_s"] = time.perf_counter() - start
    note(f"wrote {onnx_path.name}" + (f" + {onnx_path.name}.data" if external else "") +
         f" ({weight_bytes / 1e9:.2f} GB of weights) in {timings['write_s']:.1f} s")
    del model
    tokenizer = tokenizer_for(source)
    providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if device.type == "cuda" else \
        ["CPUExecutionProvider"]

    def validate(path: Path) -> tuple[dict, dict, list[str]]:
        """names and shapes first; values only for a graph that passed them."""
        report, problems = graph_report(path, sig)
        if not parity or problems:
            return report, {"skipped": "parity=False" if not parity else "graph checks failed"}, problems
        result, parity_problems = parity_report(path, sig, tokenizer, _reference_loader(source, device),
                                                PARITY_THRESHOLDS[dtype], providers)
        return report, result, problems + parity_problems

    start = time.perf_counter()
    report, parity_meta, problems = validate(onnx_path)
    timings["checks_s"] = time.perf_counter() - start
    if problems:
        raise ExportValidationError(onnx_path, problems)
    if parity:
        note(f"parity vs the fp32 reference: min cosine {parity_meta['min_cosine']:.6f}, "
             f"max abs {parity_meta['max_abs']:.2e} over {len(parity_meta['cases'])} cases")
    slimming = {"applied": False, "requested": False}
    if slim:
        slimming = {"requested": True, **slim_if_valid(onnx_path, external, validate)}
        if slimming["applied"]:
            report, parity_meta = slimming.pop("graph"), slimming.pop("parity")
    meta = ExportMeta.new(recipe=DTYPE_RECIPES[dtype], model=source.describe(), config=cfg.to_hf_dict(),
                          opset=opset, dtype=dtype, signature=sig.describe(), external_data=external,
                          weight_bytes=weight_bytes, pre_transposed_weights=transposed,
                          fused_projections=fusion_record(fuse, fused), graph=report, parity=parity_meta,
                          slim=slimming, onnx_sha256=sha256_file(onnx_path),
                          timings_s={k: round(v, 2) for k, v in timings.items()})
    meta.write(staging)
    return meta
