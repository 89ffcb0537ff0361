"""GPU profiles: one schema-checked YAML file per card (package data), loaded into one registry.

A profile says which builder flavors can target the card, the shapes Triton will send (serving), builder settings,
and optimisation profiles (batch and sequence min/opt/max). Loading checks every profile: opt within min..max, the
profiles cover the serving shapes, and the full-size NV-Embed-v2 in fp16 fits the card at each profile's largest
shape (engines/memory.py)."""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

from ..config import NVEmbedConfig
from ..errors import InputError
from .memory import GIB, fits, weight_bytes

FlavorName = Literal["tensorrt", "tensorrt-rtx"]
RTX_TARGETS = {"7.5": "SM75", "8.0": "SM80", "8.6": "SM86", "8.9": "SM89", "12.0": "SM120", "12.1": "SM121"}


class Range(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    min: int
    opt: int
    max: int

    @model_validator(mode="after")
    def _ordered(self) -> Range:
        if not 1 <= self.min <= self.max:
            raise ValueError(f"need 1 <= min <= max, got min {self.min}, max {self.max}")
        if not self.min <= self.opt <= self.max:
            raise ValueError(f"opt {self.opt} is outside min..max {self.min}..{self.max}")
        return self


class OptimizationProfile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    batch: Range
    sequence: Range

    def covers(self, batch: int, sequence: int) -> bool:
        return self.batch.min <= batch <= self.batch.max and self.sequence.min <= sequence <= self.sequence.max


class Serving(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    max_batch_size: int
    max_sequence_length: int


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


class GPUProfile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    description: str
    compute_capability: str
    memory_gib: float
    flavors: list[FlavorName]
    serving: Serving
    builder: BuilderSettings = BuilderSettings()
    profiles: list[OptimizationProfile]

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
        return self

    def memory_problems(self, cfg: NVEmbedConfig, weights: int) -> list[str]:
        problems = []
        for p in self.profiles:
            ok, need = fits(cfg, weights, p.batch.max, p.sequence.max, int(self.builder.workspace_gib * GIB),
                            int(self.memory_gib * GIB))
            if not ok:
                problems.append(f"profile {p.name} at batch {p.batch.max} x sequence {p.sequence.max} needs "
                                f"{need / GIB:.1f} GiB (weights {weights / GIB:.1f} GiB + activations + workspace), "
                                f"more than the {self.name}'s {self.memory_gib:g} GiB")
        return problems


def parse_gpu(raw: dict, source: str, check_memory: bool = True) -> GPUProfile:
    try:
        gpu = GPUProfile.model_validate(raw)
    except ValidationError as exc:
        details = "; ".join(f"{'.'.join(str(x) for x in e['loc']) or 'profile'}: {e['msg']}" for e in exc.errors())
        raise InputError(f"GPU profile {source}: {details}") from exc
    if check_memory:  # sized for the full-size model in fp16
        problems = gpu.memory_problems(NVEmbedConfig(), weight_bytes(NVEmbedConfig(), 2.0))
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
