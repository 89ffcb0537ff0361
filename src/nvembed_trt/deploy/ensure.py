"""The deployment's init step: put the repository into the pod and make sure its engine is for this node's GPU.

    python -m nvembed_trt.deploy.ensure --store /store/<name> --onnx /store/<name>-onnx --output /models/<name>
                                        [--gpu h100] [--compute-capability 9.0]

1. Copy the repository from the store (a PVC, or the folder the fetch step synced from s3/gcs) to --output.
2. ONNX Runtime encoder: done. TensorRT encoder: read the node's compute capability (nvidia-smi, or
   --compute-capability); if encoder/1/model.plan is there and repo.json's engine was built for this capability,
   done; otherwise build the engine from --onnx/model.onnx with the tensorrt flavor for the repository's GPU profile
   (TensorRT builds on the GPU it targets), check that its TensorRT is the one the image carries, that its inputs
   and outputs are the ones config.pbtxt names and that it fits the card (TensorRT's own device-memory figure, measured
   by the build), and install it: the plan, engine.json beside repo.json, repo.json's engine facts updated.
   A repository made on a CPU host with `triton-repo --gpu` holds no plan: this step completes it.
Anything that cannot work stops with a message naming what is missing; a failed step leaves no --output behind.

Light imports: the build path imports the engine builder only when it has to build."""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from ..artifacts.engine import EngineMeta
from ..errors import NVEmbedError
from ..ngc_triton import normalise_version
from ..triton.meta import RepoMeta

PLAN = Path("encoder") / "1" / "model.plan"


class EnsureError(NVEmbedError):
    """The repository cannot be made to hold an engine for this node's GPU."""


def node_compute_capability() -> str:
    """Device 0's compute capability, read as the build reads it (NVML or nvidia-smi: nvembed_trt.hostgpu)."""
    from ..hostgpu import detect_gpus

    found = detect_gpus(fresh=True)
    if found.first() is None:
        raise EnsureError(f"cannot read this node's GPU ({found.problem}); is the pod given a GPU "
                          f"(nvidia.com/gpu)? --compute-capability overrides")
    return found.first().compute_capability


def _build(onnx_dir: Path, gpu: str, want_tensorrt: str | None, work: Path) -> tuple[Path, EngineMeta]:
    onnx = onnx_dir / "model.onnx"
    from ..engines import BuildSettings, engine_from_onnx   # the TensorRT builder: only in the builder image

    result = engine_from_onnx(onnx, work / "engine", BuildSettings(gpu=gpu, flavor="tensorrt"))
    built = normalise_version(result.meta.flavor_version)
    if want_tensorrt and built != want_tensorrt:
        raise EnsureError(f"the builder image's TensorRT is {built} but the repository's Triton image carries "
                          f"{want_tensorrt}: build the builder image from the same NGC release as the Triton image")
    return result.plan_path, result.meta


