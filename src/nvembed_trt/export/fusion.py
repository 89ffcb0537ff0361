"""Sibling projections fused in the export: MatMuls that read the same activation through pre-transposed weights
(q/k/v of every decoder layer, gate/up of every MLP) become one MatMul over their weights concatenated along the
output axis, then a Split back into the original tensors; in quantised graphs the same for MatMuls whose weights
are DequantizeLinear(quantised weight, scale): one DequantizeLinear over the concatenated weights and scales.

Why here and not in the builder: TensorRT fuses these MatMuls itself, and TensorRT-RTX 1.7 does it by allocating
each fused weight afresh and holding it until the plan's weight blob is written. Measured with an allocation
trace on full-width-2l: besides one buffer the size of all weights (the plan's weights), the builder's peak held
2 x 48 MiB (q/k/v) and 2 x 224 MiB (gate/up), i.e. (48 + 224) MiB per layer, 8.5 GiB at 32 layers: what put the
full-size fp16 build over a 24 GiB machine. Concatenated here, the fused weight is streamed into the data file like
any other (one layer's pair in memory at a time) and the builder has nothing left to copy. The arithmetic is the
same (the same products, column blocks of one GEMM)."""

from __future__ import annotations

import os
from collections import defaultdict

import numpy as np
import onnx_ir as ir


def _fused_name(names: list[str]) -> str:
    """model.x.self_attn.q_proj.weight.T + k_proj + v_proj -> model.x.self_attn.q_proj+k_proj+v_proj.weight.T"""
    prefix = os.path.commonprefix(names)
    prefix = prefix[: prefix.rfind(".") + 1]
    suffix = os.path.commonprefix([n[::-1] for n in names])[::-1]
    suffix = suffix[suffix.find("."):] if "." in suffix else ""
    middles = [n[len(prefix): len(n) - len(suffix)] for n in names]
    return prefix + "+".join(middles) + suffix


def _weight(graph: ir.Graph, value: ir.Value | None) -> ir.Value | None:
    """A 2-D initializer with data (a bound weight), or None."""
    if value is None or value.name not in graph.initializers or value.const_value is None:
        return None
    return value if value.shape is not None and len(value.shape) == 2 else None


def _concatenated(values: list[ir.Value], axis: int, shape: ir.Shape) -> ir.LazyTensor:
    """Concatenated when the writer streams it: one group's members in memory at a time."""
    def materialise() -> ir.Tensor:
        return ir.Tensor(np.concatenate([v.const_value.numpy() for v in values], axis=axis), dtype=values[0].dtype)
    return ir.LazyTensor(materialise, dtype=values[0].dtype, shape=shape)


def _groups(graph: ir.Graph) -> list[list[ir.Node]]:
    """MatMuls by shared activation, in graph order: only groups of >= 2 whose weights agree in rows and dtype."""
    by_input: dict[int, list[ir.Node]] = defaultdict(list)
    for node in graph:
        if node.op_type == "MatMul" and node.domain == "" and _weight(graph, node.inputs[1]) is not None:
            by_input[id(node.inputs[0])].append(node)
    groups = []
    for nodes in by_input.values():
        weights = [n.inputs[1] for n in nodes]
        if len(nodes) >= 2 and len({(w.shape[0], w.dtype) for w in weights}) == 1 and \
                all(len(list(w.uses())) == 1 for w in weights):
            groups.append(nodes)
    return groups


def _replace_with_split(graph: ir.Graph, nodes: list[ir.Node], weight: ir.Value, widths: list[int],
                        name: str) -> None:
    """MatMul(x, weight) -> Split(widths) in place of `nodes` (MatMuls of x); their outputs keep their names."""
    sizes = ir.Value(name=name + ".split", shape=ir.Shape([len(widths)]), type=ir.TensorType(ir.DataType.INT64),
                     const_value=ir.Tensor(np.array(widths, dtype=np.int64)))
    graph.register_initializer(sizes)
    matmul = ir.Node("", "MatMul", [nodes[0].inputs[0], weight], num_outputs=1, name=f"{nodes[0].name}_fused")
    matmul.outputs[0].name = f"{name}.out"
    matmul.outputs[0].dtype = nodes[0].outputs[0].dtype
    split = ir.Node("", "Split", [matmul.outputs[0], sizes], [ir.AttrInt64("axis", -1)],
                    num_outputs=len(nodes), name=f"{nodes[0].name}_split")
    graph.insert_before(nodes[0], [matmul, split])
    for node, out in zip(nodes, split.outputs):
        old = node.outputs[0]
        out.dtype, out.shape = old.dtype, old.shape
        old_name, old.name = old.name, f"{old.name}.unfused"
        out.name = old_name
        old.replace_all_uses_with(out, replace_graph_outputs=True)
    graph.remove(nodes, safe=True)


