"""What a corpus job embeds with, resolved on the driver from the --encoder folder's sidecars, and the one encoder
per worker actor, from the encoder seam (nvembed_trt.encoders): ONNX Runtime on an export or recipe graph, a
TensorRT engine (one GPU), the PyTorch reference, each taking token-budget batches within the shapes it states; or a
client of a Triton server / front door (ServedEmbedder), which takes the batch's texts."""

from __future__ import annotations

from pathlib import Path

from ..artifacts.engine import EngineMeta
from ..artifacts.graph import DTYPE_RECIPES, graph_sidecars
from ..errors import InputError
from ..packing import ShapeLimit

RUNTIMES = ("onnx", "engine", "torch", "triton")


def encoder_facts(runtime: str, encoder: Path | None, dtype: str = "float32") -> dict:
    """What the --encoder folder holds, from its sidecars: the graph or plan, the recipe, and the model config
    fingerprint it was exported from (to refuse an encoder of another model). The PyTorch reference's recipe is its
    weights' dtype (--dtype)."""
    if runtime in ("torch", "triton"):
        return {"recipe": DTYPE_RECIPES[dtype] if runtime == "torch" else None}
    if encoder is None:
        raise InputError(f"--runtime {runtime} needs --encoder DIR (an export or recipe folder with model.onnx, "
                         f"or an engine folder with model.plan)")
    encoder = Path(encoder)
    if runtime == "onnx":
        graph = encoder if encoder.suffix == ".onnx" else encoder / "model.onnx"
        if not graph.is_file():
            raise InputError(f"--encoder {encoder}: no model.onnx (run nvembed-trt export, or precision for a recipe)")
        sidecars = graph_sidecars(graph.parent)
        from ..recipes import get_recipe

        if get_recipe(sidecars.recipe).verify_runtime != "onnxruntime":
            raise InputError(f"--encoder {encoder}: recipe {sidecars.recipe} has no ONNX Runtime CPU kernels; embed "
                             f"it with --runtime engine")
        return {"path": str(graph), "recipe": sidecars.recipe, "sidecar": str(sidecars.sidecar_path),
                "config_fingerprint": sidecars.model.config_fingerprint}
    if runtime == "engine":
        if not (encoder / "model.plan").is_file():
            raise InputError(f"--encoder {encoder}: not an engine folder (engine.json + model.plan; run "
                             f"nvembed-trt build)")
        meta = EngineMeta.read(encoder)
        return {"path": str(encoder / "model.plan"), "recipe": meta.recipe, "sidecar": str(encoder / meta.FILE),
                "gpu": meta.gpu.profile, "config_fingerprint": meta.model.config_fingerprint}
    raise InputError(f"unknown runtime {runtime!r}; choose one of {', '.join(RUNTIMES)}")


def make_encoder(spec):
    """The worker's encoder for a WorkerSpec: a seam Encoder (token batches), or a ServedEmbedder (texts)."""
    limit = ShapeLimit(spec.runtime, spec.batch_rows, spec.max_length)   # what the worker packs for
    if spec.runtime == "onnx":
        from ..encoders.local import OnnxEncoder

        return OnnxEncoder(spec.encoder_path, spec.recipe, threads=spec.threads, limit=limit)
    if spec.runtime == "torch":
        import torch

        from ..embedder import Embedder
        from ..encoders.local import TorchEncoder

        torch.set_num_threads(spec.threads)
        return TorchEncoder(Embedder.from_model(spec.model, spec.device, spec.dtype, progress=False), limit)
    if spec.runtime == "engine":
        from ..encoders.tensorrt import TensorRTEncoder

        return TensorRTEncoder(Path(spec.encoder_path).parent, max_batch=spec.batch_rows)
    from ..encoders.served import ServedEmbedder

    return ServedEmbedder(spec.url, spec.protocol, spec.truncate, spec.batch_rows)


def served_shape(embedder, batch_rows: int, max_length: int) -> tuple[ShapeLimit, ...]:
    """What the worker packs for a deployment: at most its rows per request, as many as --batch-rows."""
    return (ShapeLimit("server", min(batch_rows, embedder.max_rows or batch_rows), max_length),)
