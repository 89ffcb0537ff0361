"""The graph's inputs and outputs, from one source, so the exporter, the checks and later stages cannot drift."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from ..errors import InputError

Pooling = Literal["engine", "ensemble"]
POOLING_MODES: tuple[str, ...] = ("engine", "ensemble")
OPSETS = range(18, 21)            # 18..20; the Attention op (opset 23+) does not build in TensorRT-RTX
INDEX_DTYPE = np.int32            # one integer dtype for every input (what TensorRT wants)
BATCH, SEQUENCE = "batch", "sequence"


@dataclass(frozen=True)
class GraphSignature:
    pooling: Pooling
    hidden_size: int

    @property
    def inputs(self) -> dict[str, tuple[str, ...]]:
        names = ("input_ids", "attention_mask") + (("pool_mask",) if self.pooling == "engine" else ())
        return {name: (BATCH, SEQUENCE) for name in names}

    @property
    def outputs(self) -> dict[str, tuple[str | int, ...]]:
        if self.pooling == "engine":
            return {"embeddings": (BATCH, self.hidden_size)}     # L2-normalised, float32
        return {"token_states": (BATCH, SEQUENCE, self.hidden_size)}  # before pooling, float32

    def describe(self) -> dict:
        return {"pooling": self.pooling, "index_dtype": np.dtype(INDEX_DTYPE).name,
                "inputs": {k: list(v) for k, v in self.inputs.items()},
                "outputs": {k: list(v) for k, v in self.outputs.items()}, "output_dtype": "float32"}


def check_pooling(pooling: str) -> Pooling:
    if pooling not in POOLING_MODES:
        raise InputError(f"unknown pooling mode {pooling!r}; choose one of {', '.join(POOLING_MODES)}")
    return pooling  # type: ignore[return-value]


def check_opset(opset: int) -> int:
    if opset not in OPSETS:
        raise InputError(f"opset must be between {OPSETS.start} and {OPSETS.stop - 1}, got {opset}")
    return opset
