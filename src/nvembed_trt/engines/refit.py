"""refit_engine: fill a weight-stripped plan (built with `strip_weights=True`: STRIP_PLAN + REFIT_IDENTICAL) with
the weights of the ONNX graph it was built from, on the serving host, and write the full plan.

Refitting deserialises the engine, which needs a CUDA GPU the plan was built for (and the flavor that built it):
TensorRT 10/11 (`tensorrt`) and TensorRT-RTX (`tensorrt_rtx`) both have `Refitter` and `OnnxParserRefitter`.
The ONNX weights are read by the parser refitter from the file (external data beside it), once; the refitted plan
is serialised without EXCLUDE_WEIGHTS and written to a temporary name, then renamed."""

from __future__ import annotations

from pathlib import Path

from ..artifacts.engine import EngineMeta
from ..console import note
from ..errors import InputError, NVEmbedError
from ..provenance import atomic_path, sha256_file
from .builder import PLAN
from .flavors import FLAVORS, cuda_gpu, import_flavor


class RefitError(NVEmbedError):
    """The plan cannot be refitted here (no GPU, not stripped, weights missing or not matching)."""


def _errors(parser_refitter) -> str:
    return "; ".join(parser_refitter.get_error(i).desc() for i in range(parser_refitter.num_errors))


def refit_engine(engine_dir: Path | str, onnx_path: Path | str | None = None, check_sha256: bool = True) -> Path:
    """Refit engine_dir/model.plan in place (atomically) from onnx_path (default: the graph engine.json names).
    Returns the plan path; engine.json then says the weights are refitted."""
    engine_dir = Path(engine_dir)
    meta = EngineMeta.read(engine_dir)
    if not meta.weights.stripped:
        raise RefitError(f"{engine_dir / PLAN} was not built with --strip-weights: it already holds its weights")
    onnx_path = Path(onnx_path or meta.onnx)
    if not onnx_path.is_file():
        raise InputError(f"ONNX file not found: {onnx_path} (pass --onnx: the graph the plan was built from, with "
                         f"its .data file beside it)")
    if check_sha256 and sha256_file(onnx_path) != meta.onnx_sha256:
        raise RefitError(f"{onnx_path} is not the graph {engine_dir} was built from (sha256 differs from "
                         f"engine.json's onnx_sha256): REFIT_IDENTICAL needs the same weights")
    present = cuda_gpu()
    if present is None:
        raise RefitError("refitting deserialises the engine, which needs a CUDA GPU; this machine has none (run "
                         "`nvembed-trt refit` on the serving host)")
    if present[1] != meta.gpu.compute_capability:
        raise RefitError(f"{engine_dir} was built for compute capability {meta.gpu.compute_capability}; this "
                         f"GPU is {present[0]} ({present[1]})")
    trt = import_flavor(FLAVORS[meta.flavor])
    if trt.__version__ != meta.flavor_version:
        raise RefitError(f"{engine_dir} was built with {meta.flavor} {meta.flavor_version}; this machine has "
                         f"{trt.__version__}")
    logger = trt.Logger(trt.Logger.ERROR)
    runtime = trt.Runtime(logger)
    if meta.version_compatible and hasattr(runtime, "engine_host_code_allowed"):
        runtime.engine_host_code_allowed = True
    engine = runtime.deserialize_cuda_engine((engine_dir / PLAN).read_bytes())
    if engine is None:
        raise RefitError(f"{engine_dir / PLAN} did not deserialise on {present[0]}")
    refitter = trt.Refitter(engine, logger)
    parser_refitter = trt.OnnxParserRefitter(refitter, logger)
    if not parser_refitter.refit_from_file(str(onnx_path)):
        raise RefitError(f"cannot read the weights of {onnx_path}: {_errors(parser_refitter)}")
    missing = refitter.get_missing_weights()
    if missing:
        raise RefitError(f"{len(missing)} weights still missing after reading {onnx_path}, e.g. {missing[:3]}")
    if not refitter.refit_cuda_engine():
        raise RefitError(f"refitting {engine_dir / PLAN} failed (set NVEMBED_TRT_LOG=verbose)")
    config = engine.create_serialization_config()
    config.flags &= ~(1 << int(trt.SerializationFlag.EXCLUDE_WEIGHTS))
    plan = engine.serialize_with_config(config)
    with atomic_path(engine_dir / PLAN) as tmp, open(tmp, "wb") as fh:
        fh.write(memoryview(plan))
    weights = {"stripped": False, "refitted_from": str(onnx_path), "refitted_on": present[0],
               "stripped_engine_bytes": meta.engine_bytes}
    meta = meta.updated(weights=weights, engine_bytes=(engine_dir / PLAN).stat().st_size)
    meta.write(engine_dir)
    note(f"refitted {engine_dir / PLAN} from {onnx_path}: {meta.engine_bytes / 1e6:.1f} MB")
    return engine_dir / PLAN
