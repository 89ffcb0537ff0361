"""Which NVIDIA Triton image can serve an engine: a table of NGC Triton releases and the TensorRT each carries
(ngc_triton.yaml beside this file, with its source and per-row evidence), and the checks run when a repository is
made from an engine folder:

- a TensorRT-RTX plan is refused as a `tensorrt_plan` encoder (Triton's tensorrt backend links TensorRT's nvinfer,
  which cannot load TensorRT-RTX plans);
- a weight-stripped plan (`build --strip-weights`) is refused: Triton's tensorrt backend deserialises the plan as it
  is and never refits, so it would serve an engine without weights; `nvembed-trt refit` fills it first;
- a TensorRT plan gets the newest NGC release whose TensorRT equals the version that built it (all four parts: a
  plan only loads in the TensorRT that built it), or a clear refusal naming the versions the table knows.

The table also records which tensorrt_backend model parameters each release honours (`tensorrt_backend_settings`:
the first release that reads a value, and what older ones do instead); `honoured_setting` answers for the release
picked, so the memory check counts what that image will really allocate.

`NVEMBED_TRT_TRITON_IMAGE` overrides the pick (an image you built or checked yourself); repo.json records which.

Light on purpose (yaml, pydantic): it is imported when a repository is made and inside the serving image."""

from __future__ import annotations

import os
import re
import shlex
from functools import cache
from importlib import resources
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from ..errors import InputError

OVERRIDE_ENV = "NVEMBED_TRT_TRITON_IMAGE"
_VERSION = re.compile(r"^\d+\.\d+\.\d+\.\d+$")


class ImageError(InputError):
    """No NVIDIA Triton image in the table can serve this engine, or the engine is not one Triton can load."""


