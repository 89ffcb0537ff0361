"""One encoder per worker actor: ONNX Runtime on an export or recipe graph, a TensorRT engine (one GPU), the
PyTorch reference, or a client of a Triton server / front door. Each takes a token-budget batch (the tokenised
rows and their texts) and returns float32 [rows, D] embeddings, and states the shapes it accepts."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Protocol

import numpy as np

from ..encoding import INPUT_NAMES as TOKEN_INPUTS
from ..encoding import PackedBatch
from ..errors import InputError
from ..packing import ShapeLimit
from ..pooling import pool_or_check
from ..tokenizer import TokenizedBatch

RUNTIMES = ("onnx", "engine", "torch", "triton")
API_KEY_ENV = "NVEMBED_TRT_API_KEY"   # the front door's key, read by the driver and every worker


class Encoder(Protocol):
    inputs: tuple[str, ...]           # the arrays each packed batch carries
    shape_limits: list[ShapeLimit]    # the (rows, width) shapes one call accepts

    def embed(self, batch: PackedBatch, texts: list[str]) -> np.ndarray:
        """float32 (rows, D) unit vectors for one packed batch (texts: the same rows, for a remote server)."""


# ---------------------------------------------------------------------------------------------------- facts
def _json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def encoder_facts(runtime: str, encoder: Path | None) -> dict:
    """What the --encoder folder holds, from its sidecars: the graph or plan, the recipe, and the model config
    fingerprint it was exported from (to refuse an encoder of another model)."""
    if runtime in ("torch", "triton"):
        return {"recipe": "fp32" if runtime == "torch" else None}
    if encoder is None:
        raise InputError(f"--runtime {runtime} needs --encoder DIR (an export or recipe folder with model.onnx, "
                         f"or an engine folder with model.plan)")
    encoder = Path(encoder)
    if runtime == "onnx":
        graph = encoder if encoder.suffix == ".onnx" else encoder / "model.onnx"
        if not graph.is_file():
            raise InputError(f"--encoder {encoder}: no model.onnx (run nvembed-trt export, or precision for a recipe)")
        folder = graph.parent
        precision, own_export = _json(folder / "precision.json"), _json(folder / "export.json")
        export = own_export or _json(folder.parent / "export.json")
        recipe = (precision["recipe"]["name"] if precision else
                  {"float16": "fp16", "bfloat16": "bf16"}.get((own_export or {}).get("dtype"), "fp32"))
        from ..precision.recipes import RECIPES

        if recipe in RECIPES and RECIPES[recipe].verify_runtime != "onnxruntime":
            raise InputError(f"--encoder {encoder}: recipe {recipe} has no ONNX Runtime CPU kernels; embed it with "
                             f"--runtime engine")
        sidecar = folder / ("precision.json" if precision else "export.json")
        return {"path": str(graph), "recipe": recipe, "sidecar": str(sidecar) if sidecar.is_file() else None,
                "config_fingerprint": ((export or {}).get("model") or {}).get("config_fingerprint")}
    if runtime == "engine":
        meta = _json(encoder / "engine.json")
        if meta is None or not (encoder / "model.plan").is_file():
            raise InputError(f"--encoder {encoder}: not an engine folder (engine.json + model.plan; run "
                             f"nvembed-trt build)")
        onnx = Path(meta.get("onnx", ""))
        export = _json(onnx.parent / "export.json") or _json(onnx.parent.parent / "export.json")
        return {"path": str(encoder / "model.plan"), "recipe": meta.get("recipe"),
                "sidecar": str(encoder / "engine.json"), "gpu": meta.get("gpu", {}).get("profile"),
                "config_fingerprint": ((export or {}).get("model") or {}).get("config_fingerprint")}
    raise InputError(f"unknown runtime {runtime!r}; choose one of {', '.join(RUNTIMES)}")


# ------------------------------------------------------------------------------------------------- encoders
class OnnxEncoder:
    """ONNX Runtime (CPU) on a graph of either pooling mode, with the worker's CPU share as its thread count."""

    def __init__(self, path: str, threads: int, batch_rows: int, max_length: int):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        self.inputs = tuple(i.name for i in self.session.get_inputs())
        self.shape_limits = [ShapeLimit("onnx", batch_rows, max_length)]

    def embed(self, batch: PackedBatch, texts: list[str]) -> np.ndarray:
        return pool_or_check(self.session.run(None, batch.arrays)[0], batch.pool_mask)


