"""The NGC image table, the pick by TensorRT version, and the refusals made when a repository is created."""

from __future__ import annotations

import json
import shutil

import pytest
from .deploy_data import TRT_VERSION

from nvembed_trt.deploy.images import builder_image, ngc_commands
from nvembed_trt.ngc_triton import ImageError, image_table, normalise_version
from nvembed_trt.triton.images import OVERRIDE_ENV, triton_image_for_engine
from nvembed_trt.triton.meta import RepoMeta
from nvembed_trt.triton.repository import RepoSettings, repo_from_encoder


def _key(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split("."))


def test_table_is_ordered_and_monotonic():
    table = image_table()
    assert len(table.releases) >= 12
    releases = [r.release for r in table.releases]
    assert releases == sorted(releases) and len(set(releases)) == len(releases)
    versions = [_key(r.tensorrt) for r in table.releases]
    assert versions == sorted(versions), "a later NGC release never carries an older TensorRT"
    assert all(len(v) == 4 for v in versions) and all(r.evidence for r in table.releases)


@pytest.mark.parametrize("built, release", [("10.13.3.9", "25.10"), ("10.8.0.43", "25.02"), ("10.0.1.6", "24.05"),
                                            ("10.13.2.6", "25.08"), ("10.13.3.9.post1", "25.10"),
                                            ("11.0.0.114", "26.06"), ("11.3.0.99", "26.09")])
def test_pick_newest_release_with_the_same_tensorrt(built, release, monkeypatch):
    monkeypatch.delenv(OVERRIDE_ENV, raising=False)
    pick = triton_image_for_engine({"flavor": "tensorrt", "flavor_version": built})
    assert pick["image"] == f"nvcr.io/nvidia/tritonserver:{release}-py3"
    assert pick["release"] == release and pick["tensorrt"] == normalise_version(built)


@pytest.mark.parametrize("built", ["10.12.0.36", "10.13.3", "11.0.0.1", "8.6.1.6"])
def test_no_release_carries_it(built, monkeypatch):
    monkeypatch.delenv(OVERRIDE_ENV, raising=False)
    with pytest.raises(ImageError) as info:
        triton_image_for_engine({"flavor": "tensorrt", "flavor_version": built}, "engines/h100/x/fp8/engine.json")
    msg = str(info.value)
    assert f"engine built with TensorRT {built}" in msg and "engines/h100/x/fp8/engine.json" in msg
    assert "25.10: 10.13.3.9" in msg and "26.09: 11.3.0.99" in msg and OVERRIDE_ENV in msg
    assert "nvcr.io/nvidia/tensorrt:26.09-py3" in msg     # the newest listed release


def test_override_is_recorded(monkeypatch):
    monkeypatch.setenv(OVERRIDE_ENV, "registry.example/triton:custom")
    pick = triton_image_for_engine({"flavor": "tensorrt", "flavor_version": "10.12.0.36"})
    assert pick["image"] == "registry.example/triton:custom" and "10.12.0.36" in pick["how"]


def test_tensorrt_rtx_plans_are_refused_for_triton(rtx_engine, tmp_path):
    """Issue 11 item 6, with a real TensorRT-RTX engine built on this CPU."""
    assert json.loads((rtx_engine / "engine.json").read_text())["flavor"] == "tensorrt-rtx"
    with pytest.raises(ImageError, match=r"TensorRT-RTX plan .* cannot be a Triton tensorrt_plan encoder") as info:
        repo_from_encoder("tiny", rtx_engine, tmp_path / "repo")
    assert "--flavor tensorrt" in str(info.value) and "ONNX Runtime encoder" in str(info.value)
    assert list(tmp_path.iterdir()) == []       # nothing partial left behind


def test_check_mode_proves_the_repository_of_an_rtx_engine(rtx_engine, tmp_path, capsys):
    """Issue 15 item 4: on the CPU build host every repository check runs on the engine's profiles (what a
    tensorrt build of the same GPU profile gets) and nothing is written; the plan is reported as not loadable."""
    meta = json.loads((rtx_engine / "engine.json").read_text())
    result = repo_from_encoder("tiny", rtx_engine, tmp_path / "repo", check_only=True)
    assert result.meta is None and result.check["models"] == ["encoder", "nv_embed"]
    assert result.spec.encoder_max_batch == meta["serving"]["max_batch_size"]
    assert len(result.spec.shape_limits) == len(meta["profiles"])
    assert result.check["triton_loads_this_plan"] is False and "--flavor tensorrt" in result.check["gpu_host_must"]
    assert list(tmp_path.iterdir()) == []
    # the CLI: exit 0, says both, writes nothing; --output is not needed
    from nvembed_trt.cli.main import main as cli
    assert cli(["triton-repo", "--model", "tiny", "--encoder", str(rtx_engine), "--check"]) == 0
    out = capsys.readouterr().out
    assert "consistent: encoder, nv_embed (tensorrt_plan encoder" in out and "nothing written" in out
    assert "this plan is not one Triton loads" in out


