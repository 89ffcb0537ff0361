"""serving_check: `nvembed-trt serve` on free loopback ports; embed texts through the front door (/v1/embeddings)
and through KServe (nv_embed over HTTP and gRPC); compare each with the PyTorch reference against the recipe's own
threshold from the registry; stop with SIGTERM (exit 0 required); report. What `make all` runs as its last step."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ..client import EmbeddingClient
from ..embedder import Embedder
from ..errors import NVEmbedError
from ..pooling import cosine_rows
from ..recipes import get_recipe
from ..serving.process import ServeProcess
from ..triton.meta import RepoMeta


def recipe_threshold(repo: Path) -> tuple[str, float]:
    """The encoder's recipe (repo.json) and the minimum cosine the registry sets for it."""
    recipe = get_recipe(RepoMeta.read(repo).recipe)
    return recipe.name, recipe.min_cosine


def serving_check(repo: Path, model: str, texts: list[str], input_type: str | None = None,
                  tritonserver: Path | str | None = None) -> dict:
    """tritonserver: another server binary (NVIDIA's image, for a TensorRT plan); default the bundled one."""
    recipe, threshold = recipe_threshold(repo)
    with ServeProcess(repo, ("--tritonserver", str(tritonserver)) if tritonserver else ()) as served:
        start = time.perf_counter()
        results = {"front-door": EmbeddingClient(served.api_url).embed(texts, input_type=input_type)}
        front_s = time.perf_counter() - start
        for protocol in ("http", "grpc"):
            client = EmbeddingClient(served.kserve[protocol], protocol)
            results[f"kserve-{protocol}"] = client.embed(texts, input_type=input_type, truncate="END")
        ports = [served.port, served.http_port, served.grpc_port, served.metrics_port]
        status = served.stop()
    if status != 0:
        raise NVEmbedError(f"nvembed-trt serve exited with {status} after SIGTERM (0 expected)")
    reference = Embedder.from_model(model, progress=False).encode(texts, input_type=input_type)
    report = {"repo": str(repo), "texts": len(texts), "ports": ports, "recipe": recipe, "min_cosine": threshold,
              "tritonserver": str(tritonserver) if tritonserver else "bundled (nvidia-pytriton)",
              "front_door_s": round(front_s, 3), "stop_status": status}
    for face, vectors in results.items():
        cos = cosine_rows(vectors, reference)
        report[face] = {"min_cosine": float(cos.min()), "max_abs": float(np.abs(vectors - reference).max())}
        if cos.min() < threshold:
            raise NVEmbedError(f"served embeddings through {face} differ from the reference: min cosine "
                               f"{cos.min():.6f} < {threshold} (recipe {recipe})")
    return report
