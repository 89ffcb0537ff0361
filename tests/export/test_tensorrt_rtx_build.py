"""A real TensorRT builder (TensorRT-RTX builds ahead-of-time on a CPU-only machine) accepts both exports over a
dynamic profile: batch 1..8, sequence 1..256."""

from __future__ import annotations

import pytest

from nvembed_trt.export import onnx_from_model
from trt_rtx import build, trt


@pytest.mark.parametrize("pooling, dtype", [("engine", "float32"), ("ensemble", "float32"),
                                            ("engine", "float16"), ("ensemble", "float16")])
def test_tensorrt_rtx_builds_dynamic_profile(tmp_path, pooling, dtype):
    result = onnx_from_model("tiny", tmp_path / "o", pooling=pooling, dtype=dtype, parity=False,
                             external_data_threshold=1000)
    plan, inputs, outputs = build(result.onnx_path)
    assert plan is not None and plan.nbytes > 100_000
    assert all(t.dtype == trt.DataType.INT32 and tuple(t.shape) == (-1, -1) for t in inputs)
    assert len(inputs) == (3 if pooling == "engine" else 2)
    assert outputs[0].dtype == trt.DataType.FLOAT
    assert tuple(outputs[0].shape) == ((-1, 64) if pooling == "engine" else (-1, -1, 64))
