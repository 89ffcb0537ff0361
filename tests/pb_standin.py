"""A strict stand-in for Triton's `triton_python_backend_utils` (python_backend's pb_stub.cc bindings and its
triton_python_backend_utils.py), for unit tests of the python-backend models where the real module needs a running
server and, for a tensorrt_plan encoder, a GPU.

Strict where the real API is: keyword names and required arguments of InferenceRequest / PreferredMemory /
InferenceResponse as pb_stub.cc binds them, and `Tensor.as_numpy()` raising python_backend's own message for a tensor
in GPU memory. A BLS request goes to a model registered with `serve_model`; a model registered with `on_gpu=True`
(what a tensorrt_plan model is) answers with GPU-resident tensors unless the request asked for CPU memory
(`preferred_memory=PreferredMemory(TRITONSERVER_MEMORY_CPU, 0)`), exactly as python_backend does.

    pb = install(monkeypatch)              # importable as triton_python_backend_utils while the test runs
    pb.serve_model("encoder", fn, inputs={"input_ids": np.int32, ...}, outputs=("embeddings",), on_gpu=True)
"""

from __future__ import annotations

import enum
import sys
import types
from collections.abc import Callable

import numpy as np


class TritonModelException(Exception):
    """python_backend's PythonBackendException as Python sees it."""


class MemoryType(enum.Enum):
    TRITONSERVER_MEMORY_GPU = 0
    TRITONSERVER_MEMORY_CPU = 1
    DEFAULT = 2


TRITONSERVER_MEMORY_GPU = MemoryType.TRITONSERVER_MEMORY_GPU
TRITONSERVER_MEMORY_CPU = MemoryType.TRITONSERVER_MEMORY_CPU


class PreferredMemory:
    def __init__(self, preferred_memory_type: MemoryType, preferred_device_id: int = 0):
        if not isinstance(preferred_memory_type, MemoryType):
            raise TypeError(f"PreferredMemory(): incompatible preferred_memory_type {preferred_memory_type!r}")
        self.preferred_memory_type, self.preferred_device_id = preferred_memory_type, int(preferred_device_id)


class TritonError:
    UNKNOWN, INTERNAL, NOT_FOUND, INVALID_ARG, UNAVAILABLE, UNSUPPORTED, ALREADY_EXISTS = range(7)

    def __init__(self, message: str, code: int = INTERNAL):
        self._message, self._code = str(message), code

    def message(self) -> str:
        return self._message

    def code(self) -> int:
        return self._code


class Tensor:
    def __init__(self, name: str, array: np.ndarray):
        if not isinstance(array, np.ndarray):
            raise TypeError(f"Tensor {name!r}: expected a numpy array, got {type(array).__name__}")
        self._name, self._array, self._on_gpu = name, array, False

    def name(self) -> str:
        return self._name

    def is_cpu(self) -> bool:
        return not self._on_gpu

    def shape(self) -> list[int]:
        return list(self._array.shape)

    def as_numpy(self) -> np.ndarray:
        if self._on_gpu:
            raise TritonModelException("Tensor is stored in GPU and cannot be converted to NumPy.")
        return self._array


def _gpu_tensor(name: str, array: np.ndarray) -> Tensor:
    tensor = Tensor(name, array)
    tensor._on_gpu = True
    return tensor


class InferenceResponse:
    def __init__(self, output_tensors: list | None = None, error: TritonError | None = None):
        self._outputs, self._error = list(output_tensors or []), error

    def output_tensors(self) -> list[Tensor]:
        return self._outputs

    def has_error(self) -> bool:
        return self._error is not None

    def error(self) -> TritonError | None:
        return self._error


class _Model:
    def __init__(self, fn: Callable, inputs: dict[str, type], outputs: tuple[str, ...], on_gpu: bool):
        self.fn, self.inputs, self.outputs, self.on_gpu = fn, inputs, outputs, on_gpu
        self.calls: list[dict[str, np.ndarray]] = []


_MODELS: dict[str, _Model] = {}


class InferenceRequest:
    def __init__(self, *, inputs: list[Tensor], requested_output_names: list[str], model_name: str,
                 request_id: str = "", correlation_id: int = 0, model_version: int = -1, flags: int = 0,
                 timeout: int = 0, preferred_memory: PreferredMemory | None = None):
        preferred_memory = preferred_memory or PreferredMemory(MemoryType.DEFAULT, 0)
        if not isinstance(preferred_memory, PreferredMemory):
            raise TypeError("InferenceRequest(): preferred_memory must be a PreferredMemory")
        self._inputs, self._requested = list(inputs), list(requested_output_names)
        self.model_name, self.preferred_memory = model_name, preferred_memory

    def inputs(self) -> list[Tensor]:
        return self._inputs

    def requested_output_names(self) -> list[str]:
        return self._requested

    def exec(self, decoupled: bool = False) -> InferenceResponse:
        model = _MODELS.get(self.model_name)
        if model is None:
            return InferenceResponse(error=TritonError(f"Request for unknown model: '{self.model_name}' is not found",
                                                       TritonError.NOT_FOUND))
        arrays = {t.name(): t.as_numpy() for t in self._inputs}
        problems = [f"input {n}: expected {d.__name__}, got {arrays[n].dtype if n in arrays else 'nothing'}"
                    for n, d in model.inputs.items() if n not in arrays or arrays[n].dtype != d]
        problems += [f"unexpected input {n}" for n in arrays if n not in model.inputs]
        problems += [f"unknown output {n}" for n in self._requested if n not in model.outputs]
        if problems:
            return InferenceResponse(error=TritonError("; ".join(problems), TritonError.INVALID_ARG))
        model.calls.append(arrays)
        result = model.fn(arrays)                   # exceptions propagate, as a failing BLS call's do
        cpu = self.preferred_memory.preferred_memory_type == MemoryType.TRITONSERVER_MEMORY_CPU
        make = _gpu_tensor if model.on_gpu and not cpu else Tensor
        return InferenceResponse([make(n, result[n]) for n in self._requested if n in result])


def get_input_tensor_by_name(request: InferenceRequest, name: str) -> Tensor | None:
    return next((t for t in request.inputs() if t.name() == name), None)


def get_output_tensor_by_name(response: InferenceResponse, name: str) -> Tensor | None:
    return next((t for t in response.output_tensors() if t.name() == name), None)


class Logger:
    lines: list[tuple[str, str]] = []

    @staticmethod
    def log_error(message: str) -> None:
        Logger.lines.append(("error", message))

    @staticmethod
    def log_warn(message: str) -> None:
        Logger.lines.append(("warn", message))

    @staticmethod
    def log_info(message: str) -> None:
        Logger.lines.append(("info", message))


def serve_model(name: str, fn: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]], inputs: dict[str, type],
                outputs: tuple[str, ...], on_gpu: bool = False) -> _Model:
    """Register a model BLS requests can reach: fn maps input arrays to {output name: array}."""
    _MODELS[name] = _Model(fn, inputs, outputs, on_gpu)
    return _MODELS[name]


def install(monkeypatch) -> types.ModuleType:
    """Make this module importable as `triton_python_backend_utils` for the test (undone by monkeypatch)."""
    _MODELS.clear()
    Logger.lines = []
    module = sys.modules[__name__]
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", module)
    return module
