"""The exported fp16 graph keeps attention logits finite where an unscaled q·kᵀ overflows (issue 11, defect 14).

A tiny checkpoint is made "loud": LayerNorm gains of 100 before the latent attention and 60 before layer 0's
self-attention (their value projections divided by the same factor) make |q·k| reach ~3e5 (latent) and ~1e5
(body), far beyond fp16's 65,504, while the scaled logits stay finite. ONNX Runtime on CPU does not reproduce an
fp16 overflow inside a graph: an fp16 MatMul followed by a Cast to fp32 returns 102,400 for a 40·40·64 product, even
with graph optimisations off, so the unscaled graph's embeddings stay finite there (checked: the same embeddings for
both orders). A strongly typed TensorRT engine holds the MatMul output in fp16. The test therefore makes each
attention-score MatMul output a graph output, which ONNX Runtime must produce in the graph's own type (the same
product then comes back as inf), and asserts these fp16 score tensors are finite and would have overflowed unscaled
(checked: with the old order this test fails on layer 0's scores).
"""

from __future__ import annotations

import shutil

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import numpy_helper
from safetensors.torch import load_file, save_file

from nvembed_trt.checkpoint import load_model
from nvembed_trt.export import onnx_from_model
from nvembed_trt.tokenizer import EmbeddingTokenizer, INPUT_TYPES
from texts import SENTENCES

FP16_MAX = float(np.finfo(np.float16).max)
LATENT = "latent_attention_model.cross_attend_blocks.0."
LAYER0 = "embedding_model.layers.0."


@pytest.fixture(scope="module")
def loud_checkpoint(tiny_dir, tmp_path_factory):
    dest = tmp_path_factory.mktemp("loud") / "tiny-loud"
    shutil.copytree(tiny_dir, dest)
    weights = dest / "model.safetensors"
    t = load_file(weights)
    inner = t[LATENT + "fn.to_q.weight"].shape[0]
    for key in (LATENT + "norm.weight", LATENT + "norm_context.weight"):
        t[key] = torch.full_like(t[key], 100.0)
    kv = t[LATENT + "fn.to_kv.weight"].clone()
    kv[inner:] /= 100.0                                                   # values keep their usual size
    t[LATENT + "fn.to_kv.weight"] = kv
    t[LAYER0 + "input_layernorm.weight"] = torch.full_like(t[LAYER0 + "input_layernorm.weight"], 60.0)
    t[LAYER0 + "self_attn.v_proj.weight"] = t[LAYER0 + "self_attn.v_proj.weight"] / 60.0
    save_file(t, str(weights), metadata={"format": "pt"})
    return dest


def _scalar(node: onnx.NodeProto | None, constants: dict[str, np.ndarray]) -> float | None:
    """The scalar constant a Mul node multiplies by, or None."""
    if node is None or node.op_type != "Mul":
        return None
    values = [constants[i] for i in node.input if i in constants]
    return float(values[0]) if len(values) == 1 and values[0].size == 1 else None


def _score_matmuls(model: onnx.ModelProto) -> list[tuple[onnx.NodeProto, float]]:
    """(q·kᵀ MatMul, scale applied to q before it, 1.0 if none) for every Softmax, found by walking back from the
    Softmax over Add (mask), Cast (to fp32) and Mul by a scalar (a scale applied after the product)."""
    producer = {out: node for node in model.graph.node for out in node.output}
    constants = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    constants.update({n.output[0]: numpy_helper.to_array(n.attribute[0].t) for n in model.graph.node
                      if n.op_type == "Constant" and n.attribute[0].name == "value"})
    found = []
    for softmax in (n for n in model.graph.node if n.op_type == "Softmax"):
        node = producer[softmax.input[0]]
        while node.op_type in ("Add", "Cast") or _scalar(node, constants) is not None:
            node = producer[next(i for i in node.input if i not in constants)]
        assert node.op_type == "MatMul", f"Softmax logits come from {node.op_type}, not the q·k MatMul"
        pre_scale = _scalar(producer.get(node.input[0]), constants)
        found.append((node, 1.0 if pre_scale is None else pre_scale))
    return found


def test_fp16_graph_attention_scores_stay_finite(loud_checkpoint, tmp_path, cosine):
    export = onnx_from_model(str(loud_checkpoint), tmp_path / "export", dtype="float16", parity=False)
    model = onnx.load(str(export.onnx_path))
    scores = _score_matmuls(model)
    graph_outputs = [o.name for o in model.graph.output]
    for node, _ in scores:  # make ONNX Runtime produce the fp16 score tensors a TensorRT engine holds
        model.graph.output.append(onnx.helper.make_tensor_value_info(node.output[0], onnx.TensorProto.FLOAT16, None))
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    tokenizer = EmbeddingTokenizer.from_dir(loud_checkpoint)
    batch = tokenizer(SENTENCES, INPUT_TYPES["query"], max_length=512)
    feeds = {i.name: getattr(batch, i.name).astype(np.int32) for i in session.get_inputs()}
    embeddings, *score_values = session.run(graph_outputs + [n.output[0] for n, _ in scores], feeds)
    unscaled_max = []
    for (node, scale), value in zip(scores, score_values):
        overflowed = int((~np.isfinite(value)).sum())
        assert value.dtype == np.float16 and overflowed == 0, f"{node.name}: {overflowed} fp16 scores overflowed"
        unscaled_max.append(float(np.abs(value.astype(np.float32)).max()) / scale)
    # q is scaled before the product: tiny has 2 decoder layers (head dim 16, scale 1/4) and the latent
    # attention (head dim 40, scale 1/sqrt(40))
    assert sorted(round(s, 4) for _, s in scores) == [round(40 ** -0.5, 4), 0.25, 0.25]
    # the precondition: q·k computed before scaling would exceed fp16's range in layer 0 and the latent attention
    # (measured: ~1.1e5 for layer 0, ~3.4e5 for the latent attention)
    assert sum(m > FP16_MAX for m in unscaled_max) >= 2, unscaled_max
    reference = load_model(loud_checkpoint, attention_impl="eager", progress=False)
    with torch.no_grad():
        expected = reference(**batch.to_torch()).numpy()
    assert np.isfinite(embeddings).all()
    # measured: min cosine 0.99999994 against the fp32 model with the same weights
    assert cosine(embeddings, expected).min().item() >= 0.999
