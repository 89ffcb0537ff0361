"""The README is the user's manual: its ```bash and ```python blocks run here, in a scratch directory holding the
repository's examples/. ```sh blocks (make targets, installs) are shown, not run: CI runs make itself."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO
from nvembed_trt.presets import PRESETS

README = (REPO / "README.md").read_text(encoding="utf-8")
BASH = re.findall(r"^```bash\n(.*?)^```", README, flags=re.S | re.M)
PYTHON = re.findall(r"^```python\n(.*?)^```", README, flags=re.S | re.M)


SERVED = "127.0.0.1:8080"   # blocks that call the API the README's `make serve` starts


@pytest.fixture
def scratch(tmp_path) -> Path:
    shutil.copytree(REPO / "examples", tmp_path / "examples")
    return tmp_path


@pytest.fixture(scope="module")
def readme_server(tmp_path_factory):
    """`nvembed-trt serve` of a tiny repository on the README's ports (API 8080, KServe 8000-8002), as `make serve`."""
    from nvembed_trt.export import onnx_from_model
    from nvembed_trt.serving.process import ServeProcess
    from nvembed_trt.triton import repo_from_encoder

    root = tmp_path_factory.mktemp("readme-serve")
    export = onnx_from_model("tiny", root / "export", parity=False)
    repo = repo_from_encoder("tiny", export.directory, root / "triton_repo" / "tiny")
    with ServeProcess(repo.directory, ports=(8080, 8000, 8001, 8002)) as served:
        yield served


@pytest.fixture
def server_if_needed(request):
    block = request.node.callspec.params.get("block", "")
    return request.getfixturevalue("readme_server") if SERVED in block else None


def _env() -> dict[str, str]:
    env = os.environ.copy()
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    return env


def test_readme_has_runnable_examples():
    assert len(BASH) >= 3 and len(PYTHON) >= 1


@pytest.mark.parametrize("block", BASH, ids=[b.splitlines()[0][:50] for b in BASH])
def test_bash_block_runs(scratch, server_if_needed, block):
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", block], cwd=scratch, env=_env(),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"README block failed:\n{block}\n--- stderr ---\n{proc.stderr}"
    for out in re.findall(r"--output (\S+\.npy)", block):
        assert (scratch / out).is_file() and (scratch / (out + ".json")).is_file()


@pytest.mark.parametrize("block", PYTHON, ids=[f"python-{i}" for i in range(len(PYTHON))])
def test_python_block_runs(scratch, server_if_needed, block):
    proc = subprocess.run([sys.executable, "-c", block], cwd=scratch, env=_env(), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    match = re.fullmatch(r"\((\d+), (\d+)\) (-?\d+\.\d+)\n", proc.stdout)
    assert match, proc.stdout
    assert (int(match[1]), int(match[2])) == (1, 64) and -1.0 <= float(match[3]) <= 1.0


def test_first_block_shows_the_two_commands():
    first = re.search(r"^```\w*\n(.*?)^```", README, flags=re.S | re.M).group(1)
    assert "make all" in first and "make test" in first


def test_ci_calls_the_readme_test_command():
    ci = (REPO / ".ci" / "run").read_text()
    assert re.search(r"^make test$", ci, flags=re.M)


def test_readme_names_every_preset():
    for name in PRESETS:
        assert f"**`{name}`**" in README


def test_readme_recipe_table_covers_the_registry():
    from nvembed_trt.precision import RECIPES

    rows = re.findall(r"^\| ([\w-]+) \| \d\.\d{6} \|", README, flags=re.M)
    assert sorted(rows) == sorted(RECIPES)


def test_readme_results_are_generated_from_published_json():
    import importlib.util

    spec = importlib.util.spec_from_file_location("readme_results", REPO / "benchmarks" / "readme_results.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.block() in README, "README results differ from benchmarks/published/: run " \
                                     "python benchmarks/readme_results.py --write"
