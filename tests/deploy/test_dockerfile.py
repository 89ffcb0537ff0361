"""The serving and builder Dockerfiles: no Docker here (and no engine), so they are checked statically (base image
from the NGC table, COPY sources present, the pip line installs exactly the `serving` requirements) and the serving
image's install step is emulated in a fresh virtual environment: the built wheel with --no-deps plus those
requirements, then the modules the image runs are imported with torch absent."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
import venv

import pytest
from .deploy_data import REPO

from nvembed_trt.deploy.dockerfile import (CONTRACT_SERVING, _from_pyproject, render_builder, render_serving,
                                           serving_requirements)
from nvembed_trt.ngc_triton import image_table

# modules the serving image imports: the front door, the Triton python-backend models, the tokenizer, the init step
SERVING_MODULES = ("nvembed_trt.serving", "nvembed_trt.serving.run", "nvembed_trt.triton.models.embed",
                   "nvembed_trt.triton.models.encoder_onnx", "nvembed_trt.tokenizer", "nvembed_trt.cli.triton")
DEPLOY_MODULES = ("nvembed_trt.deploy.ensure", "nvembed_trt.deploy.images", "nvembed_trt.ngc_triton",
                  "nvembed_trt.triton.images")


def instructions(text: str) -> list[tuple[str, str]]:
    joined = re.sub(r"\\\n", " ", text)
    return [tuple(line.split(None, 1)) for line in joined.splitlines() if line.strip() and not line.startswith("#")]


def test_committed_dockerfiles_are_the_renders():
    """deploy/Dockerfile(.builder) are rendered (python -m nvembed_trt.deploy.dockerfile writes them)."""
    assert (REPO / "deploy" / "Dockerfile").read_text() == render_serving()
    assert (REPO / "deploy" / "Dockerfile.builder").read_text() == render_builder()


def test_serving_dockerfile_statically():
    steps = instructions((REPO / "deploy" / "Dockerfile").read_text())
    args = {v.split("=", 1)[0]: v.split("=", 1)[1] for k, v in steps if k == "ARG" and "=" in v}
    table = image_table()
    assert args["TRITON_IMAGE"] in {table.tag(r) for r in table.releases}
    assert ("FROM", "${TRITON_IMAGE}") in steps and steps[0][0] == "ARG"
    for kind, value in steps:
        if kind == "COPY":
            *sources, _ = value.split()
            assert all((REPO / s).exists() for s in sources), value
    runs = [shlex.split(v) for k, v in steps if k == "RUN" and "pip install" in v]
    first = runs[0]
    split = first.index("&&")
    assert first[:split] == ["python3", "-m", "pip", "install", "--no-deps", "/opt/nvembed-trt"]
    assert first[split + 1:split + 5] == ["python3", "-m", "pip", "install"]
    installed = first[split + 5:]
    wanted, source = serving_requirements()
    assert installed == list(wanted), source
    assert not any(re.match(r"(torch|onnx|nvidia-modelopt|tensorrt)\b", r) for r in installed)
    pyproject = _from_pyproject(REPO / "pyproject.toml")
    assert installed == list(pyproject if pyproject is not None else CONTRACT_SERVING)


def test_builder_dockerfile_statically():
    steps = instructions((REPO / "deploy" / "Dockerfile.builder").read_text())
    args = {v.split("=", 1)[0]: v.split("=", 1)[1] for k, v in steps if k == "ARG" and "=" in v}
    release = image_table().releases[-1].release
    assert args["TENSORRT_IMAGE"] == f"nvcr.io/nvidia/tensorrt:{release}-py3"
    assert ("FROM", "${TENSORRT_IMAGE}") in steps


@pytest.fixture(scope="module")
def serving_venv(tmp_path_factory):
    """The serving image's install step in a fresh venv: the wheel with --no-deps, then the serving requirements."""
    root = tmp_path_factory.mktemp("serving-venv")
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(root / "dist"), str(REPO)], check=True, capture_output=True, text=True)
    venv.EnvBuilder(with_pip=True).create(root / "venv")
    py = root / "venv" / "bin" / "python"
    wheel = next((root / "dist").glob("nvembed_trt-*.whl"))
    pip = [str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, "--no-deps", str(wheel)], check=True, capture_output=True, text=True)
    subprocess.run([*pip, *serving_requirements()[0]], check=True, capture_output=True, text=True)
    print(f"serving venv built in {time.perf_counter() - start:.1f} s")
    return py


def _import_without_torch(py, modules):
    code = ("import importlib, sys\n"
            f"for m in {list(modules)!r}: importlib.import_module(m)\n"
            "heavy = sorted({'torch', 'onnx', 'onnxruntime', 'modelopt', 'tensorrt'} & set(sys.modules))\n"
            "assert not heavy, heavy\n")
    return subprocess.run([str(py), "-c", code], capture_output=True, text=True, env={**os.environ, "PYTHONPATH": ""})


def test_image_install_has_no_heavy_dependencies(serving_venv):
    listing = subprocess.run([str(serving_venv), "-m", "pip", "list", "--format=freeze"], check=True,
                             capture_output=True, text=True).stdout.lower()
    assert "nvembed-trt==" in listing
    assert not re.search(r"^(torch|onnx|onnxruntime|nvidia-modelopt|tensorrt)==", listing, flags=re.M)


def test_init_step_runs_in_the_serving_image(serving_venv):
    proc = _import_without_torch(serving_venv, DEPLOY_MODULES)
    assert proc.returncode == 0, proc.stderr
    out = subprocess.run([str(serving_venv), "-m", "nvembed_trt.deploy.ensure", "--help"], capture_output=True,
                         text=True)
    assert out.returncode == 0 and "--store" in out.stdout


def test_serving_modules_import_without_torch(serving_venv):
    pytest.importorskip("nvembed_trt.serving", reason="the front door (nvembed_trt.serving) is not on this branch yet")
    proc = _import_without_torch(serving_venv, SERVING_MODULES)
    assert proc.returncode == 0, proc.stderr
    cli = subprocess.run([str(serving_venv.parent / "nvembed-trt"), "serve", "--help"], capture_output=True, text=True)
    assert cli.returncode == 0 and "--drain-timeout" in cli.stdout, cli.stderr
