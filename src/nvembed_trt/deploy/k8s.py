"""Kubernetes objects for one repository, as plain data (dicts) from a DeploySpec; yaml.safe_dump writes them.

One pod runs the front door and tritonserver (`nvembed-trt serve` in NVIDIA's Triton image with this package
installed). Init containers fetch the repository (s3/gcs) and prepare it (`python -m nvembed_trt.deploy.ensure`:
copy into the pod, build the engine for the node's GPU when the repository holds none for it).

Disk: the pod's working volumes are sized from the repository (deploy/spec.py): the fetched store (repository + ONNX
graph), the pod's copy of the repository with its plan, and the engine build's scratch folder; each emptyDir carries
its sizeLimit and every container requests (and is limited to) the node-local disk they add up to, so the scheduler
places the pod where it fits and an overrun evicts it instead of filling the node. `--ephemeral-storage-class` puts
them on per-pod PVCs (generic ephemeral volumes) instead. Triton's ready timeout follows the startup probe."""

from __future__ import annotations

from . import contract as c
from .spec import DeploySpec

STORE, MODELS, SCRATCH = "/store", "/models", "/scratch"


def labels(spec: DeploySpec, component: str | None = None) -> dict[str, str]:
    out = {"app.kubernetes.io/name": "nvembed-trt", "app.kubernetes.io/instance": spec.name,
           "app.kubernetes.io/managed-by": "nvembed-trt"}
    if component:
        out["app.kubernetes.io/component"] = component
    return out


def selector(spec: DeploySpec) -> dict[str, str]:
    return {"app.kubernetes.io/name": "nvembed-trt", "app.kubernetes.io/instance": spec.name}


def serve_args(spec: DeploySpec, repo_path: str) -> list[str]:
    return ["nvembed-trt", "serve", "--repo", repo_path, "--host", "0.0.0.0", "--port", str(c.API_PORT[1]),
            "--triton-host", "0.0.0.0", "--http-port", str(c.TRITON_PORTS[0][1]),
            "--grpc-port", str(c.TRITON_PORTS[1][1]), "--metrics-port", str(c.TRITON_PORTS[2][1]),
            "--tritonserver", c.TRITONSERVER_IN_NGC, "--drain-timeout", str(spec.drain_timeout_s),
            "--triton-ready-timeout", str(spec.triton_ready_timeout_s)]


def _probe(path: str, period: int, failures: int) -> dict:
    return {"httpGet": {"path": path, "port": c.API_PORT[0]}, "periodSeconds": period, "timeoutSeconds": 5,
            "failureThreshold": failures}


def _gpu_limits(spec: DeploySpec) -> dict[str, str]:
    return {"nvidia.com/gpu": "1"} if spec.uses_gpu else {}


def _disk(spec: DeploySpec, need: int | None = None) -> tuple[dict[str, str], dict[str, str]]:
    """(requests, limits) of node-local disk: every emptyDir counts against the pod's ephemeral storage."""
    need = need or spec.ephemeral_request_gib
    return {"ephemeral-storage": f"{need}Gi"}, {"ephemeral-storage": f"{need + 2}Gi"}


def _resources(spec: DeploySpec, disk_gib: int | None = None) -> dict:
    disk_request, disk_limit = _disk(spec, disk_gib)
    return {"requests": {"cpu": str(spec.cpu_request), "memory": f"{spec.memory_request_gib}Gi", **disk_request},
            "limits": {"memory": f"{spec.memory_limit_gib}Gi", **disk_limit, **_gpu_limits(spec)}}


def _api_key_env(spec: DeploySpec) -> list[dict]:
    if not spec.api_key_secret:
        return []
    return [{"name": c.API_KEY_ENV, "valueFrom": {"secretKeyRef": {"name": spec.api_key_secret, "key": "api-key"}}}]


