"""TensorRT engines per GPU: strongly typed builds with profiles, timing cache and metadata; a Python runner."""

from .builder import BuildSettings, EngineBuildError, EngineResult, engine_from_onnx
from .flavors import FLAVORS, FlavorError
from .gpus import GPUProfile, get_gpu, gpu_registry

__all__ = ["BuildSettings", "EngineBuildError", "EngineResult", "FLAVORS", "FlavorError", "GPUProfile",
           "engine_from_onnx", "get_gpu", "gpu_registry"]
