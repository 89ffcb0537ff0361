"""The settings of an embed-corpus job (one pydantic model, extra="forbid") and the subset every worker gets."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, field_validator

from ..serving.compact import EMBEDDING_TYPES

Runtime = Literal["onnx", "engine", "torch", "triton"]
Truncate = Literal["END", "START", "NONE"]
EmbeddingType = Literal[EMBEDDING_TYPES]     # the front door's types (serving.compact), stored as it serves them
DEFAULT_MAX_LENGTH = 4096        # upstream encode()'s default
DEFAULT_BATCH_TOKENS = 16384     # TEI's --max-batch-tokens default (padded cost = longest row x rows)
DEFAULT_BATCH_ROWS = 256
DEFAULT_SHARD_ROWS = 4096


class CorpusSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    inputs: list[str]
    output: str
    model: str
    runtime: Runtime
    encoder: str | None = None
    url: str | None = None
    protocol: Literal["http", "grpc"] = "http"
    input_type: Literal["query", "passage"] | None = None
    instruction: str | None = None
    truncate: Truncate = "END"
    max_length: int | None = None        # None: 4096, or the encoder's own limit when lower
    batch_tokens: int | None = None      # None: the engine's smallest profile capacity, else 16,384
    batch_rows: int = DEFAULT_BATCH_ROWS
    shard_rows: int = DEFAULT_SHARD_ROWS
    workers: int | None = None           # None: one per GPU (engine), else the cluster's CPUs less one
    cpus_per_worker: float = 1.0
    device: Literal["cpu", "cuda"] = "cpu"
    dtype: Literal["float32", "float16", "bfloat16"] = "float32"
    text_column: str = "text"
    id_column: str = "id"
    embedding_type: EmbeddingType = "float"
    output_ranges: str | None = None     # int8 / uint8: a repository (or folder) holding output_ranges.json
    ray_address: str | None = None       # None: $RAY_ADDRESS (ray job submit), else a private local instance
    overwrite: bool = False

    @field_validator("truncate", mode="before")
    @classmethod
    def _upper(cls, value):
        return value.upper() if isinstance(value, str) else value

    @field_validator("batch_tokens", "batch_rows", "shard_rows", "workers")
    @classmethod
    def _positive(cls, value, info):
        if value is not None and value < 1:
            raise ValueError(f"{info.field_name} must be >= 1, got {value}")
        return value

    @field_validator("cpus_per_worker")
    @classmethod
    def _cpus(cls, value):
        if value <= 0:
            raise ValueError(f"cpus_per_worker must be > 0, got {value}")
        return value


class WorkerSpec(BaseModel):
    """What one worker actor needs, resolved on the driver (passed as a plain dict)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str
    runtime: Runtime
    encoder_path: str | None
    recipe: str | None          # the encoder's (its sidecar's); None for a deployment
    url: str | None
    protocol: str
    instruction: str            # resolved: "" for passages; a deployment gets it as INPUT_TYPE where it is standard
    truncate: Truncate
    max_length: int
    batch_tokens: int
    batch_rows: int
    threads: int
    device: str
    dtype: str
    output: str
    run: str                    # this run's tag, part of every shard name
    files: list[tuple[str, str]]  # (path, format) per input file index, for reject records
    embedding_type: EmbeddingType = "float"
    output_ranges: str | None = None  # the folder whose output_ranges.json scales int8 / uint8
