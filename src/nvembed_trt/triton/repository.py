"""repo_from_encoder: a model + an encoder (engines/... with engine.json, or export/... with model.onnx) -> a Triton
model repository: `encoder` plus the `nv_embed` KServe model that tokenises, packs and calls it (see spec.py), and
repo.json (RepoMeta, triton/meta.py): what serving and deployment read, carried by the repository.

Every check runs before anything is written and all problems are reported together. `check_only=True` runs them
and writes nothing: on a CPU build host it proves the repository of a (full-size) engine's GPU profile is
consistent, even for a TensorRT-RTX plan, which Triton cannot load (reported as what the GPU host must build)."""

from __future__ import annotations

import contextlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from ..artifacts.engine import EngineMeta
from ..artifacts.graph import graph_sidecars
from ..errors import InputError
from ..ngc_triton import ImageError, default_image, honoured_setting, image_table, release_of
from ..provenance import sha256_bytes, sha256_file
from ..shapes import ShapeError
from ..source import resolve_model
from ..staging import staged_directory
from ..tokenizer.files import bundled_sentencepiece_model, write_tokenizer_files
from ..packing import ShapeLimit, default_batch_tokens
from ..engines.builder import graph_io, graph_weight_bytes
from ..engines.gpus import engine_memory_problems, engine_memory_report, engine_serving_parameters, get_gpu
from ..engines.runner import triton_backend_config
from .config import check_repository, repository_configs, to_pbtxt
from . import simulated
from .images import triton_image_for_engine
from .meta import RepoMeta, ServedSetting, ServerNeeds, TritonImage
from .spec import DEFAULT_MAX_INPUT_BYTES, ENCODER, ENCODER_MODELS, ENSEMBLE, TOKENIZER_DIR, EncoderKind, RepoSpec

TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "tokenizer_config.json", "special_tokens_map.json")
SHIM = "from nvembed_trt.triton.models.{module} import TritonPythonModel  # noqa: F401  (importable module)\n"
ENCODER_BACKENDS = ("tensorrt_plan", "python")   # for an engine: Triton's tensorrt backend, or encoder_trt
PLAN_ON_NODE = "built on the node by `nvembed-trt deploy ensure-engine` from the ONNX graph beside the repository"
STRATEGY = "execution_context_allocation_strategy"


