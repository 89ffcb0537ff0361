"""Streamed recipes on tiny: weight-only int8/int4 and W8A8 int8/fp8 written from the checkpoint tensor by tensor,
activation ranges collected layer by layer (proved equal to whole-model calibration and to ModelOpt's),
SmoothQuant exact in real arithmetic, and the sliced held-out gate."""

from __future__ import annotations

import json

import ml_dtypes
import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from nvembed_trt.calibration import calibration_from_corpus, python_reference_corpus
from nvembed_trt.calibration.dataset import load_calibration
from nvembed_trt.calibration.streamed import gemm_keys, streamed_ranges, whole_model_ranges
from nvembed_trt.cli.main import main
from nvembed_trt.errors import InputError
from nvembed_trt.export import onnx_from_model
from nvembed_trt.precision import RECIPES, PrecisionGateError, recipe_from_model
from nvembed_trt.precision.apply import apply_recipe
from nvembed_trt.precision.heldout import sliced_heldout
from nvembed_trt.precision.settings import StreamedRecipeSettings
from nvembed_trt.precision.quantizers import dequantize, fp16_scale, int4_blocked, int8_per_channel
from nvembed_trt.recipes import Recipe
from nvembed_trt.precision.smoothing import Smoothing
from nvembed_trt.precision.streamed import calibration_arrays, source_loader, write_streamed_recipe
from nvembed_trt.precision.verify import embed_heldout, graph_embedder, verify_recipe
from nvembed_trt.source import load_source, resolve_model

NAMES = ("input_ids", "attention_mask", "pool_mask")


@pytest.fixture(scope="module")
def ws(tmp_path_factory, tiny):
    root = tmp_path_factory.mktemp("streamed")
    export = onnx_from_model("tiny", root / "export")
    calibration = calibration_from_corpus(python_reference_corpus(), tiny.tokenizer, root / "cal", 256).directory
    source = resolve_model("tiny", progress=False)
    arrays = calibration_arrays(RECIPES["int8"], calibration, tiny.tokenizer.pad_id)
    load, _ = source_loader(source)
    streamed = streamed_ranges(source.config, load, arrays, progress=False)
    heldout = sliced_heldout(512)
    reference = embed_heldout(graph_embedder(export.onnx_path, "fp32", "onnxruntime", tiny.tokenizer, 512), heldout)
    return {"root": root, "export": export, "calibration": calibration, "source": source, "arrays": arrays,
            "streamed": streamed, "heldout": heldout, "reference": reference}


def _gate(ws, tiny, recipe, path):
    return verify_recipe(recipe, path, ws["export"].onnx_path, tiny.tokenizer, ws["heldout"], ws["reference"])


def test_quantizers_round_trip_within_half_a_step():
    w = torch.randn(256, 96, generator=torch.Generator().manual_seed(0)) * torch.linspace(0.01, 3, 96)
    q, s = int8_per_channel(w)
    assert q.dtype == np.int8 and s.dtype == np.float16 and s.shape == (96,) and np.abs(q).max() <= 127
    assert (s.astype(np.float64) * 127 >= w.abs().amax(0).numpy()).all()  # rounded up: nothing clips
    assert np.abs(dequantize(q, s) - w.numpy()).max(0).tolist() <= (s.astype(np.float32) / 2 * 1.0001).tolist()
    q4, s4 = int4_blocked(w, 64)
    assert q4.dtype == ml_dtypes.int4 and s4.shape == (4, 96)
    assert np.abs(dequantize(q4, s4, 64) - w.numpy()).max() <= s4.astype(np.float32).max() / 2 * 1.0001
    assert fp16_scale(0.0, 127) > 0 and fp16_scale(np.array([1.0]), 127).dtype == np.float16
    with pytest.raises(ValueError, match="multiple of it, got 100"):
        int4_blocked(torch.ones(100, 4), 64)


def test_streamed_ranges_equal_whole_model_and_modelopt(ws, tmp_path):
    model, _ = load_source(ws["source"], torch.device("cpu"), torch.float32, attention_impl="eager")
    whole = whole_model_ranges(model, ws["arrays"])
    streamed = ws["streamed"]
    assert set(streamed.activation) == set(gemm_keys(ws["source"].config)) and len(streamed.activation) == 19
    assert streamed.max_relative_difference(whole) <= 1e-6  # same arithmetic, one layer in memory at a time
    for key in streamed.weight:
        np.testing.assert_array_equal(streamed.weight[key], whole.weight[key])
    # ModelOpt's ONNX max calibration of the fp32 export on the same samples: scales equal to fp16 rounding
    old = Recipe(name="modelopt-int8", description="x", method="quantize", quantize_mode="int8",
                 calibration_method="max", min_cosine=0.99, max_ndcg10_drop=0.005)
    arrays = load_calibration(ws["calibration"], 128, 256, NAMES)
    apply_recipe(old, ws["export"].onnx_path, tmp_path / "model.onnx", arrays)
    graph = onnx.load(str(tmp_path / "model.onnx")).graph
    inits = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    producer = {out: node for node in graph.node for out in node.output}
    compared = 0
    for node in graph.node:
        act = producer.get(node.input[0]) if node.op_type in ("MatMul", "Gemm") else None
        weight = producer.get(node.input[1]) if act is not None else None
        if act is None or act.op_type != "DequantizeLinear" or weight is None:
            continue
        key = next(k for k in streamed.activation if k in weight.input[0])
        ours = streamed.per_tensor(key) / 127
        assert abs(float(inits[act.input[1]]) - ours) <= ours * 2**-11, key
        compared += 1
    assert compared == 19


