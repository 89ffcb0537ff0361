"""A TensorRT engine behind the encoder seam: EngineRunner on this host's GPU, loaded when first used, one engine at
a time (loading one unloads the other: validate and bench walk many engines)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..artifacts.engine import EngineMeta
from ..encoding import PackedBatch
from .base import encode_packed

_LOADED: list[TensorRTEncoder] = []   # the one encoder whose plan is on the GPU now


class TensorRTEncoder:
    """`folder` holds model.plan; `meta` its engine.json (default: read from the folder; a repository's copy of the
    plan comes with repo.json's). `max_batch`: take at most this many rows per call (within the served limits)."""

    name = "engine"

    def __init__(self, folder: Path | str, meta: EngineMeta | None = None, max_batch: int | None = None,
                 device: int = 0):
        self.folder, self.device = Path(folder), device
        self.meta = meta or EngineMeta.read(self.folder)
        self.recipe, self.inputs = self.meta.recipe, tuple(self.meta.inputs)
        self.shape_limits = self.meta.shape_limits(max_batch)
        self._runner = None

    @property
    def plan(self) -> Path:
        return self.folder / "model.plan"

    @property
    def runner(self):
        if self._runner is None:
            from ..engines.runner import EngineRunner

            for other in list(_LOADED):
                other.close()
            self._runner = EngineRunner(self.folder, self.device, self.meta)
            _LOADED.append(self)
        return self._runner

    def run(self, arrays: dict[str, np.ndarray]) -> np.ndarray:
        return self.runner.run_arrays(arrays)

    def encode(self, batch: PackedBatch) -> np.ndarray:
        return encode_packed(self, batch)

    def close(self) -> None:
        if self._runner is None:
            return
        self._runner = None
        if self in _LOADED:
            _LOADED.remove(self)
        try:
            import torch

            torch.cuda.empty_cache()
        except Exception:  # noqa: BLE001 - freeing is best effort; the next load reports real errors
            pass
