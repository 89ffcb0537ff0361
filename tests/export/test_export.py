"""ONNX export on tiny: both pooling modes and dtypes, external data, dynamic shapes, checks, bad inputs."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest

from nvembed_trt.cli.main import main
from nvembed_trt.errors import InputError, PresetError
from nvembed_trt.presets import PRESETS
from nvembed_trt.export import onnx_from_model
from nvembed_trt.export import checks
from nvembed_trt.export.checks import ExportValidationError
from nvembed_trt.pooling import masked_mean_l2_numpy
from nvembed_trt.tokenizer import INPUT_TYPES
from texts import SENTENCES

VARIANTS = [("engine", "float32"), ("engine", "float16"), ("ensemble", "float32"), ("ensemble", "float16")]


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    # fp16 variants are forced to external data with a tiny threshold
    return {(p, d): onnx_from_model("tiny", root / f"{p}-{d}", pooling=p, dtype=d,
                                    external_data_threshold=1000 if d == "float16" else 2**31)
            for p, d in VARIANTS}


def run_onnx(path, pooling, batch):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    out = session.run(None, {n: getattr(batch, n).astype(np.int32) for n in names})[0]
    return out if pooling == "engine" else masked_mean_l2_numpy(out, batch.pool_mask)


@pytest.mark.parametrize("pooling, dtype", VARIANTS)
def test_export_json_records_passing_parity(exports, pooling, dtype):
    result = exports[(pooling, dtype)]
    meta = json.loads((result.directory / "export.json").read_text())
    assert meta["dtype"] == dtype and meta["opset"] == 18 and meta["signature"]["pooling"] == pooling
    assert meta["parity"]["passed"] and len(meta["parity"]["cases"]) == 4
    assert meta["parity"]["min_cosine"] >= (0.99999 if dtype == "float32" else 0.999)
    if dtype == "float32":
        assert meta["parity"]["max_abs"] <= 1e-4
    assert meta["model"]["preset"] == "tiny" and len(meta["model"]["weights_fingerprint"]) == 64
    # every weight, plus a few dozen elements of folded shape constants
    assert 2_212_096 <= meta["graph"]["parameters"] < 2_212_096 + 100 and meta["versions"]["onnxruntime"]
    want_inputs = ["input_ids", "attention_mask"] + (["pool_mask"] if pooling == "engine" else [])
    assert list(meta["graph"]["inputs"]) == want_inputs
    assert all(dims == ["batch", "sequence"] for dims in meta["graph"]["inputs"].values())
    out_dims = list(meta["graph"]["outputs"].values())[0]
    assert out_dims == (["batch", 64] if pooling == "engine" else ["batch", "sequence", 64])


def test_fp16_graph_keeps_norms_softmax_and_pooling_in_fp32(exports):
    precision = exports[("engine", "float16")].meta.graph["precision"]
    # per layer q+k+v (fused), o, gate+up (fused), down, q.k, p.v; latent: to_q, q.k, p.v, to_out, ff in, ff out
    layers = PRESETS["tiny"].config.body.num_layers
    assert precision["MatMul"] == {"FLOAT16": 6 * layers + 6}
    for op in ("Softmax", "LayerNormalization", "ReduceMean", "ReduceSum", "ReduceL2"):
        assert set(precision[op]) == {"FLOAT"}, (op, precision[op])
    assert set(exports[("engine", "float32")].meta.graph["precision"]["MatMul"]) == {"FLOAT"}


def test_external_data_files(exports):
    fp16 = exports[("engine", "float16")].directory
    assert (fp16 / "model.onnx.data").stat().st_size > 4_000_000
    assert (fp16 / "model.onnx").stat().st_size < 1_000_000
    assert not (exports[("engine", "float32")].directory / "model.onnx.data").exists()
    assert not list(fp16.parent.glob(".*tmp*"))


@pytest.mark.parametrize("pooling, dtype", VARIANTS)
@pytest.mark.parametrize("texts, instruction", [
    (SENTENCES[:1], ""), (SENTENCES, INPUT_TYPES["query"]), (SENTENCES[2:5] * 3, ""),
], ids=["batch1", "batch7-query", "batch9"])
def test_dynamic_shapes_match_reference(exports, tiny, pooling, dtype, texts, instruction, cosine):
    batch = tiny.tokenizer(texts, instruction, 300)
    got = run_onnx(exports[(pooling, dtype)].onnx_path, pooling, batch)
    want = tiny.embed_batch(texts, instruction, 300)
    assert got.shape == want.shape == (len(texts), 64)
    assert cosine(got, want).min().item() >= (0.99999 if dtype == "float32" else 0.999)


@pytest.mark.parametrize("opset", [19, 20])
def test_other_opsets(tmp_path, opset):
    result = onnx_from_model("tiny", tmp_path / "o", opset=opset)
    assert result.meta.graph["opset"] == opset and result.meta.parity["passed"]


@pytest.mark.parametrize("kwargs, error, message", [
    ({"opset": 17}, InputError, "opset must be between 18 and 20, got 17"),
    ({"opset": 23}, InputError, "opset must be between 18 and 20, got 23"),
    ({"pooling": "mean"}, InputError, "unknown pooling mode 'mean'; choose one of engine, ensemble"),
    ({"dtype": "bfloat16"}, InputError, "export dtype must be one of float32, float16, got 'bfloat16'"),
])
def test_bad_options(tmp_path, kwargs, error, message):
    with pytest.raises(error, match=message):
        onnx_from_model("tiny", tmp_path / "o", **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_unknown_model(tmp_path):
    with pytest.raises(PresetError, match="unknown model 'huge'"):
        onnx_from_model("huge", tmp_path / "o")


def test_unwritable_output(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(InputError, match="cannot create output directory"):
        onnx_from_model("tiny", blocker / "sub" / "o")


def test_existing_output_needs_overwrite(tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    (out / "keep").write_text("x")
    with pytest.raises(InputError, match="already exists and is not empty"):
        onnx_from_model("tiny", out)
    assert [p.name for p in out.iterdir()] == ["keep"]


def test_failed_parity_leaves_nothing_behind(tmp_path, monkeypatch):
    strict = checks.ParityThreshold(min_cosine=1.5)
    monkeypatch.setitem(checks.PARITY_THRESHOLDS, "float32", strict)
    with pytest.raises(ExportValidationError, match=r"parity: min cosine .* < 1.5"):
        onnx_from_model("tiny", tmp_path / "o")
    assert list(tmp_path.iterdir()) == []


def test_cli_export(tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["export", "--model", "tiny", "--output", str(out), "--pooling", "ensemble"]) == 0
    assert f"wrote {out / 'model.onnx'}" in capsys.readouterr().out
    assert main(["export", "--model", "tiny", "--output", str(out), "--opset", "21"]) == 2
    assert "opset must be between 18 and 20, got 21" in capsys.readouterr().err


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_slim_is_kept_only_with_passing_checks(tmp_path, dtype, tiny, cosine):
    result = onnx_from_model("tiny", tmp_path / "s", dtype=dtype, slim=True, external_data_threshold=1000)
    slim = result.meta.slim
    assert slim["requested"] and slim["applied"] and slim["nodes_after"] < slim["nodes_before"]
    assert result.meta.graph["nodes"] == slim["nodes_after"] and result.meta.parity["passed"]
    batch = tiny.tokenizer(SENTENCES, "", 128)
    got = run_onnx(result.onnx_path, "engine", batch)
    assert cosine(got, tiny.embed_batch(SENTENCES, "", 128)).min().item() >= 0.999
    assert sorted(p.name for p in result.directory.iterdir()) == ["export.json", "model.onnx", "model.onnx.data"]
