"""Issue 11 items 3 and 8 on CPU: which engines this host can run (version- and hardware-compatible builds
included), and what a Triton repository made from an engine carries for the server: the GPU profile's execution
context allocation strategy as a tensorrt backend model parameter, and `--backend-config=tensorrt,version-compatible
=true` in repo.json for version-compatible engines. The engine folders are fake (engine.json + a dummy plan):
nothing here deserialises a plan."""

from __future__ import annotations

import pytest

from sidecars import TRT, engine_meta
from sidecars import engine_folder as write_engine
from nvembed_trt.engines.gpus import engine_serving_parameters
from nvembed_trt.engines.runner import VERSION_COMPATIBLE_BACKEND_CONFIG, engine_compatibility, triton_backend_config
from nvembed_trt.triton import repo_from_encoder
from nvembed_trt.triton.config import from_pbtxt
from nvembed_trt.triton.meta import RepoMeta
from nvembed_trt.triton.repository import RepoSettings, RepositoryError



def engine_folder(tmp_path, name="fp16", **kw):
    return write_engine(tmp_path / "engines" / kw.get("gpu", "h100") / "tiny" / name, engine_meta(**kw))


@pytest.mark.parametrize("kw, runtime, cc, problem", [
    ({}, TRT, "9.0", None),
    ({}, "10.13.3.9", "8.9", "built for h100 (compute capability 9.0); this GPU is compute capability 8.9"),
    ({}, "10.14.1.48", "9.0", "built with tensorrt 10.13.3.9, this machine has 10.14.1.48: rebuild it"),
    ({}, None, "9.0", "flavor tensorrt is not installed"),
    ({}, TRT, None, "needs a CUDA GPU"),
    # version-compatible: same major, same or newer
    ({"version_compatible": True}, "10.14.1.48", "9.0", None),
    ({"version_compatible": True}, "10.13.3.9", "9.0", None),
    ({"version_compatible": True}, "10.12.0.36", "9.0", "runs on tensorrt 10.x from 10.13.3.9 on, this machine "
                                                        "has 10.12.0.36"),
    ({"version_compatible": True}, "11.0.0.1", "9.0", "runs on tensorrt 10.x"),
    # hardware-compatible: Ampere and newer
    ({"hardware_compatible": True}, TRT, "8.0", None),
    ({"hardware_compatible": True}, TRT, "12.0", None),
    ({"hardware_compatible": True}, TRT, "7.5", "Ampere and newer, compute capability >= 8.0"),
    ({"hardware_compatible": True}, "10.14.1.48", "8.6", "this machine has 10.14.1.48"),
    ({"hardware_compatible": True, "version_compatible": True}, "10.14.1.48", "8.6", None),
    # the flags mean nothing for TensorRT-RTX plans: exact version, their own target
    ({"gpu": "l40s", "flavor": "tensorrt-rtx", "version": "1.2.0.54", "version_compatible": True,
      "hardware_compatible": True}, "1.3.0.35", "8.9", "this machine has 1.3.0.35"),
    ({"gpu": "l40s", "flavor": "tensorrt-rtx", "version": "1.2.0.54", "hardware_compatible": True}, "1.2.0.54",
     "8.6", "built for l40s (compute capability 8.9)"),
])
def test_compatibility_decision(kw, runtime, cc, problem):
    got = engine_compatibility(engine_meta(**kw), runtime, cc)
    if problem is None:
        assert got is None
    else:
        assert got is not None and problem in got


def test_backend_config_only_for_version_compatible_tensorrt_engines():
    assert triton_backend_config(engine_meta(version_compatible=True)) == ["tensorrt,version-compatible=true"]
    assert triton_backend_config(engine_meta()) == []
    assert triton_backend_config(engine_meta(gpu="l40s", flavor="tensorrt-rtx", version_compatible=True)) == []


def test_allocation_strategy_is_the_one_engine_json_records():
    assert engine_serving_parameters(engine_meta(strategy="STATIC")) == {
        "execution_context_allocation_strategy": "STATIC"}
    assert engine_serving_parameters(engine_meta()) == {"execution_context_allocation_strategy": "ON_PROFILE_CHANGE"}


