"""The performance model (nvembed_trt.performance) and the GPU registry's performance figures it is evaluated with:
the numbers KNOWLEDGE §5 states for the H100 (5.2 ms per short fp16 query, 2.6 ms at 8-bit weights, ~51k tokens/s
at large fp16 batches, attention ~2% at 512 tokens and ~14% at 4k), the schema's refusals, and the light import
the stand-in encoder relies on."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from nvembed_trt.config import NVEmbedConfig
from nvembed_trt.engines.gpus import gpu_registry, parse_gpu
from nvembed_trt.errors import InputError
from nvembed_trt.performance import BatchTime, flops_coefficients, recipe_batch_time

CFG = NVEmbedConfig()
H100 = yaml.safe_load((Path(__file__).parents[2] / "src" / "nvembed_trt" / "engines" / "gpus"
                       / "h100.yaml").read_text())


def test_h100_figures_are_our_measurement():
    rates = gpu_registry()["h100"].performance.device_rates()
    assert rates.bandwidth_bytes_s == pytest.approx(3.0e12, rel=0.002)
    assert rates.rates["bf16"] == pytest.approx(798e12, rel=0.002)
    assert rates.rates["fp8"] == pytest.approx(2 * 798e12, rel=0.002)


def test_every_card_has_figures_and_ampere_has_no_fp8():
    registry = gpu_registry()
    assert all(g.performance is not None and g.performance.source for g in registry.values())
    assert "fp8" not in registry["a100"].performance.tflops and "fp8" in registry["l40s"].performance.tflops
    with pytest.raises(KeyError, match="a100 has no fp8 matmul rate"):
        recipe_batch_time(CFG, "fp8", registry["a100"].performance.device_rates(), "a100")


def test_h100_batch_times_match_the_stated_floors():
    rates = gpu_registry()["h100"].performance.device_rates()
    fp16, fp8 = recipe_batch_time(CFG, "fp16", rates), recipe_batch_time(CFG, "fp8", rates)
    assert fp16.seconds(1, 32) * 1000 == pytest.approx(5.23, abs=0.02) and fp16.memory_bound(1, 32)
    assert fp8.seconds(1, 32) * 1000 == pytest.approx(2.66, abs=0.02)
    assert 64 * 512 / fp16.seconds(64, 512) == pytest.approx(50_600, rel=0.01) and not fp16.memory_bound(64, 512)
    assert 64 / fp16.seconds(64, 32) == pytest.approx(1608, rel=0.01)       # one-text queries/s at full batches
    assert 64 / fp8.seconds(64, 32) == pytest.approx(3198, rel=0.01)
    gemm, per_position, fixed = flops_coefficients(CFG)
    assert gemm == pytest.approx(15.435e9, rel=0.001)    # 2 x the GEMM weights (no embedding table, no latents)
    for width, share in ((512, 0.02), (4096, 0.14)):
        assert (per_position * width + fixed) / gemm == pytest.approx(share, abs=0.01)


def test_batch_time_round_trips_through_model_config_strings():
    timing = recipe_batch_time(CFG, "int8", gpu_registry()["l40s"].performance.device_rates())
    params = timing.to_params()
    assert all(isinstance(v, str) for v in params.values())
    assert BatchTime.from_params(params) == timing


@pytest.mark.parametrize("change, message", [
    ({"efficiency": {"memory": 1.2, "compute": 0.8}}, r"efficiency memory must be in \(0, 1\], got 1.2"),
    ({"tflops": {"int8": 100}}, "needs a 16-bit"),
    ({"tflops": {"fp16": 100, "fp4": 400}}, "performance.tflops.fp4"),
    ({"memory_bandwidth_gb_s": 0}, "bandwidth and rates must be > 0"),
    ({"peak": 3}, "Extra inputs are not permitted"),
])
def test_bad_performance_figures_are_refused(change, message):
    raw = copy.deepcopy(H100)
    raw["performance"].update(change)
    with pytest.raises(InputError, match=message):
        parse_gpu(raw, "h100.yaml", check_memory=False)


def test_the_model_imports_without_torch():
    """The stand-in encoder evaluates BatchTime inside Triton's python backend, where torch is absent."""
    program = ("import sys; sys.modules['torch'] = None\n"
               "import nvembed_trt.performance, nvembed_trt.triton.models.encoder_sim; print('ok')")
    proc = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip() == "ok", proc.stderr[-1500:]


def test_scaling_page_table_is_the_model():
    """docs/scaling.md's per-card table against the registry and the performance model (nothing typed by hand)."""
    import re

    from nvembed_trt.engines.capacity import card_model

    page = (Path(__file__).parents[2] / "docs" / "scaling.md").read_text()
    rows = re.findall(r"^\| ([\w-]+) \| (\d+) \| (\d+) \| ([\d.]+) \| ([\d,]+) \| ([\d.–]+) \| ([\d,–]+) \|$", page,
                      flags=re.M)
    assert [r[0] for r in rows] == list(gpu_registry())
    for name, bandwidth, tflops, *cells in rows:
        rates = gpu_registry()[name].performance.device_rates()
        want = [f"{rates.bandwidth_bytes_s / 1e9:.0f}", f"{rates.rates['fp16'] / 1e12:.0f}"]
        for recipe in ("fp16", "fp8"):
            if recipe not in gpu_registry()[name].performance.tflops:
                want += ["–", "–"]
                continue
            card = card_model(name, recipe, 32)
            want += [f"{1000 * card.timing.seconds(1, 32):.2f}", f"{card.saturation_per_s():,.0f}"]
        assert [bandwidth, tflops, *cells] == want, name
