"""The images a Kubernetes deployment runs beside NVIDIA's Triton image (which release serves an engine is
triton/images.py; the release table is ngc_triton.py): the TensorRT builder image of the same NGC release for the
pod's init step, and the docker commands that build and run the serving image."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from ..ngc_triton import ImageError


def builder_image(triton_image: str) -> str:
    """NVIDIA's TensorRT image of the same NGC release (same TensorRT as the Triton image: server#5812)."""
    match = re.match(r"^nvcr\.io/nvidia/tritonserver:(\d\d\.\d\d)-py3$", triton_image)
    if not match:
        raise ImageError(f"cannot derive the TensorRT builder image from {triton_image!r}: expected "
                         f"nvcr.io/nvidia/tritonserver:<YY.MM>-py3; pass the builder image explicitly")
    return f"nvcr.io/nvidia/tensorrt:{match.group(1)}-py3"


def ngc_commands(repo: Path | str, triton_image: str, tag: str = "nvembed-trt-serving",
                 dockerfile: str = "deploy/Dockerfile") -> list[str]:
    """The command lines that serve a repository in NVIDIA's Triton image with this package installed: build the
    image from deploy/Dockerfile (run from the project root), then run the front door + tritonserver in it."""
    repo = Path(repo).resolve()
    release = triton_image.rsplit(":", 1)[-1].removesuffix("-py3")
    image = f"{tag}:{release}"
    return [
        f"docker build --build-arg TRITON_IMAGE={triton_image} -t {image} -f {dockerfile} .",
        f"docker run --gpus all --rm --shm-size=1g -p 8080:8080 -v {shlex.quote(str(repo))}:/models:ro {image} "
        f"nvembed-trt serve --repo /models --host 0.0.0.0 --port 8080 "
        f"--tritonserver /opt/tritonserver/bin/tritonserver",
    ]
