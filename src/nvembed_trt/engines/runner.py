"""EngineRunner: load a plan built here, pick the optimisation profile for the input shape, run, return float32
embeddings. Refuses an engine built for another GPU or with another library version, saying which."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..errors import NVEmbedError
from ..pooling import masked_mean_l2_numpy
from ..tokenizer import TokenizedBatch
from .builder import ENGINE_JSON
from .flavors import FLAVORS, cuda_gpu, import_flavor


class EngineMismatchError(NVEmbedError):
    """The engine was built for another GPU or library version, or no profile covers a shape."""


class EngineRunner:
    def __init__(self, engine_dir: Path | str):
        import torch

        engine_dir = Path(engine_dir)
        self.meta = json.loads((engine_dir / ENGINE_JSON).read_text())
        flavor = FLAVORS[self.meta["flavor"]]
        self.trt = import_flavor(flavor)
        if self.trt.__version__ != self.meta["flavor_version"]:
            raise EngineMismatchError(f"{engine_dir} was built with {flavor.name} {self.meta['flavor_version']}, "
                                      f"this machine has {self.trt.__version__}: rebuild it")
        present = cuda_gpu()
        if present is None:
            raise EngineMismatchError("running an engine needs a CUDA GPU; this machine has none")
        built_for = self.meta["gpu"]["compute_capability"]
        if present[1] != built_for:
            raise EngineMismatchError(f"{engine_dir} was built for {self.meta['gpu']['profile']} (compute capability "
                                      f"{built_for}); this GPU is {present[0]} ({present[1]})")
        runtime = self.trt.Runtime(self.trt.Logger(self.trt.Logger.ERROR))
        self.engine = runtime.deserialize_cuda_engine((engine_dir / "model.plan").read_bytes())
        if self.engine is None:
            raise EngineMismatchError(f"{engine_dir / 'model.plan'} did not deserialise on {present[0]}")
        self.context = self.engine.create_execution_context()
        self.stream = torch.cuda.Stream()
        self.torch = torch

    def profile_for(self, batch: int, sequence: int) -> int:
        for index, profile in enumerate(self.meta["profiles"]):
            b, s = profile["batch"], profile["sequence"]
            if b["min"] <= batch <= b["max"] and s["min"] <= sequence <= s["max"]:
                return index
        covered = ", ".join(f"{p['name']}: batch {p['batch']['min']}..{p['batch']['max']} x sequence "
                            f"{p['sequence']['min']}..{p['sequence']['max']}" for p in self.meta["profiles"])
        raise EngineMismatchError(f"no profile covers batch {batch} x sequence {sequence} ({covered})")

    def run(self, batch: TokenizedBatch) -> np.ndarray:
        torch = self.torch
        rows, width = batch.input_ids.shape
        self.context.set_optimization_profile_async(self.profile_for(rows, width), self.stream.cuda_stream)
        tensors = {name: torch.from_numpy(getattr(batch, name).astype(np.int32)).cuda()
                   for name in self.meta["inputs"]}
        for name, tensor in tensors.items():
            self.context.set_input_shape(name, tuple(tensor.shape))
            self.context.set_tensor_address(name, tensor.data_ptr())
        out_name = self.meta["outputs"][0]
        out = torch.empty(tuple(self.context.get_tensor_shape(out_name)), dtype=torch.float32, device="cuda")
        self.context.set_tensor_address(out_name, out.data_ptr())
        if not self.context.execute_async_v3(self.stream.cuda_stream):
            raise NVEmbedError("TensorRT execution failed")
        self.stream.synchronize()
        result = out.cpu().numpy()
        return result if out_name == "embeddings" else masked_mean_l2_numpy(result, batch.pool_mask)
