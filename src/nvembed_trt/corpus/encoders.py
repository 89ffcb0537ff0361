"""One encoder per worker actor: ONNX Runtime on an export or recipe graph, a TensorRT engine (one GPU), the
PyTorch reference, or a client of a Triton server / front door. Each takes a token-budget batch (the tokenised
rows and their texts) and returns float32 [rows, D] embeddings, and states the shapes it accepts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Protocol

import numpy as np

from ..errors import InputError
from ..tokenizer import TokenizedBatch

RUNTIMES = ("onnx", "engine", "torch", "triton")


class Encoder(Protocol):
    max_rows: int | None         # the most rows one call takes (None: no limit of its own)
    max_length: int | None       # the most tokens a row may have (None: no limit of its own)

    def fits(self, rows: int, width: int) -> bool: ...

    def embed(self, batch: TokenizedBatch, texts: list[str]) -> np.ndarray: ...


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
        return {"path": str(encoder / "model.plan"), "recipe": meta.get("recipe"), "sidecar": str(encoder / "engine.json"),
                "gpu": meta.get("gpu", {}).get("profile"),
                "config_fingerprint": ((export or {}).get("model") or {}).get("config_fingerprint")}
    raise InputError(f"unknown runtime {runtime!r}; choose one of {', '.join(RUNTIMES)}")


# ------------------------------------------------------------------------------------------------- encoders
class OnnxEncoder:
    """ONNX Runtime (CPU) on a graph of either pooling mode, with the worker's CPU share as its thread count."""

    max_rows = None

    def __init__(self, path: str, threads: int):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.pooled = self.session.get_outputs()[0].name == "embeddings"
        self.max_length = None

    def fits(self, rows: int, width: int) -> bool:
        return True

    def embed(self, batch: TokenizedBatch, texts: list[str]) -> np.ndarray:
        from ..pooling import masked_mean_l2_numpy

        out = self.session.run(None, {name: getattr(batch, name).astype(np.int32) for name in self.inputs})[0]
        return (out if self.pooled else masked_mean_l2_numpy(out, batch.pool_mask)).astype(np.float32)


class TorchEncoder:
    """The PyTorch reference (the model Embedder.encode runs)."""

    max_rows = None
    max_length = None

    def __init__(self, model: str, device: str, dtype: str, threads: int):
        import torch

        from ..embedder import Embedder

        torch.set_num_threads(threads)
        self.torch = torch
        self.embedder = Embedder.from_model(model, device, dtype, progress=False)

    def fits(self, rows: int, width: int) -> bool:
        return True

    def embed(self, batch: TokenizedBatch, texts: list[str]) -> np.ndarray:
        model = self.embedder.model
        with self.torch.inference_mode():
            return model(**batch.to_torch(model.device)).float().cpu().numpy()


class EngineEncoder:
    """A TensorRT engine on this worker's GPU; batches must fit one of its optimisation profiles."""

    def __init__(self, directory: str):
        from ..engines.runner import EngineRunner

        self.runner = EngineRunner(directory)
        profiles = self.runner.meta["profiles"]
        self.max_rows = max(p["batch"]["max"] for p in profiles)
        self.max_length = max(p["sequence"]["max"] for p in profiles)

    def fits(self, rows: int, width: int) -> bool:
        return any(p["batch"]["min"] <= rows <= p["batch"]["max"] and p["sequence"]["min"] <= width
                   <= p["sequence"]["max"] for p in self.runner.meta["profiles"])

    def embed(self, batch: TokenizedBatch, texts: list[str]) -> np.ndarray:
        return self.runner.run(batch)


def triton_limits(url: str, protocol: str) -> tuple[int | None, int | None]:
    """(max rows per request, max tokens per row) of a Triton repository (KServe), from its model configs;
    (None, None) for an OpenAI-style front door (http://host:port/v1), which batches on its own."""
    if "/v1" in url:
        return None, None
    from ..triton.spec import ENSEMBLE, TOKENIZER

    if protocol == "grpc":
        import tritonclient.grpc as module

        client = module.InferenceServerClient(url)
        configs = [client.get_model_config(name, as_json=True)["config"] for name in (ENSEMBLE, TOKENIZER)]
    else:
        import tritonclient.http as module

        client = module.InferenceServerClient(url)
        configs = [client.get_model_config(name) for name in (ENSEMBLE, TOKENIZER)]
    max_rows = int(configs[0].get("max_batch_size") or 0) or None
    max_length = configs[1].get("parameters", {}).get("max_length", {}).get("string_value")
    return max_rows, int(max_length) if max_length else None


class TritonEncoder:
    """A client of a running Triton repository (host:port, KServe) or front door (http://host:port/v1): the server
    tokenises and embeds; this worker tokenises too, only to sort, pack and count tokens."""

    def __init__(self, url: str, protocol: str, input_type: str | None, instruction: str | None, truncate: str):
        from ..client import EmbeddingClient

        self.client = EmbeddingClient(url, protocol)
        self.max_rows, self.max_length = triton_limits(url, protocol)
        self.input_type, self.instruction, self.truncate = input_type, instruction, truncate

    def fits(self, rows: int, width: int) -> bool:
        return True

    def embed(self, batch: TokenizedBatch, texts: list[str]) -> np.ndarray:
        return self.client.embed(texts, input_type=self.input_type, instruction=self.instruction,
                                 truncate=self.truncate, batch_size=self.max_rows or len(texts))
