"""repo.json (`nvembed-trt triton-repo`): everything serving and deployment need to know about a repository, carried
by the repository itself, so nothing reads the build host's folders: the model, the spec every config was derived
from, the recipe, the engine (its whole engine.json, or the one the node will build), the Triton image, the server
settings asked for and honoured, and the memory check.

Light on purpose (pydantic and the standard library): the front door reads it in NVIDIA's Triton image."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from ..artifacts.engine import EngineMeta
from ..artifacts.graph import ModelFacts
from ..artifacts.sidecar import Sidecar
from .spec import EncoderKind, RepoSpec


class TritonImage(BaseModel):
    """The NGC Triton image that serves the repository, and how it was chosen."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    image: str
    how: str
    release: str | None = None
    tensorrt: str | None = None


class ServedSetting(BaseModel):
    """A tensorrt_backend model parameter: what the engine asks for, what the chosen release acts on, and why."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    asked: str
    honoured: str
    why: str | None
    release: str | None


class ServerNeeds(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    backend_config: list[str]                      # tritonserver --backend-config items
    tensorrt_backend: dict[str, ServedSetting]    # per parameter; empty without Triton's tensorrt backend


class RepoMeta(Sidecar):
    FILE = "repo.json"
    ARTIFACT = "triton-repository"
    MADE_BY = "nvembed-trt triton-repo --model <model> --encoder <engine or export> --output {folder}"

    model: ModelFacts
    served_model_id: str
    recipe: str                         # the encoder's (engine.json or the graph's sidecars), canonical
    spec: RepoSpec
    models: list[str]
    kserve_model: str
    encoder_runtime: str                # what runs the encoder (triton/spec.py ENCODER_MODELS)
    encoder_source: str                 # the folder it was made from, on the build host (provenance only)
    encoder_sha256: str
    engine: EngineMeta | None           # the engine served (or, with `plan` set, the one the node builds)
    onnx_dir: str | None                # plan-less: the graph's folder beside the repository
    triton_image: TritonImage
    server: ServerNeeds
    encoder_memory: dict[str, Any] | None   # the memory check's figures and assumptions (engines only)
    simulated: dict[str, Any] | None = None   # triton-repo --simulate: what the stand-in stands for, and how

    @property
    def encoder_kind(self) -> EncoderKind:
        return self.spec.encoder_kind

    @property
    def plan_on_node(self) -> bool:
        """A repository made without its plan (`triton-repo --gpu`): `deploy ensure-engine` builds it on the node."""
        return self.engine is not None and self.engine.plan is not None
