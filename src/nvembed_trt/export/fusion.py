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


def _dq_weight(graph: ir.Graph, value: ir.Value | None) -> ir.Node | None:
    """The DequantizeLinear (of a quantised initializer and its scale, no zero point) feeding only this MatMul."""
    node = value.producer() if value is not None else None
    if node is None or node.op_type != "DequantizeLinear" or len(node.inputs) != 2 or len(list(value.uses())) != 1:
        return None
    wq, scale = node.inputs
    if _weight(graph, wq) is None or scale is None or scale.name not in graph.initializers:
        return None
    return node if len(list(wq.uses())) == 1 and len(list(scale.uses())) == 1 else None


def _signature(graph: ir.Graph, matmul: ir.Node) -> tuple | None:
    """What must agree for MatMuls of one activation to fuse: a plain weight (dtype, rows) or a dequantised one
    (dtypes, rows, scale rank, DequantizeLinear attributes); None for a MatMul that cannot take part."""
    right = matmul.inputs[1]
    weight = _weight(graph, right)
    if weight is not None:
        return ("plain", weight.dtype, int(weight.shape[0])) if len(list(weight.uses())) == 1 else None
    dq = _dq_weight(graph, right)
    if dq is None:
        return None
    wq, scale = dq.inputs
    attrs = tuple(sorted((k, a.value) for k, a in dq.attributes.items()))
    return "dq", wq.dtype, int(wq.shape[0]), scale.dtype, len(scale.shape), attrs


def _fused_dq(graph: ir.Graph, dqs: list[ir.Node], name: str) -> ir.Value:
    """One DequantizeLinear over the concatenated quantised weights and scales (per output channel or per block
    along K: both concatenate along N), inserted where the first one was; the old ones are left unused."""
    wqs, scales = [d.inputs[0] for d in dqs], [d.inputs[1] for d in dqs]
    wshape = ir.Shape([wqs[0].shape[0], sum(int(w.shape[1]) for w in wqs)])
    sshape = ir.Shape([*scales[0].shape[:-1], sum(int(s.shape[-1]) for s in scales)])
    wq = ir.Value(name=name, shape=wshape, type=ir.TensorType(wqs[0].dtype),
                  const_value=_concatenated(wqs, 1, wshape))
    scale = ir.Value(name=_fused_name([s.name for s in scales]), shape=sshape, type=ir.TensorType(scales[0].dtype),
                     const_value=_concatenated(scales, -1, sshape))
    graph.register_initializer(wq)
    graph.register_initializer(scale)
    dq = ir.Node("", "DequantizeLinear", [wq, scale], list(dqs[0].attributes.values()), num_outputs=1,
                 name=f"{name}.dq")
    out = dq.outputs[0]
    out.name, out.dtype, out.shape = f"{name}.dequantized", dqs[0].outputs[0].dtype, wshape
    graph.insert_before(dqs[0], dq)
    return out


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
    """Fuse every group of MatMuls that read one activation through weights used nowhere else, plain (the fp16
    export) or dequantised (the streamed recipes: weight-only or W8A8, whose one activation Q/DQ already feeds the
    whole group); the values are those of the separate GEMMs. Rewrites in place; returns what was fused."""
    groups: dict[tuple, list[ir.Node]] = defaultdict(list)
    for node in graph:
        if node.op_type == "MatMul" and node.domain == "":
            signature = _signature(graph, node)
            if signature is not None:
                groups[(id(node.inputs[0]), signature)].append(node)
    fused = []
    for (_, signature), nodes in groups.items():
        if len(nodes) < 2:
            continue
        if signature[0] == "plain":
            sources, dqs = [n.inputs[1] for n in nodes], []
        else:
            dqs = [n.inputs[1].producer() for n in nodes]
            sources = [d.inputs[0] for d in dqs]
        widths = [int(w.shape[1]) for w in sources]
        name = _fused_name([w.name for w in sources])
        replaced = sources + [d.inputs[1] for d in dqs]  # weights and scales, before the nodes let go of them
        if dqs:
            weight = _fused_dq(graph, dqs, name)
        else:
            shape = ir.Shape([sources[0].shape[0], sum(widths)])
            weight = ir.Value(name=name, shape=shape, type=ir.TensorType(sources[0].dtype),
                              const_value=_concatenated(sources, 1, shape))
            graph.register_initializer(weight)
        _replace_with_split(graph, nodes, weight, widths, name)
        if dqs:
            graph.remove(dqs, safe=True)
        for value in replaced:
            graph.initializers.pop(value.name)
        fused.append({"weight": name, "from": [w.name for w in sources], "widths": widths})
    return fused


def fusion_record(applied: bool, fused: list[dict]) -> dict:
    """What export.json and precision.json say about it."""
    return {"applied": applied, "groups": len(fused), "weights": [f["weight"] for f in fused]}