def test_streamed_and_whole_model_ranges_give_the_same_graph_and_gate(ws, tiny, tmp_path):
    model, _ = load_source(ws["source"], torch.device("cpu"), torch.float32, attention_impl="eager")
    whole = whole_model_ranges(model, ws["arrays"])
    recipe = RECIPES["int8"]
    for name, ranges in (("streamed", ws["streamed"]), ("whole", whole)):
        (tmp_path / name).mkdir()
        meta = write_streamed_recipe(ws["source"], recipe, tmp_path / name, ranges=ranges, progress=False)
        assert meta["quantization"]["smoothing"]["smoothed_gemms"] == 17  # every GEMM but the two o_proj
    # byte-identical graphs, so the gate's figures are the same too
    assert (tmp_path / "streamed" / "model.onnx").read_bytes() == (tmp_path / "whole" / "model.onnx").read_bytes()
    report, problems = _gate(ws, tiny, recipe, tmp_path / "streamed" / "model.onnx")
    assert report["passed"] and not problems and report["cosine_min"] >= 0.998


def test_smoothquant_is_exact_in_real_arithmetic_and_narrows_ranges(ws, tiny):
    source, ranges = ws["source"], ws["streamed"]
    smoothing = Smoothing.from_ranges(source.config, ranges, 0.5)
    model, _ = load_source(source, torch.device("cpu"), torch.float32)
    smoothed, _ = load_source(source, torch.device("cpu"), torch.float32)
    with torch.no_grad():
        for key, param in smoothed.state_dict().items():
            param.copy_(smoothing.apply(key, param))
    batch = tiny.tokenizer(["a query about smoothing", "a longer passage " * 20], "", 128)
    a = model(**batch.to_torch(model.device))
    b = smoothed(**batch.to_torch(model.device))
    assert torch.nn.functional.cosine_similarity(a, b).min() >= 0.99999
    ratios = [smoothing.smoothed_amax(k, ranges) / ranges.per_tensor(k) for k in smoothing.factors]
    assert len(ratios) == 17 and max(ratios) < 1.0  # every smoothed GEMM input's int8 range shrinks


@pytest.fixture(scope="module")
def weight_only(ws):
    out = {}
    for name in ("int8-wo", "int4-wo"):
        folder = ws["root"] / name
        folder.mkdir()
        out[name] = (folder, write_streamed_recipe(ws["source"], RECIPES[name], folder, progress=False))
    return out


@pytest.mark.parametrize("name,dtype", [("int8-wo", onnx.TensorProto.INT8), ("int4-wo", onnx.TensorProto.INT4)])
def test_weight_only_graph_feeds_dequantized_weights_to_fp16_matmuls(weight_only, name, dtype):
    folder, meta = weight_only[name]
    model = onnx.load(str(folder / "model.onnx"))
    onnx.checker.check_model(model, full_check=True)
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    dqs = [n for n in graph.node if n.op_type == "DequantizeLinear"]
    # 19 weight GEMMs; q/k/v and gate/up of both layers fused: 2 x (3 + 2) -> 2 x 2 DequantizeLinear
    assert meta["fused_projections"]["groups"] == 4
    assert len(dqs) == 19 - 2 * 3 and not any(n.op_type == "QuantizeLinear" for n in graph.node)
    assert {inits[n.input[0]].data_type for n in dqs} == {dtype}
    assert {inits[n.input[1]].data_type for n in dqs} == {onnx.TensorProto.FLOAT16}
    assert meta["quantization"]["weight_reads"] == 19  # each weight read once for its values and its scale
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    assert opset == (21 if name == "int4-wo" else 19) == meta["quantization"]["opset"]
    if name == "int4-wo":
        blocks = {g["k"]: g["block_size"] for g in meta["quantization"]["gemms"].values()}
        assert blocks == {64: 64, 176: 16, 80: 16, 256: 128}  # the largest power of two <= 128 dividing K
        assert all(a.name != "block_size" or a.i in (16, 64, 128) for n in dqs for a in n.attribute)


