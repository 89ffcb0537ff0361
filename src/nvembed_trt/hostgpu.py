"""The GPUs of this host, seen without a CUDA build of torch: one answer for build, ensure-engine, validate/bench
discovery, the engine inspector, the test suite's `gpu` marker and the doctor.

Two sources, in order:
- NVML through `nvidia-ml-py` (module `pynvml`, the `cuda` extra): in process, no subprocess; works where the driver's
  library is mounted but `nvidia-smi` is not on PATH;
- `nvidia-smi --query-gpu=index,name,compute_cap,memory.total,driver_version,uuid --format=csv,noheader,nounits`,
  which ships with every NVIDIA driver (compute_cap needs driver 510 or newer), plus the header of a plain
  `nvidia-smi` for the CUDA version the driver supports.

`CUDA_VISIBLE_DEVICES` is honoured as CUDA honours it (indices or GPU-UUID prefixes, in the order given; an empty
value or one that names no device hides them all), so "device 0" here is device 0 for TensorRT and torch.

Also here: whether the installed torch is a CUDA build, read from its files without importing it (the project's
install puts the CPU wheel in the venv; EngineRunner and the PyTorch reference on a GPU need the CUDA one).

Light on purpose: imports nothing beyond the standard library (pynvml only when present, inside `detect_gpus`)."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import re
import shutil
import subprocess
from dataclasses import asdict, dataclass, field
from functools import cache
from pathlib import Path

QUERY_FIELDS = ("index", "name", "compute_cap", "memory.total", "driver_version", "uuid")
SMI_TIMEOUT_S = 20
TORCH_CUDA_INDEX = "https://download.pytorch.org/whl/cu128"


@dataclass(frozen=True)
class GPU:
    index: int                  # the driver's index (nvidia-smi -i)
    name: str                   # "NVIDIA H100 80GB HBM3"
    compute_capability: str     # "9.0": the GPU profiles' compute_capability
    memory_mib: int             # memory.total, MiB: the GPU profiles' memory_mib
    uuid: str = ""


@dataclass(frozen=True)
class HostGPUs:
    gpus: tuple[GPU, ...] = ()
    driver_version: str | None = None
    cuda_version: str | None = None       # the newest CUDA this driver supports ("12.8")
    source: str = "none"                  # "nvml", "nvidia-smi" or "none"
    problem: str | None = None            # why no GPU is listed (no driver, a driver error, all hidden)
    hidden: tuple[int, ...] = field(default=())   # indices CUDA_VISIBLE_DEVICES hides

    def first(self) -> GPU | None:
        return self.gpus[0] if self.gpus else None

    def describe(self) -> dict:
        return {"gpus": [asdict(g) for g in self.gpus], "driver_version": self.driver_version,
                "cuda_version": self.cuda_version, "source": self.source, "problem": self.problem,
                "hidden_by_CUDA_VISIBLE_DEVICES": list(self.hidden)}


class SmiError(RuntimeError):
    """nvidia-smi is missing, failed, or printed what it should not."""


def _run_smi(args: list[str]) -> str:
    binary = shutil.which("nvidia-smi")
    if binary is None:
        raise SmiError("nvidia-smi is not on PATH (no NVIDIA driver installed, or a container started without "
                       "--gpus / the nvidia runtime)")
    try:
        done = subprocess.run([binary, *args], capture_output=True, text=True, timeout=SMI_TIMEOUT_S)
    except (OSError, subprocess.SubprocessError) as exc:
        raise SmiError(f"nvidia-smi did not run: {exc}") from exc
    if done.returncode != 0:
        said = " ".join((done.stdout + " " + done.stderr).split())[:300] or "no output"
        raise SmiError(f"nvidia-smi failed (exit {done.returncode}): {said}")
    return done.stdout


def parse_query(text: str) -> tuple[list[GPU], str | None]:
    """GPUs and the driver version from `nvidia-smi --query-gpu=<QUERY_FIELDS> --format=csv,noheader,nounits`."""
    gpus, driver = [], None
    for line in text.strip().splitlines():
        cells = [c.strip() for c in line.split(",")]
        if len(cells) != len(QUERY_FIELDS):
            raise SmiError(f"nvidia-smi printed {line!r}; expected {len(QUERY_FIELDS)} fields "
                           f"({','.join(QUERY_FIELDS)})")
        index, name, cc, memory, driver, uuid = cells
        if not re.fullmatch(r"\d+\.\d+", cc):
            raise SmiError(f"nvidia-smi gives no compute capability for {name} ({cc!r}): driver {driver} is older "
                           f"than 510, which added compute_cap; update the NVIDIA driver")
        try:
            gpus.append(GPU(int(index), name, cc, int(float(memory)), uuid))
        except ValueError as exc:
            raise SmiError(f"nvidia-smi printed {line!r}: {exc}") from exc
    return gpus, driver


def parse_cuda_version(header: str) -> str | None:
    """'CUDA Version: 12.8' from the table a plain `nvidia-smi` prints."""
    match = re.search(r"CUDA Version:\s*([\d.]+)", header)
    return match.group(1) if match else None


def _from_smi() -> HostGPUs:
    gpus, driver = parse_query(_run_smi([f"--query-gpu={','.join(QUERY_FIELDS)}",
                                         "--format=csv,noheader,nounits"]))
    try:
        cuda = parse_cuda_version(_run_smi([]))
    except SmiError:
        cuda = None
    return HostGPUs(tuple(gpus), driver, cuda, "nvidia-smi")


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _from_nvml(nvml) -> HostGPUs:
    nvml.nvmlInit()
    try:
        driver = _text(nvml.nvmlSystemGetDriverVersion())
        version = int(nvml.nvmlSystemGetCudaDriverVersion_v2())
        gpus = []
        for i in range(nvml.nvmlDeviceGetCount()):
            handle = nvml.nvmlDeviceGetHandleByIndex(i)
            major, minor = nvml.nvmlDeviceGetCudaComputeCapability(handle)
            gpus.append(GPU(i, _text(nvml.nvmlDeviceGetName(handle)), f"{major}.{minor}",
                            int(nvml.nvmlDeviceGetMemoryInfo(handle).total) // 2**20,
                            _text(nvml.nvmlDeviceGetUUID(handle))))
    finally:
        nvml.nvmlShutdown()
    return HostGPUs(tuple(gpus), driver, f"{version // 1000}.{version % 1000 // 10}", "nvml")


def visible(found: HostGPUs, env: str | None) -> HostGPUs:
    """Apply CUDA_VISIBLE_DEVICES (None: unset) the way CUDA does: entries in order, stopping at the first that
    names no device."""
    if env is None or not found.gpus:
        return found
    chosen: list[GPU] = []
    for entry in (e.strip() for e in env.split(",")):
        matches = [g for g in found.gpus if (entry.isdigit() and g.index == int(entry))
                   or (entry.startswith(("GPU-", "MIG-")) and g.uuid.startswith(entry))]
        if len(matches) != 1 or matches[0] in chosen:   # none, an ambiguous UUID prefix, or a repeat
            break
        chosen.append(matches[0])
    hidden = tuple(g.index for g in found.gpus if g not in chosen)
    problem = None if chosen else (f"CUDA_VISIBLE_DEVICES={env!r} hides every GPU "
                                   f"({', '.join(f'{g.index}: {g.name}' for g in found.gpus)})")
    return HostGPUs(tuple(chosen), found.driver_version, found.cuda_version, found.source, problem, hidden)


def _detect(use_nvml: bool) -> HostGPUs:
    nvml_problem = None
    if use_nvml and importlib.util.find_spec("pynvml") is not None:
        import pynvml

        try:
            return _from_nvml(pynvml)
        except Exception as exc:  # noqa: BLE001 - pynvml raises NVMLError_* subclasses; nvidia-smi is the fallback
            nvml_problem = f"NVML: {exc}"
    try:
        found = _from_smi()
    except SmiError as exc:
        return HostGPUs(problem="; ".join(p for p in (nvml_problem, str(exc)) if p))
    if not found.gpus:
        return HostGPUs(driver_version=found.driver_version, cuda_version=found.cuda_version, source=found.source,
                        problem="nvidia-smi lists no GPU")
    return found


@cache
def _cached(use_nvml: bool, env: str | None) -> HostGPUs:
    return visible(_detect(use_nvml), env)


def forget() -> None:
    """Drop the cached answer (tests that change PATH; a long-lived process after a driver change)."""
    _cached.cache_clear()


def detect_gpus(use_nvml: bool = True, fresh: bool = False) -> HostGPUs:
    """The GPUs CUDA programs started from here will see. Cached per process (nvidia-smi takes ~0.1-1 s);
    fresh=True asks again."""
    if fresh:
        forget()
    return _cached(use_nvml, os.environ.get("CUDA_VISIBLE_DEVICES"))


# --- torch ------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TorchBuild:
    version: str | None     # None: torch is not installed
    cuda: bool              # a CUDA build (libtorch_cuda.so beside it)

    def problem(self) -> str | None:
        """Why torch cannot run on a GPU here, with the command that fixes it; None when it can."""
        if self.version is None:
            return f"torch is not installed: pip install torch --index-url {TORCH_CUDA_INDEX}"
        if not self.cuda:
            base = self.version.split("+")[0]
            return (f"torch {self.version} is a CPU build (no libtorch_cuda): pip install --force-reinstall "
                    f"torch=={base} --index-url {TORCH_CUDA_INDEX} (or make install TORCH_INDEX={TORCH_CUDA_INDEX} "
                    f"in a fresh venv)")
        return None


def torch_build() -> TorchBuild:
    """Whether the installed torch is a CUDA build, from its files (importing torch takes seconds)."""
    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.submodule_search_locations:
        return TorchBuild(None, False)
    try:
        version = importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    lib = Path(list(spec.submodule_search_locations)[0]) / "lib"
    return TorchBuild(version, any(lib.glob("libtorch_cuda*.so*")))


def gpu_run_problem(needs_torch: bool, gpus: HostGPUs | None = None, torch: TorchBuild | None = None) -> str | None:
    """Why this host cannot run GPU work (None: it can): a GPU (TensorRT, the engine inspector, refit), and for work
    that moves tensors with torch on it (EngineRunner, the PyTorch reference on CUDA) also a CUDA build of torch."""
    gpus = gpus if gpus is not None else detect_gpus()
    if gpus.first() is None:
        return f"needs an NVIDIA GPU; none found ({gpus.problem})"
    problem = (torch if torch is not None else torch_build()).problem() if needs_torch else None
    return f"needs CUDA torch on {gpus.first().name}: {problem}" if problem else None
