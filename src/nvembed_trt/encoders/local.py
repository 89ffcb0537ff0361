"""Encoders in this process on the CPU (or torch's GPU): the PyTorch reference, and an ONNX graph run by ONNX Runtime
or by ONNX's reference evaluator (the bf16 recipe: ONNX Runtime's CPU provider has no bf16 kernels)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..artifacts.graph import DTYPE_RECIPES
from ..encoding import INPUT_NAMES, PackedBatch
from ..packing import ShapeLimit
from .base import ANY_SHAPE, encode_packed

ONNX_RUNTIMES = ("onnxruntime", "onnx-reference")


class TorchEncoder:
    """The PyTorch reference (an nvembed_trt.embedder.Embedder: its device, dtype and autocast)."""

    name = "torch"
    inputs = INPUT_NAMES

    def __init__(self, embedder, limit: ShapeLimit = ANY_SHAPE):
        self.embedder, self.shape_limits = embedder, (limit,)
        self.recipe = DTYPE_RECIPES[str(embedder.model.dtype).removeprefix("torch.")]

    @classmethod
    def from_source(cls, source, device: str = "cpu", dtype: str = "float32") -> TorchEncoder:
        """The reference of a resolved model (source.resolve_model), loaded quietly."""
        from ..embedder import Embedder

        return cls(Embedder.from_source(source, device, dtype, progress=False))

    def run(self, arrays: dict[str, np.ndarray]) -> np.ndarray:
        from ..tokenizer import TokenizedBatch

        return self.embedder.forward(TokenizedBatch(*(arrays[n].astype(np.int64) for n in INPUT_NAMES)))

    def encode(self, batch: PackedBatch) -> np.ndarray:
        return encode_packed(self, batch)

    def close(self) -> None:
        pass


class OnnxEncoder:
    """An export or recipe graph (either pooling mode) on ONNX Runtime (`threads`: intra-op threads, None: ORT's
    default; `providers`: ONNX Runtime's) or on ONNX's reference evaluator."""

    name = "onnx"

    def __init__(self, path: Path | str, recipe: str, runtime: str = "onnxruntime", threads: int | None = None,
                 providers: tuple[str, ...] = ("CPUExecutionProvider",), limit: ShapeLimit = ANY_SHAPE,
                 spinning: bool = True):
        import onnx

        self.path, self.recipe, self.shape_limits = Path(path), recipe, (limit,)
        graph = onnx.load(str(self.path), load_external_data=False).graph   # the graph only: weights stay on disk
        self.inputs = tuple(i.name for i in graph.input)
        if runtime == "onnxruntime":
            import onnxruntime as ort

            options = ort.SessionOptions()
            options.log_severity_level = 3
            if threads is not None:
                options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
            if not spinning:      # as the served encoder: no busy-waiting between batches
                options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            session = ort.InferenceSession(str(self.path), options, providers=list(providers))
            self._run = lambda feeds: session.run(None, feeds)[0]
        elif runtime == "onnx-reference":
            from onnx.reference import ReferenceEvaluator

            evaluator = ReferenceEvaluator(str(self.path))
            self._run = lambda feeds: np.asarray(evaluator.run(None, feeds)[0], dtype=np.float32)
        else:
            raise ValueError(f"ONNX runtime must be one of {', '.join(ONNX_RUNTIMES)}, got {runtime!r}")

    def run(self, arrays: dict[str, np.ndarray]) -> np.ndarray:
        return self._run({name: arrays[name].astype(np.int32, copy=False) for name in self.inputs})

    def encode(self, batch: PackedBatch) -> np.ndarray:
        return encode_packed(self, batch)

    def close(self) -> None:
        pass
