"""The memory check as Triton will really allocate: per NGC release, the tensorrt_backend settings it honours
(ON_PROFILE_CHANGE only from 25.05; older releases allocate STATIC), TensorRT's own device-memory figure where a
build could measure it, weight-stripped plans counted by the weights they will hold, and the stated assumptions."""

from __future__ import annotations

import pytest

from sidecars import engine_meta
from nvembed_trt.artifacts import EngineMeta
from nvembed_trt.config import NVEmbedConfig
from nvembed_trt.ngc_triton import honoured_setting, image_table, release_of
from nvembed_trt.triton.images import triton_image_for_engine
from nvembed_trt.engines.builder import device_memory_figures
from nvembed_trt.engines.gpus import (engine_device_memory, engine_memory_problems, engine_memory_report,
                                      full_size_fp16_bytes, gpu_registry)
from nvembed_trt.engines.memory import GIB
from nvembed_trt.triton.repository import served_backend_settings

STRATEGY = "execution_context_allocation_strategy"


def full_size_meta(gpu: str, tensorrt: str = "10.13.3.9", **extra) -> EngineMeta:
    """engine.json of a full-size fp16 engine for a registered card, as a tensorrt build writes it (token states out:
    the registry's figures count their I/O buffers)."""
    return engine_meta(gpu, version=tensorrt, outputs=("token_states",),
                       **{"engine_bytes": full_size_fp16_bytes(), **extra})


def test_the_table_records_when_on_profile_change_is_honoured():
    (setting,) = [s for s in image_table().tensorrt_backend_settings if s.parameter == STRATEGY]
    assert (setting.value, setting.since, setting.otherwise) == ("ON_PROFILE_CHANGE", "25.05", "STATIC")
    assert honoured_setting("25.05", STRATEGY, "ON_PROFILE_CHANGE") == ("ON_PROFILE_CHANGE", None)
    value, why = honoured_setting("25.04", STRATEGY, "ON_PROFILE_CHANGE")
    assert value == "STATIC" and why.startswith("Triton 25.04 ignores execution_context_allocation_strategy")
    assert honoured_setting(None, STRATEGY, "ON_PROFILE_CHANGE")[0] == "STATIC"      # unknown image: the safe count
    assert honoured_setting("24.05", STRATEGY, "STATIC") == ("STATIC", None)
    assert release_of("nvcr.io/nvidia/tritonserver:25.04-py3") == "25.04" and release_of("reg/triton:mine") is None


@pytest.mark.parametrize("tensorrt, release, counted, fits", [("10.9.0.34", "25.04", "STATIC", False),
                                                              ("10.10.0.31", "25.05", "ON_PROFILE_CHANGE", True)])
def test_h100_memory_check_follows_the_image_picked_for_the_engine(tensorrt, release, counted, fits):
    """The issue's figures: a full-size fp16 engine on an H100 needs 70.06 GiB with ON_PROFILE_CHANGE and 84.75 GiB
    (of 79.65) with STATIC, which is what every image before 25.05 allocates."""
    meta = full_size_meta("h100", tensorrt)
    image = triton_image_for_engine(meta.model_dump())
    backend = served_backend_settings(meta, image["release"])[STRATEGY]
    assert image["release"] == release and (backend.asked, backend.honoured) == ("ON_PROFILE_CHANGE", counted)
    problems = engine_memory_problems(meta, NVEmbedConfig(), 1, backend.honoured, backend.why or "")
    need = engine_device_memory(meta, NVEmbedConfig(), 1, backend.honoured).total / GIB
    assert need == pytest.approx(70.06 if fits else 84.75, abs=0.005)
    assert (problems == []) == fits
    if not fits:
        assert "need 84.75 GiB on h100" in problems[0] and "Triton 25.04 ignores" in problems[0]
        assert "more than its 79.65 GiB usable" in problems[0]


def test_tensorrt_figure_replaces_the_estimate():
    meta = full_size_meta("h100")
    estimate = engine_device_memory(meta, NVEmbedConfig())
    assert estimate.source == "estimate" and estimate.total / GIB == pytest.approx(70.06, abs=0.005)
    meta = meta.updated(device_memory={"per_profile_bytes": [3 * GIB, 9 * GIB], "max_bytes": 9 * GIB})
    measured = engine_device_memory(meta, NVEmbedConfig())
    io = estimate.io
    assert measured.source == "TensorRT" and [c.total for c in measured.contexts] == [3 * GIB, 9 * GIB]
    assert measured.total == full_size_fp16_bytes() + 12 * GIB + io + GIB      # no workspace added to its figure
    assert engine_memory_problems(meta, NVEmbedConfig()) == []
    meta = meta.updated(device_memory={"per_profile_bytes": [3 * GIB, 70 * GIB]})   # the long profile won't fit
    (problem,) = engine_memory_problems(meta, NVEmbedConfig())
    need = (full_size_fp16_bytes() + 73 * GIB + io + GIB) / GIB
    assert "TensorRT's own figure per profile" in problem and f"need {need:.2f} GiB" in problem
    assert engine_memory_report(meta, NVEmbedConfig())["counted"] == "TensorRT"


def test_device_memory_figures_read_the_engine():
    class Engine:           # the two ICudaEngine members read, and nothing else
        device_memory_size_v2 = 7 * GIB

        def get_device_memory_size_for_profile_v2(self, index: int) -> int:
            return (index + 1) * GIB
    figures = device_memory_figures(Engine(), 2)
    assert figures == {"per_profile_bytes": [GIB, 2 * GIB], "max_bytes": 7 * GIB,
                       "source": "ICudaEngine.get_device_memory_size_for_profile_v2"}


def test_weight_stripped_plan_counts_the_weights_it_will_hold():
    meta = full_size_meta("h100", engine_bytes=4_000_000, onnx_weight_bytes=full_size_fp16_bytes(),
                          weights={"stripped": True})
    assert engine_device_memory(meta, NVEmbedConfig()).weights == full_size_fp16_bytes()


def test_assumptions_are_stated_with_the_score_bytes_they_rest_on():
    """6 bytes per score element assumes the fp32 cast is fused into the softmax; at 8 the H100's long-passage context
    needs 8 GiB more, and the A10's margin falls from 0.77 to 0.15 GiB (the issue's 0.27 left out the short-query
    context's +0.125 GiB: under ON_PROFILE_CHANGE both contexts are held)."""
    h100 = full_size_meta("h100")
    six, eight = (engine_device_memory(h100, NVEmbedConfig(), score_bytes=b).contexts[1].total for b in (6, 8))
    assert (eight - six) == 8 * GIB
    report = engine_memory_report(full_size_meta("a10"), NVEmbedConfig())
    assert report["counted"] == "estimate" and report["margin_gib"] == pytest.approx(0.77, abs=0.005)
    assert report["margin_gib_at_8_score_bytes"] == pytest.approx(0.15, abs=0.005)
    assert any("6 bytes per element" in a and "8 if both are live" in a for a in report["assumptions"])
