"""The embedders an evaluation can use, behind one function: `open_embedder(spec)`.

Until the encoder seam (one protocol for every runner) lands, this is the single place where evaluation reaches the
existing runners: validation/runtimes.py's TorchRuntime / OnnxRuntime / EngineRuntime and client.py's
EmbeddingClient (the front door's /v1/embeddings or Triton's KServe endpoint). Those runners fix their own token
limit (512); evaluation needs the limit it was asked for, so each kind's call passes `max_length` to the object the
runtime wraps. Every embedder here takes texts and one instruction prefix and returns float32 unit rows in input
order; local runtimes get their texts sorted by length so batches pad little."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

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
class Embedder:
    """One opened embedder: `embed(texts, instruction)` and what identifies its vectors (`identity`)."""

    spec: EmbedderSpec
    recipe: str
    identity: dict
    _embed: object = field(repr=False)
    _close: object = field(repr=False, default=None)
    max_length: int = DEFAULT_MAX_LENGTH

    @property
    def name(self) -> str:
        return self.identity["runtime"]

    def embed(self, texts: list[str], instruction: str) -> np.ndarray:
        if not texts:
            raise InputError("no texts to embed (got an empty list)")
        return np.asarray(self._embed(list(texts), instruction), dtype=np.float32)

    def close(self) -> None:
        if self._close is not None:
            self._close()


def _file_stamp(*paths: Path) -> list[dict]:
    """Name, size and modification time of each file that exists: enough to notice a rebuilt graph or plan without
    hashing gigabytes."""
    return [{"file": str(p.resolve()), "bytes": p.stat().st_size, "mtime_ns": p.stat().st_mtime_ns}
            for p in paths if p.is_file()]


def _sorted_calls(tokenizer, call, max_length: int):
    """embed(texts, instruction) that runs `call` on texts sorted by token count (long first) and restores order."""
    def embed(texts: list[str], instruction: str) -> np.ndarray:
        lengths = [len(ids) for ids in tokenizer.encode_ids(texts, instruction, max_length)]
        order = np.argsort(-np.asarray(lengths), kind="stable")
        got = call([texts[i] for i in order], instruction)
        out = np.empty_like(got)
        out[order] = got
        return out
    return embed


def _torch(spec: EmbedderSpec) -> Embedder:
    from ..embedder import Embedder as Reference
    from ..validation.runtimes import TorchRuntime

    runtime = TorchRuntime(Reference.from_model(spec.model, spec.device, spec.dtype, progress=False,
                                                autocast=spec.autocast))
    reference = runtime.embedder
    embed = lambda texts, instruction: reference.encode(  # noqa: E731  (encode sorts by length itself)
        texts, instruction=instruction, max_length=spec.max_length, batch_size=spec.batch_size)
    identity = {"runtime": "torch", "model": reference.source.describe() | {"spec": None, "checkpoint": None},
                "device": spec.device, "dtype": spec.dtype, "autocast": spec.autocast}
    recipe = {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16"}[spec.dtype]
    return Embedder(spec, recipe, identity, embed, runtime.close, spec.max_length)


def _onnx(spec: EmbedderSpec, tokenizer) -> Embedder:
    from ..corpus.encoders import encoder_facts
    from ..validation.runtimes import OnnxRuntime

    facts = encoder_facts("onnx", Path(spec.encoder).resolve())
    runtime = OnnxRuntime(Path(facts["path"]), tokenizer, facts["recipe"])
    call = lambda texts, instruction: runtime.runner.embed(  # noqa: E731
        runtime.tokenizer, texts, instruction, spec.max_length, spec.batch_size)
    sidecar = Path(facts["sidecar"]) if facts.get("sidecar") else None
    graph = Path(facts["path"])
    identity = {"runtime": "onnx", "recipe": facts["recipe"], "graph": _file_stamp(graph, Path(f"{graph}.data")),
                "sidecar_sha256": sha256_bytes(sidecar.read_bytes()) if sidecar else None,
                "config_fingerprint": facts.get("config_fingerprint")}
    return Embedder(spec, facts["recipe"], identity, _sorted_calls(tokenizer, call, spec.max_length),
                    runtime.close, spec.max_length)


def _engine(spec: EmbedderSpec, tokenizer) -> Embedder:
    from ..corpus.encoders import encoder_facts
    from ..validation.runtimes import EngineRuntime

    facts = encoder_facts("engine", Path(spec.encoder).resolve())
    runtime = EngineRuntime(Path(facts["path"]).parent, tokenizer, facts["recipe"] or "unknown")
    limit = int(runtime.meta["serving"]["max_sequence_length"])
    if spec.max_length > limit:
        raise InputError(f"--max-length {spec.max_length} exceeds the engine's longest sequence {limit} "
                         f"({facts['sidecar']}); lower --max-length or rebuild the engine")

    def call(texts, instruction):
        step = max(1, min(spec.batch_size, runtime.max_batch))
        return np.concatenate([runtime.runner.run(tokenizer(texts[i:i + step], instruction, spec.max_length))
                               for i in range(0, len(texts), step)])
    identity = {"runtime": "engine", "recipe": facts["recipe"], "gpu": facts.get("gpu"),
                "plan": _file_stamp(Path(facts["path"])),
                "sidecar_sha256": sha256_bytes(Path(facts["sidecar"]).read_bytes())}
    return Embedder(spec, facts["recipe"] or "unknown", identity, _sorted_calls(tokenizer, call, spec.max_length),
                    runtime.close, spec.max_length)


def _served(spec: EmbedderSpec) -> Embedder:
    """A deployment: the front door (http(s)://...) or Triton's nv_embed over KServe (host:port). The server
    truncates at its own limit; `max_length` must not exceed it (rows would be cut where the others are not)."""
    import os

    from ..client import EmbeddingClient, is_front_door
    from ..corpus.encoders import API_KEY_ENV, front_door_models, triton_limits

    if not spec.url:
        raise InputError("--runtime url needs --url (http://host:port/v1 of `nvembed-trt serve`, or host:port of "
                         "Triton's KServe endpoint)")
    try:
        client = EmbeddingClient(spec.url, spec.protocol, api_key=os.environ.get(API_KEY_ENV))
        max_rows, limit = triton_limits(spec.url, spec.protocol)
        served = front_door_models(client) if client.front_door else {"model": client.model, "max_rows": max_rows}
    except Exception as exc:  # noqa: BLE001  (httpx, tritonclient and our ClientError all mean "not reachable")
        raise InputError(f"--url {spec.url}: cannot reach the deployment ({exc}); is it running?") from exc
    if limit and spec.max_length > limit:
        raise InputError(f"--max-length {spec.max_length} exceeds the deployment's limit of {limit} tokens per "
                         f"input ({spec.url}): give --max-length {limit} or less")
    batch = min(spec.batch_size, max_rows or spec.batch_size)

    def embed(texts, instruction):
        return client.embed(texts, input_type=None if instruction else "passage", instruction=instruction or None,
                            truncate="END", batch_size=batch)
    face = "front-door" if client.front_door else f"kserve-{spec.protocol}"
    identity = {"runtime": face, "url": spec.url, "served": served}
    return Embedder(spec, str(served.get("recipe", "served")), identity, embed, None, spec.max_length)


def open_embedder(spec: EmbedderSpec, tokenizer=None) -> Embedder:
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
