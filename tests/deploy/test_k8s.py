"""`nvembed-trt deploy k8s`: every core object validated offline against the Kubernetes 1.37 schemas (strict), the
CRDs against their published schemas (tests/deploy/data/schemas/README.md says where each comes from), golden files,
and the consistency the cluster would otherwise find out at run time."""

from __future__ import annotations

import json
import os
import re
import shutil
from importlib import resources

import jsonschema
import kubernetes_validate
import pytest
import yaml
from .deploy_data import GOLDEN, SCHEMAS
from referencing import Registry, Resource

from nvembed_trt.cli.main import main
from nvembed_trt.deploy import contract as c
from nvembed_trt.deploy.bundle import deploy_k8s
from nvembed_trt.deploy.dockerfile import render_serving, serving_requirements
from nvembed_trt.deploy.spec import DeployOptions
from nvembed_trt.engines import get_gpu
from nvembed_trt.errors import InputError

K8S_VERSION = "1.37.0"
CORE = {"Deployment", "Service", "HorizontalPodAutoscaler", "PersistentVolumeClaim"}
CASES = {
    "onnx-pvc": ("onnx_repo", {}),
    "trt-s3": ("trt_repo", {"storage": "s3", "storage_uri": "s3://models-bucket/nvembed/", "replicas": 2,
                            "max_replicas": 8, "api_key_secret": "nvembed-api-key",
                            "image": "registry.example/nvembed-trt-serving:25.10"}),
    "trt-gcs": ("trt_repo", {"storage": "gcs", "storage_uri": "gs://models-bucket/nvembed", "drain_timeout_s": 30}),
}


@pytest.fixture(scope="module", params=list(CASES))
def bundle(request, tmp_path_factory):
    repo_fixture, options = CASES[request.param]
    repo = request.getfixturevalue(repo_fixture)
    out = tmp_path_factory.mktemp("bundle") / request.param
    result = deploy_k8s(repo, out, DeployOptions(**options))
    docs = {p.name: yaml.safe_load(p.read_text()) for p in sorted(out.glob("*.yaml"))}
    return request.param, result, docs


def _crd_validator(schema_file: str) -> jsonschema.protocols.Validator:
    schema = json.loads((SCHEMAS / schema_file).read_text())
    strict = resources.files("kubernetes_validate") / "kubernetes-json-schema" / f"v{K8S_VERSION}-local-strict"
    definitions = json.loads((strict / "_definitions.json").read_text())
    registry = Registry().with_resource(definitions["$id"], Resource.from_contents(definitions))
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    return cls(schema, registry=registry)


def test_core_objects_validate_strictly(bundle):
    _, _, docs = bundle
    core = {name: d for name, d in docs.items() if d.get("kind") in CORE}
    assert {d["kind"] for d in core.values()} >= {"Deployment", "Service", "HorizontalPodAutoscaler"}
    for name, obj in core.items():
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
    assert docs["hpa.yaml"]["apiVersion"] == "autoscaling/v2"


def test_strict_validation_catches_a_typo(bundle):
    _, _, docs = bundle
    broken = json.loads(json.dumps(docs["deployment.yaml"]))
    broken["spec"]["template"]["spec"]["containers"][0]["readinessProbes"] = {}
    with pytest.raises(kubernetes_validate.ValidationError, match="readinessProbes"):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


def test_crds_validate_against_their_schemas(bundle):
    _, _, docs = bundle
    monitor, isvc = _crd_validator("servicemonitor_v1.json"), _crd_validator("inferenceservice_v1beta1.json")
    monitor.validate(docs["servicemonitor.yaml"])
    isvc.validate(docs["inferenceservice.yaml"])
    bad = json.loads(json.dumps(docs["inferenceservice.yaml"]))
    bad["spec"]["predictor"]["minReplica"] = 1                           # typo of minReplicas
    assert any("minReplica" in e.message for e in isvc.iter_errors(bad))
    bad = json.loads(json.dumps(docs["servicemonitor.yaml"]))
    bad["spec"]["endpoints"][0]["scheme"] = "grpc"
    assert not monitor.is_valid(bad)


def test_golden_files(bundle):
    case, result, _ = bundle
    golden = GOLDEN / case
    # the output path and the encoder's hash (bytes of an export/build) are the only run-dependent parts
    produced = {p.name: re.sub(r"encoder-sha256: [0-9a-f]{64}", "encoder-sha256: <sha256>",
                               p.read_text().replace(str(result.directory), f"deploy/{case}"))
                for p in sorted(result.directory.iterdir()) if p.name != "deploy.json"
                and not p.name.startswith("Dockerfile")}
    if os.environ.get("UPDATE_GOLDEN"):
        shutil.rmtree(golden, ignore_errors=True)
        golden.mkdir(parents=True)
        for name, text in produced.items():
            (golden / name).write_text(text)
    expected = {p.name: p.read_text() for p in sorted(golden.iterdir())}
    assert sorted(produced) == sorted(expected)
    for name in expected:
        assert produced[name] == expected[name], f"{case}/{name} differs from the golden file (UPDATE_GOLDEN=1)"