def test_every_problem_is_reported_at_once(rtx_engine, tmp_path):
    from nvembed_trt.triton.repository import RepositoryError
    engine = tmp_path / "engine"
    shutil.copytree(rtx_engine, engine)
    meta = json.loads((engine / "engine.json").read_text())
    meta["outputs"] = ["pooled"]                 # a graph whose output nv_embed cannot read
    (engine / "engine.json").write_text(json.dumps(meta))
    with pytest.raises(RepositoryError) as info:
        repo_from_encoder("tiny", engine, tmp_path / "repo", RepoSettings(encoder_instances=4096), check_only=True)
    msg = str(info.value)
    assert "(2 problems)" in msg and "4096 encoder instance(s)" in msg and "['pooled']" in msg
    assert not (tmp_path / "repo").exists()


def test_repository_records_engine_and_image(trt_repo, monkeypatch):
    meta = RepoMeta.read(trt_repo)
    assert meta.triton_image.image == "nvcr.io/nvidia/tritonserver:25.10-py3"
    assert meta.triton_image.tensorrt == TRT_VERSION
    assert meta.engine.flavor == "tensorrt" and meta.engine.gpu.profile == "rtx-6000-ada"
    assert meta.engine.gpu.compute_capability == "8.9" and meta.engine.engine_bytes > 100_000


def test_onnx_repository_gets_the_newest_image(onnx_repo):
    meta = RepoMeta.read(onnx_repo)
    assert meta.engine is None and meta.triton_image.image.endswith(f"{image_table().releases[-1].release}-py3")


def test_builder_image_is_the_same_release():
    assert builder_image("nvcr.io/nvidia/tritonserver:25.08-py3") == "nvcr.io/nvidia/tensorrt:25.08-py3"
    with pytest.raises(ImageError, match="expected nvcr.io/nvidia/tritonserver"):
        builder_image("registry.example/triton:custom")


def test_ngc_commands_build_then_run(tmp_path):
    build, run = ngc_commands(tmp_path, "nvcr.io/nvidia/tritonserver:25.10-py3")
    assert build == ("docker build --build-arg TRITON_IMAGE=nvcr.io/nvidia/tritonserver:25.10-py3 "
                     "-t nvembed-trt-serving:25.10 -f deploy/Dockerfile .")
    assert f"-v {tmp_path.resolve()}:/models:ro nvembed-trt-serving:25.10 nvembed-trt serve --repo /models" in run
    assert "--shm-size=1g" in run and "--tritonserver /opt/tritonserver/bin/tritonserver" in run
    assert "pip install" not in run


def _engine_copy(trt_engine, tmp_path, **changes) -> "Path":
    engine = tmp_path / "engine"
    shutil.copytree(trt_engine, engine)
    meta = json.loads((engine / "engine.json").read_text())
    meta.update(changes)
    (engine / "engine.json").write_text(json.dumps(meta))
    return engine


def test_release_before_25_05_gets_static_in_config_and_in_the_count(trt_engine, tmp_path, monkeypatch):
    """Defect 2: an engine whose TensorRT only a 25.04 image carries is served STATIC; config.pbtxt says what that
    release does and repo.json says why."""
    monkeypatch.delenv(OVERRIDE_ENV, raising=False)
    engine = _engine_copy(trt_engine, tmp_path, flavor_version="10.9.0.34")
    repo = repo_from_encoder("tiny", engine, tmp_path / "repo").directory
    meta = RepoMeta.read(repo)
    setting = meta.server.tensorrt_backend["execution_context_allocation_strategy"]
    assert meta.triton_image.release == "25.04" and setting.asked == "ON_PROFILE_CHANGE"
    assert setting.honoured == "STATIC" and "reads it from 25.05 on" in setting.why
    assert 'string_value: "STATIC"' in (repo / "encoder" / "config.pbtxt").read_text()
    assert meta.encoder_memory["strategy"] == "STATIC" and meta.encoder_memory["counted"] == "estimate"
    current = repo_from_encoder("tiny", trt_engine, tmp_path / "repo-25.10").directory
    assert 'string_value: "ON_PROFILE_CHANGE"' in (current / "encoder" / "config.pbtxt").read_text()


def test_weight_stripped_plans_are_refused_as_triton_encoders(trt_engine, tmp_path):
    """Defect 8: Triton never refits; the refusal says what to run."""
    engine = _engine_copy(trt_engine, tmp_path, weights={"stripped": True, "refit": "nvembed-trt refit ..."})
    with pytest.raises(ImageError, match=r"weight-stripped plan .* never refits it") as info:
        repo_from_encoder("tiny", engine, tmp_path / "repo")
    assert f"nvembed-trt refit --engine {engine}" in str(info.value)
    assert not (tmp_path / "repo").exists()
    checked = repo_from_encoder("tiny", engine, None, check_only=True)
    assert checked.check["triton_loads_this_plan"] is False and "refit" in checked.check["gpu_host_must"]


def test_cpu_build_says_why_tensorrt_memory_figures_are_missing(rtx_engine):
    """Defect 9: the figure is recorded where the plan deserialises (a GPU); on this CPU the sidecar says why not."""
    meta = json.loads((rtx_engine / "engine.json").read_text())
    assert meta["device_memory"]["unavailable"].startswith("unavailable: deserialising the engine needs a GPU")
