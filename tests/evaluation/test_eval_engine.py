"""The engine runtime of `nvembed-trt eval` as far as a CPU goes: an engine folder is read from its engine.json (recipe,
plan identity, the serving limit that caps --max-length) and a host without a GPU gets the runner's own error, exit
2, nothing written. On a GPU host (`gpu` marker): an engine built for the present card ranks the labelled set as the
ONNX export does."""

from __future__ import annotations

import pytest

from sidecars import engine_folder, engine_meta
from nvembed_trt.cli.main import main
from nvembed_trt.engines.gpus import get_gpu
from nvembed_trt.errors import InputError
from nvembed_trt.retrieval.beir import write_beir
from nvembed_trt.evaluation.embedders import EmbedderSpec, open_embedder
from nvembed_trt.retrieval.stdlib_set import QUERY_TASK, stdlib_retrieval_set


def fake_engine(root, gpu="l40s", recipe="fp16"):
    """engine.json as the builder writes it, a dummy plan (read only when embedding)."""
    folder = engine_folder(root / "engines" / gpu / "tiny" / recipe,
                           engine_meta(gpu, "tensorrt-rtx", "1.7.1.116", recipe=recipe), plan_bytes=1)
    return folder, get_gpu(gpu).serving.max_sequence_length


def test_engine_folder_is_read_and_its_limit_enforced(tmp_path, tiny):
    folder, limit = fake_engine(tmp_path)
    embedder = open_embedder(EmbedderSpec(runtime="engine", encoder=str(folder), max_length=limit), tiny.tokenizer)
    assert embedder.recipe == "fp16" and embedder.identity["gpu"] == "l40s"
    assert embedder.identity["plan"][0]["bytes"] == 1 and len(embedder.identity["sidecar_sha256"]) == 64
    with pytest.raises(InputError, match=f"--max-length {limit + 1} exceeds the engine's longest sequence {limit}"):
        open_embedder(EmbedderSpec(runtime="engine", encoder=str(folder), max_length=limit + 1), tiny.tokenizer)
    with pytest.raises(InputError, match="--runtime engine needs --encoder"):
        open_embedder(EmbedderSpec(runtime="engine"), tiny.tokenizer)


def test_engine_without_a_gpu_is_a_clear_error(tmp_path, capsys):
    from nvembed_trt.engines.flavors import cuda_gpu

    if cuda_gpu() is not None:
        pytest.skip("this host has a GPU: the no-GPU error path does not apply")
    folder, _ = fake_engine(tmp_path)
    data = write_beir(stdlib_retrieval_set(5), tmp_path / "stdlib")
    code = main(["eval", "--data", str(data), "--runtime", "engine", "--encoder", str(folder), "--instruction",
                 QUERY_TASK, "--max-length", "64", "--output", str(tmp_path / "out"), "--no-cache"])
    assert code == 2 and "running an engine needs a CUDA GPU; this machine has none" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.gpu
def test_engine_ranks_as_the_onnx_export(tmp_path):
    """On a GPU host: the fp32 export built for the present card; same top-10s as ONNX Runtime on the same graph
    (TensorRT may use TF32 matmuls: metrics within 1e-3)."""
    from nvembed_trt.engines.builder import BuildSettings, engine_from_onnx
    from nvembed_trt.engines.flavors import cuda_gpu, runnable_targets
    from nvembed_trt.engines.gpus import gpu_registry
    from nvembed_trt.evaluation.run import EvalSettings, run_eval
    from nvembed_trt.export import onnx_from_model

    targets, why = runnable_targets(cuda_gpu(), gpu_registry())
    if not targets:
        pytest.skip(why)
    gpu, flavor = targets[0]
    export = onnx_from_model("tiny", tmp_path / "export", parity=False).directory
    engine = engine_from_onnx(export / "model.onnx", tmp_path / "engine",
                              BuildSettings(gpu=gpu.name, flavor=flavor.name)).directory
    data = write_beir(stdlib_retrieval_set(), tmp_path / "stdlib")
    reports = {}
    for runtime, encoder in (("onnx", export), ("engine", engine)):
        spec = EmbedderSpec(runtime=runtime, encoder=str(encoder), max_length=128)
        reports[runtime] = run_eval(EvalSettings(dataset=str(data), instruction=QUERY_TASK, embedder=spec,
                                                 output=str(tmp_path / runtime)), progress=False)[0]
    for metric, value in reports["onnx"]["metrics"].items():
        assert reports["engine"]["metrics"][metric] == pytest.approx(value, abs=1e-3), metric