def test_consistency(bundle):
    case, result, docs = bundle
    spec = result.spec
    pod = docs["deployment.yaml"]["spec"]["template"]["spec"]
    server = pod["containers"][0]
    # probes hit the front door's health routes on its named port
    assert server["startupProbe"]["httpGet"] == {"path": c.HEALTH_READY, "port": "http"}
    assert server["readinessProbe"]["httpGet"]["path"] == c.HEALTH_READY
    assert server["livenessProbe"]["httpGet"]["path"] == c.HEALTH_LIVE
    assert {p["httpGet"]["path"] for p in (server["startupProbe"], server["livenessProbe"])} <= set(c.FRONT_DOOR_ROUTES)
    assert server["startupProbe"]["failureThreshold"] * server["startupProbe"]["periodSeconds"] >= spec.startup_timeout_s
    # Triton's ready timeout follows the startup probe: it gives up (with its own message) before the kubelet does
    ready = int(server["args"][server["args"].index("--triton-ready-timeout") + 1])
    assert ready == spec.startup_timeout_s - 30 and ready < spec.startup_timeout_s
    # the command uses only contract options, and the ports it names are the container's ports
    args = server["args"]
    assert args[:2] == ["nvembed-trt", "serve"] and {a for a in args if a.startswith("--")} <= set(c.SERVE_OPTIONS)
    container_ports = {p["name"]: p["containerPort"] for p in server["ports"]}
    assert container_ports == dict((c.API_PORT, *c.TRITON_PORTS))
    for flag, name in (("--port", "http"), ("--http-port", "triton-http"), ("--grpc-port", "triton-grpc"),
                       ("--metrics-port", "triton-metrics")):
        assert int(args[args.index(flag) + 1]) == container_ports[name]
    # services target ports that exist; the ServiceMonitor scrapes ports the selected services have
    service_ports = set()
    for svc in (docs["service.yaml"], docs["service-kserve.yaml"]):
        assert svc["spec"]["selector"] == docs["deployment.yaml"]["spec"]["selector"]["matchLabels"]
        for port in svc["spec"]["ports"]:
            assert port["targetPort"] in container_ports
            service_ports.add(port["name"])
    monitor = docs["servicemonitor.yaml"]["spec"]
    assert {e["port"] for e in monitor["endpoints"]} <= service_ports
    assert {e["path"] for e in monitor["endpoints"]} == {c.METRICS_PATH, c.TRITON_METRICS_PATH}
    for svc in (docs["service.yaml"], docs["service-kserve.yaml"]):
        assert monitor["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    # the HPA reads the metric the adapter rule exposes, built from a histogram the front door exports
    rule = docs["prometheus-adapter-values.yaml"]["rules"]["custom"][0]
    metric = docs["hpa.yaml"]["spec"]["metrics"][0]["pods"]["metric"]["name"]
    assert metric == rule["name"]["as"] == c.HPA_METRIC
    assert rule["seriesQuery"].split("{")[0] == f"{c.QUEUE_HISTOGRAM}_count" and c.QUEUE_HISTOGRAM in c.FRONT_DOOR_METRICS
    assert docs["hpa.yaml"]["spec"]["scaleTargetRef"]["name"] == docs["deployment.yaml"]["metadata"]["name"]
    assert docs["hpa.yaml"]["spec"]["minReplicas"] == docs["deployment.yaml"]["spec"]["replicas"] == spec.replicas
    # shutdown: preStop, then the drain bound, then Triton's exit, within the grace period
    prestop = int(server["lifecycle"]["preStop"]["exec"]["command"][1])
    drain = int(args[args.index("--drain-timeout") + 1])
    assert pod["terminationGracePeriodSeconds"] >= prestop + drain + 5
    # the repository the server reads is the one the init step prepares
    init = pod["initContainers"][-1]
    assert init["name"] == "ensure-engine" and args[args.index("--repo") + 1] == init["args"][init["args"].index("--output") + 1]
    applied = {n for n, d in docs.items() if d.get("kind") in CORE | {"ServiceMonitor"}}
    assert sorted(docs["kustomization.yaml"]["resources"]) == sorted(applied)


def test_gpu_and_image_follow_the_engine(bundle):
    case, result, docs = bundle
    pod = docs["deployment.yaml"]["spec"]["template"]["spec"]
    server = pod["containers"][0]
    if case.startswith("trt"):
        gpu = get_gpu("rtx-6000-ada")
        assert server["resources"]["limits"]["nvidia.com/gpu"] == "1"
        terms = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
            "nodeSelectorTerms"][0]["matchExpressions"]
        got = {t["key"]: t["values"][0] for t in terms}
        assert f"{got['nvidia.com/gpu.compute.major']}.{got['nvidia.com/gpu.compute.minor']}" == gpu.compute_capability
        assert int(got["nvidia.com/gpu.memory"]) < gpu.memory_gib * 1024
        assert pod["initContainers"][-1]["image"] == result.spec.builder_image
        assert "ARG TENSORRT_IMAGE=nvcr.io/nvidia/tensorrt:25.10-py3\n" in (result.directory / "Dockerfile.builder").read_text()
        fetch = pod["initContainers"][0]
        assert fetch["name"] == "fetch-repository" and result.spec.storage_uri in fetch["command"][2]
    else:
        assert "nvidia.com/gpu" not in server["resources"]["limits"] and "affinity" not in pod
        assert "pvc.yaml" in docs and pod["volumes"][0]["persistentVolumeClaim"]["claimName"] == docs["pvc.yaml"][
            "metadata"]["name"]
    dockerfile = (result.directory / "Dockerfile").read_text()
    extra = ("onnxruntime>=1.20",) if case.startswith("onnx") else ()    # the encoder's runtime, baked in (defect 5)
    assert dockerfile == render_serving(result.spec.triton_image, serving_requirements()[0],
                                        f"{result.directory}/Dockerfile", extra)
    assert f'ARG EXTRA_REQUIREMENTS="{" ".join(extra)}"' in dockerfile
    assert f"ARG TRITON_IMAGE={result.spec.triton_image}\n" in dockerfile
    assert docs["deployment.yaml"]["spec"]["template"]["metadata"]["annotations"][
        "nvembed-trt/triton-image"] == result.spec.triton_image


