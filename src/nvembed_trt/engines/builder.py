"""engine_from_onnx: a (recipe) ONNX graph -> engines/<gpu>/<name>/<recipe>/model.plan + engine.json.

Strongly typed network parsed by file path (external data found beside it, the weights held once, by the parser),
one optimisation profile per entry of the GPU profile, builder optimisation level and workspace limit from the
profile, detailed profiling verbosity (the engine inspector's per-layer precisions), optional version and hardware
compatibility and a persistent timing cache per GPU, device and flavor version.

Memory: the plan is streamed to its file while it is serialized (`IStreamWriter`, where the flavor has it; otherwise
the serialized host memory is written through a memoryview, never copied to `bytes`): no host copy of the plan after
the build (full-width-2l: 6.73 GiB peak streamed vs 7.89 GiB through host memory). The parser maps the external
data file (file-backed, reclaimable pages). What remains is the builder's own anonymous working set, reached before
the first plan byte is written; an allocation trace of TensorRT-RTX 1.7 on full-width-2l shows what it holds: one
buffer the size of all weights (the plan's weights) and, for every group of MatMuls it fuses (q/k/v, gate/up), a
fresh copy of the concatenated weight, held to the end: 8.5 GiB at full size, which kept the unfused fp16 build
over 23 GiB. The export now fuses those projections itself (export/fusion.py), so the full-size fp16 build's
anonymous peak is the weights once plus about 1.7 GiB (16.3 GiB), and it completes inside a 20 GiB memory cgroup.
`strip_weights=True` builds a weight-stripped plan (STRIP_PLAN + REFIT_IDENTICAL): a few MB on disk, filled from the
same ONNX weights on the serving host by `nvembed-trt refit` (engines/refit.py; refitting deserialises the engine,
so it needs a GPU). benchmarks/alloc_trace/ holds the allocation tracer used for the figures above."""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import onnx
from pydantic import BaseModel, ConfigDict

from ..config import NVEmbedConfig
from ..console import note
from ..errors import InputError, NVEmbedError
from ..hostmem import process_memory_gib
from ..artifacts.engine import EngineMeta
from ..artifacts.graph import graph_sidecars
from ..provenance import atomic_path, sha256_file
from ..staging import check_output_dir, staged_directory
from .flavors import (Flavor, FlavorError, check_machine, hardware_compatibility_level, import_flavor, network_flags,
                      resolve_flavor, set_targets)
from .gpus import GIB, GPUProfile, get_gpu

PLAN = "model.plan"
PROFILING_VERBOSITY = ("detailed", "layer_names_only", "none")


class EngineBuildError(NVEmbedError):
    """The ONNX graph does not parse or build with the chosen flavor."""


@dataclass(frozen=True)
class EngineResult:
    directory: Path
    plan_path: Path
    meta: EngineMeta


def graph_io(onnx_path: Path) -> tuple[list[str], list[str]]:
    """The graph's input and output names (the graph only: weights stay on disk)."""
    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    return [i.name for i in graph.input], [o.name for o in graph.output]


def graph_weight_bytes(onnx_path: Path) -> int:
    data = onnx_path.with_name(onnx_path.name + ".data")
    return onnx_path.stat().st_size + (data.stat().st_size if data.exists() else 0)


def _graph_facts(onnx_path: Path) -> dict:
    """The recipe and model config from the graph's sidecars (artifacts/graph.py), its input/output names, its
    weight bytes."""
    sidecars = graph_sidecars(onnx_path.parent)
    inputs, outputs = graph_io(onnx_path)
    return {"recipe": sidecars.recipe, "model": sidecars.model, "config": sidecars.config, "inputs": inputs,
            "outputs": outputs, "weight_bytes": graph_weight_bytes(onnx_path)}


def _check_fits(gpu: GPUProfile, facts: dict) -> None:
    if facts["config"] is None:
        return
    cfg = NVEmbedConfig.from_hf_dict(facts["config"])
    problems = gpu.memory_problems(cfg, facts["weight_bytes"])
    if problems:
        raise InputError("; ".join(problems))


