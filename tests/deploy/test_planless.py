"""A TensorRT repository made on a CPU host for a GPU profile, without a plan (`triton-repo --gpu`), completed on the
node by `deploy ensure-engine`; the pod's disk sized for that build; the ONNX Runtime an ONNX encoder's image needs.
The node half runs up to the build call (TensorRT needs the target GPU); a stand-in for the build returns the
TensorRT-RTX engine built here, relabelled, to check what ensure does with a built engine."""

from __future__ import annotations

import dataclasses
import json
import shutil

import pytest
import yaml

from nvembed_trt.artifacts import EngineMeta, ExportMeta
from nvembed_trt.cli.main import main
from nvembed_trt.deploy import ensure as ensure_module
from nvembed_trt.deploy.bundle import deploy_k8s
from nvembed_trt.ngc_triton import image_table
from nvembed_trt.deploy.spec import DeployOptions, resolve, volume_gib
from nvembed_trt.engines import EngineBuildError, EngineResult, get_gpu
from nvembed_trt.errors import InputError
from nvembed_trt.triton import repo_from_encoder
from nvembed_trt.triton.config import from_pbtxt
from nvembed_trt.triton.meta import RepoMeta
from nvembed_trt.triton.repository import PLAN_ON_NODE, RepoSettings

FULL_SIZE_FP16 = 15_702_032_384


@pytest.fixture
def planless(tiny_export, tmp_path):
    """The tiny export made into an H100 repository on this CPU: store/tiny-h100 and store/tiny-h100-onnx."""
    return repo_from_encoder("tiny", tiny_export, tmp_path / "store" / "tiny-h100", RepoSettings(gpu="h100")).directory


def test_cpu_host_makes_a_repository_for_a_gpu_profile(planless, tiny_export):
    h100 = get_gpu("h100")
    encoder = from_pbtxt((planless / "encoder" / "config.pbtxt").read_text())
    assert encoder.platform == "tensorrt_plan" and encoder.max_batch_size == h100.serving.max_batch_size == 64
    assert list(encoder.instance_group[0].profile) == ["0", "1"]
    assert encoder.parameters["execution_context_allocation_strategy"].string_value == "ON_PROFILE_CHANGE"
    assert (planless / "encoder" / "1").is_dir() and not list((planless / "encoder" / "1").iterdir())
    meta = RepoMeta.read(planless)
    engine = meta.engine
    assert (engine.gpu.profile, engine.gpu.compute_capability, engine.plan) == ("h100", "9.0", PLAN_ON_NODE)
    newest = image_table().releases[-1]
    assert meta.triton_image.release == newest.release and engine.flavor_version == newest.tensorrt
    assert [s.max_sequence for s in meta.spec.shape_limits] == [p.sequence.max for p in h100.profiles]
    assert meta.onnx_dir == "tiny-h100-onnx" and meta.encoder_memory["gpu"] == "h100" and meta.plan_on_node
    graph = planless.with_name("tiny-h100-onnx")
    assert (graph / "model.onnx").read_bytes() == (tiny_export / "model.onnx").read_bytes()
    assert ExportMeta.read(graph).config is not None   # the node's builder reads it


