"""engine.json (`nvembed-trt build`): how a TensorRT plan was built, for which card and shapes, and what it holds.

`shape_limits()` is the one answer to "which shapes does this engine take" on the served path (shapes.py's rule);
`profile_index()` is which optimisation profile TensorRT runs a shape with. A repository made with `triton-repo --gpu`
describes the engine the node will build with an EngineMeta whose `plan` says so (no plan yet)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from ..packing import ShapeLimit
from ..shapes import OptimizationProfile, Serving, profile_index, served_limits
from .graph import ModelFacts
from .sidecar import Sidecar

FlavorName = Literal["tensorrt", "tensorrt-rtx"]


class EngineGPU(BaseModel):
    """The GPU profile built for, and what the build saw: the card present (tensorrt) or the ahead-of-time targets
    (tensorrt-rtx)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    profile: str
    compute_capability: str
    description: str | None = None
    aot_targets: list[str] | None = None
    gpu_name: str | None = None


class EngineBuilder(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    optimization_level: int
    workspace_gib: float
    version_compatible: bool = False
    hardware_compatible: bool = False
    profiling_verbosity: str | None = None     # None: an engine the node will build (not built yet)
    timing_cache: str | None = None
    serialization: dict[str, Any] | None = None
    host_memory_gib: dict[str, Any] | None = None


class EngineWeights(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    stripped: bool
    refit: str | None = None                   # how to fill a stripped plan
    refitted_from: str | None = None           # after `nvembed-trt refit`
    refitted_on: str | None = None
    stripped_engine_bytes: int | None = None


class EngineMeta(Sidecar):
    FILE = "engine.json"
    ARTIFACT = "tensorrt-engine"
    MADE_BY = "nvembed-trt build --onnx <graph>/model.onnx --gpu <profile> --output {folder}"

    flavor: FlavorName
    flavor_version: str
    gpu: EngineGPU
    profiles: list[OptimizationProfile]
    serving: Serving
    builder: EngineBuilder
    weights: EngineWeights
    recipe: str                               # the graph's (artifacts/graph.py), canonical
    model: ModelFacts                         # the model the graph was made from (its sidecars')
    onnx: str                                 # the graph it was built from, on the build host
    inputs: list[str]
    outputs: list[str]
    engine_bytes: int                         # the plan's bytes (a planned engine: the graph's weights)
    onnx_sha256: str | None = None
    onnx_weight_bytes: int | None = None
    compatibility: dict[str, Any] | None = None
    build_s: float | None = None
    network_precision: dict[str, dict[str, int]] | None = None
    layer_precision: dict[str, Any] | str | None = None
    device_memory: dict[str, Any] | None = None   # TensorRT's own figure per profile, where the build could read it
    plan: str | None = None                   # set when the plan is still to be built (on the node)

    def shape_limits(self, max_batch: int | None = None) -> tuple[ShapeLimit, ...]:
        """The shapes the served path may send this engine (at most `max_batch` rows when given)."""
        return served_limits(self.profiles, self.serving, max_batch)

    def profile_index(self, batch: int, sequence: int) -> int | None:
        return profile_index(self.profiles, batch, sequence)

    @property
    def max_sequence(self) -> int:
        return max(limit.max_sequence for limit in self.shape_limits())

    @property
    def pooled(self) -> bool:
        """True when the engine pools (embeddings out), False when it emits token states."""
        return self.outputs[0] == "embeddings"

    @property
    def version_compatible(self) -> bool:
        return self.flavor == "tensorrt" and self.builder.version_compatible

    @property
    def hardware_compatible(self) -> bool:
        return self.flavor == "tensorrt" and self.builder.hardware_compatible
