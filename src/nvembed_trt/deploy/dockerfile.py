"""Dockerfiles for the two images a deployment uses, rendered from one template each:

- serving: NVIDIA's Triton image (picked from the engine's TensorRT, triton/images.py) + this package installed with
  --no-deps + exactly the `serving` extra's requirements (no torch, onnx or modelopt: the front door, the Triton
  python-backend models and the tokenizer import without them);
- builder: NVIDIA's TensorRT image of the same NGC release (same TensorRT) + the whole package, for the init step
  that builds an engine on the node's GPU.

Both are built from the project root (they COPY pyproject.toml, README.md and src/). deploy/Dockerfile and
deploy/Dockerfile.builder are these renders for the newest release in the table; `deploy k8s` writes renders for
the repository's own image beside its manifests."""

from __future__ import annotations

import importlib.metadata
import re
import shlex
from pathlib import Path

from ..ngc_triton import default_image
from .images import builder_image

SOURCE_ROOT = Path(__file__).resolve().parents[3]
# the serving extra as the contract states it; used only when neither pyproject.toml nor the installed metadata has it
CONTRACT_SERVING = ("numpy>=1.26,<2", "tokenizers>=0.19", "pydantic>=2.6", "pyyaml>=6", "tritonclient[http,grpc]>=2.40",
                    "fastapi", "uvicorn", "prometheus-client", "orjson")
COPIED = ("pyproject.toml", "README.md", "src")


def _from_pyproject(path: Path) -> tuple[str, ...] | None:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        return None
    if not path.is_file():
        return None
    extras = tomllib.loads(path.read_text()).get("project", {}).get("optional-dependencies", {})
    return tuple(extras["serving"]) if "serving" in extras else None


def _from_metadata() -> tuple[str, ...] | None:
    try:
        requires = importlib.metadata.requires("nvembed-trt") or []
    except importlib.metadata.PackageNotFoundError:
        return None
    found = [r.split(";")[0].strip() for r in requires if re.search(r"extra\s*==\s*['\"]serving['\"]", r)]
    return tuple(found) or None


def serving_requirements(pyproject: Path = SOURCE_ROOT / "pyproject.toml") -> tuple[tuple[str, ...], str]:
    """(requirements, where they came from): pyproject.toml's `serving` extra, else the installed metadata's, else
    the front-door contract's list."""
    found = _from_pyproject(pyproject)
    if found is not None:
        return found, f"{pyproject.name} [project.optional-dependencies].serving"
    found = _from_metadata()
    if found is not None:
        return found, "installed nvembed-trt metadata, extra 'serving'"
    return CONTRACT_SERVING, "the serving contract (no `serving` extra in pyproject.toml yet)"


def onnxruntime_requirement(gpu: bool, pyproject: Path = SOURCE_ROOT / "pyproject.toml") -> str:
    """The ONNX Runtime an ONNX Runtime encoder needs in the serving image, as pyproject.toml states it: the `cuda`
    extra's onnxruntime-gpu for a GPU encoder, the core dependency's CPU build otherwise."""
    name = "onnxruntime-gpu" if gpu else "onnxruntime"
    try:
        import tomllib

        project = tomllib.loads(pyproject.read_text()).get("project", {})
        found = [r for r in [*project.get("dependencies", []), *project.get("optional-dependencies", {}).get("cuda", [])]
                 if re.match(rf"^{re.escape(name)}\s*(?:[<>=!~;]|$)", r)]
    except (ImportError, OSError):
        found = []
    return found[0] if found else name


def _quoted(requirements: tuple[str, ...]) -> str:
    return " ".join(shlex.quote(r) for r in requirements)


def render_serving(triton_image: str | None = None, requirements: tuple[str, ...] | None = None,
                   dockerfile: str = "deploy/Dockerfile", extra_requirements: tuple[str, ...] = ()) -> str:
    """extra_requirements: baked in as EXTRA_REQUIREMENTS' default (an ONNX Runtime encoder's onnxruntime)."""
    triton_image = triton_image or default_image()
    requirements = requirements or serving_requirements()[0]
    release = triton_image.rsplit(":", 1)[-1].removesuffix("-py3")
    return f"""\
# NVIDIA's Triton image with nvembed-trt's serving path (front door, Triton python-backend models, tokenizer).
# Rendered by nvembed_trt.deploy.dockerfile; build from the project root:
#   docker build -t nvembed-trt-serving:{release} -f {dockerfile} .
# The base must carry the TensorRT that built the engine (repo.json "triton_image"; `nvembed-trt deploy images`).
ARG TRITON_IMAGE={triton_image}
FROM ${{TRITON_IMAGE}}
ENV PIP_BREAK_SYSTEM_PACKAGES=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY pyproject.toml README.md /opt/nvembed-trt/
COPY src /opt/nvembed-trt/src
# the package without its dependencies (no torch, onnx, modelopt), then exactly the `serving` extra's requirements
RUN python3 -m pip install --no-deps /opt/nvembed-trt \\
 && python3 -m pip install {_quoted(requirements)}
# ONNX Runtime encoders (python backend) need onnxruntime (CPU) or onnxruntime-gpu; a TensorRT plan needs neither.
# onnxruntime-gpu from PyPI is built for CUDA 12: on a CUDA 13 image its provider fails to load, which the encoder
# refuses at load (it never falls back to the CPU silently).
ARG EXTRA_REQUIREMENTS="{' '.join(extra_requirements)}"
RUN if [ -n "$EXTRA_REQUIREMENTS" ]; then python3 -m pip install $EXTRA_REQUIREMENTS; fi
EXPOSE 8080 8000 8001 8002
CMD ["nvembed-trt", "serve", "--repo", "/models", "--host", "0.0.0.0", "--port", "8080", \\
     "--tritonserver", "/opt/tritonserver/bin/tritonserver"]
"""


def render_builder(triton_image: str | None = None, dockerfile: str = "deploy/Dockerfile.builder") -> str:
    triton_image = triton_image or default_image()
    tensorrt_image = builder_image(triton_image)
    release = triton_image.rsplit(":", 1)[-1].removesuffix("-py3")
    return f"""\
# NVIDIA's TensorRT image of the same NGC release as {triton_image} (the same TensorRT, so the engine it
# builds loads in that Triton) with the whole nvembed-trt package: the deployment's init step builds the engine on
# the node's GPU with it. Rendered by nvembed_trt.deploy.dockerfile; build from the project root:
#   docker build -t nvembed-trt-builder:{release} -f {dockerfile} .
ARG TENSORRT_IMAGE={tensorrt_image}
FROM ${{TENSORRT_IMAGE}}
ENV PIP_BREAK_SYSTEM_PACKAGES=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY pyproject.toml README.md /opt/nvembed-trt/
COPY src /opt/nvembed-trt/src
# torch only sizes the model on the meta device here: the CPU wheel is enough (TORCH_INDEX picks an index)
ARG TORCH_INDEX=""
RUN python3 -m pip install torch==2.13.0 ${{TORCH_INDEX:+--index-url $TORCH_INDEX}} \\
 && python3 -m pip install /opt/nvembed-trt
"""


if __name__ == "__main__":   # python -m nvembed_trt.deploy.dockerfile: re-render deploy/Dockerfile(.builder)
    for name, text in (("Dockerfile", render_serving()), ("Dockerfile.builder", render_builder())):
        (SOURCE_ROOT / "deploy" / name).write_text(text)
        print(f"wrote {SOURCE_ROOT / 'deploy' / name}")
