"""Complete sidecars for tests that need one without building the artifact (the schema is strict: a partial dict
does not load). The engine is described as a tensorrt build for a registered card writes it."""

from __future__ import annotations

from pathlib import Path

from nvembed_trt.artifacts import EngineMeta
from nvembed_trt.engines.gpus import get_gpu

TRT = "10.13.3.9"   # a TensorRT the NGC table lists (25.09, 25.10)
MODEL = {"spec": "tiny", "preset": "tiny", "checkpoint": None, "weights": "random (seed 1234)",
         "weights_fingerprint": None, "config_fingerprint": "d5a1e119f8a7c12f"}
INPUTS = ("input_ids", "attention_mask", "pool_mask")


def engine_meta(gpu: str = "h100", flavor: str = "tensorrt", version: str = TRT, *, recipe: str = "fp16",
                version_compatible: bool = False, hardware_compatible: bool = False, strategy: str | None = None,
                engine_bytes: int = 200_000, outputs: tuple[str, ...] = ("embeddings",), **fields) -> EngineMeta:
    """engine.json of an engine built for the registered card `gpu` (its profiles, serving limits, builder)."""
    card = get_gpu(gpu)
    serving = card.serving if strategy is None else card.serving.model_copy(
        update={"execution_context_allocation_strategy": strategy})
    return EngineMeta.new(flavor=flavor, flavor_version=version,
                          gpu={"profile": gpu, "compute_capability": card.compute_capability},
                          profiles=card.profiles, serving=serving,
                          builder=card.builder.model_dump() | {"version_compatible": version_compatible,
                                                               "hardware_compatible": hardware_compatible},
                          weights=fields.pop("weights", {"stripped": False}), recipe=recipe, model=MODEL,
                          onnx="/build-host/export/tiny/model.onnx",
                          inputs=list(INPUTS if outputs == ("embeddings",) else INPUTS[:2]), outputs=list(outputs),
                          engine_bytes=engine_bytes, **fields)


def engine_folder(folder: Path, meta: EngineMeta, plan_bytes: int = 1024) -> Path:
    """An engine folder: engine.json and a dummy plan (nothing here deserialises it)."""
    folder.mkdir(parents=True)
    (folder / "model.plan").write_bytes(b"\0" * plan_bytes)
    meta.write(folder)
    return folder
