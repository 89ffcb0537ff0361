"""Issue 11 item 12 on CPU: the floors take weight bytes from the runtime's real weights (files, or the recipe's
dtypes) and the compute rate of the dtype its GEMMs run in. Full-size NV-Embed-v2 figures, by hand:
7,851,016,192 parameters = 7,717,519,360 in GEMM weights (32 layers x 218,103,808 + latent attention's
to_q/to_kv/to_out/net.0/net.2 = 536,870,912 + 201,326,592) + 133,496,832 others (embedding table 131,072,000,
latents 2,097,152, norms and biases)."""

from __future__ import annotations

import math

import pytest

from nvembed_trt.config import NVEmbedConfig
from nvembed_trt.validation.floors import (Cost, Floors, attention_dtype, flops_per_token, parameter_split,
                                           recipe_dtypes, recipe_weight_bytes)

CFG = NVEmbedConfig()
GEMM, OTHER = 7_717_519_360, 133_496_832
CHANNELS = 32 * (4096 + 1024 + 1024 + 4096 + 14336 * 2 + 4096) + 32768 + 65536 + 4096 + 32768 + 4096


def test_parameter_split_of_the_full_size_model():
    gemm, channels, other = parameter_split(CFG)
    assert (gemm, other) == (GEMM, OTHER) and gemm + other == 7_851_016_192
    assert channels == CHANNELS


@pytest.mark.parametrize("recipe, expected", [
    ("float32", 4 * (GEMM + OTHER)),                              # PyTorch fp32: 31.4 GB, not 2 x params
    ("fp32", 4 * (GEMM + OTHER)),
    ("fp16", 2 * (GEMM + OTHER)),                                 # 15,702,032,384: the official total_size
    ("bf16", 2 * (GEMM + OTHER)),
    ("int8", GEMM + 4 * CHANNELS + 2 * OTHER),                    # 8-bit GEMM weights, fp32 channel scales
    ("fp8", GEMM + 4 * CHANNELS + 2 * OTHER),
    ("int8-wo", GEMM + 4 * CHANNELS + 2 * OTHER),
    ("int4-wo", GEMM // 2 + GEMM // 128 * 2 + 2 * OTHER),         # 0.5 B + one fp16 scale per 128 inputs
])
def test_weight_bytes_follow_the_recipe(recipe, expected):
    assert recipe_weight_bytes(CFG, recipe) == pytest.approx(expected, abs=2)
    assert recipe_weight_bytes(CFG, "fp16") == 15_702_032_384


@pytest.mark.parametrize("recipe, gemm, attention", [
    ("float32", "fp32", "fp32"), ("fp32", "tf32", "tf32"), ("fp16", "fp16", "fp16"), ("bf16", "bf16", "bf16"),
    ("int8", "int8", "fp16"), ("int8-entropy", "int8", "fp16"), ("fp8", "fp8", "fp16"),
    ("int8-wo", "fp16", "fp16"), ("int4-wo", "fp16", "fp16"),   # weight-only: dequantised into fp16 GEMMs
])
def test_gemm_rate_follows_the_recipe(recipe, gemm, attention):
    assert recipe_dtypes(recipe)[1] == gemm and attention_dtype(recipe) == attention


def test_flops_per_token():
    gemm, attention = flops_per_token(CFG, 512)
    assert gemm == 2 * GEMM
    assert attention == 4 * 32 * 32 * 128 * 512 + 4 * 512 * 32768
    assert 0.01 < attention / gemm < 0.03                                   # ~2 % at 512 tokens (KNOWLEDGE 5)
    assert 1.0 < flops_per_token(CFG, 32768)[1] / gemm < 1.2                # ~110 % at 32k


def test_floor_arithmetic_uses_the_8_bit_rate():
    """H100-like figures: 3.0 TB/s, bf16 800 TFLOP/s, 8-bit twice that. A full fp8 batch of 64 x 512 tokens is
    compute bound at the 8-bit rate; a one-query fp8 request is bound by reading its 7.99 GB of weights."""
    rates = {"fp32": 60e12, "tf32": 400e12, "fp16": 800e12, "bf16": 800e12, "int8": 1600e12, "fp8": 1600e12}
    floors = Floors("H100", 3.0e12, rates, {k: "measured" for k in rates}, CFG)
    fp8 = Cost(recipe_weight_bytes(CFG, "fp8"), "fp8", "fp16", "recipe")
    big = floors.annotate(fp8, 64, 512, measured_ms=100.0)
    gemm, attention = flops_per_token(CFG, 512)
    want = 1000 * 64 * 512 * (gemm / 1600e12 + attention / 800e12)
    assert big["floor_kind"] == "compute" and big["floor_ms"] == pytest.approx(want)
    assert big["floor_ms"] == pytest.approx(329.85, abs=0.01)             # at the bf16 rate: 646 ms
    one = floors.annotate(fp8, 1, 16, measured_ms=5.0)
    assert one["floor_kind"] == "memory" and one["floor_ms"] == pytest.approx(1000 * fp8.weight_bytes / 3.0e12)
    assert one["floor_ms"] == pytest.approx(2.66, abs=0.01) and one["gemm_dtype"] == "fp8"
    fp32_torch = Cost(recipe_weight_bytes(CFG, "float32"), "fp32", "fp32", "parameters in float32")
    assert floors.annotate(fp32_torch, 1, 16, 50.0)["floor_ms"] == pytest.approx(10.47, abs=0.01)
    assert math.isclose(floors.describe()["matmul_TFLOP_s"]["fp8"], 1600.0)


def test_runtime_costs_come_from_their_files_or_dtypes(tmp_path):
    from types import SimpleNamespace

    import torch

    from nvembed_trt.validation.bench import runtime_cost

    (tmp_path / "model.onnx").write_bytes(b"\0" * 1000)
    (tmp_path / "model.onnx.data").write_bytes(b"\0" * 24_000)
    (tmp_path / "model.plan").write_bytes(b"\0" * 7_000)
    onnx = runtime_cost(SimpleNamespace(name="onnx", recipe="fp8", encoder=SimpleNamespace(path=tmp_path / "model.onnx")),
                        CFG)
    assert (onnx.weight_bytes, onnx.gemm_dtype, onnx.attention_dtype) == (25_000, "fp8", "fp16")
    engine = runtime_cost(SimpleNamespace(name="engine", recipe="int4-wo",
                                          encoder=SimpleNamespace(plan=tmp_path / "model.plan")), CFG)
    assert (engine.weight_bytes, engine.gemm_dtype) == (7_000, "fp16")
    model = SimpleNamespace(model=torch.nn.Linear(2, 2).to(torch.bfloat16))
    torch_cost = runtime_cost(SimpleNamespace(name="torch", recipe="fp32", encoder=SimpleNamespace(embedder=model)), CFG)
    assert (torch_cost.weight_bytes, torch_cost.gemm_dtype) == (2 * (GEMM + OTHER), "bf16")
    triton = runtime_cost(SimpleNamespace(name="triton", recipe="int8"), CFG)
    assert triton.weight_bytes == recipe_weight_bytes(CFG, "int8") and triton.gemm_dtype == "int8"
