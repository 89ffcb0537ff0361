"""The shapes an engine accepts, one rule: optimisation profiles (batch and sequence min/opt/max), the serving limits
a GPU profile sets on them, and `served_limits`, the shapes the served path may send (what the packer packs for).

The GPU registry (engines/gpus.py), engine.json (artifacts/engine.py), the Triton repository, corpus jobs, validate
and bench all ask this module; none of them intersects profiles and limits on its own. Light: pydantic and the
standard library (it is imported by the serving image through repo.json's model)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, model_validator

from .packing import ShapeLimit

# Triton tensorrt backend model parameter; ON_PROFILE_CHANGE: each profile's context holds only its own memory
AllocationStrategy = Literal["STATIC", "ON_PROFILE_CHANGE"]


class Range(BaseModel):
    """min <= opt <= max, all >= 1: TensorRT tunes kernels for opt."""

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
    """One TensorRT optimisation profile: the batch and sequence ranges one execution context takes."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    batch: Range
    sequence: Range

    def covers(self, batch: int, sequence: int) -> bool:
        return self.batch.min <= batch <= self.batch.max and self.sequence.min <= sequence <= self.sequence.max

    def describe(self) -> str:
        return (f"{self.name}: batch {self.batch.min}..{self.batch.max} x sequence "
                f"{self.sequence.min}..{self.sequence.max}")


class Serving(BaseModel):
    """What Triton will send an engine (at most max_batch_size rows of at most max_sequence_length tokens) and how
    it allocates the engine's execution contexts."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    max_batch_size: int
    max_sequence_length: int
    execution_context_allocation_strategy: AllocationStrategy = "ON_PROFILE_CHANGE"


class ShapeError(ValueError):
    """No profile is left to take a batch under the limits asked for."""


def served_limits(profiles: Sequence[OptimizationProfile], serving: Serving,
                  max_batch: int | None = None) -> tuple[ShapeLimit, ...]:
    """The shapes the served path may send: each profile capped at the serving batch and sequence maxima (and at
    `max_batch` rows when the caller takes fewer, e.g. a corpus job's --batch-rows). A profile the caps leave no batch
    or no width in is left out; if none is left, ShapeError names the profiles and the caps."""
    rows = min(serving.max_batch_size, max_batch) if max_batch is not None else serving.max_batch_size
    limits = tuple(ShapeLimit(p.name, min(p.batch.max, rows), min(p.sequence.max, serving.max_sequence_length),
                              p.batch.min, p.sequence.min) for p in profiles)
    kept = tuple(s for s in limits if s.min_batch <= s.max_batch and s.min_sequence <= s.max_sequence)
    if not kept:
        raise ShapeError(f"no optimisation profile takes a batch of at most {rows} rows and "
                         f"{serving.max_sequence_length} tokens ({'; '.join(p.describe() for p in profiles)})")
    return kept


def profile_index(profiles: Sequence[OptimizationProfile], batch: int, sequence: int) -> int | None:
    """The first profile covering batch x sequence (what TensorRT is told to use), or None."""
    return next((i for i, p in enumerate(profiles) if p.covers(batch, sequence)), None)