def _parse(trt, onnx_path: Path, flavor_name: str):
    logger = trt.Logger(trt.Logger.VERBOSE if os.environ.get("NVEMBED_TRT_LOG") == "verbose" else trt.Logger.ERROR)
    builder = trt.Builder(logger)
    network = builder.create_network(network_flags(trt))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = []
        for i in range(parser.num_errors):
            err = parser.get_error(i)
            errors.append(f"node {err.node_name() or err.node()!r} ({err.node_operator() or '?'}): {err.desc()}")
        raise EngineBuildError(f"{flavor_name} {trt.__version__} cannot parse {onnx_path}: " + "; ".join(errors))
    return logger, builder, network, parser


def network_precisions(network) -> dict[str, dict[str, int]]:
    """Layer types by output dtype in the strongly typed network (what the engine must honour)."""
    counts: dict[str, Counter] = {}
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        dtype = layer.get_output_type(0).name if layer.num_outputs else "NONE"
        counts.setdefault(layer.type.name, Counter())[dtype] += 1
    return {k: dict(v) for k, v in sorted(counts.items())}


def _rss_gib() -> dict:
    """This process's resident memory now and at its peak, in GiB (engine.json's host_memory_gib)."""
    return {k: round(v, 2) for k, v in process_memory_gib().items()}


# --- timing cache -------------------------------------------------------------------------------------------------

def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9.]+", "-", text.lower()).strip("-")


def timing_cache_path(root: Path, flavor: Flavor, version: str, gpu: GPUProfile, device: str | None) -> Path:
    """engines/<gpu>/timing-<flavor>-<version>-<device>.cache: a cache is only valid for one TensorRT version and
    one device (an H100 SXM and an H100 PCIe share the h100 profile but not their timings)."""
    return root / f"timing-{flavor.name}-{_slug(version)}-{_slug(device or gpu.name)}.cache"


def attach_timing_cache(config, flavor: Flavor, path: Path | None) -> tuple[object | None, str]:
    """Attach the persistent timing cache; a corrupt or mismatching one is discarded (with a note) for a fresh one.
    Returns (cache or None, what engine.json says about it)."""
    if not flavor.timing_cache or path is None:
        return None, f"not used ({flavor.name} ignores timing caches)"
    data = b""
    if path.is_file():
        data = path.read_bytes()
    status = f"{path} ({'loaded, ' + str(len(data)) + ' bytes' if data else 'new'})"
    cache = None
    try:
        cache = config.create_timing_cache(data)
        attached = cache is not None and bool(config.set_timing_cache(cache, ignore_mismatch=False))
    except (RuntimeError, TypeError, ValueError):  # corrupt bytes: the bindings raise or return None
        attached = False
    if not attached and data:
        note(f"timing cache {path} is corrupt or was made on another device/TensorRT version: discarded, starting "
             f"a new one")
        status = f"{path} (discarded a mismatching cache, new)"
        cache = config.create_timing_cache(b"")
        attached = cache is not None and bool(config.set_timing_cache(cache, ignore_mismatch=False))
    if not attached:
        note(f"could not attach a timing cache ({path}); building without one")
        return None, "not used (the builder refused a new timing cache)"
    return cache, status


def save_timing_cache(config, path: Path) -> str | None:
    """Write the builder's timing cache after a build; a failure is a note, never an error after the engine was
    written. Returns the problem, or None."""
    try:
        cache = config.get_timing_cache()
        if cache is None:
            raise RuntimeError("the builder returned no timing cache")
        serialized = cache.serialize()
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            fh.write(memoryview(serialized))
    except (OSError, RuntimeError) as exc:
        note(f"timing cache not saved to {path}: {exc}")
        return str(exc)
    return None


# --- writing the plan -----------------------------------------------------------------------------------------

class PlanWriteError(EngineBuildError):
    """The plan could not be written whole (a full disk, a file size limit): nothing is left behind."""


