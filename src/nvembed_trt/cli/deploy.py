"""nvembed-trt deploy k8s / images / ensure-engine: Kubernetes manifests from a repository, the NGC image table, and
the pod's init step."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    d = sub.add_parser("deploy", help="deploy a Triton repository (Kubernetes manifests, images)",
                       description="Deployment: Kubernetes manifests generated from a repository, the NGC Triton "
                                   "image table, and the init step the pods run.")
    dsub = d.add_subparsers(dest="deploy_command", metavar="COMMAND", required=True)

    k = dsub.add_parser("k8s", help="write Kubernetes manifests, the KServe variant and Dockerfiles for a repository",
                        description="From the repository's repo.json (engine, NGC image) and the GPU profile: a "
                                    "Deployment (front door + tritonserver), Services, an HPA on the queue time with "
                                    "its prometheus-adapter rule, a ServiceMonitor, storage, an InferenceService "
                                    "variant and the Dockerfiles of the images.")
    k.add_argument("--repo", required=True, type=Path, help="triton_repo/<name>/")
    k.add_argument("--output", required=True, type=Path, help="e.g. deploy/<name>/")
    k.add_argument("--name", help="Kubernetes name (default: the repository folder's name)")
    k.add_argument("--gpu", help="GPU profile to schedule on (default: the engine's; ONNX repositories: none = CPU)")
    k.add_argument("--replicas", type=int, default=1, help="replicas, and the autoscaler's minimum (default 1)")
    k.add_argument("--max-replicas", type=int, help="the autoscaler's maximum (default max(replicas, 4))")
    k.add_argument("--image", help="the serving image built from the Dockerfile (default nvembed-trt-serving:<release>)")
    k.add_argument("--builder-image", help="the engine builder image (default nvembed-trt-builder:<release>)")
    k.add_argument("--storage", choices=("pvc", "s3", "gcs"), default="pvc", help="where the repository lives")
    k.add_argument("--storage-uri", help="s3://BUCKET/PREFIX or gs://BUCKET/PREFIX holding <name>/ (and <name>-onnx/)")
    k.add_argument("--pvc", help="claim holding <name>/ (default <name>-models, written as pvc.yaml)")
    k.add_argument("--drain-timeout", type=int, default=10, help="seconds in-flight requests get (front door)")
    k.add_argument("--startup-timeout", type=int, default=600,
                   help="seconds the server may take to become ready (the startup probe; Triton's ready timeout is "
                        "this less 30 s)")
    k.add_argument("--queue-target-ms", type=int, default=50, help="autoscale to keep mean queue time below this")
    k.add_argument("--api-key-secret", help="Secret (key api-key) with the front door's API key")
    k.add_argument("--ephemeral-storage-class",
                   help="put the pod's working volumes (fetched store, repository copy, engine-build scratch) on "
                        "per-pod PVCs of this storage class instead of node-local emptyDirs")
    k.add_argument("--overwrite", action="store_true")
    k.set_defaults(run=run_k8s)

    i = dsub.add_parser("images", help="list the NGC Triton releases and the TensorRT each carries",
                        description="The table the image is picked from (a plan only loads in its own TensorRT).")
    i.set_defaults(run=run_images)

    e = dsub.add_parser("ensure-engine", help="the pods' init step (same as python -m nvembed_trt.deploy.ensure)")
    e.add_argument("args", nargs=argparse.REMAINDER)
    e.set_defaults(run=lambda a: __import__("nvembed_trt.deploy.ensure", fromlist=["main"]).main(a.args))


def run_k8s(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from ..deploy.bundle import deploy_k8s
    from ..deploy.spec import DeployOptions
    from ..errors import InputError

    try:
        options = DeployOptions(name=args.name, gpu=args.gpu, replicas=args.replicas, max_replicas=args.max_replicas,
                                image=args.image, builder_image=args.builder_image, storage=args.storage,
                                storage_uri=args.storage_uri, pvc=args.pvc, drain_timeout_s=args.drain_timeout,
                                startup_timeout_s=args.startup_timeout, queue_target_ms=args.queue_target_ms,
                                api_key_secret=args.api_key_secret,
                                ephemeral_storage_class=args.ephemeral_storage_class)
    except ValidationError as exc:
        raise InputError("; ".join(f"{'.'.join(map(str, e['loc'])) or 'options'}: {e['msg']}"
                                   for e in exc.errors())) from exc
    result = deploy_k8s(args.repo, args.output, options, overwrite=args.overwrite)
    s, out = result.spec, result.directory
    gpu = f"1 x {s.gpu_profile} (compute capability {s.compute_capability})" if s.uses_gpu else "none (CPU)"
    print(f"wrote {out}/: {', '.join(result.files)}, deploy.json\n"
          f"  Triton base {s.triton_image}; GPU per pod: {gpu}; replicas {s.replicas}..{s.max_replicas} on mean "
          f"queue time > {s.queue_target_ms} ms\n"
          + (f"  node-local disk per pod: {s.ephemeral_request_gib} GiB (store {s.store_gib or 0}, repository "
             f"{s.models_gib}, build scratch {s.scratch_gib} GiB)\n" if not s.ephemeral_storage_class else
             f"  working volumes on per-pod PVCs of storage class {s.ephemeral_storage_class}\n")
          + f"  build: docker build -t {s.image} -f {out}/Dockerfile .\n"
          + (f"         docker build -t {s.builder_image} -f {out}/Dockerfile.builder .\n"
             if "Dockerfile.builder" in result.files else "")
          + f"  apply: kubectl apply -k {out}/   (KServe instead: kubectl apply -f {out}/inferenceservice.yaml)")
    return 0


def run_images(args: argparse.Namespace) -> int:
    from ..ngc_triton import image_table

    table = image_table()
    print("release  image                                          TensorRT     evidence")
    for r in table.releases:
        print(f"{r.release:8} {table.tag(r):46} {r.tensorrt:12} {r.evidence}")
    print("tensorrt_backend settings (an older release ignores the value and acts on the one in brackets):")
    for s in table.tensorrt_backend_settings:
        print(f"  {s.parameter} {s.value}: from {s.since} on (before: {s.otherwise}); {s.evidence}")
    return 0