def fuse_sibling_matmuls(graph: ir.Graph) -> list[dict]:
    """Rewrite every group in place; returns what was fused (names and column widths) for export.json."""
    fused = []
    for nodes in _groups(graph):
        weights = [n.inputs[1] for n in nodes]
        widths = [int(w.shape[1]) for w in weights]
        name = _fused_name([w.name for w in weights])
        shape = ir.Shape([weights[0].shape[0], sum(widths)])
        weight = ir.Value(name=name, shape=shape, type=ir.TensorType(weights[0].dtype),
                          const_value=_concatenated(weights, 1, shape))
        graph.register_initializer(weight)
        _replace_with_split(graph, nodes, weight, widths, name)
        for w in weights:
            graph.initializers.pop(w.name)
        fused.append({"weight": name, "from": [w.name for w in weights], "widths": widths})
    return fused


# --- the same fusion on quantised graphs: MatMul(x, DequantizeLinear(w_q, scale)) siblings ----------------------

def _dq_weight(graph: ir.Graph, value: ir.Value | None) -> ir.Node | None:
    """The DequantizeLinear (of a quantised initializer and its scale, no zero point) feeding only this MatMul."""
    node = value.producer() if value is not None else None
    if node is None or node.op_type != "DequantizeLinear" or len(node.inputs) != 2 or len(list(value.uses())) != 1:
        return None
    wq, scale = node.inputs
    if _weight(graph, wq) is None or scale is None or scale.name not in graph.initializers:
        return None
    return node if len(list(wq.uses())) == 1 and len(list(scale.uses())) == 1 else None


def _dq_signature(node: ir.Node) -> tuple:
    attrs = tuple(sorted((k, a.value) for k, a in node.attributes.items()))
    wq, scale = node.inputs
    return wq.dtype, int(wq.shape[0]), scale.dtype, len(scale.shape), attrs


def fuse_sibling_dq_matmuls(graph: ir.Graph) -> list[dict]:
    """Quantised siblings (weight-only or W8A8: one activation Q/DQ already feeds them all) -> one DequantizeLinear
    over the concatenated quantised weights and scales (per output channel, or per block along K: both concatenate
    along N), one MatMul, one Split. The values are those of the separate GEMMs, bit for bit."""
    by_input: dict[tuple, list[ir.Node]] = defaultdict(list)
    for node in graph:
        if node.op_type == "MatMul" and node.domain == "":
            dq = _dq_weight(graph, node.inputs[1])
            if dq is not None:
                by_input[(id(node.inputs[0]), _dq_signature(dq))].append(node)
    fused = []
    for nodes in (n for n in by_input.values() if len(n) >= 2):
        dqs = [n.inputs[1].producer() for n in nodes]
        wqs, scales = [d.inputs[0] for d in dqs], [d.inputs[1] for d in dqs]
        widths = [int(w.shape[1]) for w in wqs]
        name = _fused_name([w.name for w in wqs])
        wshape = ir.Shape([wqs[0].shape[0], sum(widths)])
        sshape = ir.Shape([*scales[0].shape[:-1], sum(int(s.shape[-1]) for s in scales)])
        wq = ir.Value(name=name, shape=wshape, type=ir.TensorType(wqs[0].dtype),
                      const_value=_concatenated(wqs, 1, wshape))
        scale = ir.Value(name=_fused_name([s.name for s in scales]), shape=sshape,
                         type=ir.TensorType(scales[0].dtype), const_value=_concatenated(scales, -1, sshape))
        graph.register_initializer(wq)
        graph.register_initializer(scale)
        dq = ir.Node("", "DequantizeLinear", [wq, scale], list(dqs[0].attributes.values()), num_outputs=1,
                     name=f"{name}.dq")
        out = dq.outputs[0]
        out.name, out.dtype, out.shape = f"{name}.dequantized", dqs[0].outputs[0].dtype, wshape
        graph.insert_before(dqs[0], dq)
        _replace_with_split(graph, nodes, dq.outputs[0], widths, name)
        graph.remove(dqs, safe=True)
        for value in wqs + scales:
            graph.initializers.pop(value.name)
        fused.append({"weight": name, "from": [w.name for w in wqs], "widths": widths})
    return fused
