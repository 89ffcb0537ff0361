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
QUANT_TYPES = {"int8": ir.DataType.INT8, "int4": ir.DataType.INT4, "fp8": ir.DataType.FLOAT8E4M3FN}
MIN_OPSET = {"int8": 19, "fp8": 19, "int4": 21}  # fp16 scales and FP8 Q/DQ since opset 19; blocked INT4 since 21


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


def quantize_graph(model: ir.Model, cfg: NVEmbedConfig, load: Loader, gemms: list[str], spec: QuantSpec,
                   ranges: ActivationRanges | None = None, smoothing: Smoothing | None = None) -> dict:
    """Rewrite `model` (an fp16 trace with bound weights) in place; returns what was done, for the sidecar."""
    if spec.activations and ranges is None:
        raise ValueError("W8A8 quantisation needs activation ranges")
    graph = model.graph
    gemm_set = set(gemms)
    blocks: dict[str, int] = {}

    def weight_kn(key: str) -> torch.Tensor:
        w = load(key).to(torch.float32)               # checkpoint layout [out, in]
        if smoothing is not None:
            w = smoothing.apply(key, w)
        return w.T.contiguous()                        # [K, N], the MatMul's right-hand side

    def compute(key: str) -> tuple[np.ndarray, np.ndarray]:
        w = weight_kn(key)
        if spec.weights == "int8":
            return int8_per_channel(w)
        if spec.weights == "fp8":
            return fp8_per_channel(w)
        return int4_blocked(w, blocks[key])

    cache = _RecentTensors(compute)
    act_cache: dict[tuple[str, float], ir.Value] = {}
    zero_type = QUANT_TYPES[spec.activations] if spec.activations else None
    done: dict[str, dict] = {}
    for node in list(graph):
        if node.op_type not in ("MatMul", "Gemm"):
            continue
        key = _weight_key(node.inputs[1], gemm_set)
        if key is None:
            continue
        old = node.inputs[1]
        if node.op_type == "Gemm":
            trans_b = node.attributes.get("transB")
            if trans_b is not None and trans_b.value:
                node.attributes["transB"] = ir.AttrInt64("transB", 0)
            n, k = old.shape if (trans_b is not None and trans_b.value) else (old.shape[1], old.shape[0])
        else:
            k, n = old.shape
        k, n = int(k), int(n)
        attrs: dict = {"axis": 1}
        scale_shape = [n]
        if spec.weights == "int4":
            blocks[key] = int4_block(k, spec.block_size)
            attrs = {"axis": 0, "block_size": blocks[key]}
            scale_shape = [k // blocks[key], n]
        base = MODULE_PREFIX + key
        wq = ir.Value(name=f"{base}.{spec.weights}", shape=ir.Shape([k, n]), type=ir.TensorType(QUANT_TYPES[spec.weights]),
                      const_value=ir.LazyTensor(lambda key=key: ir.Tensor(cache.get(key)[0]),
                                                dtype=QUANT_TYPES[spec.weights], shape=ir.Shape([k, n])))
        ws = ir.Value(name=f"{base}.scale", shape=ir.Shape(scale_shape), type=ir.TensorType(ir.DataType.FLOAT16),
                      const_value=ir.LazyTensor(lambda key=key: ir.Tensor(cache.get(key)[1]),
                                                dtype=ir.DataType.FLOAT16, shape=ir.Shape(scale_shape)))
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
        record = {"op": node.op_type, "k": k, "n": n, "weights": spec.weights}
        if spec.weights == "int4":
            record["block_size"] = blocks[key]
        if spec.activations:
            amax = ranges.per_tensor(key) if smoothing is None else smoothing.smoothed_amax(key, ranges)
            scale = float(fp16_scale(amax, ACTIVATION_QMAX[spec.activations]))
            x = node.inputs[0]
            pair = act_cache.get((x.name, scale))
            if pair is None:
                s = ir.Value(name=f"{base}.input_scale", shape=ir.Shape([]), type=ir.TensorType(ir.DataType.FLOAT16),
                             const_value=ir.Tensor(np.array(scale, dtype=np.float16)))
                zp_array = np.zeros((), dtype=np.int8 if spec.activations == "int8" else ml_dtypes.float8_e4m3fn)
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
                pair = act_cache[(x.name, scale)] = dqa.outputs[0]
            node.replace_input_with(0, pair)
            record |= {"activations": spec.activations, "input_amax": amax, "input_scale": scale}
        done[key] = record
    missing = sorted(gemm_set - set(done))
    if missing:
        raise RuntimeError(f"no MatMul/Gemm found for {len(missing)} weight GEMMs, first: {missing[:3]}")
    opset = max(model.opset_imports.get("", 18), MIN_OPSET[spec.weights],
                MIN_OPSET[spec.activations] if spec.activations else 0)
    model.opset_imports[""] = opset
    graph.sort()
    return {"gemms": done, "opset": opset, "cache": cache}