class TorchEncoder:
    """The PyTorch reference (the model Embedder.encode runs)."""

    inputs = TOKEN_INPUTS

    def __init__(self, model: str, device: str, dtype: str, threads: int, batch_rows: int, max_length: int):
        import torch

        from ..embedder import Embedder

        torch.set_num_threads(threads)
        self.torch = torch
        self.embedder = Embedder.from_model(model, device, dtype, progress=False)
        self.shape_limits = [ShapeLimit("torch", batch_rows, max_length)]

    def embed(self, batch: PackedBatch, texts: list[str]) -> np.ndarray:
        model, torch = self.embedder.model, self.torch
        feeds = {k: torch.from_numpy(v.astype(np.int64)).to(model.device) for k, v in batch.arrays.items()}
        with torch.inference_mode():
            return pool_or_check(model(**feeds).float().cpu().numpy(), batch.pool_mask)


def engine_limits(meta: dict, batch_rows: int) -> list[ShapeLimit]:
    """The engine's optimisation profiles (from engine.json), each capped at batch_rows."""
    limits = [ShapeLimit.from_profile(p) for p in meta["profiles"]]
    return [dataclasses.replace(s, max_batch=min(s.max_batch, batch_rows)) for s in limits
            if s.min_batch <= batch_rows] or limits


class EngineEncoder:
    """A TensorRT engine on this worker's GPU; every packed batch fits one of its optimisation profiles."""

    def __init__(self, directory: str, batch_rows: int):
        from ..engines.runner import EngineRunner

        self.runner = EngineRunner(directory)
        self.inputs = tuple(self.runner.meta["inputs"])
        self.shape_limits = engine_limits(self.runner.meta, batch_rows)

    def embed(self, batch: PackedBatch, texts: list[str]) -> np.ndarray:
        arrays = batch.arrays
        tokens = TokenizedBatch(arrays["input_ids"], arrays["attention_mask"], batch.pool_mask)
        return pool_or_check(self.runner.run(tokens), batch.pool_mask)


def front_door_models(client) -> dict:
    """GET {url}/models of the front door (the description it serves: id, max_input_tokens, dimensions)."""
    return next(m for m in client.front_door.models() if m["id"] == client.model)


def triton_limits(url: str, protocol: str) -> tuple[int | None, int | None]:
    """(max rows per request, max tokens per row) of a deployment: a Triton repository's nv_embed model config
    (KServe), or the front door's /v1/models (its row limit is its own business: None)."""
    from ..client import EmbeddingClient, is_front_door
    from ..triton.spec import ENSEMBLE

    client = EmbeddingClient(url, protocol, api_key=os.environ.get(API_KEY_ENV))
    if is_front_door(url):
        return None, int(front_door_models(client)["max_input_tokens"])
    if protocol == "grpc":
        config = client.client.get_model_config(ENSEMBLE, as_json=True)["config"]
    else:
        config = client.client.get_model_config(ENSEMBLE)
    max_rows = int(config.get("max_batch_size") or 0) or None
    max_length = config.get("parameters", {}).get("max_length", {}).get("string_value")
    return max_rows, int(max_length) if max_length else None


class TritonEncoder:
    """A client of a running deployment: Triton's nv_embed model (host:port, KServe) or the front door
    (http://host:port/v1). The server tokenises and embeds; this worker tokenises too, only to sort, pack and count
    tokens, so each request carries rows of similar length."""

    inputs = TOKEN_INPUTS

    def __init__(self, url: str, protocol: str, input_type: str | None, instruction: str | None, truncate: str,
                 batch_rows: int, max_length: int):
        from ..client import EmbeddingClient

        self.client = EmbeddingClient(url, protocol, api_key=os.environ.get(API_KEY_ENV))
        max_rows, _ = triton_limits(url, protocol)
        self.shape_limits = [ShapeLimit("server", min(batch_rows, max_rows or batch_rows), max_length)]
        self.input_type, self.instruction, self.truncate = input_type, instruction, truncate

    def embed(self, batch: PackedBatch, texts: list[str]) -> np.ndarray:
        return self.client.embed(texts, input_type=self.input_type, instruction=self.instruction,
                                 truncate=self.truncate, batch_size=len(texts))
