"""The NGC Triton release table (ngc_triton.yaml beside this file, with its source and per-row evidence): which
NVIDIA Triton release carries which TensorRT, which tensorrt_backend settings each release honours, the newest
release and the TensorRT pin that gives a plan a serving image.

A low-floor fact: the builder (engines/: the pinned install hint), the repository generator (triton/: which image
serves an engine, what its backend allocates), the deployment (deploy/: Dockerfiles, builder images) and the doctor
all read it here. Light on purpose (yaml, pydantic): it is imported inside the serving image."""

from __future__ import annotations

import re
from functools import cache
from importlib import resources

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from .errors import InputError

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
    """The pip requirement for the TensorRT that the newest NGC Triton release in ngc_triton.yaml carries: a
    plan built with it has an image to be served in (an unpinned tensorrt-cu13 may be newer than every listed one)."""
    return f"tensorrt-cu13=={image_table().releases[-1].tensorrt}"


def tensorrt_install_hint() -> str:
    newest = image_table().releases[-1]
    return (f"pip install {tensorrt_pin()} (the TensorRT of NGC Triton {newest.release}, so its plans "
            f"have a serving image; the PyPI package fetches the wheel from NVIDIA's index), or build inside "
            f"nvcr.io/nvidia/tensorrt:{newest.release}-py3")
