"""GPU detection without torch (issue 22, defect 3): one function, through a fake `nvidia-smi` on PATH, answers for
build, ensure-engine, discovery and the test suite's markers."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from fake_gpu import DRIVER_ERROR, H100, H200, L40S

from nvembed_trt.engines.flavors import FLAVORS, FlavorError, check_machine, cuda_gpu, resolve_flavor
from nvembed_trt.engines.gpus import get_gpu
from nvembed_trt.hostgpu import TorchBuild, detect_gpus, gpu_run_problem, torch_build


@pytest.mark.parametrize("gpus, want", [
    ((H100,), [("NVIDIA H100 80GB HBM3", "9.0", 81559)]),
    ((L40S,), [("NVIDIA L40S", "8.9", 46068)]),
    ((H200, L40S), [("NVIDIA H200", "9.0", 143771), ("NVIDIA L40S", "8.9", 46068)]),
])
def test_gpus_are_listed_from_nvidia_smi(fake_host, gpus, want):
    fake_host.smi(gpus=gpus, driver="570.86.10", cuda="12.8")
    found = detect_gpus()
    assert [(g.name, g.compute_capability, g.memory_mib) for g in found.gpus] == want
    assert [g.index for g in found.gpus] == list(range(len(want)))
    assert (found.driver_version, found.cuda_version, found.source, found.problem) == \
        ("570.86.10", "12.8", "nvidia-smi", None)
    assert cuda_gpu() == (want[0][0], want[0][1])


def test_cuda_visible_devices_picks_and_orders_devices(fake_host, monkeypatch):
    fake_host.smi(gpus=(H200, L40S))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    assert cuda_gpu() == ("NVIDIA L40S", "8.9") and detect_gpus().hidden == (0,)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", L40S[4][:12] + ",0")     # a UUID prefix, then an index
    assert [g.name for g in detect_gpus().gpus] == ["NVIDIA L40S", "NVIDIA H200"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    found = detect_gpus()
    assert found.first() is None and "CUDA_VISIBLE_DEVICES='' hides every GPU (0: NVIDIA H200, 1: NVIDIA L40S)" \
        in found.problem


def test_driver_error_and_no_driver_say_why(fake_host):
    fake_host.smi(fail=DRIVER_ERROR)
    found = detect_gpus()
    assert found.first() is None and cuda_gpu() is None
    assert found.problem.startswith("nvidia-smi failed (exit 9): NVIDIA-SMI has failed because it couldn't "
                                    "communicate with the NVIDIA driver")
    (fake_host.bin / "nvidia-smi").unlink()
    detect_gpus(fresh=True)
    assert "nvidia-smi is not on PATH" in detect_gpus().problem and cuda_gpu() is None


def test_flavor_choice_and_machine_check_use_the_detected_gpu(fake_host, monkeypatch):
    """Defect 3 as reported: on an L40S host with the CPU torch wheel, --flavor tensorrt said 'no GPU' and auto built
    an RTX plan silently. With TensorRT installed, auto now picks it and the machine check passes."""
    fake_host.smi(gpus=(L40S,))
    assert check_machine(FLAVORS["tensorrt"], get_gpu("l40s")) == {"gpu_name": "NVIDIA L40S",
                                                                    "compute_capability": "8.9"}
    with pytest.raises(FlavorError, match=r"this machine's GPU is NVIDIA L40S \(compute capability 8.9\); profile "
                                          r"h100 targets 9.0"):
        check_machine(FLAVORS["tensorrt"], get_gpu("h100"))
    monkeypatch.setattr("nvembed_trt.engines.flavors.installed", lambda flavor: True)
    assert resolve_flavor("auto", get_gpu("l40s")).name == "tensorrt"
    monkeypatch.setattr("nvembed_trt.engines.flavors.installed", lambda flavor: flavor.name == "tensorrt-rtx")
    notes = []
    monkeypatch.setattr("nvembed_trt.engines.flavors.note", notes.append)
    assert resolve_flavor("auto", get_gpu("l40s")).name == "tensorrt-rtx"
    assert "Triton's tensorrt_plan backend cannot load it" in notes[0] and "tensorrt-cu13==" in notes[0]


def test_ensure_engine_reads_the_node_with_the_same_function(fake_host):
    from nvembed_trt.deploy.ensure import EnsureError, node_compute_capability

    fake_host.smi(gpus=(H100,))
    assert node_compute_capability() == "9.0"
    fake_host.smi(fail=DRIVER_ERROR)
    with pytest.raises(EnsureError, match=r"cannot read this node's GPU \(nvidia-smi failed \(exit 9\)"):
        node_compute_capability()


def test_discovery_says_what_engines_need(fake_host, tmp_path, tiny):
    """An engine folder on a host whose GPU is seen but whose torch is the CPU wheel: the note names CUDA torch."""
    from nvembed_trt.validation.runtimes import discover

    (tmp_path / "engines" / "l40s" / "tiny" / "fp16").mkdir(parents=True)
    (tmp_path / "engines" / "l40s" / "tiny" / "fp16" / "model.plan").write_bytes(b"plan")
    fake_host.smi(gpus=(L40S,))
    found, missing = discover("tiny", tiny, ["engine"], None, tmp_path)
    if torch_build().cuda:
        pytest.skip("this torch is a CUDA build: the note under test is for the CPU wheel")
    assert found == [] and missing[0].startswith("engine: 1 engine(s) found, but running them (EngineRunner) needs "
                                                 "CUDA torch on NVIDIA L40S: torch ")
    assert "is a CPU build (no libtorch_cuda): pip install --force-reinstall torch==" in missing[0]


def test_gpu_run_problem_names_what_is_missing(fake_host):
    fake_host.smi(gpus=(H100,))
    cpu, cuda = TorchBuild("2.13.0+cpu", False), TorchBuild("2.13.0+cu128", True)
    assert gpu_run_problem(False, torch=cpu) is None           # TensorRT, the inspector and refit need no torch
    assert gpu_run_problem(True, torch=cuda) is None
    assert gpu_run_problem(True, torch=cpu).startswith("needs CUDA torch on NVIDIA H100 80GB HBM3: torch 2.13.0+cpu "
                                                       "is a CPU build")
    fake_host.smi(fail=DRIVER_ERROR)
    assert gpu_run_problem(False).startswith("needs an NVIDIA GPU; none found (nvidia-smi failed (exit 9)")


def test_detection_imports_no_torch():
    """The light module stays light: importing it and detecting (no GPU here) loads neither torch nor pynvml's
    driver library."""
    code = ("import sys; from nvembed_trt.hostgpu import detect_gpus, torch_build; detect_gpus(); b = torch_build(); "
            "import json; print(json.dumps(['torch' in sys.modules, b.version is not None]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == [False, True]