def _stream_writer(trt, fh):
    """An IStreamWriter that appends each serialized chunk to an open file. A failed write is recorded and answered
    with 0 bytes (an exception cannot cross into the builder's C++ safely); write_plan then refuses the plan."""

    class FileWriter(trt.IStreamWriter):
        def __init__(self):
            trt.IStreamWriter.__init__(self)
            self.chunks = 0
            self.largest = 0
            self.written = 0
            self.error: OSError | None = None

        def write(self, data) -> int:
            if self.error is not None:
                return 0
            view = memoryview(data)
            try:
                fh.write(view)
            except OSError as exc:
                self.error = exc
                return 0
            self.chunks += 1
            self.written += view.nbytes
            self.largest = max(self.largest, view.nbytes)
            return view.nbytes

    return FileWriter()


def disk_space_problem(directory: Path, need_bytes: int, what: str) -> str | None:
    """A message when the filesystem holding `directory` has less free space than the plan needs, else None."""
    free = shutil.disk_usage(directory).free
    if free >= need_bytes:
        return None
    return (f"not enough disk space for the plan: it needs about {need_bytes / 1e9:.2f} GB ({what}), {directory} "
            f"has {free / 1e9:.2f} GB free")


def _free(directory: Path) -> str:
    return f"{shutil.disk_usage(directory).free / 1e9:.2f} GB free on {directory}"


def write_plan(trt, builder, network, config, dest: Path) -> dict:
    """Build and serialize into dest (a temporary name, renamed on success). Streams through IStreamWriter where the
    flavor has it; otherwise writes the IHostMemory through a memoryview (no bytes copy). A plan that was not
    written whole (every chunk, and the file's size equal to the bytes handed over) is refused. Returns how."""
    streamed = hasattr(builder, "build_serialized_network_to_stream") and hasattr(trt, "IStreamWriter")
    start = time.perf_counter()
    with atomic_path(dest) as tmp:
        try:
            with open(tmp, "wb") as fh:
                if streamed:
                    writer = _stream_writer(trt, fh)
                    ok = builder.build_serialized_network_to_stream(network, config, writer)
                    how = {"method": "stream", "chunks": writer.chunks, "largest_chunk_bytes": writer.largest}
                    expected = writer.written
                    if writer.error is not None:
                        raise PlanWriteError(f"writing the plan failed after {writer.written:,} bytes: "
                                             f"{writer.error.strerror or writer.error} ({_free(tmp.parent)})")
                else:
                    plan = builder.build_serialized_network(network, config)
                    ok = plan is not None
                    expected = plan.nbytes if ok else 0
                    if ok:
                        fh.write(memoryview(plan))
                    del plan
                    how = {"method": "host-memory"}
        except OSError as exc:  # the last buffered bytes, flushed on close
            raise PlanWriteError(f"writing the plan failed: {exc.strerror or exc} ({_free(tmp.parent)})") from None
        if not ok:
            raise EngineBuildError("the builder returned no engine")
        size = tmp.stat().st_size
        if size != expected:
            raise PlanWriteError(f"the plan file holds {size:,} bytes but the builder handed over {expected:,}")
    how["build_s"] = round(time.perf_counter() - start, 2)
    return how


# --- engine inspector ---------------------------------------------------------------------------------------------

_DTYPE_WORDS = (  # words of the inspector's "Format/Datatype" strings and weight "Type" fields -> TensorRT names
    ("bf16", "BF16"), ("bfloat16", "BF16"), ("fp32", "FLOAT"), ("float", "FLOAT"), ("fp16", "HALF"),
    ("half", "HALF"), ("fp8", "FP8"), ("e4m3", "FP8"), ("fp4", "FP4"), ("int8", "INT8"), ("int4", "INT4"),
    ("int32", "INT32"), ("int64", "INT64"), ("bool", "BOOL"), ("uint8", "UINT8"))


def inspector_dtype(text: str) -> str:
    """The data type named in an inspector "Format/Datatype" string ("Row major linear FP16 format", "Half",
    "Channel major FP16 format where channel % 8 == 0", "Int8") or weight "Type"; "?" when none is named."""
    words = re.findall(r"[a-z0-9]+", str(text).lower())
    for word, name in _DTYPE_WORDS:
        if word in words:
            return name
    return "?"


