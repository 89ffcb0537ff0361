"""GPU profiles: the registry, its schema checks and the memory arithmetic."""

from __future__ import annotations

import copy

import pytest
import yaml

from nvembed_trt.cli.main import main
from nvembed_trt.config import NVEmbedConfig
from nvembed_trt.engines.gpus import gpu_registry, parse_gpu
from nvembed_trt.engines.memory import activation_bytes, weight_bytes
from nvembed_trt.errors import InputError

BASE = yaml.safe_load("""
name: test-card
description: a test card
compute_capability: "8.9"
memory_gib: 48
flavors: [tensorrt-rtx]
serving: {max_batch_size: 16, max_sequence_length: 1024}
profiles:
  - {name: short, batch: {min: 1, opt: 8, max: 16}, sequence: {min: 1, opt: 64, max: 512}}
  - {name: long, batch: {min: 1, opt: 1, max: 2}, sequence: {min: 1, opt: 512, max: 1024}}
""")


def variant(**changes):
    raw = copy.deepcopy(BASE)
    for path, value in changes.items():
        target = raw
        keys = path.split("__")
        for key in keys[:-1]:
            target = target[int(key)] if key.isdigit() else target[key]
        target[keys[-1]] = value
    return raw


def test_registry_has_the_cards_users_run():
    assert {"h100", "h200", "a100", "l40s", "a10", "rtx-6000-ada"} <= set(gpu_registry())
    assert gpu_registry()["h100"].flavors == ["tensorrt"]  # Hopper is no TensorRT-RTX target
    assert "tensorrt-rtx" in gpu_registry()["rtx-6000-ada"].flavors


def test_full_size_arithmetic():
    cfg = NVEmbedConfig()
    assert weight_bytes(cfg, 2.0) == 15_702_032_384
    assert activation_bytes(cfg, 1, 8192) > 32 * 8192 * 8192 * 4  # at least the fp32 attention scores


def test_valid_profile_parses():
    gpu = parse_gpu(BASE, "test")
    assert [p.name for p in gpu.profiles] == ["short", "long"] and gpu.profiles[1].covers(2, 1024)


@pytest.mark.parametrize("changes, message", [
    ({"profiles__0__batch": {"min": 1, "opt": 20, "max": 16}}, "opt 20 is outside min..max 1..16"),
    ({"serving": {"max_batch_size": 64, "max_sequence_length": 1024}},
     "serving max_batch_size 64 exceeds the largest profile batch 16"),
    ({"serving": {"max_batch_size": 16, "max_sequence_length": 4096}},
     "serving max_sequence_length 4096 exceeds the longest profile sequence 1024"),
    ({"profiles__1__batch": {"min": 1, "opt": 8, "max": 64}, "profiles__1__sequence": {"min": 1, "opt": 8, "max": 8192}},
     r"profile long at batch 64 x sequence 8192 needs \d+\.\d GiB .* more than the test-card's 48 GiB"),
    ({"compute_capability": "9.0"}, "compute capability 9.0 is not a TensorRT-RTX target"),
    ({"flavors": ["tensorrt-llm"]}, "flavors.0"),
    ({"colour": "green"}, "Extra inputs are not permitted"),
])
def test_bad_profiles_are_refused_with_the_reason(changes, message):
    with pytest.raises(InputError, match=message):
        parse_gpu(variant(**changes), "test.yaml")


def test_cli_lists_every_registered_gpu(capsys):
    assert main(["gpus"]) == 0
    out = capsys.readouterr().out
    listed = [line.split(":")[0] for line in out.splitlines() if not line.startswith(" ")]
    assert listed == list(gpu_registry())
    assert "short-query: batch 1/16/64, sequence 1/64/512" in out
