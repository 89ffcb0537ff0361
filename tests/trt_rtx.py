"""Build an ONNX file with a real TensorRT builder: TensorRT-RTX, which builds ahead-of-time on a CPU-only machine.
Strongly typed network, one dynamic profile: batch 1..8 (opt 4), sequence 1..256 (opt 64)."""

from __future__ import annotations

import pytest

trt = pytest.importorskip("tensorrt_rtx", reason="tensorrt-rtx is not installed (pip install tensorrt-rtx)")


def build(onnx_path):
    logger = trt.Logger(trt.Logger.ERROR)
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    assert parser.parse_from_file(str(onnx_path)), [parser.get_error(i).desc() for i in range(parser.num_errors)]
    config = builder.create_builder_config()
    profile = builder.create_optimization_profile()
    inputs = [network.get_input(i) for i in range(network.num_inputs)]
    for tensor in inputs:
        profile.set_shape(tensor.name, (1, 1), (4, 64), (8, 256))
    config.add_optimization_profile(profile)
    plan = builder.build_serialized_network(network, config)
    outputs = [network.get_output(i) for i in range(network.num_outputs)]
    return plan, inputs, outputs