def server_container(spec: DeploySpec, repo_path: str, name: str = "server") -> dict:
    ports = [{"name": n, "containerPort": p, "protocol": "TCP"} for n, p in (c.API_PORT, *c.TRITON_PORTS)]
    container = {
        "name": name, "image": spec.image, "imagePullPolicy": "IfNotPresent", "args": serve_args(spec, repo_path),
        "ports": ports, "resources": _resources(spec),
        "startupProbe": _probe(c.HEALTH_READY, 10, -(-spec.startup_timeout_s // 10)),
        "readinessProbe": _probe(c.HEALTH_READY, 5, 3),
        "livenessProbe": _probe(c.HEALTH_LIVE, 10, 3),
        "lifecycle": {"preStop": {"exec": {"command": ["sleep", str(spec.prestop_s)]}}},
        "volumeMounts": [{"name": "models", "mountPath": MODELS, "readOnly": True},
                         {"name": "shm", "mountPath": "/dev/shm"}],
    }
    if spec.api_key_secret:
        container["env"] = _api_key_env(spec)
    return container


def _fetch_container(spec: DeploySpec) -> dict:
    repo, onnx = f"{spec.storage_uri}/{spec.repo_dir_name}", f"{spec.storage_uri}/{spec.repo_dir_name}-onnx"
    if spec.storage == "s3":
        script = (f"aws s3 sync --only-show-errors {repo} {STORE}/{spec.repo_dir_name} && "
                  f"aws s3 sync --only-show-errors {onnx} {STORE}/{spec.repo_dir_name}-onnx")
    else:
        script = (f"gcloud storage rsync --recursive {repo} {STORE}/{spec.repo_dir_name} && "
                  f"(gcloud storage rsync --recursive {onnx} {STORE}/{spec.repo_dir_name}-onnx || true)")
    disk_request, disk_limit = _disk(spec)
    return {"name": "fetch-repository", "image": spec.fetch_image, "command": ["sh", "-c", script],
            "envFrom": [{"secretRef": {"name": f"{spec.name}-storage", "optional": True}}],
            "resources": {"requests": disk_request, "limits": disk_limit},
            "volumeMounts": [{"name": "store", "mountPath": STORE}]}


def ensure_container(spec: DeploySpec) -> dict:
    image = spec.builder_image if spec.encoder_kind == "tensorrt_plan" else spec.image
    args = ["python3", "-m", "nvembed_trt.deploy.ensure", "--store", f"{STORE}/{spec.repo_dir_name}",
            "--onnx", f"{STORE}/{spec.repo_dir_name}-onnx", "--output", f"{MODELS}/{spec.repo_dir_name}"]
    if spec.gpu_profile:
        args += ["--gpu", spec.gpu_profile]
    mounts = [{"name": "store", "mountPath": STORE, "readOnly": spec.storage == "pvc"},
              {"name": "models", "mountPath": MODELS}]
    if spec.scratch_gib:
        args += ["--work-dir", SCRATCH]
        mounts.append({"name": "scratch", "mountPath": SCRATCH})
    disk_request, disk_limit = _disk(spec)
    return {"name": "ensure-engine", "image": image, "imagePullPolicy": "IfNotPresent", "args": args,
            "resources": {"requests": disk_request,
                          "limits": {"memory": f"{spec.memory_limit_gib}Gi", **disk_limit, **_gpu_limits(spec)}},
            "volumeMounts": mounts}


def _scheduling(spec: DeploySpec) -> dict:
    if not spec.uses_gpu:
        return {}
    major, minor = spec.compute_capability.split(".")
    terms = [{"key": "nvidia.com/gpu.compute.major", "operator": "In", "values": [major]},
             {"key": "nvidia.com/gpu.compute.minor", "operator": "In", "values": [minor]},
             # GPU feature discovery's memory label is in MiB; 95 % of the profile's GiB allows for reserved memory
             {"key": "nvidia.com/gpu.memory", "operator": "Gt", "values": [str(int(spec.gpu_memory_gib * 1024 * 0.95))]}]
    return {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": terms}]}}},
            "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]}


def _working_volume(spec: DeploySpec, name: str, gib: int) -> dict:
    """An emptyDir limited to its size, or with --ephemeral-storage-class a per-pod PVC of that size."""
    if not spec.ephemeral_storage_class:
        return {"name": name, "emptyDir": {"sizeLimit": f"{gib}Gi"}}
    return {"name": name, "ephemeral": {"volumeClaimTemplate": {
        "metadata": {"labels": labels(spec, name)},
        "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": spec.ephemeral_storage_class,
                 "resources": {"requests": {"storage": f"{gib}Gi"}}}}}}


def _volumes(spec: DeploySpec) -> list[dict]:
    store = ({"name": "store", "persistentVolumeClaim": {"claimName": spec.pvc, "readOnly": True}}
             if spec.storage == "pvc" else _working_volume(spec, "store", spec.store_gib))
    scratch = [_working_volume(spec, "scratch", spec.scratch_gib)] if spec.scratch_gib else []
    return [store, _working_volume(spec, "models", spec.models_gib), *scratch,
            {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": f"{spec.shm_mib}Mi"}}]


def deployment(spec: DeploySpec) -> dict:
    init = ([_fetch_container(spec)] if spec.storage != "pvc" else []) + [ensure_container(spec)]
    pod = {"terminationGracePeriodSeconds": spec.termination_grace_s, **_scheduling(spec),
           "initContainers": init, "containers": [server_container(spec, f"{MODELS}/{spec.repo_dir_name}")],
           "volumes": _volumes(spec)}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": spec.name, "labels": labels(spec, "server")},
        "spec": {
            "replicas": spec.replicas, "revisionHistoryLimit": 3,
            # an engine build in the init step can take many minutes at full size
            "progressDeadlineSeconds": 3600,
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "selector": {"matchLabels": selector(spec)},
            "template": {
                "metadata": {"labels": labels(spec, "server"),
                             # a new engine (new repository contents) changes the template: a rolling update
                             "annotations": {"nvembed-trt/encoder-sha256": spec.encoder_sha256,
                                             "nvembed-trt/triton-image": spec.triton_image}},
                "spec": pod}}}


def api_service(spec: DeploySpec) -> dict:
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": spec.name, "labels": {**labels(spec, "api"), "nvembed-trt/metrics": "true"}},
            "spec": {"type": "ClusterIP", "selector": selector(spec),
                     "ports": [{"name": c.API_PORT[0], "port": c.API_PORT[1], "targetPort": c.API_PORT[0],
                                "protocol": "TCP"}]}}


def kserve_service(spec: DeploySpec) -> dict:
    ports = [{"name": n, "port": p, "targetPort": n, "protocol": "TCP"} for n, p in c.TRITON_PORTS]
    ports[1]["appProtocol"] = "grpc"
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": f"{spec.name}-kserve",
                         "labels": {**labels(spec, "kserve"), "nvembed-trt/metrics": "true"}},
            "spec": {"type": "ClusterIP", "selector": selector(spec), "ports": ports}}


