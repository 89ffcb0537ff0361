"""One description of a generated repository; every config.pbtxt is derived from it, so names, dtypes, dims and
max_batch_size cannot drift between the tokenizer, encoder, pooling and ensemble steps."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

TOKENIZER, ENCODER, POOLING, ENSEMBLE = "tokenizer", "encoder", "pooling", "nv_embed"
REQUEST_INPUTS = ("TEXT", "INPUT_TYPE", "INSTRUCTION", "TRUNCATE")   # all BYTES [1] per row; TEXT required
TOKEN_OUTPUTS = ("input_ids", "attention_mask", "pool_mask")         # INT32 [sequence] per row
OUTPUT = "EMBEDDINGS"
TRUNCATE_MODES = ("NONE", "END")

EncoderKind = Literal["onnxruntime", "tensorrt_plan"]


@dataclass(frozen=True)
class RepoSpec:
    encoder_kind: EncoderKind
    pooling: Literal["engine", "ensemble"]       # where pooling happens: in the encoder graph, or in the pooling step
    hidden_size: int
    max_batch_size: int
    max_length: int
    preferred_batch_sizes: tuple[int, ...] = (4, 8)
    max_queue_delay_us: int = 2000
    tokenizer_instances: int = 1
    encoder_instances: int = 1
    pooling_instances: int = 1
    output_dtype: Literal["float32", "float16"] = "float32"
    onnx_providers: tuple[str, ...] = ("CPUExecutionProvider",)
    engine_profiles: tuple[str, ...] = ()

    @property
    def encoder_inputs(self) -> tuple[str, ...]:
        return TOKEN_OUTPUTS if self.pooling == "engine" else TOKEN_OUTPUTS[:2]

    @property
    def encoder_output(self) -> str:
        return "embeddings" if self.pooling == "engine" else "token_states"

    @property
    def encoder_output_dims(self) -> list[int]:
        return [self.hidden_size] if self.pooling == "engine" else [-1, self.hidden_size]

    @property
    def on_gpu(self) -> bool:
        return self.encoder_kind == "tensorrt_plan" or "CUDAExecutionProvider" in self.onnx_providers
