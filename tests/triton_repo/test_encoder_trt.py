"""The python-backend TensorRT encoder (issue 22): a repository can select it for an engine (the bundled tritonserver
has no tensorrt backend), says so in repo.json, and the model answers each request on its own, a failing one with an
error. The engine folder is fake (engine.json + a dummy plan) and the runner a strict stand-in: nothing here
deserialises a plan (that needs a GPU: the acceptance script serves a real one)."""

from __future__ import annotations

import json
import sys
import types

import numpy as np
import pytest

from sidecars import engine_folder, engine_meta
from nvembed_trt.artifacts import EngineMeta
from nvembed_trt.ngc_triton import ImageError
from nvembed_trt.errors import InputError
from nvembed_trt.triton import repo_from_encoder
from nvembed_trt.triton.config import from_pbtxt
from nvembed_trt.triton.meta import RepoMeta
from nvembed_trt.triton.repository import RepoSettings
from nvembed_trt.triton.server import TritonServer


@pytest.fixture
def rtx_folder(tmp_path):
    """An l40s TensorRT-RTX engine folder: Triton's tensorrt backend cannot load it, EngineRunner can."""
    folder = engine_folder(tmp_path / "engines" / "l40s" / "tiny" / "fp16",
                           engine_meta("l40s", "tensorrt-rtx", "1.7.1.116", engine_bytes=2048))
    (folder / "model.plan").write_bytes(b"\1" * 2048)
    return folder


def test_repository_selects_the_python_backend_encoder(rtx_folder, tmp_path):
    with pytest.raises(ImageError, match="cannot be a Triton tensorrt_plan encoder"):
        repo_from_encoder("tiny", rtx_folder, tmp_path / "plan")
    repo = repo_from_encoder("tiny", rtx_folder, tmp_path / "repo",
                             RepoSettings(encoder_backend="python")).directory
    config = from_pbtxt((repo / "encoder" / "config.pbtxt").read_text())
    assert (config.backend, config.platform, config.parameters["plan_file"].string_value) == ("python", "", "model.plan")
    assert config.instance_group[0].kind == config.instance_group[0].KIND_GPU and not config.instance_group[0].profile
    assert "execution_context_allocation_strategy" not in config.parameters
    version = repo / "encoder" / "1"
    assert "encoder_trt import TritonPythonModel" in (version / "model.py").read_text()
    assert (version / "model.plan").read_bytes() == b"\1" * 2048
    assert EngineMeta.read(version).flavor == "tensorrt-rtx"
    meta = RepoMeta.read(repo)
    assert meta.encoder_kind == "tensorrt_python" and meta.server.backend_config == []
    assert meta.encoder_runtime.startswith("python backend: nvembed_trt.triton.models.encoder_trt")
    assert meta.engine == EngineMeta.read(rtx_folder) and meta.recipe == "fp16"   # the repository carries it
    # the bundled server (python backend only) takes it; a tensorrt_plan repository it refuses
    assert (TritonServer(repo).backend_directory(tmp_path / "work") / "python").is_dir()
    with pytest.raises(InputError, match="encoder backend must be one of tensorrt_plan, python, got 'onnx'"):
        repo_from_encoder("tiny", rtx_folder, tmp_path / "bad", RepoSettings(encoder_backend="onnx"))


class _Tensor:
    def __init__(self, name, array):
        self.name, self.array = name, np.asarray(array)

    def as_numpy(self):
        return self.array


def _pb_utils():
    """The part of triton_python_backend_utils the model uses, strict: unknown inputs are None, as in Triton."""
    pb = types.SimpleNamespace()
    pb.Tensor = _Tensor
    pb.TritonError = type("TritonError", (Exception,), {"INVALID_ARG": 3, "__init__": lambda s, m, c=0:
                                                         setattr(s, "message", m)})
    pb.InferenceResponse = lambda tensors=None, error=None: types.SimpleNamespace(tensors=tensors, error=error)
    pb.get_input_tensor_by_name = lambda request, name: request.get(name)
    return pb


def test_each_request_runs_alone_and_a_failure_answers_only_its_own(rtx_folder, monkeypatch):
    from nvembed_trt.triton.models import encoder_trt

    calls = []

    class Runner:   # stand-in for EngineRunner: same constructor and run_arrays contract, no GPU
        def __init__(self, engine_dir, device=0):
            self.meta = EngineMeta.read(engine_dir)
            calls.append(("load", engine_dir.name, device))

        def run_arrays(self, feeds):
            rows, width = feeds["input_ids"].shape
            if width > 512:
                raise RuntimeError(f"no profile covers batch {rows} x sequence {width}")
            calls.append(("run", rows, width))
            return np.full((rows, 8), width, dtype=np.float16)

    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", _pb_utils())
    monkeypatch.setattr("nvembed_trt.engines.runner.EngineRunner", Runner)
    model = encoder_trt.TritonPythonModel()
    config = {"parameters": {"plan_file": {"string_value": "model.plan"}}}
    model.initialize({"model_config": json.dumps(config), "model_repository": str(rtx_folder.parent),
                      "model_version": rtx_folder.name, "model_instance_device_id": "1"})
    ok = {n: _Tensor(n, np.ones((2, 16), np.int32)) for n in ("input_ids", "attention_mask", "pool_mask")}
    bad = {n: _Tensor(n, np.ones((1, 600), np.int32)) for n in ok}
    first, second, third = model.execute([ok, bad, ok])
    assert calls == [("load", "fp16", 1), ("run", 2, 16), ("run", 2, 16)]
    assert first.error is None and first.tensors[0].name == "embeddings"
    assert first.tensors[0].array.dtype == np.float32 and first.tensors[0].array.shape == (2, 8)
    assert second.tensors is None and "no profile covers batch 1 x sequence 600" in second.error.message
    assert third.error is None
