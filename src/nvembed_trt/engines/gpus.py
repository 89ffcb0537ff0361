"""GPU profiles: one schema-checked YAML file per card (package data), loaded into one registry.

A profile says which builder flavors can target the card, its usable memory (nvidia-smi's memory.total, in MiB),
the shapes Triton will send (serving) and how Triton allocates the engine's execution contexts, builder settings,
and optimisation profiles (batch and sequence min/opt/max). Loading checks every profile: opt within min..max; every
batch the served path can form (the packer over the profiles, capped at the serving batch, up to the serving length)
is covered by one profile (nvembed_trt.packing: the loader and the packer share one rule); and the full-size
NV-Embed-v2 in fp16 fits the card as Triton allocates it: one execution context per profile (engines/memory.py).
An optional `performance` block holds the card's datasheet peaks and the efficiency credited to them, for the
performance model (nvembed_trt.performance): the GPU-timed stand-in encoder and the capacity planner."""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

from ..artifacts.engine import EngineMeta
from ..config import NVEmbedConfig
from ..errors import InputError
from ..packing import Packer, ShapeLimit
from ..performance import RATE_KEYS, DeviceRates
from ..shapes import OptimizationProfile, Range, Serving, served_limits  # noqa: F401  (the registry's schema)
from .memory import (ASSUMPTIONS, GIB, MIB, SCORE_BYTES, AllocationStrategy, DeviceMemory, Shape, device_memory,
                     weight_bytes)

FlavorName = Literal["tensorrt", "tensorrt-rtx"]
RateKey = Literal[RATE_KEYS]
RTX_TARGETS = {"7.5": "SM75", "8.0": "SM80", "8.6": "SM86", "8.9": "SM89", "12.0": "SM120", "12.1": "SM121"}


def coverage_problems(limits: tuple[ShapeLimit, ...], max_sequence_length: int) -> list[str]:
    """Every batch the packer forms is covered by construction; what remains is a width no profile takes even as a
    single row (a gap between profiles, a profile whose batch or sequence minimum excludes it)."""
    packer = Packer(limits)
    uncovered = packer.uncovered_widths(max_sequence_length)
    if not uncovered:
        return []
    runs, start = [], uncovered[0]
    for prev, width in zip(uncovered, uncovered[1:] + [None]):
        if width != prev + 1:
            runs.append(f"{start}..{prev}" if prev != start else f"{start}")
            start = width
    shapes = "; ".join(limit.describe() for limit in limits)
    return [f"serving max_sequence_length {max_sequence_length} admits rows no profile covers: a batch of 1 row x "
            f"{uncovered[0]} tokens (uncovered widths {', '.join(runs)}; profiles {shapes})"]


class BuilderSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    optimization_level: int = 3
    workspace_gib: float = 4.0

    @field_validator("optimization_level")
    @classmethod
    def _level(cls, v: int) -> int:
        if not 0 <= v <= 5:
            raise ValueError(f"optimization_level must be 0..5, got {v}")
        return v


class Efficiency(BaseModel):
    """The share of the datasheet's peak a full-size engine achieves: memory (weights streamed) and compute
    (matmuls)."""
    model_config = ConfigDict(extra="forbid", frozen=True)
    memory: float
    compute: float

    @model_validator(mode="after")
    def _fractions(self) -> Efficiency:
        for name in ("memory", "compute"):
            if not 0 < getattr(self, name) <= 1:
                raise ValueError(f"efficiency {name} must be in (0, 1], got {getattr(self, name)}")
        return self


class Performance(BaseModel):
    """Datasheet figures of the card (dense, no sparsity) and the efficiency it is credited with: what the
    performance model (nvembed_trt.performance) and the GPU-timed stand-in encoder use. `source` says where each
    figure comes from."""
    model_config = ConfigDict(extra="forbid", frozen=True)
    memory_bandwidth_gb_s: float
    tflops: dict[RateKey, float]       # dense tensor-core peak per dtype; a dtype absent: the card has no such rate
    efficiency: Efficiency
    source: str

    @model_validator(mode="after")
    def _positive(self) -> Performance:
        bad = {k: v for k, v in self.tflops.items() if not v > 0}
        if not self.memory_bandwidth_gb_s > 0 or bad:
            raise ValueError(f"bandwidth and rates must be > 0, got {self.memory_bandwidth_gb_s} GB/s, {bad}")
        if not {"fp16", "bf16"} & set(self.tflops):
            raise ValueError(f"needs a 16-bit (fp16 or bf16) matmul rate in tflops, got rates for "
                             f"{sorted(self.tflops)}")
        return self

    def device_rates(self) -> DeviceRates:
        """What the card achieves: the datasheet peaks times the efficiency factors."""
        return DeviceRates(self.memory_bandwidth_gb_s * 1e9 * self.efficiency.memory,
                           {k: v * 1e12 * self.efficiency.compute for k, v in self.tflops.items()})