def hpa(spec: DeploySpec) -> dict:
    return {
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": spec.name, "labels": labels(spec, "autoscaler")},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": spec.name},
            "minReplicas": spec.replicas, "maxReplicas": spec.max_replicas,
            "metrics": [{"type": "Pods", "pods": {
                "metric": {"name": c.HPA_METRIC},
                "target": {"type": "AverageValue", "averageValue": f"{spec.queue_target_ms}m"}}}],
            "behavior": {
                "scaleUp": {"stabilizationWindowSeconds": 0,
                            "policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}]},
                # a GPU pod is slow to start (engine load): scale down only after 5 quiet minutes
                "scaleDown": {"stabilizationWindowSeconds": 300,
                              "policies": [{"type": "Pods", "value": 1, "periodSeconds": 120}]}}}}


def adapter_rules(spec: DeploySpec) -> dict:
    """prometheus-adapter Helm values (rules.custom) exposing the mean queue time per pod as HPA_METRIC."""
    q = c.QUEUE_HISTOGRAM
    query = (f"sum(rate({q}_sum{{<<.LabelMatchers>>}}[1m])) by (<<.GroupBy>>) / "
             f"clamp_min(sum(rate({q}_count{{<<.LabelMatchers>>}}[1m])) by (<<.GroupBy>>), 1e-9)")
    return {"rules": {"default": False, "custom": [{
        "seriesQuery": f'{q}_count{{namespace!="",pod!=""}}',
        "resources": {"overrides": {"namespace": {"resource": "namespace"}, "pod": {"resource": "pod"}}},
        "name": {"matches": f"^{q}_count$", "as": c.HPA_METRIC},
        "metricsQuery": query}]}}


