"""nvembed-trt refit: a weight-stripped plan filled from its ONNX weights on the serving host (needs a GPU)."""

from __future__ import annotations

import json
import shutil

import pytest

from nvembed_trt.cli.main import main
from nvembed_trt.engines import BuildSettings, engine_from_onnx
from nvembed_trt.engines.flavors import cuda_gpu
from nvembed_trt.engines.gpus import gpu_registry
from nvembed_trt.engines.refit import RefitError, refit_engine
from nvembed_trt.errors import InputError
from nvembed_trt.export import onnx_from_model

trt = pytest.importorskip("tensorrt_rtx", reason="tensorrt-rtx is not installed (pip install tensorrt-rtx)")


@pytest.fixture(scope="module")
def tiny_fp16(tmp_path_factory):
    root = tmp_path_factory.mktemp("refit")
    return onnx_from_model("tiny", root / "export", dtype="float16", parity=False).onnx_path


@pytest.fixture(scope="module")
def built(tiny_fp16, tmp_path_factory):
    return engine_from_onnx(tiny_fp16, tmp_path_factory.mktemp("e") / "rtx-6000-ada" / "tiny" / "fp16",
                            BuildSettings(gpu="rtx-6000-ada"))


def test_full_plan_is_not_refitted(built, capsys):
    with pytest.raises(RefitError, match=r"was not built with --strip-weights: it already holds its weights"):
        refit_engine(built.directory)
    assert main(["refit", "--engine", str(built.directory)]) == 2
    assert "already holds its weights" in capsys.readouterr().err


def test_refit_checks_graph_and_gpu_before_deserialising(built, tiny_fp16, tmp_path):
    """A stripped engine directory (engine.json says so): the wrong graph is refused by sha256; without a GPU the
    refusal says where to run it."""
    engine = tmp_path / "stripped"
    shutil.copytree(built.directory, engine)
    meta = json.loads((engine / "engine.json").read_text())
    meta["weights"] = {"stripped": True}
    (engine / "engine.json").write_text(json.dumps(meta))
    other = tmp_path / "other.onnx"
    other.write_bytes(tiny_fp16.read_bytes() + b"\0")
    with pytest.raises(RefitError, match=r"is not the graph .* was built from \(sha256 differs"):
        refit_engine(engine, other)
    with pytest.raises(InputError, match=r"ONNX file not found: .*none.onnx \(pass --onnx"):
        refit_engine(engine, tmp_path / "none.onnx")
    if cuda_gpu() is None:
        with pytest.raises(RefitError, match=r"refitting deserialises the engine, which needs a CUDA GPU; this "
                                             r"machine has none \(run `nvembed-trt refit` on the serving host\)"):
            refit_engine(engine)
    with pytest.raises(InputError, match=r"no engine.json; make it with `nvembed-trt build"):
        refit_engine(tmp_path)


@pytest.mark.gpu
def test_stripped_plan_refits_to_the_full_engine(tiny_fp16, tmp_path):
    """On an RTX-class GPU host: the stripped plan is a fraction of the full one; refit restores a full plan."""
    name, cc = cuda_gpu()
    matching = [g.name for g in gpu_registry().values() if g.compute_capability == cc and "tensorrt-rtx" in g.flavors]
    if not matching:
        pytest.skip(f"{name} (compute capability {cc}) is not a tensorrt-rtx target: refit of an RTX plan needs one")
    full = engine_from_onnx(tiny_fp16, tmp_path / "full", BuildSettings(gpu=matching[0], flavor="tensorrt-rtx"))
    stripped = engine_from_onnx(tiny_fp16, tmp_path / "stripped",
                                BuildSettings(gpu=matching[0], flavor="tensorrt-rtx", strip_weights=True))
    assert stripped.meta.weights.stripped is True
    assert stripped.meta.engine_bytes < 0.5 * full.meta.engine_bytes
    plan = refit_engine(stripped.directory)
    meta = json.loads((stripped.directory / "engine.json").read_text())
    assert meta["weights"]["stripped"] is False and meta["weights"]["refitted_on"] == name
    assert plan.stat().st_size == meta["engine_bytes"] > 0.9 * full.meta.engine_bytes