@pytest.mark.parametrize("name", ["int4-wo", "int8"])
def test_fused_quantised_graph_equals_unfused(ws, name):
    """One DequantizeLinear over concatenated weights and scales computes what the separate GEMMs did: the same
    quantised values (blocked int4 scales concatenate along N too), one weight read each."""
    import onnxruntime as ort

    outs = []
    for fuse in (True, False):
        folder = ws["root"] / f"{name}-fuse-{fuse}"
        folder.mkdir()
        recipe = RECIPES[name]
        ranges = ws["streamed"] if recipe.needs_calibration else None
        meta = write_streamed_recipe(ws["source"], recipe, folder, ranges=ranges, progress=False,
                                     fuse_projections=fuse)
        assert meta["fused_projections"]["groups"] == (4 if fuse else 0) and meta["quantization"]["weight_reads"] == 19
        session = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
        rng = np.random.default_rng(0)
        ids = rng.integers(3, 1000, size=(4, 29)).astype(np.int32)
        outs.append(session.run(None, {"input_ids": ids, "attention_mask": np.ones_like(ids),
                                       "pool_mask": np.ones_like(ids)})[0])
    assert outs[0].shape == (4, ws["source"].config.embedding_dim)
    assert np.abs(outs[0] - outs[1]).max() < 2e-3  # fp16 GEMMs: accumulation order only


@pytest.mark.parametrize("name", ["int8-wo", "int4-wo"])
def test_tensorrt_rtx_builds_weight_only(weight_only, name):
    from trt_rtx import build

    plan, inputs, _ = build(weight_only[name][0] / "model.onnx")
    assert plan is not None and plan.nbytes > 50_000 and len(inputs) == 3


def test_int4_cannot_pass_on_tiny_and_says_so(ws, tiny, weight_only):
    recipe = RECIPES["int4-wo"]
    assert "tiny" in recipe.tiny_limitation
    report, problems = _gate(ws, tiny, recipe, weight_only["int4-wo"][0] / "model.onnx")
    assert not report["passed"] and 0.9 < report["cosine_min"] < 0.99
    assert any(p.startswith("slice queries: min cosine") for p in problems)
    with pytest.raises(PrecisionGateError, match="recipe int4-wo failed its accuracy gate.*no model was written"):
        recipe_from_model("tiny", StreamedRecipeSettings(recipe="int4-wo", output=ws["root"] / "no-int4",
                                                         reference_onnx=ws["export"].onnx_path,
                                                         gate_rows_per_slice=20, progress=False))
    assert not (ws["root"] / "no-int4").exists() and not list(ws["root"].glob(".no-int4*"))


def test_sliced_heldout_is_large_varied_and_disjoint():
    heldout = sliced_heldout(512)
    assert heldout.rows >= 1000 and [s.name for s in heldout.slices] == [
        "queries", "instructed", "short", "long", "code", "non-english", "unicode"]
    calibration = {s.text for s in python_reference_corpus().samples}
    assert not heldout.texts() & calibration
    by = {s.name: s for s in heldout.slices}
    assert all(i.startswith("Instruct: ") for i in by["queries"].instructions + by["instructed"].instructions)
    assert len(set(by["instructed"].instructions)) == 3 and set(by["short"].instructions) == {""}
    assert max(len(t) for t in by["long"].texts) > 512 * 6 and all("def " in t for t in by["code"].texts)
    scripts = {"Cyrillic": "\u0430", "Greek": "\u03b1", "CJK": "\u4e00", "Arabic": "\u0621"}
    assert all(any(low <= ch <= chr(ord(low) + 0x400) for t in by["non-english"].texts for ch in t)
               for low in scripts.values())
    assert all(len(h["sha256"]) == 64 for h in heldout.provenance["slices"].values())
    assert sliced_heldout(512).provenance == heldout.provenance
    small = heldout.subset(10)
    assert small.rows == 70 and small.provenance["rows_per_slice"] == 10


def test_cli_streams_from_a_model_with_ranges(ws, tmp_path, capsys):
    ranges = tmp_path / "ranges.npz"
    assert main(["activation-ranges", "--model", "tiny", "--calibration", str(ws["calibration"]),
                 "--output", str(ranges), "--samples", "64"]) == 0
    assert json.loads(ranges.with_suffix(".json").read_text())["samples"] == 64
    assert main(["precision", "--model", "tiny", "--recipe", "int8", "--ranges", str(ranges), "--output",
                 str(tmp_path / "int8"), "--reference-onnx", str(ws["export"].onnx_path),
                 "--gate-rows-per-slice", "30"]) == 0
    meta = json.loads((tmp_path / "int8" / "precision.json").read_text())
    assert meta["parity"]["gated"] and meta["parity"]["passed"] and meta["activation_ranges"]["samples"] == 64
    assert meta["parity"]["rows"] == 210 and "worst slice" in capsys.readouterr().out
    assert main(["precision", "--model", "tiny", "--recipe", "int8-wo", "--no-gate", "--output",
                 str(tmp_path / "wo")]) == 0
    assert json.loads((tmp_path / "wo" / "precision.json").read_text())["parity"]["gated"] is False
    with pytest.raises(InputError, match="recipe int8 needs a calibration set .* or activation ranges"):
        recipe_from_model("tiny", StreamedRecipeSettings(recipe="int8", output=tmp_path / "x"))
    with pytest.raises(InputError, match="recipe fp16 is made from an fp32 export"):
        recipe_from_model("tiny", StreamedRecipeSettings(recipe="fp16", output=tmp_path / "x"))
