"""repo_from_encoder: a model + an encoder (engines/... with engine.json, or export/... with model.onnx) -> a Triton
model repository: `encoder` plus the `nv_embed` KServe model that tokenises, packs and calls it (see spec.py).

Every check runs before anything is written and all problems are reported together. `check_only=True` runs them
and writes nothing: on a CPU build host it proves the repository of a (full-size) engine's GPU profile is
consistent, even for a TensorRT-RTX plan, which Triton cannot load (reported as what the GPU host must build)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import onnx

from ..deploy.images import (ImageError, default_image, engine_facts, honoured_setting, image_table, release_of,
                             triton_image_for_engine)
from ..errors import InputError
from ..provenance import sha256_file, sidecar, write_json
from ..source import resolve_model
from ..staging import staged_directory
from ..tokenizer.files import bundled_sentencepiece_model, write_tokenizer_files
from ..packing import ShapeLimit, default_batch_tokens
from ..engines.gpus import (engine_memory_problems, engine_memory_report, engine_serving_parameters, get_gpu,
                            served_limits)
from ..engines.runner import triton_backend_config
from .config import check_repository, repository_configs, to_pbtxt
from . import simulated
from .spec import DEFAULT_MAX_INPUT_BYTES, ENCODER, ENCODER_MODELS, ENSEMBLE, TOKENIZER_DIR, RepoSpec

TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "tokenizer_config.json", "special_tokens_map.json")
SHIM = "from nvembed_trt.triton.models.{module} import TritonPythonModel  # noqa: F401  (importable module)\n"


class RepositoryError(InputError):
    """The generated configs are inconsistent, or the encoder cannot serve the requested shapes."""


@dataclass(frozen=True)
class RepoResult:
    directory: Path | None  # None when only checked
    spec: RepoSpec
    meta: dict


def _plan_facts(meta: dict, file: Path | None, image: dict | None, refusal: str | None,
                kind: str = "tensorrt_plan") -> dict:
    """A TensorRT encoder described by engine.json (or by the engine the node will build)."""
    return {"kind": kind, "file": file, "inputs": meta["inputs"], "meta": meta, "refusal": refusal,
            "outputs": meta["outputs"], "max_batch_size": meta["serving"]["max_batch_size"],
            "max_length": meta["serving"]["max_sequence_length"],
            "limits": tuple(ShapeLimit.from_profile(p) for p in meta["profiles"]),
            "profiles": tuple(str(i) for i in range(len(meta["profiles"]))),
            "engine": engine_facts(meta), "triton_image": image}


def _graph_io(onnx_path: Path) -> tuple[list[str], list[str]]:
    graph = onnx.load(str(onnx_path), load_external_data=False).graph   # the graph only: weights stay on disk
    return [i.name for i in graph.input], [o.name for o in graph.output]


def planned_engine(encoder: Path, gpu_name: str) -> tuple[dict, dict]:
    """(engine.json as `nvembed-trt build --flavor tensorrt` will write it on the node, minus what only the build
    knows; the NGC image whose TensorRT the node builds with) for an ONNX export and a GPU profile: the profiles,
    serving limits and builder settings come from the registry, the weights from the graph's files."""
    gpu = get_gpu(gpu_name)
    if "tensorrt" not in gpu.flavors:
        raise InputError(f"GPU profile {gpu.name} is not a tensorrt target (flavors {', '.join(gpu.flavors)}): the "
                         f"node cannot build a Triton plan for it")
    onnx_path = encoder / "model.onnx"
    inputs, outputs = _graph_io(onnx_path)
    data = onnx_path.with_name("model.onnx.data")
    table = image_table()
    row = table.releases[-1]
    image = {"image": table.tag(row), "release": row.release, "tensorrt": row.tensorrt,
             "how": f"newest NGC release: the node builds the plan with its TensorRT ({row.tensorrt})"}
    meta = {"flavor": "tensorrt", "flavor_version": row.tensorrt,
            "gpu": {"profile": gpu.name, "description": gpu.description,
                    "compute_capability": gpu.compute_capability},
            "profiles": [p.model_dump() for p in gpu.profiles], "serving": gpu.serving.model_dump(),
            "builder": gpu.builder.model_dump(), "weights": {"stripped": False},
            "engine_bytes": onnx_path.stat().st_size + (data.stat().st_size if data.exists() else 0),
            "onnx": str(onnx_path.resolve()), "recipe": _recipe(encoder), "inputs": inputs, "outputs": outputs,
            "plan": PLAN_ON_NODE}
    return meta, image


PLAN_ON_NODE = "built on the node by `nvembed-trt deploy ensure-engine` from the ONNX graph beside the repository"


