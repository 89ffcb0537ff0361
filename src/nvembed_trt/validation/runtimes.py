"""Runtimes that embed texts, one interface each: the PyTorch reference, ONNX Runtime on an export or recipe graph,
a TensorRT engine (GPU), and Triton end to end. `discover` finds what exists for a model on this host.

Engines: `select_engines` (a pure function of the engine.json files, the TensorRT versions installed and the GPU
present) keeps only the engines this host can run, with a note for each one left out; an EngineRuntime loads its
plan when first used and unloads any other engine first, so one engine at a time holds the GPU; its batches stay
within the engine's serving limits (engine.json `serving`: the A10's maximum batch is 8)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from ..embedder import Embedder
from ..engines.flavors import cuda_gpu
from ..hostgpu import gpu_run_problem
from ..precision.verify import GraphRunner
from ..tokenizer import EmbeddingTokenizer

MAX_LENGTH = 512


class Runtime(Protocol):
    name: str
    recipe: str

    def embed(self, texts: list[str], instruction: str, batch_size: int = 16) -> np.ndarray: ...

    def close(self) -> None: ...


@dataclass
class TorchRuntime:
    embedder: Embedder
    name: str = "torch"
    recipe: str = "fp32"

    def embed(self, texts, instruction, batch_size=16):
        return self.embedder.encode(texts, instruction=instruction, max_length=MAX_LENGTH, batch_size=batch_size)

    def close(self) -> None:
        pass


@dataclass
class OnnxRuntime:
    path: Path
    tokenizer: EmbeddingTokenizer
    recipe: str
    name: str = "onnx"

    def __post_init__(self):
        from ..precision.recipes import RECIPES

        runtime = RECIPES[self.recipe].verify_runtime if self.recipe in RECIPES else "onnxruntime"
        self.runner = GraphRunner(self.path, runtime)

    def embed(self, texts, instruction, batch_size=16):
        return self.runner.embed(self.tokenizer, list(texts), instruction, MAX_LENGTH, batch_size)

    def close(self) -> None:
        pass


_LOADED: list = []   # the one EngineRuntime whose plan is on the GPU now


@dataclass
class EngineRuntime:
    directory: Path
    tokenizer: EmbeddingTokenizer
    recipe: str
    name: str = "engine"
    meta: dict = field(default_factory=dict)
    _runner: object = None

    def __post_init__(self):
        if not self.meta:
            self.meta = json.loads((Path(self.directory) / "engine.json").read_text())

    @property
    def max_batch(self) -> int:
        return int(self.meta["serving"]["max_batch_size"])

    @property
    def max_length(self) -> int:
        return min(MAX_LENGTH, int(self.meta["serving"]["max_sequence_length"]))

    def accepts(self, rows: int, width: int) -> bool:
        """Whether one of the engine's profiles covers the shape, within the serving limits."""
        return rows <= self.max_batch and width <= int(self.meta["serving"]["max_sequence_length"]) and any(
            p["batch"]["min"] <= rows <= p["batch"]["max"] and p["sequence"]["min"] <= width <= p["sequence"]["max"]
            for p in self.meta["profiles"])

    @property
    def runner(self):
        """The loaded engine; loading it first unloads whichever engine was loaded (one at a time on the GPU)."""
        if self._runner is None:
            from ..engines.runner import EngineRunner

            for other in list(_LOADED):
                other.close()
            self._runner = EngineRunner(self.directory)
            _LOADED.append(self)
        return self._runner

    def embed(self, texts, instruction, batch_size=16):
        step = max(1, min(batch_size, self.max_batch))
        out = [self.runner.run(self.tokenizer(list(texts[i:i + step]), instruction, self.max_length))
               for i in range(0, len(texts), step)]
        return np.concatenate(out)

    def close(self) -> None:
        if self._runner is not None:
            self._runner = None
            if self in _LOADED:
                _LOADED.remove(self)
            try:
                import torch

                torch.cuda.empty_cache()
            except Exception:  # noqa: BLE001 - freeing is best effort; the next load reports real errors
                pass


def installed_versions() -> dict[str, str | None]:
    """The version of each builder flavor importable here (None: not installed)."""
    import importlib

    from ..engines.flavors import FLAVORS, installed

    versions: dict[str, str | None] = {}
    for name, flavor in FLAVORS.items():
        versions[name] = importlib.import_module(flavor.module).__version__ if installed(flavor) else None
    return versions