def test_gpu_option_is_for_exports_and_tensorrt_targets(trt_engine, tiny_export, tmp_path, capsys):
    with pytest.raises(InputError, match="is an engine folder, already built for its own GPU: drop --gpu"):
        repo_from_encoder("tiny", trt_engine, tmp_path / "r", RepoSettings(gpu="h100"))
    with pytest.raises(InputError, match="unknown GPU profile 'b200'"):
        repo_from_encoder("tiny", tiny_export, tmp_path / "r", RepoSettings(gpu="b200"))
    assert main(["triton-repo", "--model", "tiny", "--encoder", str(tiny_export), "--gpu", "l40s", "--output",
                 str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out
    assert "no plan yet: the GPU node builds it" in out and f"{tmp_path / 'r-onnx'}/" in out
    assert not list(tmp_path.glob(".*"))                      # no staging folder left


def test_deployment_builds_on_the_node_with_sized_disk(planless, tmp_path):
    out = tmp_path / "deploy"
    deploy_k8s(planless, out, DeployOptions(storage="s3", storage_uri="s3://bucket/models"))
    pod = yaml.safe_load((out / "deployment.yaml").read_text())["spec"]["template"]["spec"]
    ensure = pod["initContainers"][-1]
    assert ensure["image"].startswith("nvembed-trt-builder:") and ensure["args"][-2:] == ["--work-dir", "/scratch"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert {"store", "models", "scratch"} <= set(volumes)
    assert all(volumes[n]["emptyDir"]["sizeLimit"].endswith("Gi") for n in ("store", "models", "scratch"))
    request = int(pod["containers"][0]["resources"]["requests"]["ephemeral-storage"].removesuffix("Gi"))
    sizes = [int(volumes[n]["emptyDir"]["sizeLimit"].removesuffix("Gi")) for n in ("store", "models", "scratch")]
    assert request == sum(sizes) + 1


def test_full_size_rebuild_disk_is_requested_and_limited(planless, tmp_path):
    """The issue's rebuild: the 15.7 GB graph in the store, the 15.7 GB plan in the pod's repository copy and again
    in the builder's scratch folder; each volume gets 10 % headroom + 1 GiB and the pod requests their sum."""
    shutil.rmtree(planless.with_name("tiny-h100-onnx"))     # uploaded elsewhere: sized from the engine facts
    meta = RepoMeta.read(planless)
    meta.updated(engine=meta.engine.updated(engine_bytes=FULL_SIZE_FP16)).write(planless)
    spec = resolve(planless, DeployOptions(storage="gcs", storage_uri="gs://bucket/models"))
    assert volume_gib(FULL_SIZE_FP16) == 18 and spec.models_gib == spec.scratch_gib == 18
    assert spec.store_gib == 18 and spec.ephemeral_request_gib == 55
    pvc = resolve(planless, DeployOptions(ephemeral_storage_class="fast-nvme"))
    assert pvc.ephemeral_request_gib == 1 and pvc.store_gib is None
    from nvembed_trt.deploy.k8s import deployment

    volumes = {v["name"]: v for v in deployment(pvc)["spec"]["template"]["spec"]["volumes"]}
    claim = volumes["scratch"]["ephemeral"]["volumeClaimTemplate"]["spec"]
    assert claim["storageClassName"] == "fast-nvme" and claim["resources"]["requests"]["storage"] == "18Gi"


def _stand_in_build(rtx_engine, calls, **meta_changes):
    """What engine_from_onnx would return on the node: the engine built here, relabelled as the tensorrt flavor."""
    def build(onnx, output, settings):
        calls.append({"onnx": onnx, "gpu": settings.gpu, "output": output, "flavor": settings.flavor})
        shutil.copytree(rtx_engine, output)
        meta = EngineMeta.read(output).updated(flavor="tensorrt", flavor_version=image_table().releases[-1].tensorrt,
                                               **meta_changes)
        meta.write(output)
        return EngineResult(output, output / "model.plan", meta)
    return build


def test_node_half_runs_up_to_the_build_call(planless, tmp_path, monkeypatch):
    import nvembed_trt.engines as engines

    calls = []

    def build(onnx, output, settings):
        calls.append({"onnx": onnx, "gpu": settings.gpu, "output": output, "flavor": settings.flavor})
        raise EngineBuildError("tensorrt 10.13.3.9 failed to build (stand-in)")
    monkeypatch.setattr(engines, "engine_from_onnx", build)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    with pytest.raises(ensure_module.EnsureError, match=r"holds no engine .*building it failed: tensorrt 10.13.3.9"):
        ensure_module.ensure(planless, planless.with_name("tiny-h100-onnx"), tmp_path / "models" / "tiny-h100",
                             compute_capability="9.0", work_dir=scratch)
    (call,) = calls
    assert call["onnx"] == planless.with_name("tiny-h100-onnx") / "model.onnx"
    assert (call["gpu"], call["flavor"]) == ("h100", "tensorrt") and call["output"].parent.parent == scratch
    assert list((tmp_path / "models").iterdir()) == [] and list(scratch.iterdir()) == []   # nothing half-made
    with pytest.raises(ensure_module.EnsureError, match=r"GPU profile h100 targets compute capability 9.0"):
        ensure_module.ensure(planless, planless.with_name("tiny-h100-onnx"), tmp_path / "m", compute_capability="8.9")


@pytest.fixture
def planless_ada(tiny_export, tmp_path):
    return repo_from_encoder("tiny", tiny_export, tmp_path / "store" / "tiny",
                             RepoSettings(gpu="rtx-6000-ada")).directory


def test_node_installs_the_engine_it_built(planless_ada, rtx_engine, tmp_path, monkeypatch):
    import nvembed_trt.engines as engines

    calls = []
    monkeypatch.setattr(engines, "engine_from_onnx", _stand_in_build(rtx_engine, calls))
    out = tmp_path / "models" / "tiny"
    account = ensure_module.ensure(planless_ada, planless_ada.with_name("tiny-onnx"), out, compute_capability="8.9")
    assert "holds no engine" in account and "built a rtx-6000-ada engine" in account and len(calls) == 1
    assert (out / "encoder" / "1" / "model.plan").read_bytes() == (rtx_engine / "model.plan").read_bytes()
    meta = RepoMeta.read(out)
    assert meta.engine.plan is None and meta.engine.flavor == "tensorrt" and not meta.plan_on_node
    assert EngineMeta.read(out) == meta.engine                   # engine.json beside repo.json, the same facts
    again = ensure_module.ensure(out, tmp_path / "none", tmp_path / "again", compute_capability="8.9")
    assert again.endswith(f"(tensorrt {image_table().releases[-1].tensorrt})")   # a restarted pod keeps its engine


def test_node_refuses_an_engine_tensorrt_says_will_not_fit(planless_ada, rtx_engine, tmp_path, monkeypatch):
    import nvembed_trt.engines as engines

    huge = {"per_profile_bytes": [60 * 2**30] * 2, "max_bytes": 60 * 2**30, "source": "stand-in"}
    monkeypatch.setattr(engines, "engine_from_onnx", _stand_in_build(rtx_engine, [], device_memory=huge))
    with pytest.raises(ensure_module.EnsureError, match=r"cannot serve this repository: .*TensorRT's own figure"):
        ensure_module.ensure(planless_ada, planless_ada.with_name("tiny-onnx"), tmp_path / "m", compute_capability="8.9")
    assert not (tmp_path / "m").exists()


def test_onnx_encoder_image_carries_its_onnxruntime(onnx_repo, tmp_path):
    deploy_k8s(onnx_repo, tmp_path / "cpu")
    assert 'ARG EXTRA_REQUIREMENTS="onnxruntime>=1.20"' in (tmp_path / "cpu" / "Dockerfile").read_text()
    cuda = tmp_path / "cuda-repo"
    shutil.copytree(onnx_repo, cuda)
    meta = RepoMeta.read(cuda)
    providers = ("CUDAExecutionProvider", "CPUExecutionProvider")
    meta.updated(spec=dataclasses.replace(meta.spec, onnx_providers=providers)).write(cuda)
    with pytest.raises(InputError, match=r"runs on CUDA \(--providers cuda\), so the pod needs a GPU: pass --gpu"):
        deploy_k8s(cuda, tmp_path / "x")
    deploy_k8s(cuda, tmp_path / "gpu", DeployOptions(gpu="l40s"))
    assert 'ARG EXTRA_REQUIREMENTS="onnxruntime-gpu>=1.20"' in (tmp_path / "gpu" / "Dockerfile").read_text()
    assert json.loads((tmp_path / "gpu" / "deploy.json").read_text())["extra_requirements"] == ["onnxruntime-gpu>=1.20"]