class Release(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    release: str
    tensorrt: str
    evidence: str

    @field_validator("release")
    @classmethod
    def _release(cls, v: str) -> str:
        if not re.fullmatch(r"\d\d\.\d\d", v):
            raise ValueError(f"release must be YY.MM, got {v!r}")
        return v

    @field_validator("tensorrt")
    @classmethod
    def _tensorrt(cls, v: str) -> str:
        if not _VERSION.match(v):
            raise ValueError(f"tensorrt must be a four-part version (major.minor.patch.build), got {v!r}")
        return v


class BackendSetting(BaseModel):
    """A tensorrt_backend model parameter value and the first NGC release whose backend reads it; older releases
    ignore it and behave as `otherwise`."""
    model_config = ConfigDict(extra="forbid", frozen=True)
    parameter: str
    value: str
    since: str
    otherwise: str
    evidence: str

    @field_validator("since")
    @classmethod
    def _since(cls, v: str) -> str:
        return Release._release(v)


class ImageTable(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    image: str
    suffix: str
    tensorrt_backend_settings: list[BackendSetting] = []
    releases: list[Release]

    def tag(self, release: Release) -> str:
        return f"{self.image}:{release.release}{self.suffix}"

    def carrying(self, tensorrt: str) -> list[Release]:
        """The releases whose image carries exactly this TensorRT (all four parts), oldest first."""
        built = normalise_version(tensorrt)
        return [r for r in self.releases if r.tensorrt == built]

    def by_release(self, name: str) -> Release:
        for r in self.releases:
            if r.release == name:
                return r
        raise ImageError(f"NGC Triton release {name!r} is not in the table; releases: "
                         f"{', '.join(r.release for r in self.releases)}")


@cache
def image_table() -> ImageTable:
    raw = yaml.safe_load(resources.files(__package__).joinpath("ngc_triton.yaml").read_text())
    try:
        table = ImageTable.model_validate(raw)
    except ValidationError as exc:
        raise InputError(f"ngc_triton.yaml: {exc}") from exc
    names = [r.release for r in table.releases]
    if names != sorted(set(names)):
        raise InputError(f"ngc_triton.yaml: releases must be unique and in order, got {names}")
    return table


def release_of(image: str) -> str | None:
    """The NGC release (YY.MM) of a Triton image tag, e.g. nvcr.io/nvidia/tritonserver:25.04-py3 -> 25.04; None when
    the tag does not say (an image built elsewhere)."""
    match = re.search(r":(\d\d\.\d\d)(?:-|$)", image)
    return match.group(1) if match else None


def honoured_setting(release: str | None, parameter: str, value: str) -> tuple[str, str | None]:
    """(the value the release's tensorrt_backend acts on, why it differs from `value` or None). A release older than
    the table's `since` for that value, or an unknown release, acts on `otherwise`."""
    for setting in image_table().tensorrt_backend_settings:
        if (setting.parameter, setting.value) != (parameter, value):
            continue
        if release is not None and release >= setting.since:
            return value, None
        which = f"Triton {release}" if release else "an image of unknown release"
        return setting.otherwise, (f"{which} ignores {parameter} {value} (its tensorrt_backend reads it from "
                                   f"{setting.since} on) and allocates {setting.otherwise}")
    return value, None


def normalise_version(version: str) -> str:
    """'10.13.3.9', '10.13.3.9.post1' or '10.13.3.9+cuda13' -> '10.13.3.9'; anything shorter is returned as is."""
    parts = re.match(r"^(\d+(?:\.\d+){0,3})", str(version).strip())
    return parts.group(1) if parts else str(version)


def default_image() -> str:
    """The newest release in the table (for repositories without a TensorRT plan: ONNX Runtime encoders)."""
    table = image_table()
    return table.tag(table.releases[-1])


def tensorrt_pin() -> str:
    """The pip requirement for the TensorRT that the newest NGC Triton release in deploy/ngc_triton.yaml carries: a
    plan built with it has an image to be served in (an unpinned tensorrt-cu13 may be newer than every listed one)."""
    return f"tensorrt-cu13=={image_table().releases[-1].tensorrt}"


def tensorrt_install_hint() -> str:
    newest = image_table().releases[-1]
    return (f"pip install {tensorrt_pin()} (the TensorRT of NGC Triton {newest.release}, so its plans "
            f"have a serving image; the PyPI package fetches the wheel from NVIDIA's index), or build inside "
            f"nvcr.io/nvidia/tensorrt:{newest.release}-py3")


def check_triton_engine(meta: dict, where: Path | str = "engine.json") -> None:
    """Refuse engines Triton's tensorrt_plan backend cannot load (TensorRT-RTX plans)."""
    flavor = meta.get("flavor")
    if flavor == "tensorrt-rtx":
        raise ImageError(
            f"{where}: a TensorRT-RTX plan (tensorrt-rtx {meta.get('flavor_version', '?')}) cannot be a Triton "
            f"tensorrt_plan encoder: Triton's tensorrt backend links TensorRT (nvinfer), which does not load "
            f"TensorRT-RTX plans. Build the engine with `nvembed-trt build --flavor tensorrt` on the target GPU (or "
            f"let the deployment's init step build it there), or serve the ONNX graph instead: "
            f"`nvembed-trt triton-repo --encoder export/<name>/<recipe>` (ONNX Runtime encoder)")
    if flavor != "tensorrt":
        raise ImageError(f"{where}: flavor {flavor!r} is not one Triton serves; expected 'tensorrt'")
    if (meta.get("weights") or {}).get("stripped"):
        engine_dir = Path(where).parent
        raise ImageError(
            f"{where}: a weight-stripped plan ({int(meta.get('engine_bytes') or 0) / 1e6:.1f} MB, built with "
            f"--strip-weights) cannot be a Triton encoder: Triton's tensorrt backend loads the plan as it is and "
            f"never refits it. On a host with the target GPU run `nvembed-trt refit --engine {engine_dir}` (fills "
            f"the plan from the ONNX graph it was built from), then make the repository from it; or build without "
            f"--strip-weights")


def triton_image_for_engine(meta: dict, where: Path | str = "engine.json") -> dict:
    """{'image', 'release', 'tensorrt', 'how'} for a TensorRT engine's engine.json, or ImageError."""
    check_triton_engine(meta, where)
    built = normalise_version(meta.get("flavor_version", ""))
    override = os.environ.get(OVERRIDE_ENV)
    if override:
        return {"image": override, "release": None, "tensorrt": built,
                "how": f"{OVERRIDE_ENV} (not checked against the table: its TensorRT must be {built})"}
    table = image_table()
    matches = table.carrying(built)
    if not matches:
        known = ", ".join(f"{r.release}: {r.tensorrt}" for r in table.releases)
        newest = table.releases[-1]
        raise ImageError(
            f"{where}: engine built with TensorRT {built}; no NGC Triton release in the table carries that version "
            f"(a plan only loads in the TensorRT that built it). Known releases: {known}. Rebuild the engine with a "
            f"listed TensorRT, e.g. in nvcr.io/nvidia/tensorrt:{newest.release}-py3 (TensorRT {newest.tensorrt}), "
            f"or set {OVERRIDE_ENV} to an image whose TensorRT is {built}")
    pick = matches[-1]
    return {"image": table.tag(pick), "release": pick.release, "tensorrt": pick.tensorrt,
            "how": f"ngc_triton.yaml: newest release carrying TensorRT {built}"}


def engine_facts(meta: dict) -> dict:
    """The part of engine.json a deployment needs, recorded in repo.json (one source for `deploy k8s`)."""
    gpu = meta.get("gpu", {})
    return {"flavor": meta.get("flavor"), "flavor_version": meta.get("flavor_version"),
            "gpu_profile": gpu.get("profile"), "compute_capability": gpu.get("compute_capability"),
            "engine_bytes": meta.get("engine_bytes"), "serving": meta.get("serving"),
            "onnx": meta.get("onnx"), "recipe": meta.get("recipe"),
            **({"plan": meta["plan"]} if meta.get("plan") else {})}


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
