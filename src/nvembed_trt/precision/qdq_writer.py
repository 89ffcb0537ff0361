"""Quantised ONNX graphs written straight from the checkpoint, one tensor at a time.

The graph is the fp16 export's (traced on the meta device: fp16 weights and matmuls; norms, softmax and pooling
in fp32). Every weight GEMM's weight initializer is replaced by a quantised initializer plus its scale and a
DequantizeLinear feeding the MatMul (what TensorRT takes for weight-only quantisation); W8A8 recipes also put a
QuantizeLinear/DequantizeLinear pair with the calibrated per-tensor scale on the GEMM's activation input.
Attention's activation x activation MatMuls, the embedding table and the latents stay fp16.

Initializers stay lazy: when ir.save streams the external data file, each weight is read from its safetensors
shard (or generated, for random presets), smoothed if the recipe says so, quantised, written and dropped; the
quantised values and their scale are computed once (the writer asks for them one after the other).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import ml_dtypes
import numpy as np
import onnx_ir as ir
import torch

from ..calibration.streamed import ActivationRanges
from ..config import NVEmbedConfig
from ..export.trace import MODULE_PREFIX
from .quantizers import ACTIVATION_QMAX, fp16_scale, fp8_per_channel, int4_blocked, int8_per_channel
from .smoothing import Smoothing

Loader = Callable[[str], torch.Tensor]


@dataclass(frozen=True)
class WeightFormat:
    """How one low-precision dtype is stored in the graph: its ONNX type, the first opset whose Q/DQ takes it, its
    quantiser (w [K, N] fp32, block size -> values, fp16 scales) and whether its scales are blocked along K."""

    dtype: ir.DataType
    min_opset: int
    quantise: Callable[[torch.Tensor, int], tuple[np.ndarray, np.ndarray]]
    blocked: bool = False

    def layout(self, k: int, n: int, block_size: int) -> tuple[int, dict, list[int]]:
        """(block, DequantizeLinear attributes, scale shape) for a [K, N] weight: per output channel, or blocked."""
        if not self.blocked:
            return 0, {"axis": 1}, [n]
        block = int4_block(k, block_size)
        return block, {"axis": 0, "block_size": block}, [k // block, n]


# fp16 scales and FP8 Q/DQ since opset 19; blocked INT4 since 21
FORMATS = {"int8": WeightFormat(ir.DataType.INT8, 19, lambda w, _: int8_per_channel(w)),
           "fp8": WeightFormat(ir.DataType.FLOAT8E4M3FN, 19, lambda w, _: fp8_per_channel(w)),
           "int4": WeightFormat(ir.DataType.INT4, 21, int4_blocked, blocked=True)}


@dataclass(frozen=True)
class QuantSpec:
    weights: str                      # int8 | int4 | fp8
    activations: str | None = None    # None (weight-only) | int8 | fp8
    block_size: int = 128             # int4 only: the largest power of two <= this that divides K is used


def int4_block(k: int, block: int) -> int:
    size = block
    while size > 1 and k % size:
        size //= 2
    return size


class _RecentTensors:
    """The quantised weight and its scale are separate initializers; compute both from one read of the weight.
    A fused group (export/fusion.py) asks for its members' weights, then for their scales: the last few stay."""

    def __init__(self, compute: Callable[[str], tuple[np.ndarray, np.ndarray]], keep: int = 4):
        self.compute, self.keep, self.values = compute, keep, OrderedDict()
        self.loads = 0

    def get(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        if key not in self.values:
            self.values[key] = self.compute(key)
            self.loads += 1
            while len(self.values) > self.keep:
                self.values.popitem(last=False)
        self.values.move_to_end(key)
        return self.values[key]


def _weight_key(value: ir.Value, gemms: set[str]) -> str | None:
    if value is None or value.const_value is None or value.name is None:
        return None
    key = value.name.removeprefix(MODULE_PREFIX).removesuffix(".T")
    return key if key in gemms else None


def _gemm_kn(node: ir.Node) -> tuple[int, int]:
    """(K, N) of a weight GEMM's right-hand side; a Gemm with transB=1 is turned into the [K, N] layout."""
    old = node.inputs[1]
    if node.op_type == "Gemm":
        trans_b = node.attributes.get("transB")
        if trans_b is not None and trans_b.value:
            node.attributes["transB"] = ir.AttrInt64("transB", 0)
            n, k = old.shape
            return int(k), int(n)
    k, n = old.shape
    return int(k), int(n)


def _dequantized_weight(graph: ir.Graph, node: ir.Node, key: str, name: str, fmt: WeightFormat,
                        cache: _RecentTensors, k: int, n: int, attrs: dict, scale_shape: list[int]) -> None:
    """Replace the GEMM's weight initializer by lazy quantised values + scales and a DequantizeLinear (fp16 out)."""
    base, old = MODULE_PREFIX + key, node.inputs[1]
    wq = ir.Value(name=f"{base}.{name}", shape=ir.Shape([k, n]), type=ir.TensorType(fmt.dtype),
                  const_value=ir.LazyTensor(lambda: ir.Tensor(cache.get(key)[0]), dtype=fmt.dtype,
                                            shape=ir.Shape([k, n])))
    ws = ir.Value(name=f"{base}.scale", shape=ir.Shape(scale_shape), type=ir.TensorType(ir.DataType.FLOAT16),
                  const_value=ir.LazyTensor(lambda: ir.Tensor(cache.get(key)[1]), dtype=ir.DataType.FLOAT16,
                                            shape=ir.Shape(scale_shape)))
    graph.register_initializer(wq)
    graph.register_initializer(ws)
    dq = ir.node("DequantizeLinear", [wq, ws], attributes=attrs, name=f"{base}.dq")
    dq.outputs[0].name = f"{base}.dequantized"
    dq.outputs[0].dtype = ir.DataType.FLOAT16
    dq.outputs[0].shape = ir.Shape([k, n])
    graph.insert_before(node, dq)
    node.replace_input_with(1, dq.outputs[0])
    if not old.uses():
        graph.initializers.pop(old.name)


def _quantized_input(graph: ir.Graph, node: ir.Node, key: str, kind: str, amax: float,
                     shared: dict[tuple[str, float], ir.Value]) -> dict:
    """A per-tensor QuantizeLinear/DequantizeLinear pair on the GEMM's activation input (one pair per input and
    scale, shared by the GEMMs that read it); returns what was done, for the sidecar."""
    base, x = MODULE_PREFIX + key, node.inputs[0]
    scale = float(fp16_scale(amax, ACTIVATION_QMAX[kind]))
    pair = shared.get((x.name, scale))
    if pair is None:
        zero_type = FORMATS[kind].dtype
        s = ir.Value(name=f"{base}.input_scale", shape=ir.Shape([]), type=ir.TensorType(ir.DataType.FLOAT16),
                     const_value=ir.Tensor(np.array(scale, dtype=np.float16)))
        zp_array = np.zeros((), dtype=np.int8 if kind == "int8" else ml_dtypes.float8_e4m3fn)
        zp = ir.Value(name=f"{base}.input_zero_point", shape=ir.Shape([]), type=ir.TensorType(zero_type),
                      const_value=ir.Tensor(zp_array))
        graph.register_initializer(s)
        graph.register_initializer(zp)
        q = ir.node("QuantizeLinear", [x, s, zp], name=f"{base}.input_q")
        dqa = ir.node("DequantizeLinear", [q.outputs[0], s, zp], name=f"{base}.input_dq")
        q.outputs[0].name, dqa.outputs[0].name = f"{base}.input_quantized", f"{base}.input_dequantized"
        q.outputs[0].dtype, dqa.outputs[0].dtype = zero_type, ir.DataType.FLOAT16
        q.outputs[0].shape = dqa.outputs[0].shape = x.shape
        graph.insert_before(node, [q, dqa])
        pair = shared[(x.name, scale)] = dqa.outputs[0]
    node.replace_input_with(0, pair)
    return {"activations": kind, "input_amax": amax, "input_scale": scale}


def quantize_graph(model: ir.Model, cfg: NVEmbedConfig, load: Loader, gemms: list[str], spec: QuantSpec,
                   ranges: ActivationRanges | None = None, smoothing: Smoothing | None = None) -> dict:
    """Rewrite `model` (an fp16 trace with bound weights) in place; returns what was done, for the sidecar."""
    if spec.activations and ranges is None:
        raise ValueError("W8A8 quantisation needs activation ranges")
    fmt, gemm_set, blocks = FORMATS[spec.weights], set(gemms), {}

    def compute(key: str) -> tuple[np.ndarray, np.ndarray]:
        w = load(key).to(torch.float32)               # checkpoint layout [out, in]
        if smoothing is not None:
            w = smoothing.apply(key, w)
        return fmt.quantise(w.T.contiguous(), blocks[key])   # [K, N], the MatMul's right-hand side

    cache, shared, done = _RecentTensors(compute), {}, {}
    for node in list(model.graph):
        key = _weight_key(node.inputs[1], gemm_set) if node.op_type in ("MatMul", "Gemm") else None
        if key is None:
            continue
        k, n = _gemm_kn(node)
        blocks[key], attrs, scale_shape = fmt.layout(k, n, spec.block_size)
        _dequantized_weight(model.graph, node, key, spec.weights, fmt, cache, k, n, attrs, scale_shape)
        done[key] = {"op": node.op_type, "k": k, "n": n, "weights": spec.weights,
                     **({"block_size": blocks[key]} if fmt.blocked else {})}
        if spec.activations:
            amax = ranges.per_tensor(key) if smoothing is None else smoothing.smoothed_amax(key, ranges)
            done[key] |= _quantized_input(model.graph, node, key, spec.activations, amax, shared)
    missing = sorted(gemm_set - set(done))
    if missing:
        raise RuntimeError(f"no MatMul/Gemm found for {len(missing)} weight GEMMs, first: {missing[:3]}")
    opset = max(model.opset_imports.get("", 18), fmt.min_opset,
                FORMATS[spec.activations].min_opset if spec.activations else 0)
    model.opset_imports[""] = opset
    model.graph.sort()
    return {"gemms": done, "opset": opset, "cache": cache}