def ensure(store: Path, onnx_dir: Path, output: Path, gpu: str | None = None,
           compute_capability: str | None = None, work_dir: Path | None = None) -> str:
    """Prepare output from store; returns a one-line account of what was done. work_dir: where a build writes its
    temporary plan (the pod's sized scratch volume; default the system's temporary folder)."""
    store, onnx_dir, output = Path(store), Path(onnx_dir), Path(output)
    meta = RepoMeta.read(store)
    staging = output.with_name(f".{output.name}.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        shutil.copytree(store, staging, symlinks=False)
        account = f"copied {store} to {output}"
        if meta.encoder_kind == "tensorrt_plan":
            account += "; " + _ensure_plan(meta, staging, onnx_dir, gpu, compute_capability, work_dir)
        if output.exists():
            shutil.rmtree(output)
        staging.rename(output)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return account


def _ensure_plan(meta: RepoMeta, repo: Path, onnx_dir: Path, gpu: str | None, compute_capability: str | None,
                 work_dir: Path | None = None) -> str:
    engine = meta.engine
    profile = gpu or engine.gpu.profile
    if gpu and gpu != engine.gpu.profile:
        raise EnsureError(f"--gpu {gpu} but the repository was made for {engine.gpu.profile}")
    node = compute_capability or node_compute_capability()
    built_for = engine.gpu.compute_capability
    if (repo / PLAN).is_file() and built_for == node:
        return f"engine for compute capability {node} present ({engine.flavor} {engine.flavor_version})"
    why = (f"the repository's engine is for compute capability {built_for}, this node's GPU is {node}"
           if (repo / PLAN).is_file() else f"the repository holds no engine ({PLAN} is missing)")
    from ..engines.gpus import get_gpu

    target = get_gpu(profile)
    if target.compute_capability != node:
        raise EnsureError(f"{why}, and the GPU profile {profile} targets compute capability "
                          f"{target.compute_capability}: schedule the pod on a {profile} node (the Deployment's "
                          f"node affinity does) or deploy a repository made for this GPU")
    if not (onnx_dir / "model.onnx").is_file():
        raise EnsureError(f"{why}, and there is no ONNX graph at {onnx_dir / 'model.onnx'} to build one from: upload "
                          f"the export the engine was built from (export/<name>/<recipe>/) beside the repository as "
                          f"<name>-onnx/")
    want = normalise_version(meta.triton_image.tensorrt or engine.flavor_version)
    with tempfile.TemporaryDirectory(prefix="nvembed-trt-ensure-", dir=work_dir) as work:
        try:
            plan, built = _build(onnx_dir, profile, want or None, Path(work))
        except EnsureError:
            raise
        except NVEmbedError as exc:     # FlavorError, EngineBuildError, InputError: say why, in this step's words
            raise EnsureError(f"{why}; building it failed: {exc}") from exc
        problems = _built_engine_problems(built, meta, onnx_dir)
        if problems:
            raise EnsureError(f"{why}; the engine built on this node cannot serve this repository: "
                              + "; ".join(problems))
        shutil.copyfile(plan, repo / PLAN)
        built.write(repo)
        _record_engine(repo, meta, built)
    return f"{why}: built a {profile} engine with TensorRT {want or '?'} on this node"


def _built_engine_problems(built: EngineMeta, meta: RepoMeta, onnx_dir: Path) -> list[str]:
    """The built engine against the repository made for it: the tensors config.pbtxt names, and the card's memory
    with TensorRT's own figure (the build measured it on this GPU) under the strategy the image honours."""
    from ..artifacts.graph import graph_sidecars
    from ..config import NVEmbedConfig
    from ..engines.gpus import engine_memory_problems

    spec = meta.spec
    problems = []
    if list(built.inputs) != list(spec.encoder_inputs) or list(built.outputs) != [spec.encoder_output]:
        problems.append(f"engine I/O {built.inputs} -> {built.outputs}, repository expects "
                        f"{list(spec.encoder_inputs)} -> {[spec.encoder_output]}")
    config = graph_sidecars(onnx_dir).config
    strategy = meta.server.tensorrt_backend.get("execution_context_allocation_strategy")
    honoured, why = (strategy.honoured, strategy.why or "") if strategy else (None, "")
    if config is not None:
        problems += engine_memory_problems(built, NVEmbedConfig.from_hf_dict(config), spec.encoder_instances,
                                           honoured, why)
    return problems


def _record_engine(repo: Path, meta: RepoMeta, built: EngineMeta) -> None:
    """repo.json says which engine the repository now holds (what `deploy` and a restarted pod read)."""
    from ..provenance import sha256_file

    meta.updated(engine=built, encoder_sha256=sha256_file(repo / PLAN)).write(repo)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m nvembed_trt.deploy.ensure", description=__doc__.split("\n\n")[0])
    p.add_argument("--store", required=True, type=Path, help="the repository in the store (PVC or fetched copy)")
    p.add_argument("--onnx", required=True, type=Path, help="folder with the engine's model.onnx (for a build)")
    p.add_argument("--output", required=True, type=Path, help="where the pod's server reads the repository")
    p.add_argument("--gpu", help="GPU profile the deployment targets (default: the repository's)")
    p.add_argument("--compute-capability", help="this node's GPU (default: from nvidia-smi)")
    p.add_argument("--work-dir", type=Path, help="where a build writes its temporary plan (default: the system's "
                                                 "temporary folder)")
    args = p.parse_args(argv)
    try:
        print(ensure(args.store, args.onnx, args.output, args.gpu, args.compute_capability, args.work_dir),
              flush=True)
    except NVEmbedError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