class RepoSettings(BaseModel):
    """How to make the repository (the `triton-repo` command's options, as one object). None: from the encoder
    (an engine's serving limits and profiles), else the defaults named."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_batch_size: int | None = None      # encoder rows per batch; default the engine's serving maximum, else 8
    max_length: int | None = None          # default the engine's longest served sequence, else 512
    max_batch_tokens: int | None = None    # padded tokens per packed batch; default the smallest shape's capacity
    max_request_rows: int = 256            # TEXT rows per KServe request to nv_embed
    nv_embed_instances: int = 1
    encoder_instances: int = 1
    output_dtype: str = "float32"          # float32 | float16
    providers: tuple[str, ...] = ("CPUExecutionProvider",)   # ONNX Runtime encoder
    max_queue_delay_us: int = 0
    max_input_bytes: int = DEFAULT_MAX_INPUT_BYTES
    encoder_backend: str = "tensorrt_plan"  # an engine: tensorrt_plan (Triton's backend) or python (encoder_trt)
    gpu: str | None = None                 # an ONNX export made into a plan-less repository for this GPU profile
    simulate: str | None = None            # [Nx]GPU:RECIPE: the GPU-timed stand-in instead of an encoder folder
    overwrite: bool = False


class RepositoryError(InputError):
    """The generated configs are inconsistent, or the encoder cannot serve the requested shapes."""


@dataclass(frozen=True)
class RepoResult:
    directory: Path | None   # None when only checked
    spec: RepoSpec
    meta: RepoMeta | None    # repo.json as written; None when only checked
    check: dict | None = None  # with check_only: what was checked, and what a GPU host must build instead


@dataclass(frozen=True)
class EncoderFacts:
    """What the encoder folder is: its kind, the file the repository copies (None: the node builds the plan), its
    tensors, its recipe, its engine (engine.json, or the engine the node will build) and the Triton image."""

    kind: EncoderKind
    file: Path | None
    inputs: list[str]
    outputs: list[str]
    recipe: str
    engine: EngineMeta | None
    image: TritonImage | None
    refusal: str | None = None       # why Triton cannot load this plan (check_only)
    simulation: simulated.Simulation | None = None   # triton-repo --simulate: the stand-in's GPU, recipe, devices

    @property
    def max_batch_size(self) -> int | None:
        return self.engine.serving.max_batch_size if self.engine is not None else None

    @property
    def max_length(self) -> int | None:
        return self.engine.max_sequence if self.engine is not None else None


def planned_engine(encoder: Path, gpu_name: str) -> tuple[EngineMeta, TritonImage]:
    """(engine.json as `nvembed-trt build --flavor tensorrt` will write it on the node, minus what only the build
    knows; the NGC image whose TensorRT the node builds with) for an ONNX export and a GPU profile: the profiles,
    serving limits and builder settings come from the registry, the weights from the graph's files."""
    gpu = get_gpu(gpu_name)
    if "tensorrt" not in gpu.flavors:
        raise InputError(f"GPU profile {gpu.name} is not a tensorrt target (flavors {', '.join(gpu.flavors)}): the "
                         f"node cannot build a Triton plan for it")
    onnx_path = encoder / "model.onnx"
    inputs, outputs = graph_io(onnx_path)
    row = image_table().releases[-1]
    image = TritonImage(image=image_table().tag(row), release=row.release, tensorrt=row.tensorrt,
                        how=f"newest NGC release: the node builds the plan with its TensorRT ({row.tensorrt})")
    sidecars = graph_sidecars(encoder)
    meta = EngineMeta.new(flavor="tensorrt", flavor_version=row.tensorrt,
                          gpu={"profile": gpu.name, "description": gpu.description,
                               "compute_capability": gpu.compute_capability},
                          profiles=gpu.profiles, serving=gpu.serving, builder=gpu.builder.model_dump(),
                          weights={"stripped": False}, engine_bytes=graph_weight_bytes(onnx_path),
                          onnx=str(onnx_path.resolve()), recipe=sidecars.recipe, model=sidecars.model,
                          inputs=inputs, outputs=outputs, plan=PLAN_ON_NODE)
    return meta, image


def _engine_facts(encoder: Path, check_only: bool, backend: str) -> EncoderFacts:
    """An engine folder, served by Triton's tensorrt backend or by EngineRunner in the python backend."""
    engine = EngineMeta.read(encoder)
    refusal = None
    if backend == "python":   # the plan runs in the stub's Python with its own flavor: no NGC TensorRT to match
        image = TritonImage(image=default_image(), how=f"python-backend TensorRT encoder (encoder_trt): the server "
                            f"needs only the python backend, the stub's Python needs {engine.flavor} "
                            f"{engine.flavor_version} and CUDA torch")
    else:
        try:       # refuses RTX and weight-stripped plans; the NGC image by TensorRT version
            image = TritonImage(**triton_image_for_engine(engine.model_dump(), encoder / engine.FILE))
        except ImageError as exc:
            if not check_only:
                raise
            image, refusal = None, str(exc)
    kind = "tensorrt_plan" if backend == "tensorrt_plan" else "tensorrt_python"
    return EncoderFacts(kind, encoder / "model.plan", engine.inputs, engine.outputs, engine.recipe, engine, image,
                        refusal)


