"""The two builder flavors and every call in which they differ, in one place.

- tensorrt: TensorRT 10/11, the library Triton's tensorrt_plan backend loads. Builds on (and for) the GPU present.
- tensorrt-rtx: builds ahead of time on a CPU-only machine for listed compute capabilities (SM75..SM121, not
  Hopper); its timing cache is a no-op.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from ..console import note
from ..errors import NVEmbedError
from ..ngc_triton import tensorrt_install_hint
from ..hostgpu import detect_gpus
from .gpus import RTX_TARGETS, GPUProfile


class FlavorError(NVEmbedError):
    """A flavor is missing, or cannot build for the requested card on this machine."""


@dataclass(frozen=True)
class Flavor:
    name: str
    module: str
    install: str
    builds_without_gpu: bool
    timing_cache: bool


FLAVORS: dict[str, Flavor] = {f.name: f for f in (
    Flavor("tensorrt", "tensorrt", tensorrt_install_hint(), builds_without_gpu=False, timing_cache=True),
    Flavor("tensorrt-rtx", "tensorrt_rtx", "pip install tensorrt-rtx", builds_without_gpu=True, timing_cache=False),
)}


def import_flavor(flavor: Flavor) -> ModuleType:
    try:
        return importlib.import_module(flavor.module)
    except ImportError as exc:
        raise FlavorError(f"flavor {flavor.name} is not installed (module {flavor.module}): {flavor.install}") from exc


def installed(flavor: Flavor) -> bool:
    return importlib.util.find_spec(flavor.module) is not None


def cuda_gpu() -> tuple[str, str] | None:
    """(name, compute capability) of CUDA device 0 as CUDA programs started here see it, or None. Read through NVML
    or nvidia-smi (nvembed_trt.hostgpu): the venv's torch is the CPU wheel, so torch.cuda cannot answer this."""
    first = detect_gpus().first()
    return (first.name, first.compute_capability) if first else None


def resolve_flavor(requested: str, gpu: GPUProfile) -> Flavor:
    """auto: tensorrt where it is installed and this machine has the card; else tensorrt-rtx where it targets it."""
    if requested != "auto":
        if requested not in FLAVORS:
            raise FlavorError(f"unknown flavor {requested!r}; choose auto, {', '.join(FLAVORS)}")
        flavor = FLAVORS[requested]
        if flavor.name not in gpu.flavors:
            raise FlavorError(f"{gpu.name} (compute capability {gpu.compute_capability}) is not a {flavor.name} "
                              f"target; its flavors: {', '.join(gpu.flavors)}")
        return flavor
    present = cuda_gpu()
    if "tensorrt" in gpu.flavors and installed(FLAVORS["tensorrt"]) and present \
            and present[1] == gpu.compute_capability:
        return FLAVORS["tensorrt"]
    if "tensorrt-rtx" in gpu.flavors and installed(FLAVORS["tensorrt-rtx"]):
        if present and present[1] == gpu.compute_capability:   # the card is here, only TensorRT is missing
            note(f"--flavor auto: building a TensorRT-RTX plan for {gpu.name} because the tensorrt flavor is not "
                 f"installed; Triton's tensorrt_plan backend cannot load it. For a Triton engine: "
                 f"{FLAVORS['tensorrt'].install}")
        return FLAVORS["tensorrt-rtx"]
    wanted = " or ".join(f"{FLAVORS[f].name} ({FLAVORS[f].install})" for f in gpu.flavors)
    raise FlavorError(f"no installed flavor can build for {gpu.name} on this machine; needs {wanted}"
                      + ("" if present else "; TensorRT itself also needs the target GPU present"))


def check_machine(flavor: Flavor, gpu: GPUProfile) -> dict:
    """What the engine is built for; refuses a tensorrt build without the target GPU."""
    if flavor.builds_without_gpu:
        return {"aot_targets": [RTX_TARGETS[gpu.compute_capability]]}
    present = cuda_gpu()
    if present is None:
        raise FlavorError(f"flavor {flavor.name} builds on the GPU it targets and this machine has none; use "
                          f"--flavor tensorrt-rtx (ahead of time, on CPU) where {gpu.name} is one of its targets")
    if present[1] != gpu.compute_capability:
        raise FlavorError(f"this machine's GPU is {present[0]} (compute capability {present[1]}); profile {gpu.name} "
                          f"targets {gpu.compute_capability}")
    return {"gpu_name": present[0], "compute_capability": present[1]}


def network_flags(trt: ModuleType) -> int:
    flag = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    return 0 if flag is None else 1 << int(flag)  # TensorRT 11 and RTX: strongly typed by default or by flag


def set_targets(trt: ModuleType, config, flavor: Flavor, gpu: GPUProfile, hardware_compatible: bool) -> None:
    if flavor.builds_without_gpu:
        config.num_compute_capabilities = 1
        config.set_compute_capability(getattr(trt.ComputeCapability, RTX_TARGETS[gpu.compute_capability]), 0)
    elif hardware_compatible:
        config.hardware_compatibility_level = trt.HardwareCompatibilityLevel.AMPERE_PLUS


def hardware_compatibility_level(config, flavor: Flavor) -> str:
    """The plan's hardware compatibility level, by name. TensorRT-RTX has none (it builds for listed compute
    capabilities), and merely reading IBuilderConfig.hardware_compatibility_level there makes the library print
    "[TRT] [F] Thread context has not been set! Using global log stream." on stdout (checked with 1.7.1.116: the one
    source of that fatal-looking line on every build); so it is not read for that flavor."""
    if flavor.builds_without_gpu:
        return "NONE"
    return getattr(getattr(config, "hardware_compatibility_level", None), "name", "NONE")


def attach_timing_cache(config, flavor: Flavor, path: Path):
    """Load (or start) the persistent timing cache; returns it, or None where the flavor ignores caches."""
    if not flavor.timing_cache:
        return None
    cache = config.create_timing_cache(path.read_bytes() if path.is_file() else b"")
    config.set_timing_cache(cache, ignore_mismatch=False)
    return cache


def runnable_targets(present: tuple[str, str] | None, registry: dict[str, GPUProfile],
                     available: dict[str, bool] | None = None) -> tuple[list[tuple[GPUProfile, Flavor]], str]:
    """The (GPU profile, flavor) pairs this host can build for and run: profiles of the present GPU's compute
    capability, with a flavor that targets it and is installed. With none, the second item says why."""
    if present is None:
        return [], "no CUDA GPU on this machine"
    available = available if available is not None else {name: installed(f) for name, f in FLAVORS.items()}
    name, cc = present
    matching = [g for g in registry.values() if g.compute_capability == cc]
    if not matching:
        return [], f"no GPU profile for {name} (compute capability {cc}); profiles: {', '.join(registry)}"
    pairs = sorted(((g, FLAVORS[f]) for g in matching for f in g.flavors if available.get(f)),
                   key=lambda pair: pair[1].name != "tensorrt")   # Triton's flavor first where both are installed
    if not pairs:
        wanted = sorted({f for g in matching for f in g.flavors})
        return [], (f"{name} (compute capability {cc}) matches profile(s) {', '.join(g.name for g in matching)}, whose "
                    f"flavor(s) {', '.join(wanted)} are not installed: "
                    + "; ".join(FLAVORS[f].install for f in wanted))
    return pairs, ""
