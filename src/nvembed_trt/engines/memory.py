"""Device memory of an engine served by Triton, counted the way Triton's TensorRT backend allocates it.

Triton's tensorrt backend (triton-inference-server/tensorrt_backend, instance_state.cc) creates, per model instance,
one IExecutionContext for every optimisation profile listed in the instance group, binds each context to its
profile once, and allocates the instance's I/O buffers at the largest shape over those profiles. The engine (its
weights) is deserialised once per device and shared by the instances. What each context allocates is set by the
model parameter `execution_context_allocation_strategy` (tensorrt_backend README, "Parameters"):

- STATIC (Triton's default): every context allocates the maximum device memory across *all* profiles;
- ON_PROFILE_CHANGE: a context allocates for its profile when that profile is selected; Triton's contexts never
  change profile, so each holds exactly its own profile's memory.

Per context we count the activations at the profile's largest shape plus the builder's workspace limit (tactic
scratch lives in the context's device memory and is bounded by it). Conservative on purpose: attention scores are
counted as materialised (B x heads x T x T, fp32 softmax plus its fp16 copy), as the ONNX graph spells them,
although TensorRT often fuses attention and needs far less. Everything is in GiB (2**30 bytes)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from ..checkpoint.loader import expected_shapes, meta_model
from ..config import NVEmbedConfig

GIB = 1024**3
MIB = 1024**2
ACTIVATION_BYTES = 2      # fp16 activations between the fp32 islands
SCORE_BYTES = 4 + 2       # fp32 softmax scores plus their fp16 copy
INPUT_TENSORS = 3         # input_ids, attention_mask, pool_mask (INT32)
RUNTIME_RESERVE_GIB = 1.0  # CUDA context, cuBLAS/cuDNN handles, TensorRT runtime, Triton's CUDA memory pool

AllocationStrategy = Literal["STATIC", "ON_PROFILE_CHANGE"]
STRATEGIES: tuple[str, ...] = ("STATIC", "ON_PROFILE_CHANGE")


def weight_bytes(cfg: NVEmbedConfig, bytes_per_param: float = 2.0) -> int:
    params = sum(math.prod(s) for s in expected_shapes(meta_model(cfg)).values())
    return int(params * bytes_per_param)


def activation_bytes(cfg: NVEmbedConfig, batch: int, sequence: int) -> int:
    b, la = cfg.body, cfg.latent
    per_token = ACTIVATION_BYTES * (8 * b.hidden_size + 3 * b.intermediate_size + 4 * la.inner_dim)
    scores = batch * b.num_heads * sequence * sequence * SCORE_BYTES
    return batch * sequence * per_token + scores


@dataclass(frozen=True)
class Shape:
    """An optimisation profile's largest shape."""

    name: str
    batch: int
    sequence: int


@dataclass(frozen=True)
class ContextMemory:
    profile: str
    activations: int
    workspace: int

    @property
    def total(self) -> int:
        return self.activations + self.workspace


@dataclass(frozen=True)
class DeviceMemory:
    """What one GPU holds for the encoder model under Triton."""

    weights: int
    contexts: tuple[ContextMemory, ...]   # per instance: one per listed profile
    io: int                               # per instance: input and output buffers at the largest shape
    instances: int
    reserve: int
    strategy: str

    @property
    def per_instance(self) -> int:
        return sum(c.total for c in self.contexts) + self.io

    @property
    def total(self) -> int:
        return self.weights + self.instances * self.per_instance + self.reserve

    def describe(self) -> str:
        contexts = " + ".join(f"{c.profile} {c.total / GIB:.1f}" for c in self.contexts)
        return (f"weights {self.weights / GIB:.1f} GiB + {self.instances} instance(s) x ({len(self.contexts)} "
                f"contexts, {self.strategy}: {contexts} GiB incl. workspace; I/O buffers {self.io / GIB:.2f} GiB) "
                f"+ runtime reserve {self.reserve / GIB:.1f} GiB")


def io_bytes(cfg: NVEmbedConfig, shapes: Sequence[Shape], token_states: bool) -> int:
    """Triton allocates each input and output once per instance at its largest size over the profiles: INT32
    inputs of batch x sequence, and FP32 token states (batch x sequence x hidden) or embeddings (batch x hidden)."""
    tokens = max(s.batch * s.sequence for s in shapes)
    inputs = INPUT_TENSORS * 4 * tokens
    output = 4 * cfg.body.hidden_size * (tokens if token_states else max(s.batch for s in shapes))
    return inputs + output


def context_memory(cfg: NVEmbedConfig, shapes: Sequence[Shape], workspace: int,
                   strategy: str) -> tuple[ContextMemory, ...]:
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown execution_context_allocation_strategy {strategy!r}; choose {', '.join(STRATEGIES)}")
    own = [activation_bytes(cfg, s.batch, s.sequence) for s in shapes]
    largest = max(own)
    return tuple(ContextMemory(s.name, largest if strategy == "STATIC" else mine, workspace)
                 for s, mine in zip(shapes, own))


def device_memory(cfg: NVEmbedConfig, weights: int, shapes: Sequence[Shape], workspace: int, strategy: str,
                  instances: int = 1, token_states: bool = True,
                  reserve: int = int(RUNTIME_RESERVE_GIB * GIB)) -> DeviceMemory:
    if not shapes:
        raise ValueError("an engine needs at least one optimisation profile")
    return DeviceMemory(weights, context_memory(cfg, shapes, workspace, strategy),
                        io_bytes(cfg, shapes, token_states), instances, reserve, strategy)

