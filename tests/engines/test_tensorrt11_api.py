"""Every TensorRT API the `tensorrt` flavor calls exists in TensorRT 11's Python bindings (issue 22, defect 6).

USED is the list of names the engine code uses (builder, runner, refit, inspector, timing cache, stream writer,
flags); a test derives the same list from the code (ast), so it cannot go stale, and another checks it against
TensorRT 11's documented Python API (data/tensorrt_11_python_api.json: the names the 11.1 bindings define, see its
`source`). The full TensorRT wheel cannot be installed here (PyPI has a stub that downloads from NVIDIA), so the
import-level check runs on TensorRT-RTX, which imports without a GPU and shares the builder API, and on `tensorrt`
itself where it is installed (a GPU host, NVIDIA's images)."""

from __future__ import annotations

import ast
import importlib
import json
from pathlib import Path

import pytest

from nvembed_trt.engines.builder import PROFILING_VERBOSITY

ENGINES = Path(__file__).resolve().parents[2] / "src" / "nvembed_trt" / "engines"
DOCUMENTED = json.loads((Path(__file__).parent / "data" / "tensorrt_11_python_api.json").read_text())

# what each variable of the engine modules holds (per file: `config` is a builder config in builder.py and a
# serialization config in refit.py)
SHARED = {"builder": "Builder", "network": "INetworkDefinition", "parser": "OnnxParser", "err": "ParserError",
          "layer": "ILayer", "opt": "IOptimizationProfile", "cache": "ITimingCache", "runtime": "Runtime",
          "engine": "ICudaEngine", "context": "IExecutionContext", "plan": "IHostMemory"}
VARIABLES = {
    "builder.py": {**SHARED, "config": "IBuilderConfig"},
    "flavors.py": {**SHARED, "config": "IBuilderConfig"},
    "runner.py": {k: v for k, v in SHARED.items() if k != "builder"},   # runner's `builder` is engine.json's
    "refit.py": {**SHARED, "config": "ISerializationConfig", "refitter": "Refitter",
                 "parser_refitter": "OnnxParserRefitter"},
}
MODULE = "tensorrt"   # attributes of the module itself
DICT_METHODS = {"get", "items", "keys", "values"}   # `layer` is also an inspector JSON dict in inspector_summary

USED: dict[str, set[str]] = {
    MODULE: {"Builder", "BuilderFlag", "ComputeCapability", "HardwareCompatibilityLevel", "IStreamWriter",
             "LayerInformationFormat", "Logger", "MemoryPoolType", "NetworkDefinitionCreationFlag", "OnnxParser",
             "OnnxParserRefitter", "ProfilingVerbosity", "Refitter", "Runtime", "SerializationFlag"},
    "Builder": {"build_serialized_network", "build_serialized_network_to_stream", "create_builder_config",
                "create_network", "create_optimization_profile"},
    "IBuilderConfig": {"add_optimization_profile", "builder_optimization_level", "create_timing_cache",
                       "get_timing_cache", "hardware_compatibility_level", "num_compute_capabilities",
                       "profiling_verbosity", "set_compute_capability", "set_flag", "set_memory_pool_limit",
                       "set_timing_cache"},
    "INetworkDefinition": {"get_layer", "num_layers"},
    "ILayer": {"get_output_type", "num_outputs", "type"},
    "OnnxParser": {"get_error", "num_errors", "parse_from_file"},
    "ParserError": {"desc", "node", "node_name", "node_operator"},
    "IOptimizationProfile": {"set_shape"},
    "ITimingCache": {"serialize"},
    "IHostMemory": {"nbytes"},
    "IStreamWriter": {"write"},
    "Runtime": {"deserialize_cuda_engine", "engine_host_code_allowed"},
    "ICudaEngine": {"create_engine_inspector", "create_execution_context", "create_serialization_config",
                    "device_memory_size_v2", "get_device_memory_size_for_profile_v2", "serialize_with_config"},
    "IExecutionContext": {"execute_async_v3", "get_tensor_shape", "set_input_shape", "set_optimization_profile_async",
                          "set_tensor_address"},
    "EngineInspector": {"get_engine_information"},
    "Refitter": {"get_missing_weights", "refit_cuda_engine"},
    "OnnxParserRefitter": {"get_error", "num_errors", "refit_from_file"},
    "ISerializationConfig": {"flags"},
    "Logger": {"ERROR", "VERBOSE"},
    "BuilderFlag": {"REFIT_IDENTICAL", "STRIP_PLAN", "VERSION_COMPATIBLE"},
    "NetworkDefinitionCreationFlag": {"STRONGLY_TYPED"},
    "MemoryPoolType": {"WORKSPACE"},
    "ProfilingVerbosity": {v.upper() for v in PROFILING_VERBOSITY},   # getattr(trt.ProfilingVerbosity, v.upper())
    "HardwareCompatibilityLevel": {"AMPERE_PLUS"},
    "SerializationFlag": {"EXCLUDE_WEIGHTS"},
    "LayerInformationFormat": {"JSON"},
}
# set only where flavor.builds_without_gpu (TensorRT-RTX's ahead-of-time targets); TensorRT 11 has none of them
RTX_ONLY = {(MODULE, "ComputeCapability"), ("IBuilderConfig", "num_compute_capabilities"),
            ("IBuilderConfig", "set_compute_capability")}
