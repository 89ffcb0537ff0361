"""serving_check: start the real server on free loopback ports, embed texts through the ensemble, compare with the
PyTorch reference, stop, and report. What `make all` runs as its last step."""

from __future__ import annotations

import socket
from pathlib import Path

import numpy as np

from ..client import EmbeddingClient
from ..embedder import Embedder
from ..errors import NVEmbedError
from .server import TritonServer

MIN_COSINE = 0.9999


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind((host, 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def serving_check(repo: Path, model: str, texts: list[str], input_type: str | None = None) -> dict:
    http, grpc, metrics = free_ports(3)
    with TritonServer(repo, http, grpc, metrics) as server:
        served = {protocol: EmbeddingClient(server.endpoints[protocol], protocol).embed(texts, input_type=input_type)
                  for protocol in ("http", "grpc")}
    reference = Embedder.from_model(model, progress=False).encode(texts, input_type=input_type)
    report = {"repo": str(repo), "texts": len(texts), "ports": [http, grpc, metrics]}
    for protocol, vectors in served.items():
        cos = (vectors * reference).sum(1) / (np.linalg.norm(vectors, axis=1) * np.linalg.norm(reference, axis=1))
        report[protocol] = {"min_cosine": float(cos.min()), "max_abs": float(np.abs(vectors - reference).max())}
        if cos.min() < MIN_COSINE:
            raise NVEmbedError(f"served embeddings over {protocol} differ from the reference: min cosine "
                               f"{cos.min():.6f} < {MIN_COSINE}")
    return report
