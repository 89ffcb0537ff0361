"""Engines: every recipe builds with TensorRT-RTX on CPU (pooling in the engine; the ensemble variant once per
quantisation method); engine.json says how."""

from __future__ import annotations

import json
import shutil

import onnx
import pytest
from onnx import TensorProto, helper

from nvembed_trt.artifacts import SidecarError
from nvembed_trt.cli.main import main
from nvembed_trt.engines import BuildSettings, EngineBuildError, FlavorError, engine_from_onnx, get_gpu
from nvembed_trt.engines.flavors import FLAVORS, cuda_gpu, installed
from nvembed_trt.errors import InputError
from nvembed_trt.export import onnx_from_model
from nvembed_trt.precision import RECIPES, onnx_with_recipe, recipe_from_model
from nvembed_trt.precision.settings import StreamedRecipeSettings
from nvembed_trt.provenance import sha256_file

trt = pytest.importorskip("tensorrt_rtx", reason="tensorrt-rtx is not installed (pip install tensorrt-rtx)")
GPU = "rtx-6000-ada"
# every recipe with pooling in the engine; the ensemble variant (token states out) once per quantisation method
FIRST_OF_EACH_METHOD = list({r.method: n for n, r in reversed(list(RECIPES.items()))}.values())[::-1]
CASES = [("engine", n) for n in RECIPES] + [("ensemble", n) for n in FIRST_OF_EACH_METHOD]


@pytest.fixture(scope="module")
def graphs(tmp_path_factory, recipe_workspace, gated_recipes):
    """Each case's graph: the session's gated recipes (tests/conftest.py) for pooling in the engine, an ensemble
    export's for the rest; a recipe that cannot pass its gate on tiny (the registry says why) is made ungated to
    build it."""
    root = tmp_path_factory.mktemp("engines")
    fp32, calibration = recipe_workspace
    exports = {"engine": fp32, "ensemble": onnx_from_model("tiny", root / "export" / "tiny-ensemble",
                                                           pooling="ensemble")}
    found = {}
    for pooling, name in CASES:
        if RECIPES[name].tiny_limitation is not None:
            found[(pooling, name)] = recipe_from_model("tiny", StreamedRecipeSettings(
                recipe=name, calibration=calibration, output=exports[pooling].directory / name, gate=False,
                pooling=pooling, progress=False)).onnx_path
        elif pooling == "engine":
            found[(pooling, name)] = gated_recipes[name].onnx_path
        else:
            found[(pooling, name)] = onnx_with_recipe(exports[pooling].onnx_path, name, calibration).onnx_path
    return root, found


@pytest.fixture(scope="module")
def engines(graphs):
    root, found = graphs
    return {key: engine_from_onnx(path, root / "engines" / GPU / f"tiny-{key[0]}" / key[1], BuildSettings(gpu=GPU))
            for key, path in found.items()}


@pytest.mark.parametrize("pooling, recipe", CASES)
def test_engine_and_metadata(engines, graphs, pooling, recipe):
    result = engines[(pooling, recipe)]
    meta = json.loads((result.directory / "engine.json").read_text())
    gpu = get_gpu(GPU)
    assert result.plan_path.stat().st_size == meta["engine_bytes"] > 100_000
    assert meta["flavor"] == "tensorrt-rtx" and meta["flavor_version"] == trt.__version__
    assert meta["gpu"]["aot_targets"] == ["SM89"] and meta["gpu"]["compute_capability"] == "8.9"
    assert meta["profiles"] == [p.model_dump() for p in gpu.profiles] and meta["recipe"] == recipe
    assert meta["onnx_sha256"] == sha256_file(graphs[1][(pooling, recipe)])
    assert meta["inputs"][:2] == ["input_ids", "attention_mask"]
    assert meta["outputs"] == (["embeddings"] if pooling == "engine" else ["token_states"])
    precision = meta["network_precision"]
    assert set(precision["SOFTMAX"]) == {"FLOAT"} and set(precision["NORMALIZATION"]) == {"FLOAT"}
    want = {"fp32": "FLOAT", "fp16": "HALF", "bf16": "BF16"}.get(recipe)
    if want:
        assert want in precision["MATRIX_MULTIPLY"]
    elif RECIPES[recipe].method == "weight-only":  # weights dequantised into fp16 GEMMs, activations never quantised
        assert precision.get("DEQUANTIZE") and not precision.get("QUANTIZE") and "HALF" in precision["MATRIX_MULTIPLY"]
    else:  # Q/DQ recipes: the strongly typed network carries the quantise/dequantise layers
        assert precision.get("QUANTIZE") and precision.get("DEQUANTIZE")


