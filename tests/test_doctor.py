"""`nvembed-trt doctor` (issue 22): what a host has and lacks per stage, and whether it can build and serve a GPU
profile, on this CPU machine and on fake GPU hosts (fake nvidia-smi / tritonserver on PATH; the TensorRT version a
host reports is substituted where the wheel cannot be installed here)."""

from __future__ import annotations

import json

import pytest
from fake_gpu import DRIVER_ERROR, H100, L40S

from nvembed_trt import doctor
from nvembed_trt.cli.main import main
from nvembed_trt.doctor import diagnose


@pytest.fixture
def tensorrt_version(monkeypatch):
    """Make `tensorrt` report a version (the full wheel is a stub on PyPI); tensorrt_rtx and onnxruntime stay real."""
    real = doctor.module_version

    def use(version):
        monkeypatch.setattr(doctor, "module_version", lambda m: version if m == "tensorrt" else real(m))
    return use


def _check(diagnosis, item):
    return next(c for c in diagnosis.checks if c.item == item)


def test_cpu_host_cannot_build_or_serve_and_says_each_fix(fake_host, capsys):
    result = diagnose("l40s")
    assert result.profile["build"] is False and result.profile["serve"] is False and not result.ok
    gpus = _check(result, "GPUs")
    assert gpus.ok is False and "nvidia-smi is not on PATH" in gpus.found and "--gpus all" in gpus.fix
    assert result.profile["why"][0].startswith("no GPU of compute capability 8.9 (NVIDIA L40S 48 GB (Ada, SM89))")
    assert main(["doctor", "--gpu", "l40s"]) == 1
    text = capsys.readouterr().out
    assert "[MISS] gpu     GPUs" in text and "profile l40s: build no, serve no" in text
    assert text.count("fix: ") == sum(c.ok is False for c in result.checks)


def test_l40s_host_with_tensorrt_and_an_ngc_tritonserver_can_build_and_serve(fake_host, tensorrt_version, capsys):
    fake_host.smi(gpus=(L40S,), driver="580.95.05", cuda="13.0")
    server = fake_host.tritonserver(backends=("python", "tensorrt", "onnxruntime"))
    tensorrt_version("11.3.0.99")
    result = diagnose("l40s", tritonserver=server)
    assert (result.profile["build"], result.profile["serve"], result.profile["why"]) == (True, True, [])
    assert result.profile["serve_with"][0] == "--tritonserver with the tensorrt backend"
    assert _check(result, "NGC image for TensorRT").found == "nvcr.io/nvidia/tritonserver:26.09-py3"
    assert _check(result, "driver / CUDA").ok is True
    assert _check(result, "tritonserver (--tritonserver)").found.endswith("backends onnxruntime, python, tensorrt")
    assert main(["doctor", "--gpu", "l40s", "--tritonserver", str(server), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] is True and out["facts"]["gpus"]["gpus"][0]["memory_mib"] == 46068


def test_profile_mismatches_are_refused_with_the_reason(fake_host, tensorrt_version):
    tensorrt_version("11.3.0.99")
    fake_host.smi(gpus=(H100,), cuda="13.0")
    server = fake_host.tritonserver(backends=("tensorrt",))
    h200 = diagnose("h200", tritonserver=server).profile      # same compute capability, less memory
    assert h200["build"] is True and h200["serve"] is False
    assert h200["why"] == ["NVIDIA H100 80GB HBM3 has 81559 MiB; profile h200 assumes 143771 MiB (its memory check "
                           "would not hold)"]
    l40s = diagnose("l40s", tritonserver=server).profile
    assert (l40s["build"], l40s["serve"]) == (False, False)
    assert l40s["why"][0].endswith("on this host; found NVIDIA H100 80GB HBM3 (9.0)")
    without = diagnose("h100", tritonserver=fake_host.tritonserver(backends=("python",), root="python-only")).profile
    assert without["serve"] is False and "no Triton here can run a TensorRT plan" in without["why"][-1]


def test_unlisted_tensorrt_old_driver_and_driver_error(fake_host, tensorrt_version):
    tensorrt_version("11.4.0.106")                             # PyPI's newest: no listed NGC image carries it
    fake_host.smi(gpus=(H100,), driver="550.54.15", cuda="12.4")
    result = diagnose()
    image = _check(result, "NGC image for TensorRT")
    assert image.ok is False and image.found == "none listed for TensorRT 11.4.0.106"
    assert "pip install tensorrt-cu13==11.3.0.99" in image.fix
    driver = _check(result, "driver / CUDA")
    assert driver.ok is False and driver.found == "driver 550.54.15, CUDA 12.4 (via nvidia-smi)"
    fake_host.smi(fail=DRIVER_ERROR)
    assert "couldn't communicate with the NVIDIA driver" in _check(diagnose(), "GPUs").found


def test_full_size_parameter_count_is_the_models():
    from nvembed_trt.checkpoint.loader import parameter_count
    from nvembed_trt.presets import PRESETS

    assert parameter_count(PRESETS["nv-embed-v2"].config) == doctor.FULL_SIZE_PARAMETERS
