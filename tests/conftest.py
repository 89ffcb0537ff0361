"""Shared fixtures. Every test session uses its own preset cache, so CI starts from nothing like a new user."""

from __future__ import annotations

import os
import signal
import sys
import tempfile
import threading
from pathlib import Path

import pytest
import torch

_CACHE = tempfile.mkdtemp(prefix="nvembed-trt-test-cache-")
os.environ["NVEMBED_TRT_CACHE"] = _CACHE

from nvembed_trt.embedder import Embedder  # noqa: E402  (after the cache is set)
from nvembed_trt.presets import PRESETS, ensure_preset_checkpoint  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
# LangChain's HuggingFaceEndpointEmbeddings and the huggingface-hub 1.x it needs (the lock has 2.x), which
# `make install` puts beside the venv (Makefile: LANGCHAIN_HF_SITE)
LANGCHAIN_HF_SITE = Path(sys.prefix) / "clients" / "langchain-huggingface"


def langchain_hf_env() -> dict[str, str]:
    """The environment of a child Python that imports langchain_huggingface (and huggingface_hub 1.x before 2.x)."""
    if not (LANGCHAIN_HF_SITE / "langchain_huggingface").is_dir():
        pytest.fail(f"LangChain's HuggingFaceEndpointEmbeddings is not installed in {LANGCHAIN_HF_SITE}: "
                    "run make install")
    return {**os.environ, "PYTHONPATH": str(LANGCHAIN_HF_SITE)}


def pytest_collection_modifyitems(config, items):
    """`gpu`: needs an NVIDIA GPU (seen through NVML or nvidia-smi, as the build sees it); `cuda_torch`: also runs
    torch on it (EngineRunner, the reference on CUDA), so needs a CUDA build of torch. Each skip says what is
    missing and the command that fixes it."""
    from nvembed_trt.hostgpu import gpu_run_problem

    reasons = {needs_torch: gpu_run_problem(needs_torch) for needs_torch in (False, True)}
    for item in items:
        if "gpu" in item.keywords or "cuda_torch" in item.keywords:
            reason = reasons["cuda_torch" in item.keywords]
            if reason:
                item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session")
def tiny_dir() -> Path:
    return ensure_preset_checkpoint(PRESETS["tiny"], progress=False)


@pytest.fixture(scope="session")
def tiny() -> Embedder:
    return Embedder.from_model("tiny", progress=False)


@pytest.fixture
def cosine():
    def rows(a, b):
        a, b = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
        return torch.nn.functional.cosine_similarity(a, b, dim=-1)
    return rows


SERVING_MAX_LENGTH = 64


@pytest.fixture(scope="session")
def tiny_repos(tmp_path_factory):
    """Two tiny Triton repositories for the serving tests: pooling in the graph ("engine") and token states pooled
    after it ("ensemble"); max_length 64, encoder batch 8."""
    from nvembed_trt.export import onnx_from_model
    from nvembed_trt.triton.repository import RepoSettings, repo_from_encoder

    root = tmp_path_factory.mktemp("serving")
    repos = {}
    for pooling in ("engine", "ensemble"):
        export = onnx_from_model("tiny", root / f"export-{pooling}", pooling=pooling, parity=False)
        settings = RepoSettings(max_batch_size=8, max_length=SERVING_MAX_LENGTH, max_request_rows=64)
        repos[pooling] = repo_from_encoder("tiny", export.directory, root / f"repo-{pooling}", settings).directory
    return repos


def tritonservers_with(flag: str) -> list[int]:
    """pids of the running tritonservers whose command line holds `flag` (e.g. --http-port=8000)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if proc.name.isdigit() and cmdline[0].endswith(b"tritonserver") and flag.encode() in cmdline:
            found.append(int(proc.name))
    return found


@pytest.fixture
def sigterm_later():
    """sigterm_later(s): SIGTERM to this process in s seconds. Until the test ends, SIGTERM outside sigterm_exits()
    only records itself (`handler`), so that a missing handler fails the test instead of killing pytest."""
    def handler(signum, frame):
        pass
    previous = signal.signal(signal.SIGTERM, handler)
    timers = []

    def later(seconds: float) -> None:
        timers.append(threading.Timer(seconds, os.kill, (os.getpid(), signal.SIGTERM)))
        timers[-1].start()
    later.handler = handler
    yield later
    for timer in timers:
        timer.join()
    signal.signal(signal.SIGTERM, previous)


@pytest.fixture
def fake_host(tmp_path, monkeypatch):
    """PATH holding only fake NVIDIA tools (tests/fake_gpu.py): `fake_host.smi(gpus=...)`, `.tritonserver()`."""
    from fake_gpu import FakeHost
    from nvembed_trt.hostgpu import forget

    yield FakeHost(tmp_path, monkeypatch)
    forget()    # the next test detects this machine again


@pytest.fixture(scope="session")
def recipe_workspace(tmp_path_factory, tiny):
    """The tiny fp32 export (pooling in the graph) and a 256-sample calibration set, shared by the precision and
    engine tests: (ExportResult, calibration folder)."""
    from nvembed_trt.calibration import calibration_from_corpus, python_reference_corpus
    from nvembed_trt.export import onnx_from_model

    root = tmp_path_factory.mktemp("precision")
    export = onnx_from_model("tiny", root / "export" / "tiny")
    calibration = calibration_from_corpus(python_reference_corpus(), tiny.tokenizer, root / "cal", 256)
    return export, calibration.directory


@pytest.fixture(scope="session")
def gated_recipes(recipe_workspace):
    """Every recipe that passes its gate on tiny, made (and gated) from that export once per session: {name:
    PrecisionResult}. The precision tests check the gates, the engine tests build them."""
    from nvembed_trt.precision import RECIPES, onnx_with_recipe

    export, calibration = recipe_workspace
    return {name: onnx_with_recipe(export.onnx_path, name, calibration)
            for name, recipe in RECIPES.items() if recipe.tiny_limitation is None}