def test_another_rtx_target(graphs, tmp_path, capfd):
    result = engine_from_onnx(graphs[1][("engine", "int8")], tmp_path / "a10" / "tiny" / "int8",
                              BuildSettings(gpu="a10"))
    assert result.meta.gpu.aot_targets == ["SM86"] and result.meta.serving.max_batch_size == 8
    # TensorRT-RTX printed "[TRT] [F] Thread context has not been set!" on every build (a hardware-compatibility
    # query it does not support): a build says what it wrote and nothing fatal-looking
    printed = "".join(capfd.readouterr())          # TensorRT's default logger writes to stdout
    assert "[F]" not in printed and "Thread context" not in printed
    assert result.meta.compatibility["hardware_compatibility_level"] == "NONE"


def test_hopper_is_refused_for_tensorrt_rtx(graphs, tmp_path):
    with pytest.raises(FlavorError, match=r"h100 \(compute capability 9.0\) is not a tensorrt-rtx target"):
        engine_from_onnx(graphs[1][("engine", "fp16")], tmp_path / "e",
                         BuildSettings(gpu="h100", flavor="tensorrt-rtx"))


@pytest.mark.skipif(installed(FLAVORS["tensorrt"]), reason="the tensorrt flavor is installed on this machine")
def test_missing_flavor_says_how_to_install(graphs, tmp_path):
    with pytest.raises(FlavorError, match=r"flavor tensorrt is not installed \(module tensorrt\): pip install"):
        engine_from_onnx(graphs[1][("engine", "fp16")], tmp_path / "e", BuildSettings(gpu="l40s", flavor="tensorrt"))


