"""Runtimes that embed texts, one interface each: the PyTorch reference, ONNX Runtime on an export or recipe graph,
a TensorRT engine (GPU), and Triton end to end. `discover` finds what exists for a model on this host."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from ..embedder import Embedder
from ..engines.flavors import cuda_gpu
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


@dataclass
class EngineRuntime:
    directory: Path
    tokenizer: EmbeddingTokenizer
    recipe: str
    name: str = "engine"

    def __post_init__(self):
        from ..engines.runner import EngineRunner

        self.runner = EngineRunner(self.directory)

    def embed(self, texts, instruction, batch_size=16):
        out = [self.runner.run(self.tokenizer(list(texts[i:i + batch_size]), instruction, MAX_LENGTH))
               for i in range(0, len(texts), batch_size)]
        return np.concatenate(out)

    def close(self) -> None:
        pass


class TritonRuntime:
    """Starts the real server on free loopback ports for the repository; embeds over HTTP. The recipe and the
    batch limit come from the repository's repo.json."""

    name = "triton"

    def __init__(self, repo: Path):
        import json

        from ..client import EmbeddingClient
        from ..precision.recipes import RECIPES
        from ..triton import TritonServer
        from ..serving.process import free_ports

        meta = json.loads((repo / "repo.json").read_text())
        encoder = Path(meta["encoder"]).name
        self.recipe = encoder if encoder in RECIPES else "fp32"
        self.max_batch = meta["spec"]["max_batch_size"]
        self.server = TritonServer(repo, *free_ports(3)).start()
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
             root: Path = Path(".")) -> tuple[list, list[str]]:
    """The runtimes available for `name` on this host, and a note for each one requested but absent."""
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
        plans = sorted((root / "engines").glob(f"*/{name}/*/model.plan"))
        if cuda_gpu() is None:
            missing.append(f"engine: {len(plans)} engine(s) found, but running them needs a GPU")
        else:
            for plan in plans:
                if wanted is None or plan.parent.name in wanted:
                    found.append(EngineRuntime(plan.parent, embedder.tokenizer, plan.parent.name))
    if "triton" in runtimes:
        repo = root / "triton_repo" / name
        if (repo / "repo.json").is_file():
            found.append(TritonRuntime(repo))
        else:
            missing.append(f"triton: no repository at {repo}/ (run nvembed-trt triton-repo)")
    return found, missing
