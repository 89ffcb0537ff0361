"""The pods' init step (python -m nvembed_trt.deploy.ensure): copy the repository in, keep an engine built for this
node's GPU, build one when the repository holds none for it, and stop with a clear message otherwise."""

from __future__ import annotations

import shutil

import pytest

from nvembed_trt.deploy.ensure import PLAN, EnsureError, ensure, main
from nvembed_trt.engines.flavors import FLAVORS, installed
from nvembed_trt.triton.meta import RepoMeta


def test_onnx_repository_is_copied(onnx_repo, tmp_path):
    out = tmp_path / "models" / "tiny"
    out.parent.mkdir()
    assert ensure(onnx_repo, tmp_path / "none", out) == f"copied {onnx_repo} to {out}"
    assert (out / "repo.json").read_text() == (onnx_repo / "repo.json").read_text()
    assert (out / "encoder" / "1" / "model.onnx").stat().st_size == (onnx_repo / "encoder/1/model.onnx").stat().st_size
    assert ensure(onnx_repo, tmp_path / "none", out).startswith("copied")      # a restarted pod: replaced, not merged


def test_engine_for_this_gpu_is_kept(trt_repo, tmp_path):
    out = tmp_path / "repo"
    account = ensure(trt_repo, tmp_path / "none", out, compute_capability="8.9")
    assert "engine for compute capability 8.9 present (tensorrt 10.13.3.9)" in account
    assert (out / PLAN).read_bytes() == (trt_repo / PLAN).read_bytes()


def test_wrong_gpu_says_where_to_schedule(trt_repo, tmp_path):
    out = tmp_path / "repo"
    with pytest.raises(EnsureError, match=r"engine is for compute capability 8.9, this node's GPU is 9.0.*"
                                          r"schedule the pod on a rtx-6000-ada node"):
        ensure(trt_repo, tmp_path / "none", out, compute_capability="9.0")
    assert list(tmp_path.iterdir()) == []


def test_missing_engine_needs_the_onnx(trt_repo, tmp_path):
    store = tmp_path / "store" / "nv-embed-trt"
    shutil.copytree(trt_repo, store)
    (store / PLAN).unlink()
    with pytest.raises(EnsureError, match=r"holds no engine .* no ONNX graph at .*nv-embed-trt-onnx/model.onnx"):
        ensure(store, tmp_path / "store" / "nv-embed-trt-onnx", tmp_path / "models", compute_capability="8.9")
    assert not (tmp_path / "models").exists()


@pytest.mark.skipif(installed(FLAVORS["tensorrt"]), reason="the tensorrt flavor is installed here: it would build")
def test_build_without_tensorrt_says_why(trt_repo, tiny_export, tmp_path, capsys):
    store = tmp_path / "store" / "nv-embed-trt"
    shutil.copytree(trt_repo, store)
    (store / PLAN).unlink()
    shutil.copytree(tiny_export, tmp_path / "store" / "nv-embed-trt-onnx")
    code = main(["--store", str(store), "--onnx", str(tmp_path / "store" / "nv-embed-trt-onnx"),
                 "--output", str(tmp_path / "models"), "--compute-capability", "8.9"])
    err = capsys.readouterr().err
    assert code == 2 and "holds no engine" in err and "building it failed: flavor tensorrt is not installed" in err
    assert not (tmp_path / "models").exists()


def test_no_repository_in_store(tmp_path, capsys):
    assert main(["--store", str(tmp_path), "--onnx", str(tmp_path), "--output", str(tmp_path / "o")]) == 2
    assert "no repo.json" in capsys.readouterr().err


def test_node_gpu_is_read_with_nvidia_smi(trt_repo, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))          # no nvidia-smi on this machine's PATH
    with pytest.raises(EnsureError, match=r"cannot read this node.s GPU \((NVML: .*; )?nvidia-smi is not on PATH"):
        ensure(trt_repo, tmp_path / "none", tmp_path / "out")
    assert RepoMeta.read(trt_repo).engine.gpu.compute_capability == "8.9"