def select_engines(folders: list[Path], present: tuple[str, str] | None, versions: dict[str, str | None],
                   recipes: set[str] | None = None) -> tuple[list[tuple[Path, dict]], list[str]]:
    """The engine folders (engine.json + model.plan) this host can run, in order, each with its engine.json, and a
    note for every one left out: not a wanted recipe (silently), another card, another TensorRT, no GPU."""
    from ..engines.runner import engine_compatibility

    chosen, notes = [], []
    for folder in folders:
        if recipes is not None and folder.name not in recipes:
            continue
        try:
            meta = json.loads((folder / "engine.json").read_text())
        except (OSError, ValueError) as exc:
            notes.append(f"engine {folder}: unreadable engine.json ({exc})")
            continue
        problem = engine_compatibility(meta, versions.get(meta.get("flavor")), present[1] if present else None,
                                       present[0] if present else "this GPU")
        if problem:
            notes.append(f"engine {folder}: {problem}")
        else:
            chosen.append((folder, meta))
    return chosen, notes


class TritonRuntime:
    """Starts the real server on free loopback ports for the repository; embeds over HTTP (KServe, nv_embed). The
    recipe and the rows per request come from the repository's repo.json; `binary` is another tritonserver (NVIDIA's
    image, for a TensorRT plan), default the one bundled with nvidia-pytriton."""

    name = "triton"

    def __init__(self, repo: Path, binary: Path | str | None = None):
        from ..client import EmbeddingClient
        from ..precision.recipes import RECIPES
        from ..serving.process import free_ports
        from ..serving.service import read_repository
        from ..triton import TritonServer

        meta, spec = read_repository(repo)
        recipe = meta.get("recipe") or Path(meta["encoder"]).name
        self.recipe = recipe if recipe in RECIPES else "fp32"
        self.max_batch = spec.max_request_rows          # nv_embed's max_batch_size: rows per KServe request
        self.server = TritonServer(repo, *free_ports(3), binary=binary).start()
        self.client = EmbeddingClient(self.server.endpoints["http"])

    def new_client(self):
        from ..client import EmbeddingClient

        return EmbeddingClient(self.server.endpoints["http"])

    def embed(self, texts, instruction, batch_size=16):
        return self.client.embed(list(texts), instruction=instruction or None,
                                 batch_size=min(batch_size, self.max_batch))

    def close(self) -> None:
        self.server.stop()


def discover(name: str, embedder: Embedder, runtimes: list[str], recipes: list[str] | None,
             root: Path = Path("."), tritonserver: Path | str | None = None) -> tuple[list, list[str]]:
    """The runtimes available for `name` on this host, and a note for each one requested but absent (a TensorRT
    repository without `tritonserver`: the bundled server cannot load it)."""
    found, missing = [], []
    wanted = set(recipes) if recipes else None
    if "torch" in runtimes:
        found.append(TorchRuntime(embedder))
    if "onnx" in runtimes:
        export = root / "export" / name
        graphs = [("fp32", export / "model.onnx")] + [(p.parent.name, p) for p in sorted(export.glob("*/model.onnx"))]
        for recipe, path in graphs:
            if path.is_file() and (wanted is None or recipe in wanted):
                found.append(OnnxRuntime(path, embedder.tokenizer, recipe))
        if not any(r.name == "onnx" for r in found):
            missing.append(f"onnx: no graphs under {export}/ (run nvembed-trt export / precision)")
    if "engine" in runtimes:
        folders = [plan.parent for plan in sorted((root / "engines").glob(f"*/{name}/*/model.plan"))]
        present, problem = cuda_gpu(), gpu_run_problem(needs_torch=True)
        if problem:
            missing.append(f"engine: {len(folders)} engine(s) found, but running them (EngineRunner) {problem}")
        else:
            chosen, notes = select_engines(folders, present, installed_versions(), wanted)
            found += [EngineRuntime(folder, embedder.tokenizer, folder.name, meta=meta) for folder, meta in chosen]
            missing += notes
    if "triton" in runtimes:
        from ..triton.server import bundled_server_problem

        repo = root / "triton_repo" / name
        problem = bundled_server_problem(repo) if (repo / "repo.json").is_file() and not tritonserver else None
        if problem:
            missing.append(f"triton: {problem}")
        elif (repo / "repo.json").is_file():
            found.append(TritonRuntime(repo, tritonserver))
        else:
            missing.append(f"triton: no repository at {repo}/ (run nvembed-trt triton-repo)")
    return found, missing
