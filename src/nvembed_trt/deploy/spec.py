"""DeploySpec: everything the Kubernetes objects need, resolved once from the repository's repo.json (which records
the engine's facts and the NGC Triton image chosen for it), the GPU profile registry and the user's options. The
object builders (k8s.py) read only this, so ports, names, GPU count and memory come from one source."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..errors import InputError
from ..triton.meta import RepoMeta
from .images import builder_image

GIB = 1 << 30
MIB = 1 << 20
Storage = Literal["pvc", "s3", "gcs"]
DEFAULT_FETCH_IMAGES = {"s3": "amazon/aws-cli:2.17.0", "gcs": "gcr.io/google.com/cloudsdktool/google-cloud-cli:slim"}


class DeployOptions(BaseModel):
    """What the user chooses (`nvembed-trt deploy k8s` flags)."""
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str | None = None
    gpu: str | None = None
    replicas: int = Field(1, ge=1)
    max_replicas: int | None = None
    image: str | None = None
    builder_image: str | None = None
    storage: Storage = "pvc"
    storage_uri: str | None = None
    pvc: str | None = None
    drain_timeout_s: int = Field(10, ge=1, le=600)
    startup_timeout_s: int = Field(600, ge=30, le=7200)
    queue_target_ms: int = Field(50, ge=1, le=60000)
    api_key_secret: str | None = None
    fetch_image: str | None = None
    ephemeral_storage_class: str | None = None   # per-pod PVCs of this class instead of node-local emptyDirs

    @model_validator(mode="after")
    def _consistent(self) -> DeployOptions:
        if self.max_replicas is not None and self.max_replicas < self.replicas:
            raise ValueError(f"max_replicas {self.max_replicas} is below replicas {self.replicas}")
        if self.storage in ("s3", "gcs"):
            scheme = "s3://" if self.storage == "s3" else "gs://"
            if not (self.storage_uri or "").startswith(scheme):
                raise ValueError(f"--storage {self.storage} needs --storage-uri {scheme}BUCKET/PREFIX (the prefix "
                                 f"holding the repository folder), got {self.storage_uri!r}")
        elif self.storage_uri:
            raise ValueError("--storage-uri is for --storage s3|gcs; with pvc name the claim with --pvc")
        return self


class DeploySpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    repo_dir_name: str
    encoder_kind: Literal["onnxruntime", "tensorrt_plan", "simulated"]
    onnx_on_gpu: bool = False      # an ONNX Runtime encoder asking for CUDAExecutionProvider (needs onnxruntime-gpu)
    encoder_sha256: str
    triton_image: str
    image: str
    builder_image: str
    gpu_profile: str | None
    compute_capability: str | None
    gpu_memory_gib: float | None
    replicas: int
    max_replicas: int
    storage: Storage
    storage_uri: str | None
    pvc: str
    pvc_size_gib: int
    fetch_image: str | None
    drain_timeout_s: int
    prestop_s: int = 5
    startup_timeout_s: int
    queue_target_ms: int
    api_key_secret: str | None
    cpu_request: int
    memory_request_gib: int
    memory_limit_gib: int
    shm_mib: int
    store_gib: int | None          # the fetched store (s3/gcs): the repository and the ONNX graph beside it
    models_gib: int                # the pod's copy of the repository, with its plan
    scratch_gib: int               # the engine build's temporary folder (0: the repository never builds)
    ephemeral_storage_class: str | None = None

    @property
    def triton_ready_timeout_s(self) -> int:
        """Triton's ready timeout, derived from the startup probe: what the probe allows, less 30 s for the front
        door's first round trip, so a slow plan load fails with Triton's own message before the kubelet kills it."""
        return max(30, self.startup_timeout_s - 30)

    @property
    def ephemeral_request_gib(self) -> int:
        """Node-local disk the pod needs (its emptyDirs, plus 1 GiB for logs and the containers' writable layers)."""
        if self.ephemeral_storage_class:
            return 1
        return (self.store_gib or 0) + self.models_gib + self.scratch_gib + 1

    @property
    def termination_grace_s(self) -> int:
        """preStop (endpoints drop the pod) + the front door's drain bound + 10 s for Triton to exit after it."""
        return self.prestop_s + self.drain_timeout_s + 10

    @property
    def uses_gpu(self) -> bool:
        return self.gpu_profile is not None


def dns_name(raw: str) -> str:
    name = re.sub(r"[^a-z0-9-]+", "-", raw.lower()).strip("-")
    if not name or not name[0].isalpha():
        name = f"nvembed-{name}".strip("-")
    if len(name) > 50:  # leaves room for the -kserve / -models suffixes within 63
        raise InputError(f"deployment name {name!r} has {len(name)} characters, above the limit of 50; pass --name")
    return name


def _dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else 0


def volume_gib(size: int) -> int:
    """A volume size for `size` bytes: 10 % headroom plus 1 GiB, whole GiB."""
    return math.ceil(1.1 * size / GIB) + 1


def _release(triton_image: str) -> str:
    """'nvcr.io/nvidia/tritonserver:25.10-py3' -> '25.10' (image tags of the images built from deploy/Dockerfile)."""
    return re.sub(r"[^A-Za-z0-9_.-]", "-", triton_image.rsplit(":", 1)[-1].removesuffix("-py3"))


def resolve(repo: Path, options: DeployOptions) -> DeploySpec:
    """Read repo.json, check the options against the engine and the GPU registry, size the pod."""
    from ..engines.gpus import get_gpu   # the registry (pydantic YAML); imported here, not at module import

    repo = Path(repo)
    meta = RepoMeta.read(repo)
    spec, engine, triton = meta.spec, meta.engine, meta.triton_image.image
    if spec.encoder_kind == "tensorrt_plan":
        profile = engine.gpu.profile
        if options.gpu and options.gpu != profile:
            raise InputError(f"--gpu {options.gpu}: the repository's engine was built for {profile} (its config.pbtxt "
                             f"follows that profile's shapes); make a repository from an engine built for "
                             f"{options.gpu} instead")
    elif spec.encoder_kind == "simulated":   # the GPU-timed stand-in runs on CPU: a pod without a GPU
        if options.gpu:
            raise InputError(f"--gpu {options.gpu}: the repository's encoder is SIMULATED "
                             f"({meta.simulated['name']}) and needs no GPU; deploy it without --gpu")
        profile = None
    else:
        profile = options.gpu
    onnx_on_gpu = spec.encoder_kind == "onnxruntime" and "CUDAExecutionProvider" in spec.onnx_providers
    if onnx_on_gpu and not profile:
        raise InputError(f"{repo}: its ONNX Runtime encoder runs on CUDA (--providers cuda), so the pod needs a GPU: "
                         f"pass --gpu <profile> (or regenerate the repository with --providers cpu)")
    gpu = get_gpu(profile) if profile else None
    name = dns_name(options.name or repo.resolve().name)

    # sizes: the plan (or the one the node will build: engine_bytes is then the graph's weights), the graph beside the
    # repository (`<name>-onnx`, what a build reads), the repository as the pod holds it once its plan is in place
    trt = spec.encoder_kind == "tensorrt_plan"
    plan_bytes = engine.engine_bytes if trt else 0
    plan_file = repo / "encoder" / "1" / "model.plan"
    repo_bytes = _dir_bytes(repo)
    served_bytes = repo_bytes - (plan_file.stat().st_size if plan_file.is_file() else 0) + plan_bytes
    onnx_bytes = (_dir_bytes(repo.with_name(repo.name + "-onnx")) or plan_bytes) if trt else 0
    encoder_bytes = max(_dir_bytes(repo / "encoder" / "1"), plan_bytes)
    memory_request = math.ceil(1.5 * encoder_bytes / GIB + 2)
    shapes = spec.shape_limits                           # what the encoder accepts: one source, the repository
    hidden, batch = spec.hidden_size, max(s.max_batch for s in shapes)
    rows = max(s.max_batch * s.max_sequence for s in shapes)
    tensor_bytes = 3 * rows * 4 + (rows * hidden * 4 if spec.pooling == "ensemble" else batch * hidden * 4)
    shm_mib = max(256, math.ceil((2 * tensor_bytes + 64 * MIB) / MIB))

    release = _release(triton)
    serving_image = options.image or f"nvembed-trt-serving:{release}"
    builder = options.builder_image or f"nvembed-trt-builder:{release}"
    if spec.encoder_kind == "tensorrt_plan" and not options.builder_image:
        builder_image(triton)  # the builder's base is NVIDIA's TensorRT image of the same NGC release
    return DeploySpec(
        name=name, repo_dir_name=repo.resolve().name, encoder_kind=spec.encoder_kind, onnx_on_gpu=onnx_on_gpu,
        encoder_sha256=meta.encoder_sha256, triton_image=triton, image=serving_image, builder_image=builder,
        gpu_profile=gpu.name if gpu else None, compute_capability=gpu.compute_capability if gpu else None,
        gpu_memory_gib=gpu.memory_gib if gpu else None, replicas=options.replicas,
        max_replicas=options.max_replicas or max(options.replicas, 4), storage=options.storage,
        storage_uri=(options.storage_uri or "").rstrip("/") or None, pvc=options.pvc or f"{name}-models",
        pvc_size_gib=max(1, math.ceil(2 * (repo_bytes + onnx_bytes) / GIB)),
        fetch_image=options.fetch_image or DEFAULT_FETCH_IMAGES.get(options.storage),
        drain_timeout_s=options.drain_timeout_s, startup_timeout_s=options.startup_timeout_s,
        queue_target_ms=options.queue_target_ms, api_key_secret=options.api_key_secret,
        cpu_request=spec.nv_embed_instances + 2, memory_request_gib=memory_request,
        memory_limit_gib=2 * memory_request, shm_mib=shm_mib,
        store_gib=volume_gib(repo_bytes + onnx_bytes) if options.storage != "pvc" else None,
        models_gib=volume_gib(served_bytes), scratch_gib=volume_gib(plan_bytes) if trt else 0,
        ephemeral_storage_class=options.ephemeral_storage_class)
