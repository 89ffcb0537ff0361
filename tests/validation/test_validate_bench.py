"""validate and bench on tiny on CPU with small grids; the gate fails when a runtime is deliberately wrong."""

from __future__ import annotations

import json
import platform
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from nvembed_trt.cli.main import main
from nvembed_trt.export import onnx_from_model
from nvembed_trt.validation.bench import run_bench
from nvembed_trt.validation.runtimes import onnx_runtime as graph_runtime
from nvembed_trt.validation.runtimes import torch_runtime
from nvembed_trt.validation.validate import run_validation


@dataclass
class AttentionMaskPooling:
    """A deliberately wrong runtime: pools over attention_mask instead of pool_mask (includes the instruction)."""
    embedder: object
    name: str = "torch-wrong-pooling"
    recipe: str = "fp32"

    def embed(self, texts, instruction, batch_size=16):
        batch = self.embedder.tokenizer(list(texts), instruction, 512).to_torch()
        batch["pool_mask"] = batch["attention_mask"]
        with torch.inference_mode():
            return self.embedder.model(**batch).numpy()

    def close(self):
        pass


@pytest.fixture(scope="module")
def onnx_runtime(tmp_path_factory, tiny):
    export = onnx_from_model("tiny", tmp_path_factory.mktemp("v") / "export", parity=False)
    return graph_runtime(export.onnx_path, tiny.tokenizer)        # fp32: from export.json


def test_validation_passes_and_writes_json_and_markdown(tiny, onnx_runtime, tmp_path):
    report, path = run_validation("tiny", torch_runtime(tiny), [torch_runtime(tiny), onnx_runtime],
                                  ["engine: needs a GPU"], pairs=40, results_dir=tmp_path, ranking_queries=60)
    saved = json.loads(path.read_text())
    assert saved["passed"] and [r["runtime"] for r in saved["rows"]] == ["torch", "onnx"]
    onnx_row = saved["rows"][1]
    assert onnx_row["cosine_min"] >= 0.99999 and onnx_row["top10_agreement"] == 1.0
    assert onnx_row["batched_vs_single_min_cosine"] >= 0.9999 and onnx_row["rows"] == 80
    # the ranking slice: 60 judged queries over 300 documents, the fp32 graph ranks exactly as the reference
    assert saved["ranking_dataset"]["queries"] == 60 and saved["ranking_dataset"]["documents"] == 300
    assert abs(onnx_row["ndcg10_drop"]) < 1e-4 and onnx_row["ndcg10_budget"] == 0.001
    assert onnx_row["ranking_top10_overlap"] == 1.0 and onnx_row["ndcg10_reference"] > 0
    md = path.with_suffix(".md").read_text()
    assert "| onnx | fp32 |" in md and "not available here: engine: needs a GPU" in md
    assert f"{onnx_row['ndcg10']:.4f} (" in md
    # the report states which reference it used (issue 11, defect 13)
    ref = saved["reference"]
    assert (ref["runtime"], ref["device"], ref["weights_dtype"], ref["autocast"]) == ("torch", "cpu", "float32", None)
    assert ref["matches_upstream"] is True and ref["vs_upstream"].startswith("same as upstream on a CPU")
    assert "torch.autocast('cuda')" in ref["vs_upstream"]  # and how upstream differs on a GPU
    assert "Reference: torch on cpu, float32 weights, no autocast, sdpa attention: same as upstream on a CPU" in md
    assert "thresholds were set against an fp32 reference" not in md


def test_validation_gate_fails_on_wrong_pooling(tiny, tmp_path):
    report, _ = run_validation("tiny", torch_runtime(tiny), [AttentionMaskPooling(tiny)], [], pairs=40,
                               results_dir=tmp_path, ranking_queries=40)
    row = report["rows"][0]
    assert not report["passed"] and not row["passed"]
    assert row["cosine_min"] < 0.99999 and any("min cosine" in f for f in row["failures"])


