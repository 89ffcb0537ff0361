"""Repositories the deployment tests generate from: the tiny ONNX export (ONNX Runtime encoder) and TensorRT engine
folders built for real by TensorRT-RTX on this CPU (the tensorrt flavor needs the target GPU, so the TensorRT case
is that same engine folder with engine.json saying what the tensorrt flavor writes: flavor tensorrt, its version;
nothing here loads the plan)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from .deploy_data import GPU, TRT_VERSION
from nvembed_trt.export import onnx_from_model
from nvembed_trt.triton import repo_from_encoder


@pytest.fixture(scope="session")
def tiny_export(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("deploy-export")
    return onnx_from_model("tiny", root / "tiny", parity=False).directory


@pytest.fixture(scope="session")
def onnx_repo(tiny_export, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("deploy-repos") / "tiny"
    return repo_from_encoder("tiny", tiny_export, out).directory


@pytest.fixture(scope="session")
def rtx_engine(tiny_export, tmp_path_factory) -> Path:
    pytest.importorskip("tensorrt_rtx", reason="tensorrt-rtx is not installed (pip install tensorrt-rtx)")
    from nvembed_trt.engines import BuildSettings, engine_from_onnx

    root = tmp_path_factory.mktemp("deploy-engines")
    return engine_from_onnx(tiny_export / "model.onnx", root / GPU / "tiny" / "fp32", BuildSettings(gpu=GPU)).directory


@pytest.fixture(scope="session")
def trt_engine(rtx_engine, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("deploy-trt-engine") / "fp32"
    shutil.copytree(rtx_engine, out)
    meta = json.loads((out / "engine.json").read_text())
    meta.update(flavor="tensorrt", flavor_version=TRT_VERSION)
    meta["gpu"] = {k: v for k, v in meta["gpu"].items() if k != "aot_targets"}
    (out / "engine.json").write_text(json.dumps(meta, indent=2))
    return out


@pytest.fixture(scope="session")
def trt_repo(trt_engine, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("deploy-trt-repo") / "nv-embed-trt"
    return repo_from_encoder("tiny", trt_engine, out).directory
