"""Sibling projections fused in the export (q/k/v, gate/up -> one MatMul + Split): the fused weight is the
checkpoint's weights transposed and concatenated, the graph computes the same embeddings as the unfused one, and
only true siblings (same activation, same rows, weights used once) are fused."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from safetensors.numpy import load_file

from nvembed_trt.export import onnx_from_model
from nvembed_trt.export.fusion import _fused_name, fuse_sibling_matmuls
from nvembed_trt.presets import PRESETS
from nvembed_trt.source import resolve_model


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    root = tmp_path_factory.mktemp("fusion")
    return {"plain": onnx_from_model("tiny", root / "plain", parity=False),
            "fused": onnx_from_model("tiny", root / "fused", fuse_projections=True, parity=True),
            "fp16": onnx_from_model("tiny", root / "fp16", dtype="float16", parity=True)}


def _initializers(path) -> dict[str, np.ndarray]:
    return {t.name: numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer}


def test_fused_names():
    base = "model.embedding_model.layers.3.self_attn."
    assert _fused_name([base + p + ".weight.T" for p in ("q_proj", "k_proj", "v_proj")]) == \
        base + "q_proj+k_proj+v_proj.weight.T"
    assert _fused_name(["a.gate_proj.weight.T", "a.up_proj.weight.T"]) == "a.gate_proj+up_proj.weight.T"


def test_defaults_fp16_fused_fp32_not(exports):
    layers = PRESETS["tiny"].config.body.num_layers
    assert exports["plain"].meta.fused_projections == {"applied": False, "groups": 0, "weights": []}
    for name in ("fused", "fp16"):
        fused = exports[name].meta.fused_projections
        assert fused["applied"] and fused["groups"] == 2 * layers, fused
    assert exports["fp16"].meta.parity["passed"]
    plain_ops, fused_ops = exports["plain"].meta.graph["ops"], exports["fused"].meta.graph["ops"]
    # per layer: q, k, v -> 1 MatMul and gate, up -> 1 MatMul (3 fewer), one Split each added
    assert plain_ops["MatMul"] - fused_ops["MatMul"] == 3 * layers
    assert fused_ops["Split"] - plain_ops.get("Split", 0) == 2 * layers


def test_fused_weight_is_the_checkpoint_concatenated(exports):
    weights = _initializers(exports["fused"].onnx_path)
    ckpt = resolve_model("tiny").checkpoint
    shards = {}
    for shard in sorted(ckpt.glob("*.safetensors")):
        shards.update(load_file(shard))
    prefix = "embedding_model.layers.1."
    qkv = weights[f"model.{prefix}self_attn.q_proj+k_proj+v_proj.weight.T"]
    want = np.concatenate([shards[f"{prefix}self_attn.{p}_proj.weight"].T for p in "qkv"], axis=1)
    assert qkv.shape == want.shape and np.array_equal(qkv, want.astype(qkv.dtype))
    gate_up = weights[f"model.{prefix}mlp.gate_proj+up_proj.weight.T"]
    assert np.array_equal(gate_up, np.concatenate([shards[f"{prefix}mlp.{p}_proj.weight"].T for p in ("gate", "up")],
                                                  axis=1))
    assert not any(".q_proj.weight" in n or ".up_proj.weight" in n for n in weights)


def test_fused_graph_equals_unfused(exports):
    rng = np.random.default_rng(0)
    ids = rng.integers(3, 1000, size=(3, 37)).astype(np.int32)
    mask = np.ones_like(ids)
    mask[1, 20:] = 0
    outs = []
    for name in ("plain", "fused"):
        session = ort.InferenceSession(str(exports[name].onnx_path), providers=["CPUExecutionProvider"])
        feeds = {i.name: (mask if "mask" in i.name else ids) for i in session.get_inputs()}
        outs.append(session.run(None, feeds)[0])
    assert outs[0].shape == outs[1].shape == (3, PRESETS["tiny"].config.embedding_dim)
    assert np.abs(outs[0] - outs[1]).max() < 1e-5


def _graph(matmuls: list[tuple[str, str, str]]) -> ir.Graph:
    """x (2, 4) and y = x * 2; weights w1 (4, 3), w2 (4, 5) of random values; MatMuls given as (input, weight, out)."""
    rng = np.random.default_rng(1)
    weights = [numpy_helper.from_array(rng.standard_normal((4, n)).astype(np.float32), f"w{i}")
               for i, n in ((1, 3), (2, 5))]
    nodes = [helper.make_node("Add", ["x", "x"], ["y"])] + [helper.make_node("MatMul", [i, w], [o])
                                                           for i, w, o in matmuls]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])],
                              [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for _, _, o in matmuls],
                              weights)
    return ir.from_proto(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])).graph


def _run(graph: ir.Graph) -> list[np.ndarray]:
    proto = ir.to_proto(ir.Model(graph, ir_version=10))
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": np.arange(8, dtype=np.float32).reshape(2, 4)})


def test_siblings_fuse_and_compute_the_same():
    matmuls = [("x", "w1", "a"), ("x", "w2", "b")]
    want = _run(_graph(matmuls))
    graph = _graph(matmuls)
    assert fuse_sibling_matmuls(graph) == [{"weight": "w1+w2", "from": ["w1", "w2"], "widths": [3, 5]}]
    assert [n.op_type for n in graph] == ["Add", "MatMul", "Split"]
    got = _run(graph)
    assert [g.shape for g in got] == [(2, 3), (2, 5)]
    assert all(np.allclose(g, w, rtol=1e-6) for g, w in zip(got, want))


def test_only_true_siblings_are_fused():
    # another activation: nothing shared
    assert fuse_sibling_matmuls(_graph([("x", "w1", "a"), ("y", "w2", "b")])) == []
    # w1 also feeds a second MatMul: a weight used twice is left alone (and so is its group)
    assert fuse_sibling_matmuls(_graph([("x", "w1", "a"), ("x", "w2", "b"), ("y", "w1", "c")])) == []