def test_api_key_reaches_the_pod_and_the_scrape(bundle):
    case, result, docs = bundle
    if not result.spec.api_key_secret:
        pytest.skip("this case runs without an API key")
    env = docs["deployment.yaml"]["spec"]["template"]["spec"]["containers"][0]["env"]
    assert env == [{"name": c.API_KEY_ENV, "valueFrom": {"secretKeyRef": {"name": "nvembed-api-key", "key": "api-key"}}}]
    front = docs["servicemonitor.yaml"]["spec"]["endpoints"][0]
    assert front["authorization"]["credentials"] == {"name": "nvembed-api-key", "key": "api-key"}


def test_errors_name_the_problem_and_write_nothing(trt_repo, onnx_repo, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(InputError, match=r"--gpu h100: the repository's engine was built for rtx-6000-ada"):
        deploy_k8s(trt_repo, out, DeployOptions(gpu="h100"))
    with pytest.raises(ValueError, match=r"--storage s3 needs --storage-uri s3://"):
        DeployOptions(storage="s3", storage_uri="gs://x")
    with pytest.raises(ValueError, match="max_replicas 1 is below replicas 2"):
        DeployOptions(replicas=2, max_replicas=1)
    with pytest.raises(InputError, match="above the limit of 50"):
        deploy_k8s(onnx_repo, out, DeployOptions(name="x" * 60))
    with pytest.raises(InputError, match="no repo.json"):
        deploy_k8s(tmp_path, out)
    with pytest.raises(InputError, match="unknown GPU profile 'b200'"):
        deploy_k8s(onnx_repo, out, DeployOptions(gpu="b200"))
    assert not out.exists() and [p.name for p in tmp_path.iterdir()] == []


def test_cli(onnx_repo, tmp_path, capsys):
    out = tmp_path / "deploy" / "tiny"
    assert main(["deploy", "k8s", "--repo", str(onnx_repo), "--output", str(out), "--gpu", "l40s",
                 "--max-replicas", "3"]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {out}/" in printed and "1 x l40s (compute capability 8.9)" in printed and "1..3" in printed
    assert "kubectl apply -k" in printed and (out / "deploy.json").is_file()
    assert main(["deploy", "k8s", "--repo", str(onnx_repo), "--output", str(out)]) == 2    # exists, no --overwrite
    assert main(["deploy", "k8s", "--repo", str(onnx_repo), "--output", str(tmp_path / "x"), "--storage", "s3"]) == 2
    assert "--storage-uri" in capsys.readouterr().err
    assert main(["deploy", "images"]) == 0
    out = capsys.readouterr().out
    assert "25.10" in out
    assert "execution_context_allocation_strategy ON_PROFILE_CHANGE: from 25.05 on (before: STATIC)" in out
