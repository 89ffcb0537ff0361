"""nvembed-trt triton-repo / serve / smoke / client: generate, serve and call the Triton model repository."""

from __future__ import annotations

import argparse
import signal
import threading
from pathlib import Path

from ..client import EmbeddingClient
from ..provenance import sha256_file, sidecar, write_json
from ..textio import check_output_path, read_texts, save_embeddings
from ..tokenizer import INPUT_TYPES
from ..triton import TritonServer, repo_from_encoder
from ..triton.server import ngc_command
from ..triton.smoke import serving_check
from ..triton.spec import TRUNCATE_MODES

PROVIDERS = {"cpu": ("CPUExecutionProvider",), "cuda": ("CUDAExecutionProvider", "CPUExecutionProvider")}


def add_parser(sub: argparse._SubParsersAction) -> None:
    r = sub.add_parser("triton-repo", help="generate a Triton model repository (tokenizer -> encoder -> pooling)",
                       description="Generate tokenizer, encoder and pooling models and the nv_embed ensemble; the "
                                   "encoder is a TensorRT plan (engines/...) or the ONNX export run by ONNX Runtime.")
    r.add_argument("--model", required=True, help="preset name or checkpoint directory (tokenizer, dims)")
    r.add_argument("--encoder", required=True, type=Path, help="engines/<gpu>/<name>/<recipe>/ or export/<name>/")
    r.add_argument("--output", required=True, type=Path, help="e.g. triton_repo/<name>/")
    r.add_argument("--max-batch-size", type=int, help="default: the engine's serving maximum, else 8")
    r.add_argument("--max-length", type=int, help="default: the engine's longest profile sequence, else 512")
    r.add_argument("--tokenizer-instances", type=int, default=1)
    r.add_argument("--encoder-instances", type=int, default=1)
    r.add_argument("--output-dtype", choices=("float32", "float16"), default="float32")
    r.add_argument("--providers", choices=tuple(PROVIDERS), default="cpu", help="ONNX Runtime encoder: cpu|cuda")
    r.add_argument("--overwrite", action="store_true")
    r.set_defaults(run=run_repo)

    s = sub.add_parser("serve", help="serve a repository with a real Triton server until Ctrl-C",
                       description="Start tritonserver (by default the one in nvidia-pytriton), wait until it is "
                                   "ready, print the endpoints, stop cleanly on Ctrl-C or SIGTERM.")
    s.add_argument("--repo", required=True, type=Path)
    s.add_argument("--host", default="127.0.0.1", help="listen address (default loopback only)")
    s.add_argument("--http-port", type=int, default=8000)
    s.add_argument("--grpc-port", type=int, default=8001)
    s.add_argument("--metrics-port", type=int, default=8002)
    s.add_argument("--tritonserver", type=Path, help="another tritonserver binary")
    s.set_defaults(run=run_serve)

    k = sub.add_parser("smoke", help="serve a repository on free ports, embed a file, compare with the reference",
                       description="The serving check `make all` runs: start, embed over HTTP and gRPC, compare "
                                   "with the PyTorch reference (cosine >= 0.9999), stop, report.")
    k.add_argument("--repo", required=True, type=Path)
    k.add_argument("--model", required=True)
    k.add_argument("--input", required=True)
    k.add_argument("--report", type=Path, help="also write the report as JSON here")
    k.set_defaults(run=run_smoke)

    c = sub.add_parser("client", help="call a running server", description="Client commands.")
    csub = c.add_subparsers(dest="client_command", metavar="COMMAND", required=True)
    e = csub.add_parser("embed", help="embed a file through the server (same files as `embed`)")
    e.add_argument("--url", default="127.0.0.1:8000", help="host:port of the HTTP or gRPC endpoint")
    e.add_argument("--protocol", choices=("http", "grpc"), default="http")
    e.add_argument("--input", required=True, help="JSON Lines, plain text, or '-' for stdin")
    e.add_argument("--output", required=True, type=Path)
    group = e.add_mutually_exclusive_group()
    group.add_argument("--instruction")
    group.add_argument("--input-type", choices=tuple(INPUT_TYPES))
    e.add_argument("--truncate", choices=TRUNCATE_MODES)
    e.add_argument("--batch-size", type=int, default=8)
    e.set_defaults(run=run_client_embed)


def run_repo(args: argparse.Namespace) -> int:
    result = repo_from_encoder(args.model, args.encoder, args.output, max_batch_size=args.max_batch_size,
                               max_length=args.max_length, tokenizer_instances=args.tokenizer_instances,
                               encoder_instances=args.encoder_instances, output_dtype=args.output_dtype,
                               providers=PROVIDERS[args.providers], overwrite=args.overwrite)
    spec = result.spec
    print(f"wrote {result.directory} ({spec.encoder_kind} encoder, pooling in the {spec.pooling}, max batch "
          f"{spec.max_batch_size}, max length {spec.max_length}); serve it with: nvembed-trt serve --repo "
          f"{result.directory}")
    return 0


def run_serve(args: argparse.Namespace) -> int:
    server = TritonServer(args.repo, args.http_port, args.grpc_port, args.metrics_port, args.host, args.tritonserver)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    server.start()
    try:
        ep = server.endpoints
        print(f"ready: HTTP {ep['http']}, gRPC {ep['grpc']}, metrics {ep['metrics']}; model nv_embed\n"
              f"try: nvembed-trt client embed --url {ep['http']} --input examples/sample.jsonl --output out.npy\n"
              f"production (NGC, GPU): {ngc_command(args.repo)}\nCtrl-C stops the server.", flush=True)
        while not stop.wait(1.0):
            if server.process.poll() is not None:
                print(f"tritonserver exited with {server.process.returncode}:\n{server.log_tail()}")
                return 1
    finally:
        server.stop()
    print("stopped")
    return 0


def run_smoke(args: argparse.Namespace) -> int:
    report = serving_check(args.repo, args.model, read_texts(args.input).texts)
    if args.report:
        write_json(args.report, sidecar("serving-check", **report))
    print(f"served {report['texts']} texts through {args.repo}: HTTP min cosine {report['http']['min_cosine']:.6f}, "
          f"gRPC min cosine {report['grpc']['min_cosine']:.6f} against the PyTorch reference; server stopped")
    return 0


def run_client_embed(args: argparse.Namespace) -> int:
    check_output_path(args.output)
    inputs = read_texts(args.input)
    client = EmbeddingClient(args.url, args.protocol)
    vectors = client.embed(inputs.texts, args.input_type, args.instruction, args.truncate, args.batch_size)
    save_embeddings(args.output, vectors)
    meta = args.output.with_name(args.output.name + ".json")
    write_json(meta, sidecar("embeddings", server=args.url, protocol=args.protocol,
                             input={"source": inputs.name, "sha256": inputs.sha256, "count": len(inputs.texts)},
                             settings={"input_type": args.input_type, "instruction": args.instruction,
                                       "truncate": args.truncate},
                             output={"shape": list(vectors.shape), "sha256": sha256_file(args.output)}))
    print(f"wrote {vectors.shape[0]} embeddings of dim {vectors.shape[1]} from {args.url} to {args.output}")
    return 0
