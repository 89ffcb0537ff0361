"""The GPU acceptance script (benchmarks/gpu_acceptance.py) on this CPU machine: the dry run skips every GPU step
with its reason and writes the report; on a (fake) GPU host a failing step is reported and the next still runs."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

from fake_gpu import H100

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_acceptance.py"
GPU_STEPS = ["setup", "gpu-tests", "engines tiny", "engines full-width-2l", "triton", "latency"]


def _script():
    spec = importlib.util.spec_from_file_location("gpu_acceptance", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module      # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


def _report(out: Path) -> tuple[dict, dict]:
    report = json.loads((out / "report.json").read_text())
    return report, {s["name"]: s for s in report["steps"]}


def test_dry_run_skips_every_gpu_step_and_writes_the_report(tmp_path):
    assert _script().main(["--dry-run", "--out", str(tmp_path)]) == 0
    report, steps = _report(tmp_path)
    assert [s["name"] for s in report["steps"]] == ["setup", "doctor", *GPU_STEPS[1:]]
    assert all(steps[n]["status"] == "skipped" and steps[n]["reason"] == "--dry-run: GPU steps not run"
               for n in GPU_STEPS)
    assert steps["doctor"]["status"] == "passed" and (tmp_path / "doctor.json").is_file()
    assert report["passed"] is False and report["dry_run"] is True
    markdown = (tmp_path / "report.md").read_text()
    assert "| engines tiny | skipped | 0.0 | --dry-run: GPU steps not run |" in markdown
    assert "verdict: NOT passed" in markdown


def test_without_a_gpu_each_step_says_so(fake_host, tmp_path):
    assert _script().main(["--out", str(tmp_path), "--no-install"]) == 1
    _, steps = _report(tmp_path)
    assert all(steps[n]["reason"].startswith("no NVIDIA GPU on this host (") and "nvidia-smi is not on PATH"
               in steps[n]["reason"] for n in GPU_STEPS)


def test_a_failed_step_is_reported_and_the_next_still_runs(fake_host, tmp_path):
    """An H100 host whose venv has the CPU torch wheel and no TensorRT, told not to install: setup fails saying
    what is missing, the doctor still runs (and fails: no TensorRT), the steps that need setup say so."""
    fake_host.smi(gpus=(H100,), cuda="13.0")
    assert _script().main(["--out", str(tmp_path), "--no-install"]) == 1
    report, steps = _report(tmp_path)
    assert steps["setup"]["status"] == "failed"
    assert steps["setup"]["reason"].startswith("needs CUDA torch on NVIDIA H100 80GB HBM3: torch ")
    assert steps["doctor"]["status"] == "failed" and report["host"]["profile"] == "h100"
    assert "the tensorrt flavor is not installed" in steps["doctor"]["reason"]
    assert all(steps[n]["reason"] == "needs setup, which did not pass" for n in GPU_STEPS[1:])