def encoder_facts(encoder: Path, check_only: bool = False, backend: str = "tensorrt_plan",
                  gpu: str | None = None) -> EncoderFacts:
    if backend not in ENCODER_BACKENDS:
        raise InputError(f"encoder backend must be one of {', '.join(ENCODER_BACKENDS)}, got {backend!r}")
    if gpu is not None and backend != "tensorrt_plan":
        raise InputError("--gpu makes a repository whose plan the node builds for Triton's tensorrt backend; the "
                         "python-backend encoder (--encoder-backend python) needs an engine folder")
    if (encoder / EngineMeta.FILE).is_file():
        if gpu is not None:
            raise InputError(f"--gpu makes a repository for a GPU profile from an ONNX export (the node builds the "
                             f"plan); {encoder} is an engine folder, already built for its own GPU: drop --gpu")
        return _engine_facts(encoder, check_only, backend)
    if (encoder / "model.onnx").is_file():
        if gpu is not None:
            engine, image = planned_engine(encoder, gpu)
            return EncoderFacts("tensorrt_plan", None, engine.inputs, engine.outputs, engine.recipe, engine, image)
        inputs, outputs = graph_io(encoder / "model.onnx")
        return EncoderFacts("onnxruntime", encoder / "model.onnx", inputs, outputs, graph_sidecars(encoder).recipe,
                            None, TritonImage(image=default_image(), how="newest NGC release (ONNX Runtime encoder)"))
    raise InputError(f"{encoder}: neither an engine folder (engine.json + model.plan) nor an export folder "
                     f"(model.onnx)")


def simulated_facts(settings: RepoSettings, source) -> EncoderFacts:
    """The GPU-timed stand-in for the engine settings.simulate names: the profile's shapes and serving limits, the
    recipe's weights for the memory check, the python backend only (no GPU)."""
    if settings.gpu is not None:
        raise InputError("gpu makes a plan-less TensorRT repository from an ONNX export; a simulation names its GPU "
                         "profile in GPU:RECIPE")
    if settings.encoder_instances != 1:
        raise InputError("a simulation runs one encoder instance per simulated device: ask for devices as "
                         f"NxGPU:RECIPE, not encoder_instances={settings.encoder_instances}")
    sim = simulated.parse_simulation(settings.simulate, source.config)
    engine = simulated.simulated_engine(sim, source.describe())
    image = TritonImage(image=default_image(), how="simulated encoder: the python backend only, no GPU")
    return EncoderFacts("simulated", None, engine.inputs, engine.outputs, sim.recipe, engine, image, simulation=sim)


def served_backend_settings(engine: EngineMeta, release: str | None) -> dict[str, ServedSetting]:
    """The tensorrt_backend parameters the engine asks for, as the Triton release serving it honours them. Without
    a release (a plan Triton cannot load, checked only) the newest one is assumed."""
    asked = engine_serving_parameters(engine)[STRATEGY]
    release = release or image_table().releases[-1].release
    honoured, why = honoured_setting(release, STRATEGY, asked)
    return {STRATEGY: ServedSetting(asked=asked, honoured=honoured, why=why, release=release)}


def image_release(image: TritonImage | None) -> str | None:
    if image is None:
        return None
    return image.release or release_of(image.image)


def _place_graph(encoder: Path, dest: Path) -> None:
    """The ONNX graph the node builds from, with its sidecars (the recipe's, and the export's model config when the
    recipe folder has none): hard links where the filesystem allows (a full-size graph is 15.7 GB), else copies."""
    names = ["model.onnx", "model.onnx.data", *sorted(p.name for p in encoder.glob("*.json"))]
    sources = {name: encoder / name for name in names if (encoder / name).is_file()}
    export = graph_sidecars(encoder).export
    if export is not None and export.FILE not in sources:
        sources[export.FILE] = encoder.parent / export.FILE
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