ENCODER_BACKENDS = ("tensorrt_plan", "python")   # for an engine: Triton's tensorrt backend, or encoder_trt


def _encoder_facts(encoder: Path, check_only: bool = False, backend: str = "tensorrt_plan",
                   gpu: str | None = None) -> dict:
    if backend not in ENCODER_BACKENDS:
        raise InputError(f"encoder backend must be one of {', '.join(ENCODER_BACKENDS)}, got {backend!r}")
    if gpu is not None and backend != "tensorrt_plan":
        raise InputError("--gpu makes a repository whose plan the node builds for Triton's tensorrt backend; the "
                         "python-backend encoder (--encoder-backend python) needs an engine folder")
    if (encoder / "engine.json").is_file():
        if gpu is not None:
            raise InputError(f"--gpu makes a repository for a GPU profile from an ONNX export (the node builds the "
                             f"plan); {encoder} is an engine folder, already built for its own GPU: drop --gpu")
        meta = json.loads((encoder / "engine.json").read_text())
        refusal = None
        if backend == "python":   # the plan runs in the stub's Python with its own flavor: no NGC TensorRT to match
            image = {"image": default_image(), "how": "python-backend TensorRT encoder (encoder_trt): the server "
                     f"needs only the python backend, the stub's Python needs {meta['flavor']} "
                     f"{meta['flavor_version']} and CUDA torch"}
        else:
            try:
                image = triton_image_for_engine(meta, encoder / "engine.json")  # refuses RTX plans; NGC image by TRT
            except ImageError as exc:
                if not check_only:
                    raise
                image, refusal = None, str(exc)
        kind = "tensorrt_plan" if backend == "tensorrt_plan" else "tensorrt_python"
        return _plan_facts(meta, encoder / "model.plan", image, refusal, kind)
    if (encoder / "model.onnx").is_file():
        if gpu is not None:
            meta, image = planned_engine(encoder, gpu)
            return _plan_facts(meta, None, image, None)
        inputs, outputs = _graph_io(encoder / "model.onnx")
        return {"kind": "onnxruntime", "file": encoder / "model.onnx", "inputs": inputs,
                "outputs": outputs, "max_batch_size": None, "max_length": None,
                "limits": None, "profiles": (), "engine": None, "meta": None, "refusal": None,
                "triton_image": {"image": default_image(), "how": "newest NGC release (ONNX Runtime encoder)"}}
    raise InputError(f"{encoder}: neither an engine folder (engine.json + model.plan) nor an export folder "
                     f"(model.onnx)")


STRATEGY = "execution_context_allocation_strategy"


def served_backend_settings(meta: dict, image: dict | None) -> dict:
    """The tensorrt_backend parameters the engine asks for, as the chosen Triton release honours them: {parameter:
    {asked, honoured, why}}. Without an image (a plan Triton cannot load, checked only) the newest release is
    assumed."""
    asked = engine_serving_parameters(meta)[STRATEGY]
    if image is None:
        release = image_table().releases[-1].release
    else:
        release = image.get("release") or release_of(image.get("image") or "")
    honoured, why = honoured_setting(release, STRATEGY, asked)
    return {STRATEGY: {"asked": asked, "honoured": honoured, "why": why, "release": release}}


def _place_graph(encoder: Path, dest: Path) -> None:
    """The ONNX graph the node builds from, with its sidecars (the recipe's, and the export's model config when the
    recipe folder has none): hard links where the filesystem allows (a full-size graph is 15.7 GB), else copies."""
    names = ["model.onnx", "model.onnx.data", *sorted(p.name for p in encoder.glob("*.json"))]
    sources = {name: encoder / name for name in names if (encoder / name).is_file()}
    if "export.json" not in sources and (encoder.parent / "export.json").is_file():
        sources["export.json"] = encoder.parent / "export.json"
    for name, path in sources.items():
        try:
            os.link(path, dest / name)
        except OSError:
            shutil.copyfile(path, dest / name)


def _copy_tokenizer(source, dest: Path) -> None:
    dest.mkdir(parents=True)
    if source.checkpoint is None:
        write_tokenizer_files(dest, bundled_sentencepiece_model())
        return
    for name in TOKENIZER_FILES:
        if (source.checkpoint / name).is_file():
            shutil.copyfile(source.checkpoint / name, dest / name)


