"""Issue 11 item 4 on CPU: validate/bench discovery keeps only the engines the GPU present can run, loads them one at
a time, and keeps each within its card's serving limits. Fake engine folders (engine.json + a dummy plan); the GPU is
described, not used."""

from __future__ import annotations

import json

import numpy as np
import pytest

from nvembed_trt.engines.gpus import get_gpu
from nvembed_trt.validation import runtimes
from nvembed_trt.validation.runtimes import EngineRuntime, select_engines

TRT, RTX = "10.13.3.9", "1.2.0.54"
H100 = ("NVIDIA H100 80GB HBM3", "9.0")


def make_engine(root, gpu, recipe, flavor="tensorrt", version=TRT, **builder):
    profile = get_gpu(gpu)
    folder = root / "engines" / gpu / "tiny" / recipe
    folder.mkdir(parents=True)
    (folder / "model.plan").write_bytes(b"\0")
    meta = {"flavor": flavor, "flavor_version": version,
            "gpu": {"profile": gpu, "compute_capability": profile.compute_capability},
            "profiles": [p.model_dump() for p in profile.profiles], "serving": profile.serving.model_dump(),
            "builder": {"version_compatible": False, "hardware_compatible": False, **builder}}
    (folder / "engine.json").write_text(json.dumps(meta))
    return folder


@pytest.fixture
def engines(tmp_path):
    made = [make_engine(tmp_path, "h100", "fp16"), make_engine(tmp_path, "h100", "fp8"),
            make_engine(tmp_path, "l40s", "fp16", "tensorrt-rtx", RTX),       # the SM89 engine `make all` builds
            make_engine(tmp_path, "a10", "int8"),                            # another card, tensorrt
            make_engine(tmp_path, "a100", "fp16", hardware_compatible=True),  # Ampere+ : runs on the H100
            make_engine(tmp_path, "h100", "bf16", version="10.12.0.36")]     # another TensorRT
    return tmp_path, sorted(made)


def test_only_engines_for_the_gpu_present(engines):
    _, folders = engines
    chosen, notes = select_engines(folders, H100, {"tensorrt": TRT, "tensorrt-rtx": RTX})
    assert [(f.parent.parent.name, f.name) for f, _ in chosen] == [("a100", "fp16"), ("h100", "fp16"),
                                                                    ("h100", "fp8")]
    assert len(notes) == 3
    assert any("l40s/tiny/fp16: built for l40s (compute capability 8.9); NVIDIA H100 80GB HBM3 is compute "
               "capability 9.0" in n for n in notes)
    assert any("a10/tiny/int8: built for a10 (compute capability 8.6)" in n for n in notes)
    assert any("h100/tiny/bf16: built with tensorrt 10.12.0.36, this machine has 10.13.3.9" in n for n in notes)


def test_recipes_filter_and_missing_flavor(engines):
    _, folders = engines
    chosen, notes = select_engines(folders, H100, {"tensorrt": None, "tensorrt-rtx": RTX}, {"fp8"})
    assert chosen == [] and len(notes) == 1 and "flavor tensorrt is not installed" in notes[0]
    chosen, notes = select_engines(folders, None, {"tensorrt": TRT, "tensorrt-rtx": RTX}, {"fp8"})
    assert chosen == [] and "needs a CUDA GPU" in notes[0]


class FakeRunner:
    loaded: list = []

    def __init__(self, directory):
        self.directory = directory
        FakeRunner.loaded.append(directory)
        self.batches: list = []

    def run(self, batch):
        self.batches.append(batch.input_ids.shape)
        return np.zeros((batch.input_ids.shape[0], 4), dtype=np.float32)


def test_one_engine_at_a_time_within_the_card_limits(tmp_path, tiny, monkeypatch):
    import nvembed_trt.engines.runner as runner_module

    monkeypatch.setattr(runner_module, "EngineRunner", FakeRunner)
    monkeypatch.setattr(runtimes, "_LOADED", [])
    a10 = EngineRuntime(make_engine(tmp_path, "a10", "int8"), tiny.tokenizer, "int8")
    h100 = EngineRuntime(make_engine(tmp_path, "h100", "fp16"), tiny.tokenizer, "fp16")
    assert a10._runner is None and h100._runner is None          # discovery loads nothing
    out = a10.embed(["a short text"] * 20, "", batch_size=16)    # the engine runtime's default batch is 16
    assert out.shape == (20, 4) and [rows for rows, _ in a10._runner.batches] == [8, 8, 4]  # the A10's max is 8
    assert runtimes._LOADED == [a10]
    h100.embed(["a short text"] * 3, "")
    assert a10._runner is None and runtimes._LOADED == [h100]    # loading the next engine unloaded the first
    assert a10.accepts(8, 512) and not a10.accepts(16, 32) and not a10.accepts(1, 4096)
    assert h100.accepts(2, 8192) and not h100.accepts(3, 8192)
