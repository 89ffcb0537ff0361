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
memory_mib: 49152
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
     r"serving on test-card under Triton needs \d+\.\d GiB \(weights 14.6 GiB .* more than the test-card's 48.00 GiB"),
    ({"profiles__1__sequence": {"min": 1024, "opt": 1024, "max": 1024}},
     r"admits rows no profile covers: a batch of 1 row x 513 tokens \(uncovered widths 513..1023;"),
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


# Issue 11 item 3: what Triton allocates per card. Expected GiB, computed by hand from engines/memory.py's formula
# (fp16 weights 15,702,032,384 B = 14.62 GiB; per context: activations at the profile's largest shape + workspace;
# ON_PROFILE_CHANGE: each context its own profile; I/O buffers; 1 GiB runtime reserve), and the card's usable memory.
CARDS = {  # name: (usable GiB, need under ON_PROFILE_CHANGE, need if Triton's default STATIC were kept)
    "a10": (22.49, 21.72, 22.84),
    "a100-40gb": (39.59, 36.84, 38.19),
    "a100": (80.00, 70.06, 84.75),
    "h100": (79.65, 70.06, 84.75),
    "h200": (140.40, 118.19, 141.25),
    "l40s": (44.99, 40.84, 42.19),
    "rtx-6000-ada": (44.99, 40.84, 42.19),
}


@pytest.mark.parametrize("name", sorted(CARDS))
def test_each_card_fits_what_triton_allocates(name):
    from nvembed_trt.engines.memory import GIB

    gpu = gpu_registry()[name]
    usable, need, static = CARDS[name]
    cfg, weights = NVEmbedConfig(), weight_bytes(NVEmbedConfig(), 2.0)
    plan = gpu.device_memory(cfg, weights)
    assert gpu.serving.execution_context_allocation_strategy == "ON_PROFILE_CHANGE"
    assert len(plan.contexts) == len(gpu.profiles)            # Triton: one context per listed profile
    assert gpu.memory_gib == pytest.approx(usable, abs=0.005)
    assert plan.total / GIB == pytest.approx(need, abs=0.005) and plan.total < gpu.memory_mib * 2**20
    as_static = gpu.model_copy(update={"serving": gpu.serving.model_copy(
        update={"execution_context_allocation_strategy": "STATIC"})})
    assert as_static.device_memory(cfg, weights).total / GIB == pytest.approx(static, abs=0.005)
    # a second encoder instance doubles the contexts (the engine is shared): no card holds two
    assert "2 instance(s) x (2 contexts" in gpu.memory_problems(cfg, weights, instances=2)[0]


def test_static_allocation_counts_the_largest_profile_per_context():
    """The issue's figure: H100 under STATIC, two contexts each holding the long profile's memory."""
    from nvembed_trt.engines.memory import GIB, Shape, activation_bytes, device_memory

    cfg = NVEmbedConfig()
    shapes = [Shape("short-query", 64, 512), Shape("long-passage", 2, 8192)]
    long = activation_bytes(cfg, 2, 8192)
    assert long == 2 * 8192 * 2 * (8 * 4096 + 3 * 14336 + 4 * 32768) + 2 * 32 * 8192**2 * 6
    static = device_memory(cfg, 0, shapes, 0, "STATIC", reserve=0)
    changing = device_memory(cfg, 0, shapes, 0, "ON_PROFILE_CHANGE", reserve=0)
    io = 3 * 4 * 64 * 512 + 4 * 4096 * 64 * 512
    assert static.total == 2 * long + io
    assert changing.total == long + activation_bytes(cfg, 64, 512) + io
    assert static.total / GIB == pytest.approx(61.13, abs=0.005) and changing.total / GIB == pytest.approx(46.44, abs=0.005)


def test_a100_40gb_is_its_own_profile():
    small, big = gpu_registry()["a100-40gb"], gpu_registry()["a100"]
    assert small.compute_capability == big.compute_capability == "8.0"
    assert small.memory_mib == 40536 and big.memory_mib == 81920
    assert small.serving.max_sequence_length < big.serving.max_sequence_length  # the 80 GB shapes would not fit
    with pytest.raises(InputError, match=r"needs 70\.1 GiB .* more than the a100-40gb's 39\.59 GiB usable"):
        parse_gpu({**big.model_dump(), "name": "a100-40gb", "memory_mib": 40536}, "a100-40gb.yaml")


def test_made_up_profile_that_would_not_fit_is_refused():
    """A10 with the long profile doubled to 4 x 2048: 2.5 + 6.7 GiB of contexts on top of 14.6 GiB of weights."""
    raw = gpu_registry()["a10"].model_dump()
    raw["profiles"][1]["batch"] = {"min": 1, "opt": 1, "max": 4}
    with pytest.raises(InputError, match=r"needs 24\.9 GiB .*long-passage 6\.7.* more than the a10's 22\.49 GiB"):
        parse_gpu(raw, "a10.yaml")


# Issue 13 item 4: the loader and the packer agree on coverage (one rule: nvembed_trt.packing).
def test_serving_batch_that_leaves_a_profile_empty_is_refused():
    raw = variant(profiles__1__batch={"min": 4, "opt": 4, "max": 8}, serving={"max_batch_size": 2,
                                                                                "max_sequence_length": 1024})
    with pytest.raises(InputError, match=r"max_batch_size leaves no batch in profile\(s\) long: batch 4..2"):
        parse_gpu(raw, "test.yaml")


def test_profile_whose_batch_minimum_excludes_single_rows_is_refused():
    raw = variant(profiles__1__batch={"min": 2, "opt": 2, "max": 2})
    with pytest.raises(InputError, match=r"a batch of 1 row x 513 tokens \(uncovered widths 513..1024;"):
        parse_gpu(raw, "test.yaml")


@pytest.mark.parametrize("name", sorted(gpu_registry()))
def test_loader_and_packer_agree_for_every_card(name):
    gpu = gpu_registry()[name]
    packer = gpu.packer()
    assert packer.uncovered_widths(gpu.serving.max_sequence_length) == []
    assert max(packer.rows_at(w) for w in (1, 512, gpu.serving.max_sequence_length)) <= gpu.serving.max_batch_size
