"""benchmarks/engine_scale.py's README table renders the published figures (steps, peaks, sizes, precisions)."""

from __future__ import annotations

import copy
import importlib.util

from conftest import REPO

SAMPLE = {
    "host": "cpu-2core-24gib", "cpus": 2, "memory_gib": 23.4, "model": "nv-embed-v2", "target_peak_rss_gib": 20.0,
    "checkpoint": {"wall_s": 125.2, "peak_rss_gib": 1.01, "exit": 0, "bytes": 15_702_100_000},
    "recipes": {"fp16": {
        "graph": {"wall_s": 89.4, "peak_rss_gib": 1.08, "exit": 0, "graph_bytes": 15_702_600_000},
        "engines": {
            "l40s": {"wall_s": 222.0, "peak_rss_gib": 17.77, "peak_anon_gib": 15.12, "exit": 0, "engine_bytes": 15_780_000_000,
                     "weights": {"stripped": False}, "aot_targets": ["SM89"], "flavor": "tensorrt",
                     "network_precision": {"MATRIX_MULTIPLY": {"HALF": 295}}},
            "a10": {"wall_s": 120.0, "peak_rss_gib": 23.1, "exit": -9}},
        "triton_repo": {"wall_s": 60.0, "peak_rss_gib": 0.4, "exit": 0}}},
}


def test_engine_table_rows():
    spec = importlib.util.spec_from_file_location("engine_scale", REPO / "benchmarks" / "engine_scale.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    lines = module.engine_markdown(SAMPLE).splitlines()
    assert "2 CPUs, 23.4 GiB, TensorRT-RTX ahead of time, target peak RSS <= 20 GiB" in lines[0]
    assert "| - | checkpoint | - | 125 s | 1.01 GiB | – | 15.70 GB | - |" in lines
    assert "| fp16 | export | - | 89 s | 1.08 GiB | – | 15.70 GB | - |" in lines
    assert "| fp16 | build | l40s (SM89) | 222 s | 17.77 GiB | 15.12 GiB | 15.78 GB plan | HALF 295 |" in lines
    assert "| fp16 | build | a10 | 120 s | 23.10 GiB | – | failed (exit -9) | - |" in lines
    assert "| fp16 | triton-repo | l40s | 60 s | 0.40 GiB | – | consistent | - |" in lines
    rtx = copy.deepcopy(SAMPLE)
    rtx["recipes"]["fp16"]["engines"]["l40s"]["flavor"] = "tensorrt-rtx"
    rtx["recipes"]["fp16"]["triton_repo"]["exit"] = 2
    assert "| fp16 | triton-repo | l40s | 60 s | 0.40 GiB | – | refused: a TensorRT-RTX plan is no Triton tensorrt_plan " \
        "| - |" in module.engine_markdown(rtx).splitlines()
    rtx["recipes"]["fp16"]["engines"]["l40s"]["memory_limit"] = {"limit_gib": 20.0, "peak_charge_gib": 19.9}
    assert "| fp16 | build | l40s (SM89, 20 GiB cgroup) | 222 s | 17.77 GiB | 15.12 GiB | 15.78 GB plan | HALF 295 |" \
        in module.engine_markdown(rtx).splitlines()
    rtx["recipes"]["fp16"]["triton_repo"].update(exit=0, checked_only=True)
    assert "| fp16 | triton-repo | l40s | 60 s | 0.40 GiB | – | consistent (checked, nothing written; Triton needs a " \
        "tensorrt build of this profile) | - |" in module.engine_markdown(rtx).splitlines()