class GPUProfile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    description: str
    compute_capability: str
    memory_mib: int          # usable device memory: nvidia-smi --query-gpu=memory.total (MiB, ECC as shipped)
    flavors: list[FlavorName]
    serving: Serving
    builder: BuilderSettings = BuilderSettings()
    profiles: list[OptimizationProfile]
    performance: Performance | None = None   # for simulation and capacity planning

    @model_validator(mode="after")
    def _consistent(self) -> GPUProfile:
        if not self.profiles or not self.flavors:
            raise ValueError("needs at least one optimisation profile and one flavor")
        if "tensorrt-rtx" in self.flavors and self.compute_capability not in RTX_TARGETS:
            raise ValueError(f"compute capability {self.compute_capability} is not a TensorRT-RTX target "
                             f"({', '.join(RTX_TARGETS)})")
        largest_batch = max(p.batch.max for p in self.profiles)
        if largest_batch < self.serving.max_batch_size:
            raise ValueError(f"serving max_batch_size {self.serving.max_batch_size} exceeds the largest profile "
                             f"batch {largest_batch}: Triton would send batches no profile accepts")
        longest = max(p.sequence.max for p in self.profiles)
        if longest < self.serving.max_sequence_length:
            raise ValueError(f"serving max_sequence_length {self.serving.max_sequence_length} exceeds the longest "
                             f"profile sequence {longest}")
        if not any(p.covers(1, 2) for p in self.profiles):
            raise ValueError("no profile accepts a single short request (batch 1, sequence 2)")
        squeezed = [f"{p.name}: batch {p.batch.min}..{self.serving.max_batch_size} x sequence {p.sequence.min}.."
                     f"{p.sequence.max}" for p in self.profiles if p.batch.min > self.serving.max_batch_size]
        if squeezed:
            raise ValueError(f"the serving max_batch_size leaves no batch in profile(s) {'; '.join(squeezed)}")
        problems = coverage_problems(self.served_limits(), self.serving.max_sequence_length)
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def memory_gib(self) -> float:
        return self.memory_mib * MIB / GIB

    def served_limits(self) -> tuple[ShapeLimit, ...]:
        return served_limits(self.profiles, self.serving)

    def packer(self) -> Packer:
        return Packer(self.served_limits())

    def device_memory(self, cfg: NVEmbedConfig, weights: int, instances: int = 1,
                      token_states: bool = True) -> DeviceMemory:
        """What Triton allocates on this card for an engine built from this profile (engines/memory.py)."""
        shapes = [Shape(p.name, p.batch.max, p.sequence.max) for p in self.profiles]
        return device_memory(cfg, weights, shapes, int(self.builder.workspace_gib * GIB),
                             self.serving.execution_context_allocation_strategy, instances, token_states)

    def memory_problems(self, cfg: NVEmbedConfig, weights: int, instances: int = 1,
                        token_states: bool = True) -> list[str]:
        need = self.device_memory(cfg, weights, instances, token_states)
        if need.total <= self.memory_mib * MIB:
            return []
        return [f"serving on {self.name} under Triton needs {need.total / GIB:.1f} GiB ({need.describe()}), more "
                f"than the {self.name}'s {self.memory_gib:.2f} GiB usable"]


def engine_serving_parameters(meta: EngineMeta) -> dict[str, str]:
    """The Triton tensorrt backend model parameters for an engine (config.pbtxt `parameters`): the GPU profile's
    execution context allocation strategy, as engine.json's `serving` recorded it at build time."""
    return {"execution_context_allocation_strategy": meta.serving.execution_context_allocation_strategy}


def engine_weight_bytes(meta: EngineMeta) -> int:
    """The engine's weights on the GPU: the plan's bytes, or for a weight-stripped plan (a few MB) the ONNX weights
    it is refitted with."""
    if meta.weights.stripped:
        return int(meta.onnx_weight_bytes or meta.engine_bytes)
    return int(meta.engine_bytes)


def measured_context_bytes(meta: EngineMeta) -> list[int] | None:
    """TensorRT's device memory per profile (engine.json `device_memory`, recorded where the build could deserialise
    the plan), or None."""
    figures = (meta.device_memory or {}).get("per_profile_bytes")
    if not figures or len(figures) != len(meta.profiles):
        return None
    return [int(x) for x in figures]


