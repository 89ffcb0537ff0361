"""Sibling projections fused in the export: MatMuls that read the same activation through pre-transposed weights
(q/k/v of every decoder layer, gate/up of every MLP) become one MatMul over their weights concatenated along the
output axis, then a Split back into the original tensors.

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


def _concatenated(weights: list[ir.Value], shape: ir.Shape) -> ir.LazyTensor:
    def materialise() -> ir.Tensor:
        return ir.Tensor(np.concatenate([w.const_value.numpy() for w in weights], axis=1))
    return ir.LazyTensor(materialise, dtype=weights[0].dtype, shape=shape)


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


def fuse_sibling_matmuls(graph: ir.Graph) -> list[dict]:
    """Rewrite every group in place; returns what was fused (names and column widths) for export.json."""
    fused = []
    for nodes in _groups(graph):
        weights = [n.inputs[1] for n in nodes]
        widths = [int(w.shape[1]) for w in weights]
        name = _fused_name([w.name for w in weights])
        shape = ir.Shape([weights[0].shape[0], sum(widths)])
        weight = ir.Value(name=name, shape=shape, type=ir.TensorType(weights[0].dtype),
                          const_value=_concatenated(weights, shape))
        graph.register_initializer(weight)
        sizes = ir.Value(name=name + ".split", shape=ir.Shape([len(widths)]), type=ir.TensorType(ir.DataType.INT64),
                         const_value=ir.Tensor(np.array(widths, dtype=np.int64)))
        graph.register_initializer(sizes)
        matmul = ir.Node("", "MatMul", [nodes[0].inputs[0], weight], num_outputs=1, name=f"{nodes[0].name}_fused")
        matmul.outputs[0].name = f"{name}.out"
        matmul.outputs[0].dtype = weights[0].dtype
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
        for w in weights:
            graph.initializers.pop(w.name)
        fused.append({"weight": name, "from": [w.name for w in weights], "widths": widths})
    return fused
