"""validate / bench / smoke with a Triton repository: the triton runtime reads the repository's own limits, a TensorRT
repository is noted (not a crash) where only the bundled server is at hand, and --tritonserver reaches every server
start (validate, bench, smoke)."""

from __future__ import annotations

import dataclasses
import json
import shutil
import stat
from pathlib import Path

import pytest

from nvembed_trt.cli.main import main
from nvembed_trt.triton.meta import RepoMeta
from nvembed_trt.triton.repository import RepoSettings, repo_from_encoder

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def workdir(tiny_repos, tmp_path_factory):
    """A project folder holding triton_repo/tiny/: the tiny ONNX encoder at the default max length (512)."""
    root = tmp_path_factory.mktemp("validate-triton")
    export = RepoMeta.read(tiny_repos["engine"]).encoder_source
    repo_from_encoder("tiny", export, root / "triton_repo" / "tiny", RepoSettings(max_request_rows=16))
    return root


def test_validate_runtimes_triton_passes_on_a_repository(workdir, monkeypatch, capsys):
    monkeypatch.chdir(workdir)
    assert main(["validate", "--model", "tiny", "--runtimes", "triton", "--pairs", "12",
                 "--output-dir", str(workdir / "results")]) == 0
    saved = json.loads(next((workdir / "results").glob("validate-*.json")).read_text())
    (row,) = saved["rows"]
    assert row["runtime"] == "triton" and row["recipe"] == "fp32" and row["rows"] == 24
    assert row["cosine_min"] >= 0.99999 and row["batched_vs_single_min_cosine"] >= 0.9999


@pytest.fixture
def trt_workdir(workdir, tmp_path):
    """The same repository as repo.json would describe a TensorRT encoder (only repo.json is read before a start)."""
    shutil.copytree(workdir / "triton_repo", tmp_path / "triton_repo")
    repo = tmp_path / "triton_repo" / "tiny"
    meta = RepoMeta.read(repo)
    meta.updated(spec=dataclasses.replace(meta.spec, encoder_kind="tensorrt_plan")).write(repo)
    return tmp_path


def test_tensorrt_repository_is_noted_without_a_tritonserver(trt_workdir, monkeypatch, capsys):
    monkeypatch.chdir(trt_workdir)
    assert main(["validate", "--model", "tiny", "--runtimes", "torch,triton", "--pairs", "4",
                 "--output-dir", str(trt_workdir / "results")]) == 0
    md = capsys.readouterr().out
    assert "has no TensorRT backend: pass --tritonserver /opt/tritonserver/bin/tritonserver" in md


@pytest.fixture
def fake_tritonserver(tmp_path):
    """A tritonserver that records its command line and fails, as NVIDIA's would on a machine without its libraries."""
    binary = tmp_path / "opt" / "tritonserver" / "bin" / "tritonserver"
    binary.parent.mkdir(parents=True)
    binary.write_text(f"#!/bin/sh\necho \"$@\" > {tmp_path}/args\necho 'E1203 fake tritonserver: no GPU' >&2\n"
                      f"exit 1\n")
    binary.chmod(binary.stat().st_mode | stat.S_IEXEC)
    return binary


@pytest.mark.parametrize("command", ["validate", "bench"])
def test_tritonserver_reaches_validate_and_bench(trt_workdir, fake_tritonserver, monkeypatch, capsys, command):
    monkeypatch.chdir(trt_workdir)
    extra = ["--batch", "1", "--seq", "16", "--concurrency", "1"] if command == "bench" else ["--pairs", "8"]
    code = main([command, "--model", "tiny", "--runtimes", "triton", "--tritonserver", str(fake_tritonserver),
                 "--output-dir", str(trt_workdir / "results"), *extra])
    assert code == 2 and "tritonserver exited with 1: E1203 fake tritonserver: no GPU" in capsys.readouterr().err
    args = (fake_tritonserver.parents[3] / "args").read_text()
    assert f"--model-repository={trt_workdir / 'triton_repo' / 'tiny'}" in args


def test_tritonserver_reaches_smoke(trt_workdir, fake_tritonserver, capsys):
    code = main(["smoke", "--repo", str(trt_workdir / "triton_repo" / "tiny"), "--model", "tiny", "--input",
                 str(REPO / "examples" / "sample.jsonl"), "--tritonserver", str(fake_tritonserver)])
    assert code == 2 and "E1203 fake tritonserver: no GPU" in capsys.readouterr().err
    assert "--model-repository=" in (fake_tritonserver.parents[3] / "args").read_text()


def test_serve_waits_for_triton_as_long_as_told(workdir, tmp_path, capsys):
    """A server that never becomes ready (a large plan on a slow disk) is waited for --triton-ready-timeout seconds."""
    from nvembed_trt.serving.process import free_ports

    binary = tmp_path / "tritonserver"
    binary.write_text("#!/bin/sh\nexec sleep 60\n")
    binary.chmod(binary.stat().st_mode | stat.S_IEXEC)
    front, http, grpc, metrics = free_ports(4)
    code = main(["serve", "--repo", str(workdir / "triton_repo" / "tiny"), "--tritonserver", str(binary),
                 "--port", str(front), "--http-port", str(http), "--grpc-port", str(grpc), "--metrics-port",
                 str(metrics), "--triton-ready-timeout", "1.5"])
    assert code == 2
    assert "tritonserver was not ready after 1.5 s (the ready timeout; raise it with --triton-ready-timeout)" in \
        capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["serve", "--repo", "x", "--triton-ready-timeout", "soon"])