def _check_settings(settings: RepoSettings, facts: EncoderFacts) -> tuple[int, int]:
    """(encoder rows per batch, max length), every number checked against the encoder's limits."""
    batch = settings.max_batch_size or facts.max_batch_size or 8
    length = settings.max_length or facts.max_length or 512
    for name, value in (("max_batch_size", batch), ("max_length", length),
                        ("max_request_rows", settings.max_request_rows),
                        ("nv_embed_instances", settings.nv_embed_instances),
                        ("encoder_instances", settings.encoder_instances),
                        ("max_input_bytes", settings.max_input_bytes),
                        ("max_batch_tokens", settings.max_batch_tokens or 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InputError(f"{name} must be an integer >= 1, got {value!r}")
    if facts.max_batch_size is not None and batch > facts.max_batch_size:
        raise RepositoryError(f"max_batch_size {batch} exceeds the engine's serving maximum {facts.max_batch_size}")
    if facts.max_length is not None and length > facts.max_length:
        raise RepositoryError(f"max_length {length} exceeds the engine's longest served sequence {facts.max_length}")
    if settings.output_dtype not in ("float32", "float16"):
        raise InputError(f"output dtype must be float32 or float16, got {settings.output_dtype!r}")
    return batch, length


def _engine_serving(facts: EncoderFacts, settings: RepoSettings, config, batch: int) -> tuple:
    """(shape limits, tensorrt_backend parameters for config.pbtxt, the settings asked and honoured, memory
    problems, the memory report) for an engine encoder: no batch beyond the serving maximum, whatever a profile
    would take."""
    try:
        limits = facts.engine.shape_limits(batch)
    except ShapeError as exc:
        raise RepositoryError(f"max_batch_size {batch}: {exc}") from None
    backend, parameters, counted, why = {}, {}, None, ""   # encoder_trt takes no tensorrt_backend settings
    if facts.kind == "tensorrt_plan":
        backend = served_backend_settings(facts.engine, image_release(facts.image))
        parameters = {STRATEGY: backend[STRATEGY].honoured}   # what the release acts on is what config.pbtxt says
        counted, why = backend[STRATEGY].honoured, backend[STRATEGY].why or ""
    per_device = 1 if facts.simulation is not None else settings.encoder_instances  # one stand-in per device
    problems = engine_memory_problems(facts.engine, config, per_device, counted, why)
    memory = engine_memory_report(facts.engine, config, per_device, counted)
    return limits, parameters, backend, problems, memory


def repo_from_encoder(model: str, encoder: Path | str | None, output: Path | str | None,
                      settings: RepoSettings = RepoSettings(), *, check_only: bool = False) -> RepoResult:
    """Write the repository to `output`, or with check_only run every check and write nothing (RepoResult.check
    then says what was checked and, for a plan Triton cannot load, what the GPU host must build instead). For an
    engine, settings.encoder_backend="python" serves the plan with the python-backend TensorRT encoder
    (encoder_trt) instead of Triton's tensorrt backend: for servers that have only the python backend (the one
    bundled with nvidia-pytriton).

    settings.gpu: with an ONNX export as the encoder, a TensorRT repository for that GPU profile made without a GPU:
    shapes, limits, configs and the memory check from the registry, no plan; the graph is written beside the
    repository (`<output>-onnx/`, hard links where the filesystem allows) for `deploy ensure-engine` to build the
    plan on the node.

    settings.simulate="[Nx]GPU:RECIPE" (no encoder): the encoder is the GPU-timed stand-in (triton/simulated.py),
    one instance per simulated device."""
    if output is None and not check_only:
        raise InputError("a repository needs an output folder (or check_only=True to write nothing)")
    if (encoder is None) == (settings.simulate is None):
        raise InputError("a repository needs an encoder folder or a simulation (GPU:RECIPE), not both")
    output = Path(output) if output is not None else None
    source = resolve_model(model, progress=False)
    if settings.simulate is not None:
        facts = simulated_facts(settings, source)
        encoder, settings = Path(f"simulated:{facts.simulation.name}"), settings.model_copy(
            update={"encoder_instances": facts.simulation.devices})
    else:
        encoder = Path(encoder)
        facts = encoder_facts(encoder, check_only, settings.encoder_backend, settings.gpu)
    batch, length = _check_settings(settings, facts)
    limits, parameters, backend, problems, memory = (ShapeLimit("onnx", batch, length),), {}, {}, [], None
    if facts.engine is not None:
        limits, parameters, backend, problems, memory = _engine_serving(facts, settings, source.config, batch)
    if facts.simulation is not None:
        parameters = simulated.encoder_parameters(facts.simulation, facts.engine.shape_limits())
    served_engine = facts.engine if facts.simulation is None else None     # a stand-in has no engine to serve
    spec = RepoSpec(encoder_kind=facts.kind, pooling="engine" if "embeddings" in facts.outputs else "ensemble",
                    hidden_size=source.config.embedding_dim, max_length=length, shape_limits=limits,
                    max_batch_tokens=settings.max_batch_tokens or default_batch_tokens(limits),
                    max_request_rows=settings.max_request_rows, max_queue_delay_us=settings.max_queue_delay_us,
                    nv_embed_instances=settings.nv_embed_instances, encoder_instances=settings.encoder_instances,
                    output_dtype=settings.output_dtype, onnx_providers=tuple(settings.providers),
                    engine_profiles=tuple(str(i) for i in range(len(served_engine.profiles))) if served_engine else (),
                    max_input_bytes=settings.max_input_bytes, encoder_parameters=parameters)
    configs = repository_configs(spec)
    problems += check_repository(configs, spec, {"inputs": facts.inputs, "outputs": facts.outputs})
    if problems:
        raise RepositoryError(f"generated repository is inconsistent ({len(problems)} problems): "
                              + "; ".join(problems))
    if check_only:
        return RepoResult(output, spec, None, {
            "models": list(configs), "spec": spec.to_json(), "encoder": str(encoder), "recipe": facts.recipe,
            "engine": facts.engine.model_dump(mode="json") if facts.engine else None,
            "triton_loads_this_plan": facts.refusal is None,
            "tensorrt_backend": {k: v.model_dump() for k, v in backend.items()}, "encoder_memory": memory,
            "gpu_host_must": facts.refusal})
    meta = RepoMeta.new(model=source.describe(), served_model_id=served_model_id(source), recipe=facts.recipe,
                        spec=spec, models=list(configs), kserve_model=ENSEMBLE,
                        encoder_runtime=ENCODER_MODELS[spec.encoder_kind], encoder_source=str(encoder),
                        encoder_sha256=_encoder_sha256(facts, encoder), engine=served_engine,
                        onnx_dir=output.name + "-onnx" if facts.kind == "tensorrt_plan" and facts.file is None
                        else None, triton_image=facts.image,
                        server=ServerNeeds(backend_config=triton_backend_config(facts.engine)
                                           if spec.encoder_kind == "tensorrt_plan" else [],
                                           tensorrt_backend=backend),
                        encoder_memory=memory,
                        simulated=facts.simulation.describe() if facts.simulation is not None else None)
    _write_repository(output, meta, configs, facts, source, encoder, settings.overwrite)
    return RepoResult(output, spec, meta)


def _encoder_sha256(facts: EncoderFacts, encoder: Path) -> str:
    """What names the encoder: its plan or graph, or a simulation's description (the file the stand-in reads)."""
    if facts.simulation is not None:
        return sha256_bytes(simulated.simulation_bytes(facts.simulation))
    return sha256_file(facts.file or encoder / "model.onnx")


def _write_repository(output: Path, meta: RepoMeta, configs: dict, facts: EncoderFacts, source, encoder: Path,
                      overwrite: bool) -> None:
    onnx_dir = output.with_name(meta.onnx_dir) if meta.onnx_dir else None
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
        if meta.encoder_kind == "simulated":
            simulated.write_encoder(facts.simulation, version_dir, SHIM)
        elif meta.encoder_kind == "tensorrt_plan":
            if facts.file is not None:             # else the node builds the plan (deploy ensure-engine)
                shutil.copyfile(facts.file, version_dir / "model.plan")
        elif meta.encoder_kind == "tensorrt_python":   # EngineRunner reads the plan and its engine.json
            (version_dir / "model.py").write_text(SHIM.format(module="encoder_trt"))
            shutil.copyfile(facts.file, version_dir / "model.plan")
            facts.engine.write(version_dir)
        else:
            (version_dir / "model.py").write_text(SHIM.format(module="encoder_onnx"))
            shutil.copyfile(facts.file, version_dir / "model.onnx")
            data = facts.file.with_name("model.onnx.data")
            if data.exists():
                shutil.copyfile(data, version_dir / "model.onnx.data")
        meta.write(staging)


def served_model_id(source) -> str:
    """The id clients send as `model`: the preset's name, or the checkpoint folder's name."""
    return source.preset.name if source.preset is not None else Path(str(source.checkpoint)).name