def service_monitor(spec: DeploySpec) -> dict:
    front = {"port": c.API_PORT[0], "path": c.METRICS_PATH, "interval": "15s", "scheme": "http"}
    if spec.api_key_secret:
        front["authorization"] = {"type": "Bearer", "credentials": {"name": spec.api_key_secret, "key": "api-key"}}
    triton = {"port": c.TRITON_PORTS[2][0], "path": c.TRITON_METRICS_PATH, "interval": "15s", "scheme": "http"}
    return {"apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor",
            "metadata": {"name": spec.name, "labels": labels(spec, "metrics")},
            "spec": {"selector": {"matchLabels": {**selector(spec), "nvembed-trt/metrics": "true"}},
                     "endpoints": [front, triton]}}


def pvc(spec: DeploySpec) -> dict:
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": spec.pvc, "labels": labels(spec, "models")},
            "spec": {"accessModes": ["ReadWriteMany"],
                     "resources": {"requests": {"storage": f"{spec.pvc_size_gib}Gi"}}}}


def inference_service(spec: DeploySpec) -> dict:
    """The KServe variant: KServe's storage initializer puts STORAGE_URI's contents in /mnt/models; the same
    server container runs there (no init-time engine build: the repository must hold the engine for its GPU)."""
    uri = spec.storage_uri or f"pvc://{spec.pvc}"
    container = server_container(spec, f"/mnt/models/{spec.repo_dir_name}", name="kserve-container")
    container["env"] = [{"name": "STORAGE_URI", "value": uri}, *_api_key_env(spec)]
    container["volumeMounts"] = [{"name": "shm", "mountPath": "/dev/shm"}]
    container["ports"] = [{"name": c.API_PORT[0], "containerPort": c.API_PORT[1], "protocol": "TCP"}]
    # KServe's storage initializer fills one emptyDir with the repository (the plan in it): no store, no build
    container["resources"] = _resources(spec, spec.models_gib + 1)
    predictor = {"minReplicas": spec.replicas, "maxReplicas": spec.max_replicas,
                 "terminationGracePeriodSeconds": spec.termination_grace_s, **_scheduling(spec),
                 "containers": [container],
                 "volumes": [{"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": f"{spec.shm_mib}Mi"}}]}
    return {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
            "metadata": {"name": spec.name, "labels": labels(spec, "server"),
                         "annotations": {"serving.kserve.io/deploymentMode": "RawDeployment"}},
            "spec": {"predictor": predictor}}


def manifests(spec: DeploySpec) -> dict[str, dict]:
    """File name -> object. Applied together with kustomization.yaml; the InferenceService is the alternative."""
    out = {"deployment.yaml": deployment(spec), "service.yaml": api_service(spec),
           "service-kserve.yaml": kserve_service(spec), "hpa.yaml": hpa(spec),
           "servicemonitor.yaml": service_monitor(spec)}
    if spec.storage == "pvc":
        out["pvc.yaml"] = pvc(spec)
    return out


def kustomization(files: list[str]) -> dict:
    return {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization", "resources": files}