def test_validate_cli_exit_status(tmp_path, capsys):
    """More pairs asked than this Python's standard library holds: the report says how many of each (as
    validate --compare does), and validates what there is."""
    assert main(["validate", "--model", "tiny", "--runtimes", "torch", "--pairs", "100000", "--ranking-queries", "20",
                 "--output-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "PASS" in out and len(list(tmp_path.glob("validate-*.json"))) == 1
    assert "Reference: torch on cpu, float32 weights, no autocast" in out
    saved = json.loads(next(tmp_path.glob("validate-*.json")).read_text())
    assert saved["reference"]["weights_dtype"] == "float32" and saved["reference"]["autocast"] is None
    available = saved["dataset"]["pairs"]
    assert 20 < available < 100_000 and saved["rows"][0]["rows"] == 2 * available
    assert (f"({2 * available} rows of stdlib-docstrings; 100000 asked, {available} available from the standard "
            f"library of Python {platform.python_version()}): PASS") in out


def test_validate_reference_dtype_is_stated_with_a_threshold_warning(tmp_path, capsys):
    assert main(["validate", "--model", "tiny", "--runtimes", "torch", "--pairs", "8", "--ranking-queries", "20",
                 "--reference-dtype",
                 "bfloat16", "--output-dir", str(tmp_path)]) == 0  # the torch row is the reference itself
    out = capsys.readouterr().out
    saved = json.loads(next(tmp_path.glob("validate-*.json")).read_text())
    ref = saved["reference"]
    assert (ref["device"], ref["weights_dtype"], ref["matmul_dtype"], ref["matches_upstream"]) == \
        ("cpu", "bfloat16", "bfloat16", False)
    assert "Reference: torch on cpu, bfloat16 weights, no autocast, sdpa attention: not an upstream configuration" \
        in out
    assert "thresholds were set against an fp32 reference without autocast" in out


def test_reference_autocast_needs_cuda(tmp_path, capsys):
    assert main(["validate", "--model", "tiny", "--runtimes", "torch", "--reference-autocast",
                 "--output-dir", str(tmp_path)]) == 2
    assert "autocast needs --device cuda (got 'cpu')" in capsys.readouterr().err
    assert not list(tmp_path.glob("validate-*"))


def test_bench_small_grid(tiny, onnx_runtime, tmp_path):
    report, path = run_bench("tiny", tiny.tokenizer, [torch_runtime(tiny), onnx_runtime], [], [1, 2], [16, 32],
                             [1], slo_ms=150.0, warmup=1, iters=3, results_dir=tmp_path)
    saved = json.loads(path.read_text())
    assert len(saved["grid"]) == 8 and saved["device"] == "cpu"
    for row in saved["grid"]:
        assert 0 < row["p50_ms"] <= row["p99_ms"] and row["tokens_per_s"] == pytest.approx(
            1000 * row["batch"] * row["seq"] / row["mean_ms"])
    assert {s["runtime"] for s in saved["slo"]} == {"torch", "onnx"} and all(s["pass"] for s in saved["slo"])
    assert saved["tokenizer"]["texts_per_s"] > 100 and saved["concurrency"] == []
    assert (tmp_path / f"{path.stem}-latency.png").stat().st_size > 5000
    assert "| onnx | fp32 | 2 | 32 |" in path.with_suffix(".md").read_text()


def test_synthetic_batches_have_exact_lengths(tiny):
    from nvembed_trt.validation.bench import synthetic_batch

    batch = synthetic_batch(tiny.tokenizer, 3, 50, np.random.default_rng(0))
    assert batch.input_ids.shape == (3, 50) and (batch.input_ids[:, 0] == 1).all() and (batch.input_ids[:, -1] == 2).all()


@pytest.mark.parametrize("args, message", [
    (["bench", "--batch", "1,x"], "expected comma-separated integers >= 1, got '1,x'"),
    (["bench", "--seq", "0"], "expected comma-separated integers >= 1, got '0'"),
    (["validate", "--runtimes", "torch,gpu"], "unknown ['gpu']; choose from torch, onnx, engine, triton"),
    (["validate", "--recipes", "int4"], "unknown ['int4']; choose from fp32, fp16"),
])
def test_bad_grid_and_runtime_options(args, message, capsys):
    with pytest.raises(SystemExit) as info:
        main([*args, "--model", "tiny"])
    assert info.value.code == 2 and message in capsys.readouterr().err
