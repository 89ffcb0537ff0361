"""Issue 11 item 4 on CPU: validate/bench discovery keeps only the engines the GPU present can run, loads them one at
a time, and keeps each within its card's serving limits. Fake engine folders (engine.json + a dummy plan); the GPU is
described, not used."""

from __future__ import annotations

import numpy as np
import pytest

from sidecars import engine_folder, engine_meta
from nvembed_trt.encoders import tensorrt as tensorrt_encoder
from nvembed_trt.validation.runtimes import engine_runtime, select_engines

TRT, RTX = "10.13.3.9", "1.2.0.54"
H100 = ("NVIDIA H100 80GB HBM3", "9.0")


def make_engine(root, gpu, recipe, flavor="tensorrt", version=TRT, **builder):
    """An engine folder whose engine.json says `recipe` (the folder is named after it, as `make engines` does)."""
    return engine_folder(root / "engines" / gpu / "tiny" / recipe,
                         engine_meta(gpu, flavor, version, recipe=recipe, **builder))


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
    """EngineRunner without a GPU: records the batch shapes it is given, answers unit rows."""

    def __init__(self, directory, device=0, meta=None):
        self.directory, self.meta = directory, meta
        self.batches: list = []

    def run_arrays(self, feeds):
        rows = feeds["input_ids"].shape[0]
        self.batches.append(feeds["input_ids"].shape)
        return np.tile(np.eye(1, 4, dtype=np.float32), (rows, 1))


def test_one_engine_at_a_time_within_the_card_limits(tmp_path, tiny, monkeypatch):
    import nvembed_trt.engines.runner as runner_module

    monkeypatch.setattr(runner_module, "EngineRunner", FakeRunner)
    monkeypatch.setattr(tensorrt_encoder, "_LOADED", [])
    a10 = engine_runtime(make_engine(tmp_path, "a10", "int8"), tiny.tokenizer)
    h100 = engine_runtime(make_engine(tmp_path, "h100", "fp16"), tiny.tokenizer)
    assert (a10.recipe, h100.recipe) == ("int8", "fp16")          # from engine.json
    assert a10.encoder._runner is None and h100.encoder._runner is None    # discovery loads nothing
    out = a10.embed(["a short text"] * 20, "", batch_size=16)    # the engine runtime's default batch is 16
    batches = a10.encoder._runner.batches
    assert out.shape == (20, 4) and [rows for rows, _ in batches] == [8, 8, 4]  # the A10's max is 8
    assert tensorrt_encoder._LOADED == [a10.encoder]
    h100.embed(["a short text"] * 3, "")
    assert a10.encoder._runner is None and tensorrt_encoder._LOADED == [h100.encoder]   # the first was unloaded
    assert a10.accepts(8, 512) and not a10.accepts(16, 32) and not a10.accepts(1, 4096)
    assert h100.accepts(2, 8192) and not h100.accepts(3, 8192)


def test_long_rows_are_cut_to_what_the_long_profile_takes(tmp_path, tiny, monkeypatch):
    """Batches of 16 texts of ~500 tokens on an A10 engine: its short-query profile ends at 512 tokens, so rows that
    pad past it go in batches of 2 (long-passage). The runtime used to send min(batch_size, serving max) rows
    whatever their width, which no profile takes (a crash on the GPU)."""
    import nvembed_trt.engines.runner as runner_module

    monkeypatch.setattr(runner_module, "EngineRunner", FakeRunner)
    monkeypatch.setattr(tensorrt_encoder, "_LOADED", [])
    a10 = engine_runtime(make_engine(tmp_path, "a10", "fp16"), tiny.tokenizer)
    a10.max_length = 1024
    a10.embed(["word " * 600] * 5, "", batch_size=16)
    assert [rows for rows, _ in a10.encoder._runner.batches] == [2, 2, 1]
    assert all(a10.encoder.meta.profile_index(rows, width) == 1 for rows, width in a10.encoder._runner.batches)