@pytest.mark.parametrize("version_compatible", [True, False])
def test_repository_carries_server_settings(tmp_path, version_compatible):
    folder = engine_folder(tmp_path, version_compatible=version_compatible)
    result = repo_from_encoder("tiny", folder, tmp_path / "repo")
    meta = RepoMeta.read(result.directory)
    assert meta.server.backend_config == ([VERSION_COMPATIBLE_BACKEND_CONFIG] if version_compatible else [])
    encoder = from_pbtxt((result.directory / "encoder" / "config.pbtxt").read_text())
    assert encoder.platform == "tensorrt_plan"
    assert encoder.parameters["execution_context_allocation_strategy"].string_value == "ON_PROFILE_CHANGE"
    assert list(encoder.instance_group[0].profile) == ["0", "1"] and encoder.instance_group[0].count == 1
    assert meta.spec.encoder_parameters == {"execution_context_allocation_strategy": "ON_PROFILE_CHANGE"}


def test_server_command_passes_the_backend_config(tmp_path):
    from nvembed_trt.triton.server import TritonServer

    repo = repo_from_encoder("tiny", engine_folder(tmp_path, version_compatible=True), tmp_path / "repo").directory
    cmd = TritonServer(repo, binary=tmp_path / "tritonserver").command(None)
    assert "--backend-config=tensorrt,version-compatible=true" in cmd


def test_instances_beyond_the_card_are_refused(tmp_path):
    """A 66 GiB plan on an H100 (79.65 GiB usable): one instance needs 66 + 2 contexts x 4 GiB workspace + 1 GiB
    reserve = 75 GiB and fits; a second instance adds its own two contexts (the plan is shared): 83 GiB."""
    folder = engine_folder(tmp_path, engine_bytes=66 * 2**30)
    assert repo_from_encoder("tiny", folder, tmp_path / "one").directory.is_dir()
    with pytest.raises(RepositoryError, match=r"2 encoder instance\(s\) of this engine need .* on h100 .* use fewer"):
        repo_from_encoder("tiny", folder, tmp_path / "two", RepoSettings(encoder_instances=2))


# Issue 11 item 5: the GPU test builds for what the host can run (tests/engines/test_build.py), chosen here.
@pytest.mark.parametrize("present, available, want, why", [
    (("NVIDIA H100 80GB HBM3", "9.0"), {"tensorrt": False, "tensorrt-rtx": True}, [],
     "matches profile(s) h100, h200, whose flavor(s) tensorrt are not installed: pip install tensorrt-cu13"),
    (("NVIDIA H100 80GB HBM3", "9.0"), {"tensorrt": True, "tensorrt-rtx": True},
     [("h100", "tensorrt"), ("h200", "tensorrt")], ""),
    (("NVIDIA L40S", "8.9"), {"tensorrt": False, "tensorrt-rtx": True},
     [("l40s", "tensorrt-rtx"), ("rtx-6000-ada", "tensorrt-rtx")], ""),
    (("NVIDIA L40S", "8.9"), {"tensorrt": True, "tensorrt-rtx": True},
     [("l40s", "tensorrt"), ("rtx-6000-ada", "tensorrt"), ("l40s", "tensorrt-rtx"), ("rtx-6000-ada", "tensorrt-rtx")],
     ""),
    (("Tesla T4", "7.5"), {"tensorrt": True, "tensorrt-rtx": True}, [],
     "no GPU profile for Tesla T4 (compute capability 7.5)"),
    (None, {"tensorrt": True}, [], "no CUDA GPU on this machine"),
])
def test_gpu_test_targets(present, available, want, why):
    from nvembed_trt.engines.flavors import runnable_targets
    from nvembed_trt.engines.gpus import gpu_registry

    pairs, reason = runnable_targets(present, gpu_registry(), available)
    assert [(g.name, f.name) for g, f in pairs] == want
    assert why in reason and (reason == "") == bool(want)