def repo_from_encoder(model: str, encoder: Path | str | None, output: Path | str | None, *,
                      max_batch_size: int | None = None,
                      max_length: int | None = None, max_batch_tokens: int | None = None,
                      max_request_rows: int = 256, nv_embed_instances: int = 1, encoder_instances: int = 1,
                      output_dtype: str = "float32", providers: tuple[str, ...] = ("CPUExecutionProvider",),
                      max_queue_delay_us: int = 0, max_input_bytes: int = DEFAULT_MAX_INPUT_BYTES,
                      overwrite: bool = False, check_only: bool = False,
                      encoder_backend: str = "tensorrt_plan", gpu: str | None = None,
                      simulate: str | None = None) -> RepoResult:
    """Write the repository to `output`, or with check_only run every check and write nothing (meta then says
    what was checked and, for a plan Triton cannot load, what the GPU host must build instead). For an engine,
    `encoder_backend="python"` serves the plan with the python-backend TensorRT encoder (encoder_trt) instead of
    Triton's tensorrt backend: for servers that have only the python backend (the one bundled with nvidia-pytriton).

    gpu: with an ONNX export as the encoder, a TensorRT repository for that GPU profile made without a GPU: shapes,
    limits, configs and the memory check from the registry, no plan; the graph is written beside the repository
    (`<output>-onnx/`, hard links where the filesystem allows) for `deploy ensure-engine` to build the plan on the
    node. `simulate="[Nx]GPU:RECIPE"` (no encoder) makes the encoder the GPU-timed stand-in (triton/simulated.py)."""
    if output is None and not check_only:
        raise InputError("a repository needs an output folder (or check_only=True to write nothing)")
    if (encoder is None) == (simulate is None):
        raise InputError("a repository needs an encoder folder or a simulation (GPU:RECIPE), not both")
    if simulate is not None and gpu is not None:
        raise InputError("gpu makes a plan-less TensorRT repository from an ONNX export; a simulation names its GPU "
                         "profile in GPU:RECIPE")
    output = Path(output) if output is not None else None
    source = resolve_model(model, progress=False)
    if simulate is not None:
        if encoder_instances != 1:
            raise InputError("a simulation runs one encoder instance per simulated device: ask for devices as "
                             f"NxGPU:RECIPE, not encoder_instances={encoder_instances}")
        facts = simulated.simulated_facts(simulate, source.config, {"image": default_image()})
        encoder, encoder_instances = Path(f"simulated:{facts['simulation'].name}"), facts["simulation"].devices
    else:
        encoder = Path(encoder)
        facts = _encoder_facts(encoder, check_only, encoder_backend, gpu)
    limit_batch, limit_length = facts["max_batch_size"], facts["max_length"]
    batch = max_batch_size or limit_batch or 8
    length = max_length or limit_length or 512
    for name, value in (("max_batch_size", batch), ("max_length", length), ("max_request_rows", max_request_rows),
                        ("nv_embed_instances", nv_embed_instances), ("encoder_instances", encoder_instances),
                        ("max_input_bytes", max_input_bytes), ("max_batch_tokens", max_batch_tokens or 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InputError(f"{name} must be an integer >= 1, got {value!r}")
    if limit_batch is not None and batch > limit_batch:
        raise RepositoryError(f"max_batch_size {batch} exceeds the engine's serving maximum {limit_batch}")
    if limit_length is not None and length > limit_length:
        raise RepositoryError(f"max_length {length} exceeds the engine's longest profile sequence {limit_length}")
    if output_dtype not in ("float32", "float16"):
        raise InputError(f"output dtype must be float32 or float16, got {output_dtype!r}")
    limits = facts["limits"] or (ShapeLimit("onnx", batch, length),)
    parameters: dict[str, str] = {}
    problems: list[str] = []
    backend, memory = {}, None
    if facts["meta"] is not None:  # an engine: no batch beyond the serving maximum, whatever a profile would take
        limits = served_limits(facts["meta"]["profiles"], batch)
        counted, why = None, ""          # the python-backend encoder (encoder_trt) takes no tensorrt_backend settings
        if facts["kind"] == "tensorrt_plan":
            backend = served_backend_settings(facts["meta"], facts["triton_image"])
            strategy = backend[STRATEGY]
            parameters = {STRATEGY: strategy["honoured"]}   # what the release acts on is what config.pbtxt says
            counted, why = strategy["honoured"], strategy["why"] or ""
        per_device = 1 if facts["kind"] == "simulated" else encoder_instances   # a simulated device: one instance
        problems += engine_memory_problems(facts["meta"], source.config, per_device, counted, why)
        memory = engine_memory_report(facts["meta"], source.config, per_device, counted)
    if facts["kind"] == "simulated":
        parameters = simulated.encoder_parameters(facts["simulation"], facts["limits"])
    spec = RepoSpec(encoder_kind=facts["kind"], pooling="engine" if "embeddings" in facts["outputs"] else "ensemble",
                    hidden_size=source.config.embedding_dim, max_length=length, shape_limits=limits,
                    max_batch_tokens=max_batch_tokens or default_batch_tokens(limits),
                    max_request_rows=max_request_rows, max_queue_delay_us=max_queue_delay_us,
                    nv_embed_instances=nv_embed_instances, encoder_instances=encoder_instances,
                    output_dtype=output_dtype, onnx_providers=providers, engine_profiles=facts["profiles"],
                    max_input_bytes=max_input_bytes, encoder_parameters=parameters)
    configs = repository_configs(spec)
    problems += check_repository(configs, spec, {"inputs": facts["inputs"], "outputs": facts["outputs"]})
    if problems:
        raise RepositoryError(f"generated repository is inconsistent ({len(problems)} problems): "
                              + "; ".join(problems))
    if check_only:
        return RepoResult(output, spec, {"checked_only": True, "models": list(configs), "spec": spec.to_json(),
                                         "encoder": str(encoder), "engine": facts["engine"],
                                         "triton_loads_this_plan": facts["refusal"] is None,
                                         "tensorrt_backend": backend, "encoder_memory": memory,
                                         "gpu_host_must": facts["refusal"]})
    onnx_dir = output.with_name(output.name + "-onnx") if facts["kind"] == "tensorrt_plan" and \
        facts["file"] is None else None
    with staged_directory(output, overwrite) as staging, \
            (staged_directory(onnx_dir, overwrite) if onnx_dir else contextlib.nullcontext()) as onnx_staging:
        if onnx_staging is not None:
            _place_graph(encoder, onnx_staging)
        for name, config in configs.items():
            (staging / name / "1").mkdir(parents=True)
            (staging / name / "config.pbtxt").write_text(to_pbtxt(config))
        _copy_tokenizer(source, staging / ENSEMBLE / "1" / TOKENIZER_DIR)
        (staging / ENSEMBLE / "1" / "model.py").write_text(SHIM.format(module="embed"))
        version_dir = staging / ENCODER / "1"
        encoder_file = facts["file"]
        if spec.encoder_kind == "simulated":
            encoder_file = simulated.write_encoder(facts["simulation"], version_dir, SHIM)
        elif spec.encoder_kind == "tensorrt_plan":
            if facts["file"] is not None:             # else the node builds the plan (deploy ensure-engine)
                shutil.copyfile(facts["file"], version_dir / "model.plan")
        elif spec.encoder_kind == "tensorrt_python":   # EngineRunner reads the plan and its engine.json
            (version_dir / "model.py").write_text(SHIM.format(module="encoder_trt"))
            shutil.copyfile(facts["file"], version_dir / "model.plan")
            shutil.copyfile(encoder / "engine.json", version_dir / "engine.json")
        else:
            (version_dir / "model.py").write_text(SHIM.format(module="encoder_onnx"))
            shutil.copyfile(facts["file"], version_dir / "model.onnx")
            data = facts["file"].with_name("model.onnx.data")
            if data.exists():
                shutil.copyfile(data, version_dir / "model.onnx.data")
        meta = sidecar("triton-repository", model=source.describe(), served_model_id=served_model_id(source),
                       encoder=str(encoder), encoder_sha256=sha256_file(encoder_file or encoder / "model.onnx"),
                       recipe=facts.get("recipe") or _recipe(encoder), onnx_dir=onnx_dir.name if onnx_dir else None,
                       simulated=facts["simulation"].describe() if "simulation" in facts else None,
                       spec=spec.to_json(), models=list(configs), kserve_model=ENSEMBLE, engine=facts["engine"],
                       encoder_runtime=ENCODER_MODELS[spec.encoder_kind],
                       triton_image=facts["triton_image"], encoder_memory=memory,
                       server={"backend_config": triton_backend_config(facts["meta"])
                               if spec.encoder_kind == "tensorrt_plan" else [], "tensorrt_backend": backend})
        write_json(staging / "repo.json", meta)
    return RepoResult(output, spec, meta)


def served_model_id(source) -> str:
    """The id clients send as `model`: the preset's name, or the checkpoint folder's name."""
    return source.preset.name if source.preset is not None else Path(str(source.checkpoint)).name


EXPORT_RECIPES = {"float32": "fp32", "float16": "fp16"}   # a plain export's dtype, as a recipe name


def _recipe(encoder: Path) -> str | None:
    """The precision recipe of the encoder, from the sidecars beside it (engine.json, precision.json, export.json)."""
    for name, key in (("engine.json", "recipe"), ("precision.json", "recipe"), ("export.json", "dtype")):
        if (encoder / name).is_file():
            value = json.loads((encoder / name).read_text()).get(key)
            value = value.get("name") if isinstance(value, dict) else value
            return EXPORT_RECIPES.get(value, value)
    return None
