"""Device memory of an engine served by Triton, counted the way Triton's TensorRT backend allocates it.

Triton's tensorrt backend (triton-inference-server/tensorrt_backend, instance_state.cc) creates, per model instance,
one IExecutionContext for every optimisation profile listed in the instance group, binds each context to its
profile once, and allocates the instance's I/O buffers at the largest shape over those profiles. The engine (its
weights) is deserialised once per device and shared by the instances. What each context allocates is set by the
model parameter `execution_context_allocation_strategy` (tensorrt_backend README, "Parameters"):

- STATIC (Triton's default): every context allocates the maximum device memory across *all* profiles;
- ON_PROFILE_CHANGE: a context allocates for its profile when that profile is selected; Triton's contexts never
  change profile, so each holds exactly its own profile's memory.

TensorRT's own figure wins where it exists: a build on a machine that can deserialise the plan (a GPU) records
`ICudaEngine.get_device_memory_size_for_profile_v2(i)` per profile in engine.json (`device_memory`), the memory an
execution context bound to that profile allocates (activations and tactic scratch); the check then counts that per
context (its own profile under ON_PROFILE_CHANGE, the largest under STATIC) instead of the estimate below.

The estimate, where no GPU measured it (ASSUMPTIONS states it in full): per context, the activations at the
profile's largest shape plus the builder's workspace limit (tactic scratch lives in the context's device memory and
is bounded by it). Attention scores are counted as materialised (B x heads x T x T) at SCORE_BYTES = 6 bytes per
element, an fp32 softmax plus one fp16 copy: it assumes the fp32 cast feeding the softmax is fused into it. If the
cast's output and the softmax's are both live (8 bytes per element) every context needs more: +8 GiB for the H100's
long-passage context (2 x 32 heads x 8192^2 x 2 bytes) and +1 GiB for its short-query one, and the A10's margin falls
from 0.77 to 0.15 GiB (+0.5 and +0.125 GiB). A fused attention kernel (what TensorRT often picks) needs far less. Everything is in GiB (2**30 bytes)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from ..checkpoint.loader import expected_shapes, meta_model
from ..config import NVEmbedConfig
from ..shapes import AllocationStrategy  # noqa: F401  (defined with the profiles)

GIB = 1024**3
MIB = 1024**2
ACTIVATION_BYTES = 2      # fp16 activations between the fp32 islands
SCORE_BYTES = 4 + 2       # fp32 softmax scores plus their fp16 copy
INPUT_TENSORS = 3         # input_ids, attention_mask, pool_mask (INT32)
RUNTIME_RESERVE_GIB = 1.0  # CUDA context, cuBLAS/cuDNN handles, TensorRT runtime, Triton's CUDA memory pool
ASSUMPTIONS = (
    "weights: the plan's bytes, held once per GPU (a weight-stripped plan: the ONNX weights it is refitted with)",
    f"activations: {ACTIVATION_BYTES} bytes per element between the fp32 islands, per token 8 x hidden + 3 x MLP + "
    f"4 x latent inner dim",
    f"attention scores materialised, {SCORE_BYTES} bytes per element (fp32 softmax + fp16 copy; the fp32 cast fused "
    f"into the softmax): 8 if both are live, far less with a fused attention kernel",
    "per context: activations at its profile's largest shape + the builder's workspace limit (or TensorRT's own "
    "figure per profile where engine.json records it)",
    "Triton: one execution context per listed profile per instance; STATIC contexts each hold the largest profile's "
    "memory, ON_PROFILE_CHANGE their own (honoured from Triton 25.05 on)",
    f"I/O buffers at the largest shape per instance; {RUNTIME_RESERVE_GIB:g} GiB runtime reserve (CUDA context, "
    f"cuBLAS, TensorRT runtime, Triton's memory pool)",
)

STRATEGIES: tuple[str, ...] = ("STATIC", "ON_PROFILE_CHANGE")


def weight_bytes(cfg: NVEmbedConfig, bytes_per_param: float = 2.0) -> int:
    params = sum(math.prod(s) for s in expected_shapes(meta_model(cfg)).values())
    return int(params * bytes_per_param)


def activation_bytes(cfg: NVEmbedConfig, batch: int, sequence: int, score_bytes: int = SCORE_BYTES) -> int:
    b, la = cfg.body, cfg.latent
    per_token = ACTIVATION_BYTES * (8 * b.hidden_size + 3 * b.intermediate_size + 4 * la.inner_dim)
    scores = batch * b.num_heads * sequence * sequence * score_bytes
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
    source: str = "estimate"              # or "TensorRT" (engine.json's device_memory, measured on the GPU)

    @property
    def per_instance(self) -> int:
        return sum(c.total for c in self.contexts) + self.io

    @property
    def total(self) -> int:
        return self.weights + self.instances * self.per_instance + self.reserve

    def describe(self) -> str:
        contexts = " + ".join(f"{c.profile} {c.total / GIB:.1f}" for c in self.contexts)
        what = "TensorRT's own figure per profile" if self.source == "TensorRT" else "incl. workspace"
        return (f"weights {self.weights / GIB:.1f} GiB + {self.instances} instance(s) x ({len(self.contexts)} "
                f"contexts, {self.strategy}: {contexts} GiB {what}; I/O buffers {self.io / GIB:.2f} GiB) "
                f"+ runtime reserve {self.reserve / GIB:.1f} GiB")


def io_bytes(cfg: NVEmbedConfig, shapes: Sequence[Shape], token_states: bool) -> int:
    """Triton allocates each input and output once per instance at its largest size over the profiles: INT32
    inputs of batch x sequence, and FP32 token states (batch x sequence x hidden) or embeddings (batch x hidden)."""
    tokens = max(s.batch * s.sequence for s in shapes)
    inputs = INPUT_TENSORS * 4 * tokens
    output = 4 * cfg.body.hidden_size * (tokens if token_states else max(s.batch for s in shapes))
    return inputs + output


def context_memory(cfg: NVEmbedConfig, shapes: Sequence[Shape], workspace: int, strategy: str,
                   measured: Sequence[int] | None = None, score_bytes: int = SCORE_BYTES) -> tuple[ContextMemory, ...]:
    """One context per profile. `measured`: TensorRT's device memory per profile (activations and scratch: no
    workspace is added to it); otherwise the estimate plus the workspace limit."""
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown execution_context_allocation_strategy {strategy!r}; choose {', '.join(STRATEGIES)}")
    if measured is not None and len(measured) != len(shapes):
        raise ValueError(f"{len(measured)} measured figures for {len(shapes)} profiles")
    own = list(measured) if measured is not None else [activation_bytes(cfg, s.batch, s.sequence, score_bytes)
                                                       for s in shapes]
    scratch = 0 if measured is not None else workspace
    largest = max(own)
    return tuple(ContextMemory(s.name, largest if strategy == "STATIC" else mine, scratch)
                 for s, mine in zip(shapes, own))


def device_memory(cfg: NVEmbedConfig, weights: int, shapes: Sequence[Shape], workspace: int, strategy: str,
                  instances: int = 1, token_states: bool = True,
                  reserve: int = int(RUNTIME_RESERVE_GIB * GIB), measured: Sequence[int] | None = None,
                  score_bytes: int = SCORE_BYTES) -> DeviceMemory:
    if not shapes:
        raise ValueError("an engine needs at least one optimisation profile")
    return DeviceMemory(weights, context_memory(cfg, shapes, workspace, strategy, measured, score_bytes),
                        io_bytes(cfg, shapes, token_states), instances, reserve, strategy,
                        "TensorRT" if measured is not None else "estimate")