def inspector_summary(info: dict | str) -> dict:
    """Summarise the engine inspector's JSON (IEngineInspector.get_engine_information(JSON)). With DETAILED
    verbosity each layer is an object with Name, LayerType, Inputs/Outputs ({Name, Dimensions, Format/Datatype}),
    optional Weights ({Type, Count}) and TacticName; with LAYER_NAMES_ONLY it is a bare name."""
    if isinstance(info, str):
        info = json.loads(info)
    layers = info.get("Layers", [])
    detailed = [layer for layer in layers if isinstance(layer, dict)]
    if not detailed:
        return {"layers": len(layers), "verbosity": "layer_names_only",
                "note": "built without ProfilingVerbosity.DETAILED: the inspector gives layer names only"}
    outputs, weights, by_type = Counter(), Counter(), {}
    for layer in detailed:
        dtype = inspector_dtype(layer["Outputs"][0].get("Format/Datatype", "")) if layer.get("Outputs") else "NONE"
        outputs[dtype] += 1
        kind = str(layer.get("LayerType", "?"))
        by_type.setdefault(kind, Counter())[dtype] += 1
        if isinstance(layer.get("Weights"), dict):
            weights[inspector_dtype(layer["Weights"].get("Type", ""))] += int(layer["Weights"].get("Count", 0))
    return {"layers": len(layers), "verbosity": "detailed", "output_precision": dict(sorted(outputs.items())),
            "weight_elements": dict(sorted(weights.items())),
            "by_layer_type": {k: dict(sorted(v.items())) for k, v in sorted(by_type.items())}}


def device_memory_figures(engine, profiles: int) -> dict:
    """TensorRT's own device memory per optimisation profile of a deserialised engine: what an execution context
    bound to that profile allocates (activations and tactic scratch; the weights are the engine's, counted apart).
    engine.json `device_memory`; the repository's memory check counts it instead of its estimate."""
    if not hasattr(engine, "get_device_memory_size_for_profile_v2"):   # TensorRT 10.0 (NGC 24.05) lacks the _v2 calls
        return {"unavailable": "this TensorRT has no get_device_memory_size_for_profile_v2 (TensorRT 10.1 and later "
                               "have it); the repository's memory check uses its estimate"}
    figures = [int(engine.get_device_memory_size_for_profile_v2(i)) for i in range(profiles)]
    return {"per_profile_bytes": figures, "max_bytes": int(engine.device_memory_size_v2),
            "source": "ICudaEngine.get_device_memory_size_for_profile_v2"}


def _deserialised_facts(trt, plan_path: Path, profiles: int) -> tuple[dict | str, dict]:
    """(per-layer precision from the engine inspector, TensorRT's device memory per profile); deserialising needs a
    GPU, so on a CPU-only host both say why they are unavailable."""
    from .flavors import cuda_gpu

    if cuda_gpu() is None:
        why = "unavailable: deserialising the engine needs a GPU"
        return why, {"unavailable": why + "; the repository's memory check uses its estimate"}
    runtime = trt.Runtime(trt.Logger(trt.Logger.ERROR))
    if hasattr(runtime, "engine_host_code_allowed"):
        runtime.engine_host_code_allowed = True  # version-compatible plans carry their lean runtime
    engine = runtime.deserialize_cuda_engine(plan_path.read_bytes())
    if engine is None:
        why = "unavailable: the engine did not deserialise on this GPU"
        return why, {"unavailable": why}
    info = engine.create_engine_inspector().get_engine_information(trt.LayerInformationFormat.JSON)
    return inspector_summary(info), device_memory_figures(engine, profiles)


# --- the build --------------------------------------------------------------------------------------------------

def _compatibility(trt, config, flavor: Flavor, version_compatible: bool) -> dict:
    return {"version_compatible": version_compatible,
            "hardware_compatibility_level": hardware_compatibility_level(config, flavor),
            "runtime_needs": (["runtime.engine_host_code_allowed = True",
                               "Triton: --backend-config=tensorrt,version-compatible=true"]
                              if version_compatible else []),
            "loads_with": (f"{flavor.name} {trt.__version__} or later" if version_compatible
                           else f"{flavor.name} {trt.__version__} exactly")}


