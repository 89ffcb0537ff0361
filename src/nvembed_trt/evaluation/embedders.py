"""The embedders an evaluation can use, behind one function: `open_embedder(spec)`.

Each is a TextEmbedder of the encoder seam (nvembed_trt.encoders) at the token limit the evaluation asks for: the
PyTorch reference, an ONNX graph or a TensorRT engine in this process (LocalEmbedder: texts sorted by length so
batches pad little, batches cut where the engine's shapes take fewer rows), or a deployment (ServedEmbedder: the
front door's /v1/embeddings or Triton's KServe endpoint). Every embedder takes texts and one instruction prefix and
returns float32 rows in input order; `identity` says what made its vectors (the corpus cache's key)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

from ..artifacts.graph import graph_sidecars
from ..encoders.base import LocalEmbedder
from ..errors import InputError
from ..provenance import sha256_bytes

Kind = Literal["torch", "onnx", "engine", "url"]
KINDS = ("torch", "onnx", "engine", "url")
DEFAULT_MAX_LENGTH = 4096    # upstream encode()'s default


class EmbedderSpec(BaseModel):
    """Which embedder: `runtime` torch (the PyTorch reference of --model), onnx (an export or recipe graph),
    engine (a TensorRT engine folder; GPU host) or url (a served front door http://host:port/v1, or Triton's
    KServe endpoint host:port)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    runtime: Kind
    model: str = "tiny"
    encoder: str | None = None       # onnx: model.onnx or its folder; engine: the engine folder
    url: str | None = None
    protocol: Literal["http", "grpc"] = "http"
    max_length: int = DEFAULT_MAX_LENGTH
    batch_size: int = 16
    device: Literal["cpu", "cuda"] = "cpu"
    dtype: Literal["float32", "float16", "bfloat16"] = "float32"
    autocast: bool = False           # torch on cuda: upstream's GPU forward (fp32 weights, fp16 autocast)

    def label(self) -> str:
        return {"torch": f"torch:{self.model}", "url": f"url:{self.url}"}.get(self.runtime,
                                                                              f"{self.runtime}:{self.encoder}")


@dataclass
class EvalEmbedder:
    """One opened embedder: `embed(texts, instruction)` and what identifies its vectors (`identity`)."""

    spec: EmbedderSpec
    embedder: object                   # a TextEmbedder (nvembed_trt.encoders)
    identity: dict
    recipe: str = field(default="")

    def __post_init__(self):
        self.recipe = self.recipe or self.embedder.recipe

    @property
    def name(self) -> str:
        return self.identity["runtime"]

    @property
    def max_length(self) -> int:
        return self.spec.max_length

    def embed(self, texts: list[str], instruction: str) -> np.ndarray:
        if not texts:
            raise InputError("no texts to embed (got an empty list)")
        return np.asarray(self.embedder.embed(list(texts), instruction), dtype=np.float32)

    def close(self) -> None:
        self.embedder.close()


def _file_stamp(*paths: Path) -> list[dict]:
    """Name, size and modification time of each file that exists: enough to notice a rebuilt graph or plan without
    hashing gigabytes."""
    return [{"file": str(p.resolve()), "bytes": p.stat().st_size, "mtime_ns": p.stat().st_mtime_ns}
            for p in paths if p.is_file()]


def _local(spec: EmbedderSpec, encoder, tokenizer) -> LocalEmbedder:
    return LocalEmbedder(encoder, tokenizer, spec.max_length, spec.batch_size, sort=True)


def _torch(spec: EmbedderSpec) -> EvalEmbedder:
    from ..embedder import Embedder as Reference
    from ..encoders.local import TorchEncoder

    reference = Reference.from_model(spec.model, spec.device, spec.dtype, progress=False, autocast=spec.autocast)
    identity = {"runtime": "torch", "model": reference.source.describe() | {"spec": None, "checkpoint": None},
                "device": spec.device, "dtype": spec.dtype, "autocast": spec.autocast}
    return EvalEmbedder(spec, _local(spec, TorchEncoder(reference), reference.tokenizer), identity)


