"""Pure parts of the builder, testable without a GPU: the engine inspector's JSON summary (deserialising an engine
needs CUDA, so the parsing is a function of the JSON) and the timing cache's attach/discard/save rules."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nvembed_trt.engines.builder import (attach_timing_cache, inspector_dtype, inspector_summary, save_timing_cache,
                                         timing_cache_path)
from nvembed_trt.engines.flavors import FLAVORS
from nvembed_trt.engines.gpus import get_gpu

# IEngineInspector.get_engine_information(LayerInformationFormat.JSON) of an engine built with
# ProfilingVerbosity.DETAILED, in TensorRT's documented layout (names shortened): Layers are objects with Name,
# LayerType, Inputs/Outputs ({Name, Location, Dimensions, Format/Datatype}), optional Weights/Bias ({Type, Count}),
# TacticName/TacticValue; Bindings lists the I/O tensors. Format strings vary by format and by whether an execution
# context was attached ("Half" vs "Row major linear FP16 format").
DETAILED = {
    "Layers": [
        {"Name": "embed_tokens", "LayerType": "Gather", "Inputs": [
            {"Name": "input_ids", "Location": "Device", "Dimensions": [-1, -1], "Format/Datatype": "Int32"}],
         "Outputs": [{"Name": "h0", "Location": "Device", "Dimensions": [-1, -1, 4096],
                      "Format/Datatype": "Row major linear FP16 format"}], "TacticValue": "0x0"},
        {"Name": "layers.0.input_layernorm", "LayerType": "Myelin", "Inputs": [
            {"Name": "h0", "Location": "Device", "Dimensions": [-1, -1, 4096], "Format/Datatype": "Half"}],
         "Outputs": [{"Name": "n0", "Location": "Device", "Dimensions": [-1, -1, 4096],
                      "Format/Datatype": "Row major linear FP32"}], "TacticName": "myelin_rmsnorm"},
        {"Name": "layers.0.q_proj", "LayerType": "CaskGemm", "Inputs": [
            {"Name": "n0h", "Location": "Device", "Dimensions": [-1, -1, 4096], "Format/Datatype": "Half"}],
         "Outputs": [{"Name": "q", "Location": "Device", "Dimensions": [-1, -1, 4096],
                      "Format/Datatype": "Channel major FP16 format where channel % 8 == 0"}],
         "Weights": {"Type": "Half", "Count": 16777216}, "Bias": {"Type": "Half", "Count": 0},
         "TacticName": "sm89_xmma_gemm_f16f16_f16f32_f32_tn_n_tilesize128x128x32", "TacticValue": "0x3a"},
        {"Name": "layers.0.down_proj", "LayerType": "CaskGemm", "Inputs": [
            {"Name": "g", "Location": "Device", "Dimensions": [-1, -1, 14336], "Format/Datatype": "Int8"}],
         "Outputs": [{"Name": "d", "Location": "Device", "Dimensions": [-1, -1, 4096],
                      "Format/Datatype": "Two wide channel vectorized row major FP16 format"}],
         "Weights": {"Type": "Int8", "Count": 58720256}},
        {"Name": "pool", "LayerType": "Reduce", "Inputs": [], "Outputs": [
            {"Name": "embeddings", "Location": "Device", "Dimensions": [-1, 4096], "Format/Datatype": "Float"}]},
        {"Name": "shape_of_ids", "LayerType": "Shape", "Inputs": [], "Outputs": []},
    ],
    "Bindings": ["input_ids", "attention_mask", "embeddings"],
}


@pytest.mark.parametrize("text, dtype", [
    ("Row major linear FP16 format", "HALF"), ("Half", "HALF"), ("Row major linear FP32", "FLOAT"),
    ("Float", "FLOAT"), ("Channel major FP16 format where channel % 8 == 0", "HALF"), ("Int8", "INT8"),
    ("Row major linear Int8 format", "INT8"), ("Int32", "INT32"), ("BFloat16", "BF16"),
    ("Row major linear BF16 format", "BF16"), ("FP8", "FP8"), ("Int4", "INT4"), ("Bool", "BOOL"),
    ("Row major linear", "?"),
])
def test_inspector_dtype_reads_the_datatype_word_not_the_last(text, dtype):
    assert inspector_dtype(text) == dtype


def test_detailed_inspector_json_is_summarised_per_precision_and_layer_type():
    summary = inspector_summary(json.dumps(DETAILED))
    assert summary == {
        "layers": 6, "verbosity": "detailed",
        "output_precision": {"FLOAT": 2, "HALF": 3, "NONE": 1},
        "weight_elements": {"HALF": 16777216, "INT8": 58720256},
        "by_layer_type": {"CaskGemm": {"HALF": 2}, "Gather": {"HALF": 1}, "Myelin": {"FLOAT": 1},
                          "Reduce": {"FLOAT": 1}, "Shape": {"NONE": 1}},
    }


def test_layer_names_only_says_detailed_verbosity_is_needed():
    summary = inspector_summary({"Layers": ["embed_tokens", "layers.0.q_proj"], "Bindings": ["input_ids"]})
    assert summary["layers"] == 2 and summary["verbosity"] == "layer_names_only"
    assert "ProfilingVerbosity.DETAILED" in summary["note"]


class FakeCache:
    def __init__(self, data: bytes):
        self.data = data

    def serialize(self) -> bytes:
        return self.data + b"+new"


class FakeConfig:
    """create_timing_cache / set_timing_cache / get_timing_cache as TensorRT's IBuilderConfig: a cache from another
    device or version is refused (set_timing_cache returns False with ignore_mismatch=False)."""

    def __init__(self, accepts=lambda data: data in (b"", b"good"), raises=False):
        self.accepts, self.raises, self.attached = accepts, raises, None

    def create_timing_cache(self, data: bytes):
        if self.raises and data:
            raise RuntimeError("corrupt timing cache")
        return FakeCache(data)

    def set_timing_cache(self, cache, ignore_mismatch: bool) -> bool:
        assert ignore_mismatch is False
        if self.accepts(cache.data):
            self.attached = cache
            return True
        return False

    def get_timing_cache(self):
        return self.attached


TRT = FLAVORS["tensorrt"]


def _err(capsys) -> str:
    return " ".join(capsys.readouterr().err.split())  # notes are wrapped to the terminal width


def test_cache_path_is_keyed_by_gpu_device_and_version(tmp_path):
    gpu = get_gpu("h100")
    a = timing_cache_path(tmp_path, TRT, "10.13.3.9", gpu, "NVIDIA H100 80GB HBM3")
    b = timing_cache_path(tmp_path, TRT, "10.13.3.9", gpu, "NVIDIA H100 PCIe")
    c = timing_cache_path(tmp_path, TRT, "11.0.0.1", gpu, "NVIDIA H100 80GB HBM3")
    assert a.name == "timing-tensorrt-10.13.3.9-nvidia-h100-80gb-hbm3.cache"
    assert len({a, b, c}) == 3
    assert timing_cache_path(tmp_path, TRT, "10.13.3.9", gpu, None).name == "timing-tensorrt-10.13.3.9-h100.cache"


def test_matching_cache_is_loaded_and_saved(tmp_path):
    path = tmp_path / "t.cache"
    path.write_bytes(b"good")
    config = FakeConfig()
    cache, status = attach_timing_cache(config, TRT, path)
    assert cache is config.attached and cache.data == b"good" and status == f"{path} (loaded, 4 bytes)"
    assert save_timing_cache(config, path) is None and path.read_bytes() == b"good+new"


@pytest.mark.parametrize("raises", [False, True], ids=["mismatching", "corrupt"])
def test_mismatching_or_corrupt_cache_is_discarded_with_a_note(tmp_path, capsys, raises):
    path = tmp_path / "t.cache"
    path.write_bytes(b"from another device")
    config = FakeConfig(raises=raises)
    cache, status = attach_timing_cache(config, TRT, path)
    assert cache is config.attached and cache.data == b""
    assert status == f"{path} (discarded a mismatching cache, new)"
    assert "corrupt or was made on another device/TensorRT version: discarded" in _err(capsys)
    assert save_timing_cache(config, path) is None and path.read_bytes() == b"+new"


def test_a_refused_new_cache_builds_without_one(tmp_path, capsys):
    cache, status = attach_timing_cache(FakeConfig(accepts=lambda data: False), TRT, tmp_path / "t.cache")
    assert cache is None and status == "not used (the builder refused a new timing cache)"
    assert "building without one" in _err(capsys)


def test_saving_never_raises_after_the_engine_was_written(tmp_path, capsys):
    config = FakeConfig()  # nothing attached: get_timing_cache() returns None, as TensorRT does after a rejection
    assert save_timing_cache(config, tmp_path / "t.cache") == "the builder returned no timing cache"
    assert not (tmp_path / "t.cache").exists() and "timing cache not saved" in _err(capsys)


def test_flavor_without_timing_cache(tmp_path):
    cache, status = attach_timing_cache(FakeConfig(), FLAVORS["tensorrt-rtx"], Path(tmp_path / "t.cache"))
    assert cache is None and status == "not used (tensorrt-rtx ignores timing caches)"