def test_unsupported_node_is_named(graphs, tmp_path):
    node = helper.make_node("Frobnicate", ["input_ids"], ["embeddings"], name="frob_1", domain="example.ops")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("input_ids", TensorProto.INT32, ["b", "s"])],
                              [helper.make_tensor_value_info("embeddings", TensorProto.FLOAT, ["b", 4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid("example.ops", 1)])
    path = tmp_path / "bad.onnx"
    onnx.save(model, path)
    with pytest.raises(SidecarError, match=r"no precision.json or export.json beside the graph"):
        engine_from_onnx(path, tmp_path / "out", BuildSettings(gpu=GPU))   # nothing would say its recipe
    shutil.copyfile(graphs[1][("engine", "fp32")].parent.parent / "export.json", tmp_path / "export.json")
    with pytest.raises(EngineBuildError, match=r"cannot parse .*bad.onnx: node 'frob_1' \(Frobnicate\)"):
        engine_from_onnx(path, tmp_path / "out", BuildSettings(gpu=GPU))
    assert not (tmp_path / "out").exists()


def test_existing_output_and_missing_onnx(graphs, tmp_path, capsys):
    path = graphs[1][("engine", "fp32")]
    out = tmp_path / GPU / "tiny" / "fp32"
    assert main(["build", "--onnx", str(path), "--gpu", GPU, "--output", str(out)]) == 0
    assert f"wrote {out / 'model.plan'}" in capsys.readouterr().out
    assert main(["build", "--onnx", str(path), "--gpu", GPU, "--output", str(out)]) == 2
    assert "already exists and is not empty" in capsys.readouterr().err
    with pytest.raises(InputError, match="ONNX file not found"):
        engine_from_onnx(tmp_path / "none.onnx", tmp_path / "x", BuildSettings(gpu=GPU))


def test_plan_is_streamed_and_engine_json_says_how(engines):
    """The plan goes to its file through IStreamWriter (no host copy); engine.json records verbosity and limits."""
    meta = engines[("engine", "fp16")].meta
    how = meta.builder.serialization
    assert how["method"] == "stream" and how["chunks"] >= 1 and 0 < how["largest_chunk_bytes"] <= meta.engine_bytes
    assert meta.builder.profiling_verbosity == "detailed" and not meta.weights.stripped
    assert meta.compatibility == {"version_compatible": False, "hardware_compatibility_level": "NONE",
                                  "runtime_needs": [], "loads_with": f"tensorrt-rtx {trt.__version__} exactly"}
    assert meta.builder.timing_cache == "not used (tensorrt-rtx ignores timing caches)"
    assert not list(engines[("engine", "fp16")].directory.parent.glob(".*tmp*"))  # no temporary left behind


FULL_DISK = """
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)          # writes past the limit fail with EFBIG, like a full disk
resource.setrlimit(resource.RLIMIT_FSIZE, (4 * 2**20, 4 * 2**20))
from nvembed_trt.artifacts import SidecarError
from nvembed_trt.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_plan_that_cannot_be_written_whole_is_refused(graphs, tmp_path):
    """Found on the full-size build: a disk that filled up mid-plan left a truncated plan reported as built. Now the
    writer's failure is caught, the build fails naming the bytes written and the error, and nothing is left."""
    import subprocess
    import sys

    out = tmp_path / GPU / "tiny" / "fp32"
    proc = subprocess.run([sys.executable, "-c", FULL_DISK, "build", "--onnx", str(graphs[1][("engine", "fp32")]),
                           "--gpu", GPU, "--output", str(out)], capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr
    assert "but writing the plan failed after" in proc.stderr and "File too large" in proc.stderr, proc.stderr
    assert " GB free on " in proc.stderr
    assert f"nothing was written to {out}" in proc.stderr
    assert not out.exists() and not [p for p in tmp_path.rglob("*") if p.is_file()]


def test_disk_space_is_checked_before_building(tmp_path):
    from nvembed_trt.engines.builder import disk_space_problem

    assert disk_space_problem(tmp_path, 1, "one byte") is None
    message = disk_space_problem(tmp_path, 10**18, "the graph's weights plus 64 MiB")
    assert message.startswith("not enough disk space for the plan: it needs about 1000000000.00 GB (the graph's "
                              "weights plus 64 MiB)") and f"{tmp_path} has " in message and " GB free" in message


@pytest.mark.parametrize("option, message", [
    ({"version_compatible": True}, r"--version-compatible applies to the tensorrt flavor: .*libnvinfer_lean"),
    ({"hardware_compatible": True}, r"--hardware-compatible applies to the tensorrt flavor; tensorrt-rtx builds "
                                    r"for the compute capability it targets \(rtx-6000-ada: 8.9\)"),
])
def test_rtx_refuses_compatibility_options_it_cannot_build(graphs, tmp_path, option, message):
    with pytest.raises(FlavorError, match=message):
        engine_from_onnx(graphs[1][("engine", "fp16")], tmp_path / "e", BuildSettings(gpu=GPU, **option))
    assert not (tmp_path / "e").exists()


@pytest.mark.skipif(cuda_gpu() is not None, reason="a GPU is present: the stripped build is tested in test_refit.py")
def test_strip_weights_without_gpu_says_why(graphs, tmp_path, capsys):
    """TensorRT-RTX 1.7 compiles refittable engines with CUDA (checked: STRIP_PLAN, REFIT, REFIT_IDENTICAL all fail
    with cudaError 35 on this CPU machine), so the option is refused before parsing, saying where it works."""
    with pytest.raises(FlavorError, match=r"--strip-weights: tensorrt-rtx compiles refittable .* with CUDA, and this "
                                          r"machine has no GPU"):
        engine_from_onnx(graphs[1][("engine", "fp16")], tmp_path / "e", BuildSettings(gpu=GPU, strip_weights=True))
    args = ["build", "--onnx", str(graphs[1][("engine", "fp16")]), "--gpu", GPU, "--output", str(tmp_path / "c"),
            "--strip-weights"]
    assert main(args) == 2 and "--strip-weights" in capsys.readouterr().err


def test_profiling_verbosity_is_checked(graphs, tmp_path):
    with pytest.raises(InputError, match=r"profiling verbosity must be one of detailed, layer_names_only, none, "
                                         r"got 'loud'"):
        engine_from_onnx(graphs[1][("engine", "fp16")], tmp_path / "e",
                         BuildSettings(gpu=GPU, profiling_verbosity="loud"))


@pytest.mark.gpu
@pytest.mark.cuda_torch
def test_engine_runner_matches_reference_on_gpu(request, tmp_path, tiny, cosine):
    """On a GPU host: build for the present card with a flavor installed here that targets it (the tensorrt flavor
    first) and compare with the PyTorch reference; skip saying why when no profile and flavor fit this host."""
    from nvembed_trt.engines.flavors import cuda_gpu, runnable_targets
    from nvembed_trt.engines.gpus import gpu_registry
    from nvembed_trt.engines.runner import EngineRunner
    from texts import SENTENCES

    targets, why = runnable_targets(cuda_gpu(), gpu_registry())
    if not targets:
        pytest.skip(why)
    gpu, flavor = targets[0]
    graphs = request.getfixturevalue("graphs")   # built only once the host is known to fit
    for pooling in ("engine", "ensemble"):
        result = engine_from_onnx(graphs[1][(pooling, "fp16")], tmp_path / pooling / "fp16",
                                  BuildSettings(gpu=gpu.name, flavor=flavor.name))
        runner = EngineRunner(result.directory)
        batch = tiny.tokenizer(SENTENCES, "", 128)
        got = runner.run(batch)
        assert cosine(got, tiny.embed_batch(SENTENCES, "", 128)).min().item() >= 0.999


def test_compatibility_facts_print_nothing_fatal_looking(capfd):
    """Reading IBuilderConfig.hardware_compatibility_level on TensorRT-RTX printed "[TRT] [F] Thread context has not
    been set! Using global log stream." on every build; the RTX flavor has no such level and no longer reads it."""
    from nvembed_trt.engines.builder import _compatibility
    from nvembed_trt.engines.flavors import FLAVORS

    config = trt.Builder(trt.Logger(trt.Logger.ERROR)).create_builder_config()
    facts = _compatibility(trt, config, FLAVORS["tensorrt-rtx"], False)
    printed = "".join(capfd.readouterr())          # TensorRT's default logger writes to stdout
    assert facts["hardware_compatibility_level"] == "NONE"
    assert "Thread context" not in printed and "[F]" not in printed
