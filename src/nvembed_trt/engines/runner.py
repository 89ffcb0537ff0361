"""EngineRunner: load a plan built here, pick the optimisation profile for the input shape, run, return float32
embeddings. Refuses an engine built for another GPU or with another library version, saying which, except where the
engine was built to allow it:

- version-compatible (BuilderFlag.VERSION_COMPATIBLE, tensorrt flavor): runs on the same or a newer TensorRT of the
  same major version; the plan carries a lean runtime, so the runtime must allow host code
  (`runtime.engine_host_code_allowed = True`), and Triton needs `--backend-config=tensorrt,version-compatible=true`;
- hardware-compatible (HardwareCompatibilityLevel.AMPERE_PLUS, tensorrt flavor): runs on any GPU of compute
  capability 8.0 or newer.

`engine_compatibility` is the decision, a pure function of engine.json, the TensorRT version and the GPU present;
validate/bench discovery and the runner share it."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ..artifacts.engine import EngineMeta
from ..errors import NVEmbedError
from ..pooling import masked_mean_l2_numpy
from ..tokenizer import TokenizedBatch
from .flavors import FLAVORS, cuda_gpu, import_flavor


class EngineMismatchError(NVEmbedError):
    """The engine was built for another GPU or library version, or no profile covers a shape."""


HARDWARE_COMPATIBLE_MIN_CC = (8, 0)   # AMPERE_PLUS
VERSION_COMPATIBLE_BACKEND_CONFIG = "tensorrt,version-compatible=true"


def _version(text: str) -> tuple[int, ...]:
    match = re.match(r"^(\d+(?:\.\d+)*)", str(text).strip())
    return tuple(int(x) for x in match.group(1).split(".")) if match else ()


def _cc(text: str) -> tuple[int, int]:
    major, _, minor = str(text).partition(".")
    return int(major), int(minor or 0)


def engine_compatibility(meta: EngineMeta, runtime_version: str | None, present_cc: str | None,
                         gpu_name: str = "this GPU") -> str | None:
    """None when this TensorRT (`runtime_version`; None: not installed) and this GPU (compute capability
    `present_cc`; None: no GPU) can run the engine described by engine.json `meta`; otherwise the reason why not."""
    flavor, built = meta.flavor, meta.flavor_version
    where = f"{meta.gpu.profile} (compute capability {meta.gpu.compute_capability})"
    if runtime_version is None:
        return f"flavor {flavor} is not installed ({FLAVORS[flavor].install})"
    if meta.version_compatible:
        have, need = _version(runtime_version), _version(built)
        if not have or not need or have[0] != need[0] or have < need:
            return (f"built version-compatible with {flavor} {built}: runs on {flavor} {need[0] if need else '?'}.x "
                    f"from {built} on, this machine has {runtime_version}")
    elif runtime_version != built:
        return (f"built with {flavor} {built}, this machine has {runtime_version}: rebuild it (or build it with "
                f"--version-compatible)")
    if present_cc is None:
        return "running an engine needs a CUDA GPU; this machine has none"
    if meta.hardware_compatible:
        if _cc(present_cc) < HARDWARE_COMPATIBLE_MIN_CC:
            return (f"built hardware-compatible (Ampere and newer, compute capability >= 8.0); {gpu_name} is "
                    f"{present_cc}")
    elif present_cc != meta.gpu.compute_capability:
        return f"built for {where}; {gpu_name} is compute capability {present_cc}"
    return None


def triton_backend_config(meta: EngineMeta) -> list[str]:
    """The tritonserver --backend-config items an engine needs (repo.json `server.backend_config`)."""
    return [VERSION_COMPATIBLE_BACKEND_CONFIG] if meta.version_compatible else []


class EngineRunner:
    """`engine_dir` holds model.plan; `meta`: its engine.json (default: read from engine_dir; a Triton repository
    carries it in repo.json). `device`: the CUDA device (index among the visible ones) the plan is loaded on and run
    on."""

    def __init__(self, engine_dir: Path | str, device: int = 0, meta: EngineMeta | None = None):
        from ..hostgpu import gpu_run_problem

        engine_dir = Path(engine_dir)
        self.meta = meta or EngineMeta.read(engine_dir)
        flavor = FLAVORS[self.meta.flavor]
        self.trt = import_flavor(flavor)
        present = cuda_gpu()
        problem = engine_compatibility(self.meta, self.trt.__version__, present[1] if present else None,
                                       present[0] if present else "this GPU")
        if problem:
            raise EngineMismatchError(f"{engine_dir}: {problem}")
        problem = gpu_run_problem(needs_torch=True)   # device buffers and the stream are torch's
        if problem:
            raise EngineMismatchError(f"{engine_dir}: EngineRunner {problem}")
        import torch

        self.torch, self.device = torch, torch.device("cuda", device)
        with torch.cuda.device(self.device):
            runtime = self.trt.Runtime(self.trt.Logger(self.trt.Logger.ERROR))
            if triton_backend_config(self.meta):  # a version-compatible plan runs its embedded lean runtime
                runtime.engine_host_code_allowed = True
            self.engine = runtime.deserialize_cuda_engine((engine_dir / "model.plan").read_bytes())
            if self.engine is None:
                raise EngineMismatchError(f"{engine_dir / 'model.plan'} did not deserialise on {present[0]}")
            self.context = self.engine.create_execution_context()
            self.stream = torch.cuda.Stream(self.device)

    def profile_for(self, batch: int, sequence: int) -> int:
        index = self.meta.profile_index(batch, sequence)
        if index is None:
            covered = "; ".join(p.describe() for p in self.meta.profiles)
            raise EngineMismatchError(f"no profile covers batch {batch} x sequence {sequence} ({covered})")
        return index

    def run_arrays(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        """The engine's first output (embeddings [B, H], or token_states [B, T, H]) as float32 on the host, for the
        inputs engine.json names ([B, T] integer arrays; one of the engine's profiles must cover B x T)."""
        torch = self.torch
        rows, width = feeds[self.meta.inputs[0]].shape
        with torch.cuda.device(self.device):
            self.context.set_optimization_profile_async(self.profile_for(rows, width), self.stream.cuda_stream)
            tensors = {name: torch.from_numpy(np.ascontiguousarray(feeds[name], dtype=np.int32)).to(self.device)
                       for name in self.meta.inputs}
            for name, tensor in tensors.items():
                self.context.set_input_shape(name, tuple(tensor.shape))
                self.context.set_tensor_address(name, tensor.data_ptr())
            out_name = self.meta.outputs[0]
            out = torch.empty(tuple(self.context.get_tensor_shape(out_name)), dtype=torch.float32, device=self.device)
            self.context.set_tensor_address(out_name, out.data_ptr())
            torch.cuda.current_stream(self.device).synchronize()   # the inputs' copies, made on the default stream
            if not self.context.execute_async_v3(self.stream.cuda_stream):
                raise NVEmbedError("TensorRT execution failed")
            self.stream.synchronize()
            return out.cpu().numpy()

    def run(self, batch: TokenizedBatch) -> np.ndarray:
        result = self.run_arrays({name: getattr(batch, name) for name in self.meta.inputs})
        return result if self.meta.pooled else masked_mean_l2_numpy(result, batch.pool_mask)
