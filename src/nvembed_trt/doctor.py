"""`nvembed-trt doctor`: what this host has and lacks for each stage, each gap with the command that fixes it, and
for a GPU profile whether this host can build and serve it.

Stages and what they need:
- gpu: an NVIDIA GPU, its driver and CUDA (nvembed_trt.hostgpu: NVML or nvidia-smi, no torch); a CUDA build of
  torch where torch runs on it (EngineRunner, the PyTorch reference on CUDA, validate/bench, the acceptance script);
- build: TensorRT (`tensorrt`: Triton plans, built on the card itself) or TensorRT-RTX (ahead of time, RTX-class cards,
  not servable by Triton); the NGC Triton release that carries the installed TensorRT (a plan loads only there);
  free disk for a full-size build (fp32 export + recipe graph + plan);
- serve: ONNX Runtime's providers (the python-backend ONNX encoder), the tritonserver bundled with nvidia-pytriton
  (python backend only), a `--tritonserver PATH` and its backends (NGC layout: <root>/bin/tritonserver beside
  <root>/backends/), and docker for NVIDIA's image.

For `--gpu PROFILE` the verdict is: build = the tensorrt flavor is installed and a GPU of the profile's compute
capability is present (TensorRT builds on the card it targets); serve = such a GPU with at least the profile's memory,
and a Triton that can run the plan: a tritonserver with the tensorrt backend, the bundled server with the
python-backend TensorRT encoder (tensorrt + CUDA torch), or docker with an NGC image carrying the installed TensorRT."""

from __future__ import annotations

import importlib
import importlib.util
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .hostgpu import HostGPUs, detect_gpus, torch_build

FULL_SIZE_PARAMETERS = 7_851_016_192   # NV-Embed-v2 (KNOWLEDGE §1); checked against the preset in tests
MIN_DRIVER_CUDA = (13, 0)              # tensorrt-cu13 (TensorRT 11) needs a CUDA 13 driver
DOCKER_HINT = "install Docker and the NVIDIA Container Toolkit (nvidia-ctk) to run NVIDIA's Triton image"


@dataclass(frozen=True)
class Check:
    stage: str              # gpu | build | serve | profile
    item: str
    ok: bool | None         # None: information only
    found: str
    fix: str | None = None


@dataclass
class Diagnosis:
    checks: list[Check]
    facts: dict
    profile: dict | None = None            # the --gpu verdict: {"name", "build", "serve", "why": [...]}
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """With a profile: it can be built and served here. Without: no check failed."""
        if self.profile is not None:
            return bool(self.profile["build"] and self.profile["serve"])
        return all(c.ok is not False for c in self.checks)

    def to_json(self) -> dict:
        return {"ok": self.ok, "profile": self.profile, "facts": self.facts,
                "checks": [asdict(c) for c in self.checks]}

    def render(self) -> str:
        mark = {True: "ok  ", False: "MISS", None: "info"}
        lines = []
        for c in self.checks:
            lines.append(f"[{mark[c.ok]}] {c.stage:<7} {c.item:<24} {c.found}")
            if c.fix and c.ok is False:
                lines.append(f"{'':15}fix: {c.fix}")
        if self.profile is not None:
            p = self.profile
            lines.append(f"profile {p['name']}: build {'yes' if p['build'] else 'no'}, serve "
                         f"{'yes' if p['serve'] else 'no'}" + "".join(f"\n  - {w}" for w in p["why"]))
        return "\n".join(lines)


def module_version(module: str) -> str | None:
    """The installed version of a builder/runtime module, or None (importing it: the version it reports is the one
    that builds and loads plans)."""
    if importlib.util.find_spec(module) is None:
        return None
    try:
        return str(importlib.import_module(module).__version__)
    except Exception as exc:  # noqa: BLE001 - a broken install (missing libnvinfer) is reported, not raised
        return f"unimportable ({type(exc).__name__}: {str(exc)[:120]})"


def _at_least(version: str | None, want: tuple[int, int]) -> bool:
    try:
        return tuple(int(x) for x in str(version).split(".")[:2]) >= want
    except ValueError:
        return False