def engine_device_memory(meta: EngineMeta, cfg: NVEmbedConfig, instances: int = 1, strategy: str | None = None,
                         score_bytes: int = SCORE_BYTES) -> DeviceMemory:
    """What Triton allocates for an engine (engine.json) with `instances` encoder instances: its weights, one
    context per profile (TensorRT's own figure where recorded, else the estimate plus the builder workspace) under
    `strategy` (default: the one the engine is served with), I/O buffers, the runtime reserve."""
    shapes = [Shape(p.name, p.batch.max, p.sequence.max) for p in meta.profiles]
    workspace = int(meta.builder.workspace_gib * GIB)
    strategy = strategy or engine_serving_parameters(meta)["execution_context_allocation_strategy"]
    return device_memory(cfg, engine_weight_bytes(meta), shapes, workspace, strategy, instances,
                         token_states="token_states" in meta.outputs, measured=measured_context_bytes(meta),
                         score_bytes=score_bytes)


def engine_memory_problems(meta: EngineMeta, cfg: NVEmbedConfig, instances: int = 1, strategy: str | None = None,
                           why_strategy: str = "") -> list[str]:
    """Whether an engine (engine.json) served by Triton with `instances` encoder instances fits its card (see
    engine_device_memory). `strategy` overrides the allocation strategy counted (what the chosen Triton release
    honours), `why_strategy` says why. Cards outside the registry are not checked (nothing says their memory)."""
    gpu = gpu_registry().get(meta.gpu.profile)
    if gpu is None:
        return []
    need = engine_device_memory(meta, cfg, instances, strategy)
    if need.total <= gpu.memory_mib * MIB:
        return []
    fix = "use fewer instances" if instances > 1 else "use a card with more memory or shorter profiles"
    return [f"{instances} encoder instance(s) of this engine need {need.total / GIB:.2f} GiB on {gpu.name} under "
            f"Triton ({need.describe()}{'; ' + why_strategy if why_strategy else ''}), more than its "
            f"{gpu.memory_gib:.2f} GiB usable: {fix}"]


def engine_memory_report(meta: EngineMeta, cfg: NVEmbedConfig, instances: int = 1,
                         strategy: str | None = None) -> dict:
    """The memory check's figures and assumptions, for repo.json: what is counted, the margin on the card, and the
    margin if attention scores took 8 bytes per element instead of 6 (estimates only)."""
    gpu = gpu_registry().get(meta.gpu.profile)
    need = engine_device_memory(meta, cfg, instances, strategy)
    report = {"counted": need.source, "strategy": need.strategy, "total_gib": round(need.total / GIB, 2),
              "breakdown": need.describe(), "assumptions": list(ASSUMPTIONS)}
    if gpu is not None:
        report |= {"gpu": gpu.name, "usable_gib": round(gpu.memory_gib, 2),
                   "margin_gib": round(gpu.memory_gib - need.total / GIB, 2)}
        if need.source == "estimate":
            worse = engine_device_memory(meta, cfg, instances, strategy, score_bytes=8)
            report["margin_gib_at_8_score_bytes"] = round(gpu.memory_gib - worse.total / GIB, 2)
    return report


@cache
def full_size_fp16_bytes() -> int:
    """The full-size NV-Embed-v2's weights in fp16, counted once (a meta-device model per card took 0.3 s each)."""
    return weight_bytes(NVEmbedConfig(), 2.0)


def parse_gpu(raw: dict, source: str, check_memory: bool = True) -> GPUProfile:
    try:
        gpu = GPUProfile.model_validate(raw)
    except ValidationError as exc:
        details = "; ".join(f"{'.'.join(str(x) for x in e['loc']) or 'profile'}: {e['msg']}" for e in exc.errors())
        raise InputError(f"GPU profile {source}: {details}") from exc
    if check_memory:  # sized for the full-size model in fp16
        problems = gpu.memory_problems(NVEmbedConfig(), full_size_fp16_bytes())
        if problems:
            raise InputError(f"GPU profile {source}: " + "; ".join(problems))
    return gpu


@cache
def gpu_registry() -> dict[str, GPUProfile]:
    found = {}
    for entry in sorted(resources.files(__package__).joinpath("gpus").iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".yaml"):
            gpu = parse_gpu(yaml.safe_load(entry.read_text()), entry.name)
            found[gpu.name] = gpu
    return found


def get_gpu(name: str) -> GPUProfile:
    registry = gpu_registry()
    if name not in registry:
        raise InputError(f"unknown GPU profile {name!r}; profiles: {', '.join(registry)}")
    return registry[name]
