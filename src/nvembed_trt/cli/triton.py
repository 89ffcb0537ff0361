"""nvembed-trt triton-repo / serve / smoke / client: generate, serve and call the Triton model repository."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..client import EmbeddingClient
from ..errors import InputError
from ..serving.settings import API_KEY_ENV, ServeSettings
from ..provenance import sha256_file, sidecar, write_json
from ..textio import check_output_path, read_texts, save_embeddings
from ..tokenizer import INPUT_TYPES
from ..triton.server import EXIT_TIMEOUT_S, READY_TIMEOUT_S
from ..tokenizer import TRUNCATE_MODES

PROVIDERS = {"cpu": ("CPUExecutionProvider",), "cuda": ("CUDAExecutionProvider", "CPUExecutionProvider")}


def add_parser(sub: argparse._SubParsersAction) -> None:
    r = sub.add_parser("triton-repo", help="generate a Triton model repository (encoder + nv_embed)",
                       description="Generate the encoder model (a TensorRT plan from engines/..., or the ONNX export "
                                   "run by ONNX Runtime) and nv_embed, the KServe model that tokenises, packs rows "
                                   "into batches the encoder's shapes cover, calls it and pools.")
    r.add_argument("--model", required=True, help="preset name or checkpoint directory (tokenizer, dims)")
    source = r.add_mutually_exclusive_group(required=True)
    source.add_argument("--encoder", type=Path, help="engines/<gpu>/<name>/<recipe>/ or export/<name>/")
    source.add_argument("--simulate", metavar="[Nx]GPU:RECIPE",
                        help="no encoder: a GPU-timed stand-in for the engine RECIPE gives on the GPU profile (its "
                             "shapes and limits; per batch it sleeps the time the card would take, from the registry's "
                             "figures, and returns deterministic unit vectors), e.g. h100:fp8; 8xh100:fp8 stands for "
                             "a node of eight (one encoder instance each). For measuring serving without a GPU")
    r.add_argument("--output", type=Path, help="e.g. triton_repo/<name>/ (not with --check)")
    r.add_argument("--gpu", help="with an ONNX export: a TensorRT repository for this GPU profile made here, without "
                                 "a GPU; the plan is built on the node by `deploy ensure-engine` from the graph "
                                 "written beside it (<output>-onnx/)")
    r.add_argument("--max-batch-size", type=int, help="encoder rows per batch; default: the engine's serving "
                                                      "maximum, else 8")
    r.add_argument("--max-length", type=int, help="default: the engine's longest profile sequence, else 512")
    r.add_argument("--max-batch-tokens", type=int, help="padded tokens per packed batch; default: the smallest "
                                                        "shape's capacity (rows x width)")
    r.add_argument("--max-request-rows", type=int, default=256, help="TEXT rows per KServe request (default 256)")
    r.add_argument("--nv-embed-instances", type=int, default=1)
    r.add_argument("--encoder-instances", type=int, default=1)
    r.add_argument("--output-dtype", choices=("float32", "float16"), default="float32")
    r.add_argument("--providers", choices=tuple(PROVIDERS), default="cpu", help="ONNX Runtime encoder: cpu|cuda")
    r.add_argument("--encoder-backend", choices=("tensorrt_plan", "python"), default="tensorrt_plan",
                   help="an engine's encoder: Triton's tensorrt backend (NGC image), or python: the plan run by "
                        "EngineRunner in the python backend (the bundled server; needs tensorrt and CUDA torch)")
    r.add_argument("--overwrite", action="store_true")
    r.add_argument("--check", action="store_true",
                   help="run every check (I/O names, max batch, shapes and profiles from engine.json, GPU memory) and "
                        "write nothing; a TensorRT-RTX plan is checked for its GPU profile and reported as what the "
                        "GPU host must build")
    r.set_defaults(run=run_repo)

    s = sub.add_parser("serve", help="serve a repository: the /v1/embeddings front door over a supervised Triton",
                       description="Start tritonserver (by default the one in nvidia-pytriton; supervised: restarted "
                                   "or its models reloaded when a real round trip fails) and the OpenAI/NIM-compatible "
                                   "front door; print both; drain and stop cleanly on SIGTERM or Ctrl-C.")
    s.add_argument("--repo", required=True, type=Path)
    s.add_argument("--host", default="127.0.0.1", help="front door listen address (default loopback only)")
    s.add_argument("--port", type=int, default=8080, help="front door port (default 8080)")
    s.add_argument("--model-id", help="the id clients send as `model` (default: the repository's, e.g. the preset "
                                      "name or checkpoint folder)")
    s.add_argument("--api-key", help=f"require Authorization: Bearer KEY on every /v1 route but health (or set "
                                     f"{API_KEY_ENV})")
    s.add_argument("--triton-host", default="127.0.0.1",
                   help="Triton's KServe listen address (default loopback: its HTTP parser is not hardened)")
    s.add_argument("--http-port", type=int, default=8000, help="Triton's KServe HTTP port")
    s.add_argument("--grpc-port", type=int, default=8001, help="Triton's KServe gRPC port")
    s.add_argument("--metrics-port", type=int, default=8002, help="Triton's metrics port")
    s.add_argument("--tritonserver", type=Path, help="another tritonserver binary, e.g. "
                                                     "/opt/tritonserver/bin/tritonserver in NVIDIA's image")
    defaults = ServeSettings()
    for name, (kind, text) in ServeSettings.limits().items():
        flag = "--" + (name[:-2] if name.endswith("_s") else name).replace("_", "-")
        default = getattr(defaults, name)
        s.add_argument(flag, dest=name, type=kind, default=default,
                       help=f"{text}" + (f" (default {default})" if default is not None else ""))
    s.add_argument("--triton-exit-timeout", type=int, default=EXIT_TIMEOUT_S,
                   help=f"Triton's exit timeout in seconds (default {EXIT_TIMEOUT_S})")
    s.add_argument("--triton-ready-timeout", type=float, default=READY_TIMEOUT_S,
                   help=f"seconds Triton may take to load the repository and become ready (default "
                        f"{READY_TIMEOUT_S}; a full-size plan on a slow disk needs more)")
    s.set_defaults(run=run_serve)

    k = sub.add_parser("smoke", help="serve a repository on free ports, embed a file, compare with the reference",
                       description="The serving check `make all` runs: start `serve`, embed through the front door "
                                   "and KServe (HTTP, gRPC), compare with the PyTorch reference against the "
                                   "recipe's threshold, stop with SIGTERM, report.")
    k.add_argument("--repo", required=True, type=Path)
    k.add_argument("--model", required=True)
    k.add_argument("--input", required=True)
    k.add_argument("--report", type=Path, help="also write the report as JSON here")
    k.add_argument("--tritonserver", type=Path, help="the tritonserver to serve with (NVIDIA's image for a TensorRT "
                                                     "plan: /opt/tritonserver/bin/tritonserver)")
    k.set_defaults(run=run_smoke)

    c = sub.add_parser("client", help="call a running server", description="Client commands.")
    csub = c.add_subparsers(dest="client_command", metavar="COMMAND", required=True)
    e = csub.add_parser("embed", help="embed a file through the server (same files as `embed`)")
    e.add_argument("--url", default="http://127.0.0.1:8080/v1",
                   help="the front door (http://host:port/v1, default) or Triton's KServe host:port")
    e.add_argument("--protocol", choices=("http", "grpc"), default="http", help="KServe protocol (host:port URLs)")
    e.add_argument("--api-key", help=f"the front door's API key (default: ${API_KEY_ENV})")
    e.add_argument("--input", required=True, help="JSON Lines, plain text, or '-' for stdin")
    e.add_argument("--output", required=True, type=Path)
    group = e.add_mutually_exclusive_group()
    group.add_argument("--instruction")
    group.add_argument("--input-type", choices=tuple(INPUT_TYPES))
    e.add_argument("--truncate", choices=TRUNCATE_MODES,
                   help="NONE refuses over-long inputs; START keeps their end; END their start (the front door's "
                        "default is NONE, KServe's END)")
    e.add_argument("--batch-size", type=int, help="texts per request (default 256 to the front door, 8 to KServe)")
    e.set_defaults(run=run_client_embed)
    d = csub.add_parser("compare", help="the drift a mixed fleet sees between two front doors of one model",
                        description="Embed the held-out retrieval set (standard-library docstrings) through two front "
                                    "doors (a repository is served here on free ports, one at a time) and report "
                                    "the row cosine between them, the top-10 agreement when the index is A's and the "
                                    "queries B's, and each engine's fingerprint. Exits 1 past the budget.")
    d.add_argument("--a", required=True, help="front door A (http://host:port/v1), or a model repository folder "
                                               "served here for the comparison: the one the index was built on")
    d.add_argument("--b", required=True, help="front door B (http://host:port/v1) or a repository: the one queried")
    d.add_argument("--api-key", help=f"the front doors' API key (default: ${API_KEY_ENV})")
    d.add_argument("--pairs", type=int, default=160, help="query/passage pairs of the held-out set (at most; the "
                                                           "standard library may hold fewer, as the report says)")
    d.add_argument("--min-cosine", type=float, default=0.99, help="budget: the lowest row cosine between A and B")
    d.add_argument("--min-top10", type=float, default=0.9, help="budget: the lowest mean top-10 agreement of A's "
                                                                "index queried with B's queries, against A alone")
    d.add_argument("--report", type=Path, help="also write the report as JSON here")
    d.set_defaults(run=run_client_compare)
    add_output_ranges(sub)


def add_output_ranges(sub: argparse._SubParsersAction) -> None:
    o = sub.add_parser("output-ranges", help="calibrate a repository's int8/uint8 output ranges through its server",
                       description="Embed the shipped calibration text (the Python language reference: passages and "
                                   "queries) through a running front door serving REPO, and write the per-dimension "
                                   "output ranges to REPO/output_ranges.json: `serve` then answers embedding_type "
                                   "int8 and uint8 (restart it to load them).")
    o.add_argument("--repo", required=True, type=Path, help="the repository the server at --url serves")
    o.add_argument("--url", default="http://127.0.0.1:8080/v1", help="its front door (http://host:port/v1)")
    o.add_argument("--api-key", help=f"the front door's API key (default: ${API_KEY_ENV})")
    o.add_argument("--max-texts", type=int, default=1024, help="calibration texts, spread over the corpus")
    o.set_defaults(run=run_output_ranges)


def run_output_ranges(args: argparse.Namespace) -> int:
    import os

    from ..calibration.corpus import python_reference_corpus
    from ..serving.compact import OUTPUT_RANGES_FILE, write_output_ranges
    from ..triton.meta import RepoMeta

    if args.max_texts < 16:
        raise InputError(f"--max-texts must be at least 16, got {args.max_texts}")
    RepoMeta.read(args.repo)       # a model repository (its one reader says what is wrong, and what makes one)
    corpus = python_reference_corpus()
    stride = max(1, len(corpus.samples) // args.max_texts)
    samples = [(s.text, s.input_type) for s in corpus.samples[::stride]][:args.max_texts]
    client = EmbeddingClient(args.url, api_key=args.api_key or os.environ.get(API_KEY_ENV))
    ranges = write_output_ranges(args.repo, lambda texts, kind: client.embed(texts, kind, truncate="END"), samples,
                                 {**corpus.provenance, "sha256": corpus.sha256(), "stride": stride})
    print(f"wrote {args.repo / OUTPUT_RANGES_FILE}: {len(ranges.low)} dimensions from {ranges.texts} texts; restart "
          f"serve to answer embedding_type int8 and uint8")
    return 0


def run_client_compare(args: argparse.Namespace) -> int:
    from ..validation.drift import DriftBudget

    return report_drift(args.a, args.b, DriftBudget(args.min_cosine, args.min_top10), args.pairs, args.report,
                        args.api_key)


def report_drift(a: str | Path, b: str | Path, budget, pairs: int, report: Path | None, api_key: str | None = None,
                 tritonserver: Path | None = None) -> int:
    """`client compare` and `validate --compare`: measure the drift, write the JSON report if asked, print the
    summary; 1 past the budget."""
    import os

    from ..serving.process import sigterm_exits
    from ..staging import check_output_file
    from ..validation.drift import drift_summary, fleet_drift

    if report:
        check_output_file(report, "--report")
    with sigterm_exits():
        result = fleet_drift(a, b, budget, pairs, api_key or os.environ.get(API_KEY_ENV), tritonserver)
    if report:
        write_json(report, result)
    print(drift_summary(result))
    return 0 if result["within_budget"] else 1


def run_repo(args: argparse.Namespace) -> int:
    from ..triton.repository import RepoSettings, repo_from_encoder   # onnx, torch: not in the serving image

    if args.output is None and not args.check:
        raise InputError("triton-repo needs --output (or --check to run the checks and write nothing)")
    options = {name: getattr(args, name) for name in RepoSettings.model_fields if hasattr(args, name)}
    settings = RepoSettings(**options | {"providers": PROVIDERS[args.providers]})
    result = repo_from_encoder(args.model, args.encoder, args.output, settings, check_only=args.check)
    spec = result.spec
    if args.check:
        print(f"consistent: {', '.join(result.check['models'])} ({spec.encoder_kind} encoder, encoder batch "
              f"{spec.encoder_max_batch}, {len(spec.shape_limits)} shape limits, {spec.max_batch_tokens} tokens per "
              f"batch, max length {spec.max_length}); nothing written")
        if not result.check["triton_loads_this_plan"]:
            print(f"this plan is not one Triton loads: {result.check['gpu_host_must']}")
        return 0
    meta = result.meta
    if meta.simulated:
        sim = meta.simulated
        print(f"SIMULATED encoder: {sim['name']} ({sim['devices']} device(s), one instance each); one query of 32 "
              f"tokens takes {sim['one_query_ms']['32 tokens']:.2f} ms, of 512 tokens "
              f"{sim['one_query_ms']['512 tokens']:.2f} ms (figures: {sim['figures']['source']})")
    print(f"wrote {result.directory} ({spec.encoder_kind} encoder, pooling in the {spec.pooling}, encoder batch "
          f"{spec.encoder_max_batch}, {spec.max_batch_tokens} tokens per batch, max length {spec.max_length})"
          + ("" if meta.onnx_dir else f"; serve it with: nvembed-trt serve --repo {result.directory}"))
    if meta.onnx_dir:
        onnx_dir = result.directory.with_name(meta.onnx_dir)
        print(f"no plan yet: the GPU node builds it (TensorRT {meta.triton_image.tensorrt}, the "
              f"{meta.triton_image.image} image's) from {onnx_dir}/; upload both folders side by side "
              f"and deploy with: nvembed-trt deploy k8s --repo {result.directory} --output deploy/<name>; by hand "
              f"on the node: nvembed-trt deploy ensure-engine --store {result.directory} --onnx {onnx_dir} "
              f"--output <models>/{result.directory.name}")
    elif spec.encoder_kind == "tensorrt_plan":
        from ..deploy.images import ngc_commands

        lines = ngc_commands(result.directory, meta.triton_image.image)
        print("on the GPU host, in NVIDIA's Triton image (" + meta.triton_image.image + "):\n  "
              + "\n  ".join(lines))
    return 0


def run_serve(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from ..serving.run import TritonOptions, serve

    names = [n for n in ServeSettings.model_fields if hasattr(args, n) and n not in ("host", "port", "model_id", "api_key")]
    try:
        settings = ServeSettings.with_env(host=args.host, port=args.port, model_id=args.model_id,
                                          api_key=args.api_key, **{n: getattr(args, n) for n in names})
    except ValidationError as exc:
        problems = "; ".join(f"--{'.'.join(map(str, e['loc'])).replace('_', '-')}: {e['msg']} (got {e['input']!r})"
                             for e in exc.errors())
        raise InputError(problems) from None
    if args.triton_ready_timeout <= 0:
        raise InputError(f"--triton-ready-timeout must be > 0 seconds, got {args.triton_ready_timeout}")
    triton = TritonOptions(args.triton_host, args.http_port, args.grpc_port, args.metrics_port, args.tritonserver,
                           args.triton_exit_timeout, args.triton_ready_timeout)
    return serve(args.repo, settings, triton)


def run_smoke(args: argparse.Namespace) -> int:
    from ..validation.smoke import serving_check

    report = serving_check(args.repo, args.model, read_texts(args.input).texts, tritonserver=args.tritonserver)
    if args.report:
        write_json(args.report, sidecar("serving-check", **report))
    print(f"served {report['texts']} texts through {args.repo} ({report['recipe']}, threshold "
          f"{report['min_cosine']}): /v1/embeddings min cosine {report['front-door']['min_cosine']:.6f}, KServe "
          f"HTTP {report['kserve-http']['min_cosine']:.6f}, gRPC {report['kserve-grpc']['min_cosine']:.6f} against "
          f"the PyTorch reference; stopped cleanly")
    return 0


def run_client_embed(args: argparse.Namespace) -> int:
    check_output_path(args.output)
    inputs = read_texts(args.input)
    import os

    client = EmbeddingClient(args.url, args.protocol, api_key=args.api_key or os.environ.get(API_KEY_ENV))
    vectors = client.embed(inputs.texts, args.input_type, args.instruction, args.truncate, args.batch_size)
    save_embeddings(args.output, vectors)
    meta = args.output.with_name(args.output.name + ".json")
    write_json(meta, sidecar("embeddings", server=args.url, protocol=client.protocol, model=client.model,
                             input={"source": inputs.name, "sha256": inputs.sha256, "count": len(inputs.texts)},
                             settings={"input_type": args.input_type, "instruction": args.instruction,
                                       "truncate": args.truncate},
                             output={"shape": list(vectors.shape), "sha256": sha256_file(args.output)}))
    print(f"wrote {vectors.shape[0]} embeddings of dim {vectors.shape[1]} from {args.url} to {args.output}")
    return 0