def _onnx(spec: EmbedderSpec, tokenizer) -> EvalEmbedder:
    from ..corpus.encoders import encoder_facts
    from ..encoders.local import OnnxEncoder
    from ..recipes import get_recipe

    facts = encoder_facts("onnx", Path(spec.encoder).resolve())
    graph = Path(facts["path"])
    encoder = OnnxEncoder(graph, facts["recipe"], get_recipe(facts["recipe"]).verify_runtime)
    identity = {"runtime": "onnx", "recipe": facts["recipe"], "graph": _file_stamp(graph, Path(f"{graph}.data")),
                "sidecar_sha256": graph_sidecars(graph.parent).digest(),
                "config_fingerprint": facts.get("config_fingerprint")}
    return EvalEmbedder(spec, _local(spec, encoder, tokenizer), identity)


def _engine(spec: EmbedderSpec, tokenizer) -> EvalEmbedder:
    from ..corpus.encoders import encoder_facts
    from ..encoders.tensorrt import TensorRTEncoder

    facts = encoder_facts("engine", Path(spec.encoder).resolve())
    encoder = TensorRTEncoder(Path(facts["path"]).parent)
    limit = encoder.meta.max_sequence
    if spec.max_length > limit:
        raise InputError(f"--max-length {spec.max_length} exceeds the engine's longest sequence {limit} "
                         f"({facts['sidecar']}); lower --max-length or rebuild the engine")
    identity = {"runtime": "engine", "recipe": facts["recipe"], "gpu": facts.get("gpu"),
                "plan": _file_stamp(encoder.plan), "sidecar_sha256": encoder.meta.digest()}
    return EvalEmbedder(spec, _local(spec, encoder, tokenizer), identity)


def _served(spec: EmbedderSpec) -> EvalEmbedder:
    """A deployment: the front door (http(s)://...) or Triton's nv_embed over KServe (host:port). The server
    truncates at its own limit; `max_length` must not exceed it (rows would be cut where the others are not)."""
    from ..encoders.served import ServedEmbedder, front_door_models

    if not spec.url:
        raise InputError("--runtime url needs --url (http://host:port/v1 of `nvembed-trt serve`, or host:port of "
                         "Triton's KServe endpoint)")
    try:
        embedder = ServedEmbedder(spec.url, spec.protocol, truncate="END", batch_size=spec.batch_size)
        client = embedder.client
        served = front_door_models(client) if client.front_door else {"model": client.model,
                                                                       "max_rows": embedder.max_rows}
    except Exception as exc:  # noqa: BLE001  (httpx, tritonclient and our ClientError all mean "not reachable")
        raise InputError(f"--url {spec.url}: cannot reach the deployment ({exc}); is it running?") from exc
    limit = embedder.max_length
    if limit and spec.max_length > limit:
        raise InputError(f"--max-length {spec.max_length} exceeds the deployment's limit of {limit} tokens per "
                         f"input ({spec.url}): give --max-length {limit} or less")
    identity = {"runtime": embedder.name, "url": spec.url, "served": served}
    return EvalEmbedder(spec, embedder, identity)


def open_embedder(spec: EmbedderSpec, tokenizer=None) -> EvalEmbedder:
    """The one adapter from an EmbedderSpec to a runner (see the module docstring). `tokenizer`: the model's
    EmbeddingTokenizer (loaded from spec.model when not given; only local graphs and engines need it)."""
    if spec.max_length < 2:
        raise InputError(f"--max-length must be >= 2, got {spec.max_length}")
    if spec.runtime in ("onnx", "engine") and not spec.encoder:
        raise InputError(f"--runtime {spec.runtime} needs --encoder (an export/recipe folder with model.onnx, or an "
                         f"engine folder with model.plan)")
    if spec.runtime == "torch":
        return _torch(spec)
    if spec.runtime == "url":
        return _served(spec)
    if tokenizer is None:
        from ..source import resolve_model, tokenizer_for

        tokenizer = tokenizer_for(resolve_model(spec.model, progress=False))
    return _onnx(spec, tokenizer) if spec.runtime == "onnx" else _engine(spec, tokenizer)


def identity_key(identity: dict, max_length: int) -> str:
    """A short stable key of what made a set of vectors (the cache folder's name)."""
    return sha256_bytes(json.dumps({"identity": identity, "max_length": max_length}, sort_keys=True).encode())[:16]