def _check_options(flavor: Flavor, gpu: GPUProfile, version_compatible: bool, hardware_compatible: bool,
                   strip_weights: bool) -> None:
    """Refuse, before parsing, what the flavor cannot build here (each checked with TensorRT-RTX 1.7 on CPU)."""
    from .flavors import cuda_gpu

    if flavor.builds_without_gpu:
        if hardware_compatible:
            raise FlavorError(f"--hardware-compatible applies to the tensorrt flavor; {flavor.name} builds for the "
                              f"compute capability it targets ({gpu.name}: {gpu.compute_capability})")
        if version_compatible:
            raise FlavorError(f"--version-compatible applies to the tensorrt flavor: {flavor.name} would embed the "
                              f"lean runtime (libnvinfer_lean), which it does not ship")
        if strip_weights and cuda_gpu() is None:
            raise FlavorError(f"--strip-weights: {flavor.name} compiles refittable (STRIP_PLAN/REFIT_IDENTICAL) "
                              f"engines with CUDA, and this machine has no GPU; build the full plan here, or the "
                              f"stripped one on a machine with an RTX-class GPU")


class BuildSettings(BaseModel):
    """How to build: the GPU profile and the builder's options (the `build` command's flags, as one object)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    gpu: str                                  # a GPU profile of the registry (`nvembed-trt gpus`)
    flavor: str = "auto"                      # auto | tensorrt | tensorrt-rtx
    version_compatible: bool = False          # tensorrt: runs on this TensorRT major version from this one on
    hardware_compatible: bool = False         # tensorrt: runs on any Ampere or newer GPU
    strip_weights: bool = False               # STRIP_PLAN + REFIT_IDENTICAL: filled by `nvembed-trt refit`
    profiling_verbosity: str = "detailed"     # what the engine inspector can tell (PROFILING_VERBOSITY)
    timing_cache: Path | None = None          # default: engines/<gpu>/timing-<flavor>-<version>-<device>.cache
    overwrite: bool = False


def engine_from_onnx(onnx_path: Path | str, output: Path | str, settings: BuildSettings) -> EngineResult:
    onnx_path, output = Path(onnx_path), Path(output)
    version_compatible, strip_weights = settings.version_compatible, settings.strip_weights
    profiling_verbosity = settings.profiling_verbosity
    if not onnx_path.is_file():
        raise InputError(f"ONNX file not found: {onnx_path}")
    if profiling_verbosity not in PROFILING_VERBOSITY:
        raise InputError(f"profiling verbosity must be one of {', '.join(PROFILING_VERBOSITY)}, "
                         f"got {profiling_verbosity!r}")
    gpu = get_gpu(settings.gpu)
    chosen = resolve_flavor(settings.flavor, gpu)
    _check_options(chosen, gpu, version_compatible, settings.hardware_compatible, strip_weights)
    trt = import_flavor(chosen)
    target = check_machine(chosen, gpu)
    check_output_dir(output, settings.overwrite)
    facts = _graph_facts(onnx_path)
    _check_fits(gpu, facts)
    existing = next(p for p in (output, *output.parents) if p.exists())  # where the plan's filesystem is
    space = (disk_space_problem(existing, 2**26, "a weight-stripped plan: 64 MiB") if strip_weights else
             disk_space_problem(existing, facts["weight_bytes"] + 2**26, "the graph's weights plus 64 MiB"))
    if space:
        raise InputError(space)
    _, builder, network, parser = _parse(trt, onnx_path, chosen.name)
    memory = {"after_parse": _rss_gib()}
    config = builder.create_builder_config()
    config.builder_optimization_level = gpu.builder.optimization_level
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(gpu.builder.workspace_gib * GIB))
    config.profiling_verbosity = getattr(trt.ProfilingVerbosity, profiling_verbosity.upper())
    if version_compatible:
        config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)
    if strip_weights:
        missing = [f for f in ("STRIP_PLAN", "REFIT_IDENTICAL") if not hasattr(trt.BuilderFlag, f)]
        if missing:
            raise FlavorError(f"{chosen.name} {trt.__version__} has no BuilderFlag {', '.join(missing)}: it cannot "
                              f"build a weight-stripped plan")
        config.set_flag(trt.BuilderFlag.STRIP_PLAN)
        config.set_flag(trt.BuilderFlag.REFIT_IDENTICAL)
    set_targets(trt, config, chosen, gpu, settings.hardware_compatible)
    # one persistent cache per GPU folder, device and flavor version: engines/<gpu>/timing-<flavor>-<v>-<dev>.cache
    cache_path = Path(settings.timing_cache) if settings.timing_cache else timing_cache_path(
        output.parent.parent, chosen, trt.__version__, gpu, target.get("gpu_name"))
    cache, cache_status = attach_timing_cache(config, chosen, cache_path)
    for profile in gpu.profiles:
        opt = builder.create_optimization_profile()
        for name in facts["inputs"]:
            opt.set_shape(name, (profile.batch.min, profile.sequence.min), (profile.batch.opt, profile.sequence.opt),
                          (profile.batch.max, profile.sequence.max))
        config.add_optimization_profile(opt)
    precisions = network_precisions(network)
    with staged_directory(output, settings.overwrite) as staging:
        try:
            how = write_plan(trt, builder, network, config, staging / PLAN)
        except PlanWriteError as exc:
            raise PlanWriteError(f"{chosen.name} {trt.__version__} built {onnx_path} for {gpu.name} but {exc}; "
                                 f"nothing was written to {output}") from None
        except EngineBuildError as exc:
            raise EngineBuildError(f"{chosen.name} {trt.__version__} failed to build {onnx_path} for {gpu.name}: "
                                   f"{exc} (set NVEMBED_TRT_LOG=verbose for the builder log)") from None
        memory["after_build"] = _rss_gib()
        compatibility = _compatibility(trt, config, chosen, version_compatible)
        if cache is not None:
            problem = save_timing_cache(config, cache_path)
            cache_status += f"; not saved: {problem}" if problem else "; saved"
        del parser, network  # the parsed weights: released before the plan is read back for inspection
        engine_bytes = (staging / PLAN).stat().st_size
        layer_precision, device_memory = _deserialised_facts(trt, staging / PLAN, len(gpu.profiles))
        meta = EngineMeta.new(
            flavor=chosen.name, flavor_version=trt.__version__,
            gpu={"profile": gpu.name, "description": gpu.description, "compute_capability": gpu.compute_capability,
                 **target},
            profiles=gpu.profiles, serving=gpu.serving,
            builder={"optimization_level": gpu.builder.optimization_level, "workspace_gib": gpu.builder.workspace_gib,
                     "version_compatible": version_compatible, "hardware_compatible": settings.hardware_compatible,
                     "profiling_verbosity": profiling_verbosity, "timing_cache": cache_status, "serialization": how,
                     "host_memory_gib": memory},
            compatibility=compatibility,
            weights=({"stripped": True, "refit": "nvembed-trt refit --engine <this directory> (needs a GPU): fills "
                      "the plan from the ONNX weights it was built from (REFIT_IDENTICAL)"}
                     if strip_weights else {"stripped": False}),
            recipe=facts["recipe"], model=facts["model"], onnx=str(onnx_path.resolve()),
            onnx_sha256=sha256_file(onnx_path), onnx_weight_bytes=facts["weight_bytes"], inputs=facts["inputs"],
            outputs=facts["outputs"], build_s=how["build_s"], engine_bytes=engine_bytes,
            network_precision=precisions, layer_precision=layer_precision, device_memory=device_memory)
        meta.write(staging)
    note(f"built {output / PLAN} ({engine_bytes / 1e6:.1f} MB{', weights stripped' if strip_weights else ''}) with "
         f"{chosen.name} {trt.__version__} for {gpu.name} in {how['build_s']:.1f} s; {len(gpu.profiles)} profiles")
    return EngineResult(output, output / PLAN, meta)