# results of calls the scanner cannot type: engine.create_engine_inspector() -> EngineInspector
UNTYPED = {("EngineInspector", "get_engine_information")}


def _is_trt(node: ast.AST) -> bool:
    return (isinstance(node, ast.Name) and node.id == "trt") or (
        isinstance(node, ast.Attribute) and node.attr == "trt" and isinstance(node.value, ast.Name))


def _variable(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self":
        return node.attr
    return None


def used_in_code() -> set[tuple[str, str]]:
    """(class, member) pairs the engine modules use: trt.X and trt.X.Y chains, getattr/hasattr(trt.X, "Y"),
    methods of subclasses of trt classes, and members of variables that hold TensorRT objects."""
    found = set()
    for name, variables in VARIABLES.items():
        for node in ast.walk(ast.parse((ENGINES / name).read_text())):
            if isinstance(node, ast.Attribute) and _is_trt(node.value) and not node.attr.startswith("__"):
                found.add((MODULE, node.attr))
            elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute) and \
                    _is_trt(node.value.value) and not node.attr.startswith("__"):
                found.add((node.value.attr, node.attr))
            elif isinstance(node, ast.Attribute) and _variable(node.value) in variables and \
                    node.attr not in DICT_METHODS:
                found.add((variables[_variable(node.value)], node.attr))
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and \
                    node.func.id in ("getattr", "hasattr") and isinstance(node.args[0], ast.Attribute) and \
                    _is_trt(node.args[0].value) and isinstance(node.args[1], ast.Constant):
                found.add((node.args[0].attr, node.args[1].value))
            elif isinstance(node, ast.ClassDef):
                for base in node.bases:
                    if isinstance(base, ast.Attribute) and _is_trt(base.value):
                        found |= {(base.attr, f.name) for f in node.body
                                  if isinstance(f, ast.FunctionDef) and not f.name.startswith("_")}
    return found


def _pairs(table: dict[str, set[str]]) -> set[tuple[str, str]]:
    return {(cls, member) for cls, members in table.items() for member in members}


def test_the_list_is_what_the_code_uses():
    code = used_in_code()
    listed = _pairs(USED) - UNTYPED
    assert sorted(code - listed) == [], "the engine code uses TensorRT names missing from USED: add them"
    assert sorted(listed - code - {("ProfilingVerbosity", v.upper()) for v in PROFILING_VERBOSITY}) == [], \
        "USED lists names the code no longer uses"


def test_every_name_exists_in_tensorrt_11():
    classes, module = DOCUMENTED["classes"], set(DOCUMENTED["module"])
    missing = sorted((cls, member) for cls, member in _pairs(USED) - RTX_ONLY
                     if member not in (module if cls == MODULE else classes.get(cls, ())))
    assert missing == [], f"not in TensorRT 11's Python API ({DOCUMENTED['source'][:60]}...)"
    # what TensorRT 11 removed (weak typing, implicit quantisation) is not used: the check can fail
    assert "FP16" not in classes["BuilderFlag"] and "int8_calibrator" not in classes["IBuilderConfig"]
    assert all((cls, m) not in _pairs({k: set(v) for k, v in classes.items()}) for cls, m in RTX_ONLY
               if cls != MODULE) and "ComputeCapability" not in module


@pytest.mark.parametrize("module_name", ["tensorrt_rtx", "tensorrt"])
def test_names_exist_in_an_installed_wheel(module_name):
    """Import-level: the names on the real classes of a wheel that imports without a GPU. TensorRT-RTX lacks what
    only TensorRT has (the lean runtime's host code flag and Triton-facing compatibility are guarded in the code)."""
    try:
        trt = importlib.import_module(module_name)
    except ImportError as exc:
        pytest.skip(f"{module_name} is not importable here ({exc}); PyPI's tensorrt is a stub that downloads the "
                    f"wheel from NVIDIA's index: install it on the GPU host")
    classes = {"EngineInspector": "IEngineInspector"}    # the Python class is exported under its C++ name too
    missing = []
    for cls, member in sorted(_pairs(USED)):
        if module_name == "tensorrt" and (cls, member) in RTX_ONLY:
            continue
        owner = trt if cls == MODULE else getattr(trt, classes.get(cls, cls), None) or getattr(trt, cls, None)
        if owner is None or not hasattr(owner, member):
            missing.append((cls, member))
    assert missing == [], f"{module_name} {trt.__version__} lacks {missing}"


def test_install_hint_pins_a_tensorrt_the_ngc_table_lists():
    """The README's path used to end in a refusal: the hint named an unpinned tensorrt-cu13 (11.4 on PyPI) that no
    listed Triton image carries. The hint now pins the newest listed release's TensorRT."""
    import re

    from nvembed_trt.ngc_triton import image_table
    from nvembed_trt.engines.flavors import FLAVORS

    hint = FLAVORS["tensorrt"].install
    pinned = re.search(r"pip install tensorrt-cu13==(\d+\.\d+\.\d+\.\d+) ", hint).group(1)
    assert [r.release for r in image_table().carrying(pinned)] == ["26.09"] and pinned == "11.3.0.99"
    assert "nvcr.io/nvidia/tensorrt:26.09-py3" in hint
