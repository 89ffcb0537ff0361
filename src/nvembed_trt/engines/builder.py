"""engine_from_onnx: a (recipe) ONNX graph -> engines/<gpu>/<name>/<recipe>/model.plan + engine.json.

Strongly typed network parsed by file path (external data found beside it), one optimisation profile per entry of
the GPU profile, builder optimisation level and workspace limit from the profile, a persistent timing cache per
GPU and flavor (engines/<gpu>/timing-<flavor>.cache), optional version and hardware compatibility."""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import onnx

from ..config import NVEmbedConfig
from ..console import note
from ..errors import InputError, NVEmbedError
from ..provenance import atomic_path, sha256_file, sidecar, write_json
from ..staging import check_output_dir, staged_directory
from .flavors import (attach_timing_cache, check_machine, import_flavor, network_flags, resolve_flavor,
                      set_targets)
from .gpus import GIB, GPUProfile, get_gpu

ENGINE_JSON = "engine.json"


class EngineBuildError(NVEmbedError):
    """The ONNX graph does not parse or build with the chosen flavor."""


@dataclass(frozen=True)
class EngineResult:
    directory: Path
    plan_path: Path
    meta: dict


def _graph_facts(onnx_path: Path) -> dict:
    """Recipe and model config from the sidecars beside the graph, and its input/output names."""
    facts: dict = {"recipe": None, "config": None}
    for name in ("precision.json", "export.json"):
        sidecar_file = onnx_path.parent / name
        if sidecar_file.is_file():
            meta = json.loads(sidecar_file.read_text())
            facts["recipe"] = facts["recipe"] or (meta.get("recipe") or {}).get("name") or meta.get("dtype")
            facts["config"] = facts["config"] or meta.get("config")
    parent_export = onnx_path.parent.parent / "export.json"
    if facts["config"] is None and parent_export.is_file():
        facts["config"] = json.loads(parent_export.read_text()).get("config")
    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    facts["inputs"] = [i.name for i in graph.input]
    facts["outputs"] = [o.name for o in graph.output]
    data = onnx_path.with_name(onnx_path.name + ".data")
    facts["weight_bytes"] = onnx_path.stat().st_size + (data.stat().st_size if data.exists() else 0)
    return facts


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


def engine_from_onnx(onnx_path: Path | str, gpu_name: str, output: Path | str, flavor: str = "auto",
                     version_compatible: bool = False, hardware_compatible: bool = False,
                     timing_cache: Path | str | None = None, overwrite: bool = False) -> EngineResult:
    onnx_path, output = Path(onnx_path), Path(output)
    if not onnx_path.is_file():
        raise InputError(f"ONNX file not found: {onnx_path}")
    gpu = get_gpu(gpu_name)
    chosen = resolve_flavor(flavor, gpu)
    trt = import_flavor(chosen)
    target = check_machine(chosen, gpu)
    check_output_dir(output, overwrite)
    facts = _graph_facts(onnx_path)
    _check_fits(gpu, facts)
    _, builder, network, _parser = _parse(trt, onnx_path, chosen.name)
    config = builder.create_builder_config()
    config.builder_optimization_level = gpu.builder.optimization_level
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(gpu.builder.workspace_gib * GIB))
    if version_compatible:
        config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)
    set_targets(trt, config, chosen, gpu, hardware_compatible)
    # one persistent cache per GPU folder: engines/<gpu>/timing-<flavor>.cache for engines/<gpu>/<name>/<recipe>/
    cache_path = Path(timing_cache) if timing_cache else output.parent.parent / f"timing-{chosen.name}.cache"
    cache = attach_timing_cache(config, chosen, cache_path)
    for profile in gpu.profiles:
        opt = builder.create_optimization_profile()
        for name in facts["inputs"]:
            opt.set_shape(name, (profile.batch.min, profile.sequence.min), (profile.batch.opt, profile.sequence.opt),
                          (profile.batch.max, profile.sequence.max))
        config.add_optimization_profile(opt)
    start = time.perf_counter()
    plan = builder.build_serialized_network(network, config)
    build_s = time.perf_counter() - start
    if plan is None:
        raise EngineBuildError(f"{chosen.name} {trt.__version__} failed to build {onnx_path} for {gpu.name} "
                               f"(set NVEMBED_TRT_LOG=verbose for the builder log)")
    with staged_directory(output, overwrite) as staging:
        (staging / "model.plan").write_bytes(bytes(plan))
        meta = sidecar("tensorrt-engine", flavor=chosen.name, flavor_version=trt.__version__,
                       gpu={"profile": gpu.name, "description": gpu.description,
                            "compute_capability": gpu.compute_capability, **target},
                       profiles=[p.model_dump() for p in gpu.profiles], serving=gpu.serving.model_dump(),
                       builder={"optimization_level": gpu.builder.optimization_level,
                                "workspace_gib": gpu.builder.workspace_gib, "version_compatible": version_compatible,
                                "hardware_compatible": hardware_compatible,
                                "timing_cache": str(cache_path) if cache is not None else
                                f"not used ({chosen.name} ignores timing caches)"},
                       recipe=facts["recipe"], onnx=str(onnx_path), onnx_sha256=sha256_file(onnx_path),
                       inputs=facts["inputs"], outputs=facts["outputs"], build_s=round(build_s, 2),
                       engine_bytes=plan.nbytes, network_precision=network_precisions(network),
                       layer_precision=_inspect(trt, plan))
        write_json(staging / ENGINE_JSON, meta)
    if cache is not None:
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(cache_path) as tmp:
            tmp.write_bytes(bytes(config.get_timing_cache().serialize()))
    note(f"built {output / 'model.plan'} ({plan.nbytes / 1e6:.1f} MB) with {chosen.name} {trt.__version__} for "
         f"{gpu.name} in {build_s:.1f} s; {len(gpu.profiles)} profiles")
    return EngineResult(output, output / "model.plan", meta)


def _inspect(trt, plan) -> dict | str:
    """Per-layer precision from the engine inspector; deserialising needs a GPU."""
    from .flavors import cuda_gpu

    if cuda_gpu() is None:
        return "unavailable: the engine inspector needs a GPU to deserialise the engine"
    runtime = trt.Runtime(trt.Logger(trt.Logger.ERROR))
    engine = runtime.deserialize_cuda_engine(plan)
    if engine is None:
        return "unavailable: the engine did not deserialise on this GPU"
    info = json.loads(engine.create_engine_inspector().get_engine_information(trt.LayerInformationFormat.JSON))
    layers = info.get("Layers", [])
    precisions = Counter(str(layer.get("Outputs", [{}])[0].get("Format/Datatype", "?")).split()[-1]
                         if isinstance(layer, dict) else "?" for layer in layers)
    return {"layers": len(layers), "output_formats": dict(precisions)}