def _gpu_checks(gpus: HostGPUs) -> list[Check]:
    found = "; ".join(f"{g.index}: {g.name} (compute capability {g.compute_capability}, {g.memory_mib / 1024:.1f} GiB)"
                      for g in gpus.gpus)
    torch = torch_build()
    return [
        Check("gpu", "GPUs", bool(gpus.gpus), found or f"none ({gpus.problem})",
              "install the NVIDIA driver so that nvidia-smi lists the GPU; in a container start it with --gpus all "
              "(Kubernetes: request nvidia.com/gpu)"),
        Check("gpu", "driver / CUDA", _at_least(gpus.cuda_version, MIN_DRIVER_CUDA),
              f"driver {gpus.driver_version or '?'}, CUDA {gpus.cuda_version or '?'} (via {gpus.source})",
              f"a driver for CUDA {MIN_DRIVER_CUDA[0]}.{MIN_DRIVER_CUDA[1]} or newer (R580+): the tensorrt-cu13 wheels "
              f"are CUDA {MIN_DRIVER_CUDA[0]} builds"),
        Check("gpu", "torch", torch.problem() is None,
              f"torch {torch.version or 'not installed'} ({'CUDA' if torch.cuda else 'CPU'} build)", torch.problem()),
    ]


def _build_checks(trt: str | None, rtx: str | None, workdir: Path) -> tuple[list[Check], dict]:
    from .ngc_triton import image_table, tensorrt_install_hint

    table = image_table()
    listed = table.carrying(trt) if trt and trt[0].isdigit() else []
    image = table.tag(listed[-1]) if listed else None
    free = shutil.disk_usage(workdir).free
    need = FULL_SIZE_PARAMETERS * (4 + 2 + 2)      # fp32 export, fp16 recipe graph, fp16 plan
    checks = [
        Check("build", "tensorrt", bool(trt and trt[0].isdigit()), trt or "not installed", tensorrt_install_hint()),
        Check("build", "tensorrt-rtx", None, rtx or "not installed (optional: ahead-of-time plans for RTX-class "
              "cards, not servable by Triton; pip install tensorrt-rtx)"),
        Check("build", "NGC image for TensorRT", bool(image) if trt else None,
              image or (f"none listed for TensorRT {trt}" if trt else "no TensorRT installed"),
              f"a plan loads only in the TensorRT that built it: {tensorrt_install_hint()}"),
        Check("build", "disk", free >= need, f"{free / 1e9:.1f} GB free in {workdir.resolve()}; a full-size fp16 build "
              f"needs {need / 1e9:.1f} GB (fp32 export {4 * FULL_SIZE_PARAMETERS / 1e9:.1f} + recipe graph and plan "
              f"{2 * FULL_SIZE_PARAMETERS / 1e9:.1f} each)",
              f"free {(need - free) / 1e9:.1f} GB, or build elsewhere (nvembed-trt doctor --dir DIR checks another disk)"),
    ]
    return checks, {"ngc_image": image}


def tritonserver_backends(binary: Path) -> list[str]:
    """The backends beside a tritonserver in NVIDIA's layout (<root>/bin/tritonserver, <root>/backends/<name>/)."""
    root = binary.resolve().parent.parent / "backends"
    return sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []


def _serve_checks(tritonserver: Path | None) -> tuple[list[Check], dict]:
    from .triton.server import ServerError, pytriton_root

    checks, facts = [], {}
    ort = module_version("onnxruntime")
    providers = importlib.import_module("onnxruntime").get_available_providers() if ort and ort[0].isdigit() else []
    checks.append(Check("serve", "onnxruntime", "CUDAExecutionProvider" in providers,
                        f"{ort or 'not installed'}: {', '.join(providers) or 'no providers'}",
                        "pip install 'nvembed-trt[cuda]' (onnxruntime-gpu) for an ONNX encoder on the GPU"))
    try:
        bundled = pytriton_root() / "bin" / "tritonserver"
        facts["bundled_backends"] = tritonserver_backends(bundled)
        checks.append(Check("serve", "tritonserver (bundled)", bundled.is_file(),
                            f"{bundled} (backends: {', '.join(facts['bundled_backends'])}; no tensorrt backend: "
                            f"a TensorRT plan is served here through the python-backend TensorRT encoder)",
                            "pip install --no-deps nvidia-pytriton==0.7.0 (make install does)"))
    except ServerError as exc:
        facts["bundled_backends"] = []
        checks.append(Check("serve", "tritonserver (bundled)", False, "not installed", str(exc)))
    if tritonserver is not None:
        usable = tritonserver.is_file() and os.access(tritonserver, os.X_OK)
        facts["backends"] = tritonserver_backends(tritonserver) if usable else []
        checks.append(Check("serve", "tritonserver (--tritonserver)", usable and "tensorrt" in facts["backends"],
                            f"{tritonserver}: " + (f"backends {', '.join(facts['backends']) or 'none found'}"
                                                   if usable else "not an executable file"),
                            "point --tritonserver at an NGC-layout server (/opt/tritonserver/bin/tritonserver) whose "
                            "backends/ holds tensorrt"))
    docker = shutil.which("docker")
    facts["docker"] = docker
    checks.append(Check("serve", "docker", None, docker or f"not on PATH ({DOCKER_HINT})"))
    return checks, facts


def _verdict(profile_name: str, gpus: HostGPUs, trt_ok: bool, torch_ok: bool, facts: dict) -> dict:
    from .engines.gpus import get_gpu

    profile = get_gpu(profile_name)
    why = []
    matching = [g for g in gpus.gpus if g.compute_capability == profile.compute_capability]
    roomy = [g for g in matching if g.memory_mib >= profile.memory_mib]
    if not matching:
        why.append(f"no GPU of compute capability {profile.compute_capability} ({profile.description}) on this host"
                   + (f"; found {', '.join(f'{g.name} ({g.compute_capability})' for g in gpus.gpus)}"
                      if gpus.gpus else f": {gpus.problem}"))
    elif not roomy:
        why.append(f"{matching[0].name} has {matching[0].memory_mib} MiB; profile {profile.name} assumes "
                   f"{profile.memory_mib} MiB (its memory check would not hold)")
    if not trt_ok:
        why.append("the tensorrt flavor is not installed (TensorRT builds Triton plans on the card itself)")
    ways = []
    if "tensorrt" in facts.get("backends", []):
        ways.append("--tritonserver with the tensorrt backend")
    if trt_ok and torch_ok and "python" in facts.get("bundled_backends", []):
        ways.append("the bundled tritonserver with the python-backend TensorRT encoder")
    if facts.get("docker") and facts.get("ngc_image"):
        ways.append(f"docker with {facts['ngc_image']}")
    if not ways:
        why.append("no Triton here can run a TensorRT plan: pass --tritonserver PATH (an NGC-layout server with the "
                   "tensorrt backend), or install tensorrt and CUDA torch for the bundled server's python-backend "
                   "encoder, or docker with the NGC image carrying the installed TensorRT")
    build = bool(matching) and trt_ok
    serve = bool(roomy) and bool(ways)
    return {"name": profile.name, "compute_capability": profile.compute_capability, "build": build, "serve": serve,
            "serve_with": ways, "why": why}


def diagnose(profile: str | None = None, tritonserver: Path | str | None = None,
             workdir: Path | str = ".") -> Diagnosis:
    """Every check at once (nothing raises for a missing piece); `profile` adds the build/serve verdict."""
    gpus = detect_gpus(fresh=True)
    trt, rtx = module_version("tensorrt"), module_version("tensorrt_rtx")
    checks = _gpu_checks(gpus)
    build, build_facts = _build_checks(trt, rtx, Path(workdir))
    serve, serve_facts = _serve_checks(Path(tritonserver) if tritonserver else None)
    checks += build + serve
    facts = {"gpus": gpus.describe(), "torch": asdict(torch_build()), "tensorrt": trt, "tensorrt_rtx": rtx,
             **build_facts, **serve_facts}
    verdict = None
    if profile is not None:
        verdict = _verdict(profile, gpus, bool(trt and trt[0].isdigit()), torch_build().problem() is None, facts)
    return Diagnosis(checks, facts, verdict)
