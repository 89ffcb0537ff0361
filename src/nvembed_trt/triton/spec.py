"""One description of a generated repository; every config.pbtxt, the nv_embed model's settings and the serving front
door's limits are derived from it, so names, dtypes, dims, batch limits and shapes cannot drift apart.

The repository holds two models:
- `encoder`: the engine (platform tensorrt_plan) or the ONNX graph run by ONNX Runtime (python backend). Callers send
  it packed batches that one of its shapes covers (nvembed_trt.packing); it has no dynamic batcher of its own,
  because merging two covered batches can form a shape no engine profile accepts.
- `nv_embed`: the KServe face (TEXT + optional INPUT_TYPE / INSTRUCTION / TRUNCATE -> EMBEDDINGS), a python model
  that tokenises, packs rows from every request of its dynamic batch into covered batches, calls `encoder` through
  BLS and pools when the encoder emits token states. An ensemble cannot route by length; this model does.
The serving front door (nvembed_trt.serving) calls `encoder` directly with the same packing."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from functools import cache
from typing import Literal

from ..packing import Packer, ShapeLimit
from ..tokenizer.bounded import TRUNCATE_MODES

ENCODER, ENSEMBLE = "encoder", "nv_embed"
REQUEST_INPUTS = ("TEXT", "INPUT_TYPE", "INSTRUCTION", "TRUNCATE")   # all BYTES [1] per row; TEXT required
TOKEN_INPUTS = ("input_ids", "attention_mask", "pool_mask")          # INT32 [sequence] per row
OUTPUT = "EMBEDDINGS"
TOKENIZER_DIR = "tokenizer"                                          # nv_embed/1/tokenizer/
REPO_SPEC = "repo_spec"                                              # nv_embed's parameter: RepoSpec.to_json()
DEFAULT_MAX_INPUT_BYTES = 1 << 20
__all__ = ["ENCODER", "ENSEMBLE", "OUTPUT", "REQUEST_INPUTS", "RepoSpec", "TOKEN_INPUTS", "TRUNCATE_MODES"]

EncoderKind = Literal["onnxruntime", "tensorrt_plan", "tensorrt_python", "simulated"]
ENCODER_MODELS = {   # what runs the encoder, per kind (repo.json `encoder_runtime`)
    "tensorrt_plan": "Triton's tensorrt backend (platform tensorrt_plan)",
    "tensorrt_python": "python backend: nvembed_trt.triton.models.encoder_trt (EngineRunner on the plan)",
    "onnxruntime": "python backend: nvembed_trt.triton.models.encoder_onnx (ONNX Runtime on the graph)",
    "simulated": "python backend: nvembed_trt.triton.models.encoder_sim (SIMULATED: sleeps the GPU's time per batch)",
}


@dataclass(frozen=True)
class RepoSpec:
    """Serialised once (to_json): into repo.json's `spec` and nv_embed's config (its `repo_spec` parameter); read
    back with from_json, which checks every field (pydantic, unknown keys refused)."""

    __pydantic_config__ = {"extra": "forbid"}

    encoder_kind: EncoderKind
    pooling: Literal["engine", "ensemble"]   # where pooling happens: in the encoder graph, or after it (numpy)
    hidden_size: int
    max_length: int
    shape_limits: tuple[ShapeLimit, ...]     # what the encoder accepts: engine profiles, or one ONNX range
    max_batch_tokens: int                    # padded tokens per packed batch
    max_request_rows: int = 256              # TEXT rows per KServe request to nv_embed
    max_queue_delay_us: int = 0              # nv_embed's dynamic batcher: merges what queued while it was busy
    nv_embed_instances: int = 1
    encoder_instances: int = 1
    output_dtype: Literal["float32", "float16"] = "float32"
    onnx_providers: tuple[str, ...] = ("CPUExecutionProvider",)
    engine_profiles: tuple[str, ...] = ()    # the engine's optimisation profile indices, for the instance group
    max_input_bytes: int = DEFAULT_MAX_INPUT_BYTES
    encoder_parameters: dict[str, str] = field(default_factory=dict)  # tensorrt backend settings from engine.json

    @property
    def encoder_inputs(self) -> tuple[str, ...]:
        return TOKEN_INPUTS if self.pooling == "engine" else TOKEN_INPUTS[:2]

    @property
    def encoder_output(self) -> str:
        return "embeddings" if self.pooling == "engine" else "token_states"

    @property
    def encoder_output_dims(self) -> list[int]:
        return [self.hidden_size] if self.pooling == "engine" else [-1, self.hidden_size]

    @property
    def encoder_max_batch(self) -> int:
        return max(limit.max_batch for limit in self.shape_limits)

    @property
    def on_gpu(self) -> bool:
        on_gpu = self.encoder_kind in ("tensorrt_plan", "tensorrt_python")   # a simulated encoder needs no GPU
        return on_gpu or "CUDAExecutionProvider" in self.onnx_providers

    def packer(self) -> Packer:
        return Packer(self.shape_limits, self.max_batch_tokens)

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> RepoSpec:
        """Raises pydantic's ValidationError naming each field that does not fit."""
        return _spec_adapter().validate_python(data)


@cache
def _spec_adapter():
    from pydantic import TypeAdapter

    return TypeAdapter(RepoSpec)
