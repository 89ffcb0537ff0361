"""The serving benchmark: what the served path delivers against what its encoder can, measured in one run.

Workload (stated, seeded): real prose from the Python language reference (pydoc_data, installed with CPython),
cut into queries of 8-64 tokens (sent with the query instruction) and passages of 64 to the repository's maximum
length, grouped into requests of 1-8 texts of one kind. Measured:
- ceiling: the bare encoder (ONNX Runtime on the repository's own graph here; the engine on a GPU) on the same texts
  in its best packed batches (the front door's packer at several token budgets), texts/s and tokens/s;
- served: texts/s through /v1/embeddings at each concurrency, and through the KServe model (nv_embed over gRPC);
- overhead: p50/p99 of a one-query request through the front door (and KServe) minus the encoder alone on the same
  tokens;
- padding efficiency: real tokens / tokens the encoder computed, from the front door's own counters.
Results: JSON + Markdown + a plot; ratios served/ceiling printed."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import platform
import random
import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..encoding import Row, pack
from ..packing import Packer
from ..provenance import sidecar, write_json
from ..tokenizer import INPUT_TYPES, EmbeddingTokenizer
from ..errors import InputError
from ..triton.meta import RepoMeta
from ..triton.spec import ENCODER, ENSEMBLE, OUTPUT, TOKENIZER_DIR, RepoSpec
from .bench import percentiles

RESULTS = Path("benchmarks") / "results"
QUERY_TOKENS, TEXTS_PER_REQUEST = (8, 64), (1, 8)


@dataclass
class Workload:
    texts: list[str]
    kinds: list[str]                 # "query" | "passage"
    tokens: list[int]                # tokens reaching the encoder (instruction included)
    requests: list[list[int]]        # indices of the texts of each request (one kind per request)
    source: dict

    def histogram(self, edges=(0, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 32768)) -> dict[str, int]:
        counts, _ = np.histogram(self.tokens, bins=list(edges))
        return {f"{lo}-{hi}": int(c) for lo, hi, c in zip(edges[:-1], edges[1:], counts) if c}


def _prose() -> tuple[str, dict]:
    import hashlib

    import pydoc_data.topics as topics

    text = " ".join(" ".join(str(v).split()) for _, v in sorted(topics.topics.items()))
    return text, {"source": "pydoc_data.topics (Python language reference)", "python": platform.python_version(),
                  "sha256": hashlib.sha256(text.encode()).hexdigest()}


def mixed_workload(tokenizer: EmbeddingTokenizer, max_length: int, texts: int = 1200, seed: int = 0) -> Workload:
    """Half queries (8-64 tokens of text + the query instruction), half passages (64..max_length tokens)."""
    rng = random.Random(seed)
    prose, source = _prose()
    words = re.findall(r"\S+", prose)
    query = INPUT_TYPES["query"]
    out_texts, kinds = [], []
    while len(out_texts) < texts:
        kind = "query" if rng.random() < 0.5 else "passage"
        lo, hi = QUERY_TOKENS if kind == "query" else (64, max(65, max_length - 2))
        target = rng.randint(lo, hi)
        start = rng.randrange(0, len(words) - 4 * target)
        n = max(1, int(target * 0.75))                       # ~1.3 tokens per word in this prose
        text = " ".join(words[start:start + n])
        ids = tokenizer.encode([text], "", max_length, "END")[0].ids
        while len(ids) > target + 2 and n > 1:               # trim to the target
            n = max(1, int(n * (target + 2) / len(ids)))
            text = " ".join(words[start:start + n])
            ids = tokenizer.encode([text], "", max_length, "END")[0].ids
        out_texts.append(text)
        kinds.append(kind)
    tokens = [len(tokenizer.encode([t], query if k == "query" else "", max_length, "END")[0].ids)
              for t, k in zip(out_texts, kinds)]
    requests, i = [], 0
    order = sorted(range(texts), key=lambda j: (kinds[j], rng.random()))   # requests of one kind
    while i < texts:
        size = rng.randint(*TEXTS_PER_REQUEST)
        group = order[i:i + size]
        kind = kinds[group[0]]
        requests.append([j for j in group if kinds[j] == kind])
        i += len(requests[-1])
    rng.shuffle(requests)
    return Workload(out_texts, kinds, tokens, requests, {**source, "seed": seed, "texts": texts})


# ---- the encoder alone -----------------------------------------------------------------------------------------

def repository_encoder(repo: Path, meta: RepoMeta) -> tuple[object, str]:
    """(the repository's own copy of its encoder through the encoder seam, without serving: what Triton's `encoder`
    model runs; what it is, in words): ONNX Runtime on encoder/1/model.onnx with the repository's providers, or the
    TensorRT plan in encoder/1 with the engine facts repo.json carries."""
    from ..encoders.local import OnnxEncoder
    from ..encoders.tensorrt import TensorRTEncoder

    version = repo / ENCODER / "1"
    if meta.simulated:    # the stand-in itself: the performance model's time per batch
        from ..performance import BatchTime
        from ..triton.models.encoder_sim import StandIn

        return (StandIn(meta.spec.hidden_size, BatchTime(**meta.simulated["timing"])),   # .run(arrays) as the seam
                f"SIMULATED {meta.simulated['name']} (the performance model's time per batch)")
    if meta.engine is not None:
        if not (version / "model.plan").is_file():
            raise InputError(f"{repo}: no plan yet ({meta.engine.plan or 'encoder/1/model.plan is missing'}); run "
                             f"`nvembed-trt deploy ensure-engine` on the GPU host first")
        return TensorRTEncoder(version, meta.engine), f"TensorRT engine ({meta.engine.flavor})"
    providers = meta.spec.onnx_providers
    return (OnnxEncoder(version / "model.onnx", meta.recipe, providers=providers, spinning=False),
            f"ONNX Runtime ({', '.join(providers)})")


def rows_for(tokenizer: EmbeddingTokenizer, workload: Workload, max_length: int, indices=None) -> list[Row]:
    rows = []
    for i in (range(len(workload.texts)) if indices is None else indices):
        instruction = INPUT_TYPES[workload.kinds[i]]
        enc = tokenizer.encode([workload.texts[i]], instruction, max_length, "END")[0]
        rows.append(Row(enc.ids, tokenizer.instruction_length(instruction)))
    return rows


def ceiling(encoder, kind: str, rows: list[Row], spec: RepoSpec, pad_id: int) -> dict:
    """The encoder alone on every row, packed at several token budgets (within the encoder's shapes, as served),
    each timed twice; the best."""
    trials = []
    for factor in (0.5, 1, 2, 4):
        packer = Packer(spec.shape_limits, max(1, int(spec.max_batch_tokens * factor)))
        batches = pack(rows, packer, pad_id, spec.encoder_inputs)
        encoder.run(batches[0].arrays)                                       # warm-up
        walls = []
        for _ in range(2):
            start = time.perf_counter()
            for batch in batches:
                encoder.run(batch.arrays)
            walls.append(time.perf_counter() - start)
        wall = min(walls)
        real = sum(b.real_tokens for b in batches)
        trials.append({"max_batch_tokens": packer.max_batch_tokens, "batches": len(batches), "wall_s": wall,
                       "texts_per_s": len(rows) / wall, "tokens_per_s": real / wall,
                       "padding_efficiency": real / sum(b.padded_tokens for b in batches)})
    best = max(trials, key=lambda t: t["texts_per_s"])
    return {"encoder": kind, **best, "trials": trials}


def encoder_latency(encoder, row: Row, spec: RepoSpec, pad_id: int, iters: int) -> dict:
    arrays = pack([row], spec.packer(), pad_id, spec.encoder_inputs)[0].arrays
    for _ in range(5):
        encoder.run(arrays)
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        encoder.run(arrays)
        times.append((time.perf_counter() - start) * 1000)
    return percentiles(times)


# ---- served ----------------------------------------------------------------------------------------------------

class KeepAliveClient:
    """A minimal HTTP/1.1 keep-alive client on asyncio streams: the load generator shares the machine's cores with
    the server it measures, so it must cost little (httpx costs ~1 ms of CPU per request here; this ~0.2 ms)."""

    def __init__(self, api_url: str):
        host_port = api_url.removeprefix("http://").split("/", 1)[0]
        self.host, port = host_port.split(":")
        self.port, self.path = int(port), "/" + api_url.removeprefix("http://").split("/", 1)[1]
        self.reader = self.writer = None

    last_app_ms: float | None = None   # the server's own time for the last answer (its Server-Timing header)

    async def post(self, route: str, payload: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        self.writer.write(b"POST %s%s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
                          b"Content-Length: %d\r\n\r\n" % (self.path.encode(), route.encode(), self.host.encode(),
                                                          len(payload)) + payload)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        timing = re.search(rb"(?i)server-timing: *app;dur=([\d.]+)", head)
        self.last_app_ms = float(timing.group(1)) if timing else None
        length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))
        return status, await self.reader.readexactly(length)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


async def _front_door_load(api_url: str, model: str, workload: Workload, concurrency: int,
                           requests: list[list[int]]) -> dict:
    import orjson

    queue = list(requests)
    latencies: list[float] = []
    errors: list[str] = []

    async def worker():
        client = KeepAliveClient(api_url)
        try:
            while queue:
                group = queue.pop()
                body = orjson.dumps({"model": model, "input": [workload.texts[i] for i in group],
                                     "encoding_format": "base64", "input_type": workload.kinds[group[0]],
                                     "truncate": "END"})
                start = time.perf_counter()
                status, reply = await client.post("/embeddings", body)
                latencies.append((time.perf_counter() - start) * 1000)
                if status != 200:
                    errors.append(f"{status}: {reply[:200]!r}")
                else:
                    rows = orjson.loads(reply)["data"]
                    assert len(rows) == len(group) and len(base64.b64decode(rows[0]["embedding"])) > 0
        finally:
            await client.close()
    start = time.perf_counter()
    await asyncio.gather(*[worker() for _ in range(concurrency)])
    wall = time.perf_counter() - start
    texts = sum(len(g) for g in requests)
    return {"concurrency": concurrency, "requests": len(requests), "texts": texts, "wall_s": wall,
            "texts_per_s": texts / wall, "tokens_per_s": sum(workload.tokens[i] for g in requests for i in g) / wall,
            "errors": len(errors), "first_error": errors[0] if errors else None, **percentiles(latencies)}


async def _kserve_load(grpc_url: str, workload: Workload, concurrency: int, requests: list[list[int]]) -> dict:
    import tritonclient.grpc as grpcclient
    import tritonclient.grpc.aio as grpc_aio

    client = grpc_aio.InferenceServerClient(grpc_url)
    queue = list(requests)
    latencies: list[float] = []

    async def worker():
        while queue:
            group = queue.pop()
            inputs = []
            for name, values in (("TEXT", [workload.texts[i] for i in group]),
                                 ("INPUT_TYPE", [workload.kinds[i] for i in group]), ("TRUNCATE", ["END"] * len(group))):
                tensor = grpcclient.InferInput(name, [len(group), 1], "BYTES")
                tensor.set_data_from_numpy(np.array([[v.encode()] for v in values], dtype=object))
                inputs.append(tensor)
            start = time.perf_counter()
            result = await client.infer(ENSEMBLE, inputs, outputs=[grpcclient.InferRequestedOutput(OUTPUT)])
            latencies.append((time.perf_counter() - start) * 1000)
            assert result.as_numpy(OUTPUT).shape[0] == len(group)
    start = time.perf_counter()
    await asyncio.gather(*[worker() for _ in range(concurrency)])
    wall = time.perf_counter() - start
    await client.close()
    texts = sum(len(g) for g in requests)
    return {"concurrency": concurrency, "requests": len(requests), "texts": texts, "wall_s": wall,
            "texts_per_s": texts / wall, "tokens_per_s": sum(workload.tokens[i] for g in requests for i in g) / wall,
            **percentiles(latencies)}


async def _one_query_latency(api_url: str, grpc_url: str, model: str, text: str, iters: int,
                             encoder_arrays: dict[str, np.ndarray], spec: RepoSpec) -> dict:
    """One query, request after request: through the front door (with its own time from Server-Timing), through
    KServe's nv_embed, and straight to Triton's encoder model over gRPC with the same tokens (the Triton hop)."""
    import tritonclient.grpc as grpcclient
    import tritonclient.grpc.aio as grpc_aio

    from ..serving.backend import TritonEncoder

    front, app, kserve, direct = [], [], [], []
    client = KeepAliveClient(api_url)
    body = json.dumps({"model": model, "input": [text], "input_type": "query", "encoding_format": "base64"}).encode()
    for i in range(iters + 5):
        start = time.perf_counter()
        status, reply = await client.post("/embeddings", body)
        if i >= 5:
            front.append((time.perf_counter() - start) * 1000)
            app.append(client.last_app_ms)
        assert status == 200, reply
    await client.close()
    encoder = TritonEncoder(grpc_url, ENCODER, spec.encoder_inputs, spec.encoder_output)
    for i in range(iters + 5):
        start = time.perf_counter()
        await encoder.run(encoder_arrays)
        if i >= 5:
            direct.append((time.perf_counter() - start) * 1000)
    await encoder.close()
    triton = grpc_aio.InferenceServerClient(grpc_url)
    for i in range(iters + 5):
        inputs = []
        for name, value in (("TEXT", text), ("INPUT_TYPE", "query")):
            tensor = grpcclient.InferInput(name, [1, 1], "BYTES")
            tensor.set_data_from_numpy(np.array([[value.encode()]], dtype=object))
            inputs.append(tensor)
        start = time.perf_counter()
        await triton.infer(ENSEMBLE, inputs)
        if i >= 5:
            kserve.append((time.perf_counter() - start) * 1000)
    await triton.close()
    return {"front_door": percentiles(front), "front_door_app": percentiles(app), "kserve": percentiles(kserve),
            "triton_encoder_grpc": percentiles(direct)}


AIPERF_TEXTS_PER_REQUEST = 4


def aiperf_cross_check(aiperf: Path, api_url: str, model: str, tokenizer_dir: Path, workload: Workload,
                       concurrency: int, requests: int, workdir: Path) -> dict:
    """NVIDIA's aiperf (an independent load generator speaking /v1/embeddings) at one point, against our own
    generator sending the same requests (the workload's passages, 4 per request, truncate END)."""
    import subprocess

    passages = [t for t, k in zip(workload.texts, workload.kinds) if k == "passage"]
    workdir.mkdir(parents=True, exist_ok=True)
    dataset = workdir / "passages.jsonl"
    dataset.write_text("".join(json.dumps({"text": t}) + "\n" for t in passages))
    command = [str(aiperf), "profile", "--model", model, "--url", api_url.removesuffix("/v1"), "--endpoint-type",
               "embeddings", "--concurrency", str(concurrency), "--request-count", str(requests), "--tokenizer",
               str(tokenizer_dir), "--input-file", str(dataset), "--custom-dataset-type", "random_pool",
               "--batch-size-text", str(AIPERF_TEXTS_PER_REQUEST), "--extra-inputs", "truncate:END",
               "--artifact-dir", str(workdir / "aiperf")]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=1800)
    summary_file = workdir / "aiperf" / "profile_export_aiperf.json"
    if proc.returncode != 0 or not summary_file.is_file():
        return {"error": f"aiperf exited with {proc.returncode}: {proc.stdout[-500:]} {proc.stderr[-500:]}"}
    summary = json.loads(summary_file.read_text())
    index = {t: i for i, t in enumerate(workload.texts)}
    groups = [[index[passages[(r * AIPERF_TEXTS_PER_REQUEST + j) % len(passages)]] for j in
               range(AIPERF_TEXTS_PER_REQUEST)] for r in range(requests)]
    ours = asyncio.run(_front_door_load(api_url, model, workload, concurrency, groups))
    theirs = summary["request_throughput"]["avg"]
    mine = ours["requests"] / ours["wall_s"]
    return {"concurrency": concurrency, "requests": requests, "texts_per_request": AIPERF_TEXTS_PER_REQUEST,
            "requests_per_s": theirs, "p50_ms": summary["request_latency"]["p50"],
            "errors": summary.get("error_summary"), "aiperf_version": summary.get("aiperf_version"),
            "ours_requests_per_s": mine, "ours_p50_ms": ours["p50_ms"],
            "note": f"aiperf / ours = {theirs / mine:.2f}"}


def _metric(text: str, name: str, labels: str = "") -> float:
    match = re.search(rf"^{re.escape(name)}{re.escape(labels)} (\S+)$", text, flags=re.M)
    return float(match.group(1)) if match else 0.0


def padding_counters(api_url: str) -> tuple[float, float]:
    import httpx

    text = httpx.get(f"{api_url}/metrics").text
    return (_metric(text, "nvembed_encoder_tokens_total", '{kind="real"}'),
            _metric(text, "nvembed_encoder_tokens_total", '{kind="padded"}'))


def run_serving_bench(repo: Path, concurrency: list[int], texts: int = 1200, iters: int = 200, seed: int = 0,
                      kserve_concurrency: list[int] | None = None, serve_args: tuple[str, ...] = (),
                      results_dir: Path | None = None, aiperf: Path | None = None) -> tuple[dict, Path]:
    from ..serving.process import ServeProcess

    import os

    repo = Path(repo)
    load_before = os.getloadavg()[0]
    meta = RepoMeta.read(repo)
    spec = meta.spec
    tokenizer = EmbeddingTokenizer.from_dir(repo / ENSEMBLE / "1" / TOKENIZER_DIR)
    workload = mixed_workload(tokenizer, spec.max_length, texts, seed)
    rows = rows_for(tokenizer, workload, spec.max_length)
    encoder, kind = repository_encoder(repo, meta)
    bare = ceiling(encoder, kind, rows, spec, tokenizer.pad_id)
    query = next(t for t, k in zip(workload.texts, workload.kinds) if k == "query")
    query_row = rows_for(tokenizer, Workload([query], ["query"], [], [], {}), spec.max_length)[0]
    alone = encoder_latency(encoder, query_row, spec, tokenizer.pad_id, iters)
    served, kserve = [], []
    with ServeProcess(repo, serve_args) as process:
        model = meta.served_model_id
        query_arrays = pack([query_row], spec.packer(), tokenizer.pad_id, spec.encoder_inputs)[0].arrays
        one = asyncio.run(_one_query_latency(process.api_url, process.kserve["grpc"], model, query, iters,
                                             query_arrays, spec))
        for level in concurrency:
            before = padding_counters(process.api_url)
            row = asyncio.run(_front_door_load(process.api_url, model, workload, level, workload.requests))
            after = padding_counters(process.api_url)
            real, padded = after[0] - before[0], after[1] - before[1]
            row["padding_efficiency"] = real / (real + padded) if real + padded else None
            served.append(row)
        for level in kserve_concurrency or concurrency:
            row = asyncio.run(_kserve_load(process.kserve["grpc"], workload, level, workload.requests))
            kserve.append(row)
        cross = None
        if aiperf is not None:
            import tempfile

            with tempfile.TemporaryDirectory(prefix="nvembed-aiperf-") as work:
                cross = aiperf_cross_check(Path(aiperf), process.api_url, model, repo / ENSEMBLE / "1" / TOKENIZER_DIR,
                                           workload, 8, max(100, len(workload.requests)), Path(work))
    # the ceiling again, now that the server is gone: the machine's other load may have changed meanwhile, and the
    # ratios must not flatter the served path, so the better of the two stands
    after = ceiling(encoder, kind, rows, spec, tokenizer.pad_id)
    alone_after = encoder_latency(encoder, query_row, spec, tokenizer.pad_id, iters)
    del encoder
    bare = {**max(bare, after, key=lambda c: c["texts_per_s"]), "before_texts_per_s": bare["texts_per_s"],
            "after_texts_per_s": after["texts_per_s"]}
    alone = min(alone, alone_after, key=lambda a: a["p50_ms"])
    for row in served + kserve:
        row["ratio_to_ceiling"] = row["texts_per_s"] / bare["texts_per_s"]
    overhead = {face: {"p50_ms": one[face]["p50_ms"] - alone["p50_ms"], "p99_ms": one[face]["p99_ms"] - alone["p99_ms"],
                       "served_p50_ms": one[face]["p50_ms"], "served_p99_ms": one[face]["p99_ms"]}
                for face in ("front_door", "kserve")}
    # where the front door's one-query time goes (p50s): Triton's hop to the encoder (gRPC + the python backend on
    # CPU), the front door's own work around it (Server-Timing minus that hop), and HTTP + the client
    overhead["breakdown_p50_ms"] = {
        "encoder_alone": alone["p50_ms"],
        "triton_hop": one["triton_encoder_grpc"]["p50_ms"] - alone["p50_ms"],
        "front_door_own": one["front_door_app"]["p50_ms"] - one["triton_encoder_grpc"]["p50_ms"],
        "http_and_client": one["front_door"]["p50_ms"] - one["front_door_app"]["p50_ms"]}
    report = sidecar("serving-benchmark", repo=str(repo), host=platform.node(), model=meta.served_model_id,
                     encoder_kind=spec.encoder_kind, recipe=meta.recipe, simulated=meta.simulated,
                     workload={**workload.source, "requests": len(workload.requests), "texts_per_request":
                               list(TEXTS_PER_REQUEST), "query_tokens": list(QUERY_TOKENS),
                               "passage_tokens": [64, spec.max_length], "histogram": workload.histogram(),
                               "queries": workload.kinds.count("query"), "tokens": int(sum(workload.tokens))},
                     ceiling=bare, served=served, kserve=kserve, aiperf=cross,
                     one_query={"encoder_alone": alone, "tokens": len(query_row.ids), **one}, overhead=overhead,
                     settings={"concurrency": concurrency, "iters": iters, "serve_args": list(serve_args),
                               "max_batch_tokens": spec.max_batch_tokens},
                     machine={"cpus": os.cpu_count(), "load_average_before": round(load_before, 2),
                              "load_average_after": round(os.getloadavg()[0], 2)})
    out_dir = results_dir or RESULTS / platform.node()
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = out_dir / f"serving-{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}"
    write_json(stem.with_suffix(".json"), report)
    stem.with_suffix(".md").write_text(serving_markdown(report))
    plot(report, stem)
    return report, stem.with_suffix(".json")


def serving_markdown(report: dict) -> str:
    w, c = report["workload"], report["ceiling"]
    sim = report.get("simulated")
    lines = [(f"SIMULATED encoder {sim['name']} (a GPU-timed stand-in, no GPU): " if sim else "") +
             f"Serving benchmark of `{report['model']}` ({report['encoder_kind']}, {report['recipe']}) on "
             f"{report['host']}: {w['texts']} texts ({w['queries']} queries of {w['query_tokens'][0]}-"
             f"{w['query_tokens'][1]} tokens + the query instruction, passages of {w['passage_tokens'][0]}-"
             f"{w['passage_tokens'][1]} tokens) from {w['source']}, seed {w['seed']}, in {w['requests']} requests of "
             f"{w['texts_per_request'][0]}-{w['texts_per_request'][1]} texts; {report['machine']['cpus']} CPUs shared "
             f"with the load generator (1-minute load average {report['machine']['load_average_before']} before, "
             f"{report['machine']['load_average_after']} after)",
             "", "Tokens per text: " + ", ".join(f"{k}: {v}" for k, v in w["histogram"].items()), "",
             "| path | concurrency | texts/s | tokens/s | p50 ms | p99 ms | served / ceiling | padding efficiency |",
             "|---|---|---|---|---|---|---|---|",
             f"| ceiling: {c['encoder']}, packed ({c['max_batch_tokens']} tokens/batch; best of before "
             f"{c['before_texts_per_s']:.0f} and after {c['after_texts_per_s']:.0f}) | – | {c['texts_per_s']:.0f} | "
             f"{c['tokens_per_s']:.0f} | – | – | 1.00 | {c['padding_efficiency']:.2f} |"]
    for r in report["served"]:
        pad = f"{r['padding_efficiency']:.2f}" if r.get("padding_efficiency") is not None else "–"
        lines.append(f"| /v1/embeddings | {r['concurrency']} | {r['texts_per_s']:.0f} | {r['tokens_per_s']:.0f} | "
                     f"{r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['ratio_to_ceiling']:.2f} | {pad} |")
    for r in report["kserve"]:
        lines.append(f"| KServe nv_embed (gRPC) | {r['concurrency']} | {r['texts_per_s']:.0f} | "
                     f"{r['tokens_per_s']:.0f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | "
                     f"{r['ratio_to_ceiling']:.2f} | – |")
    one, o = report["one_query"], report["overhead"]
    lines += ["", f"One query ({one['tokens']} tokens): encoder alone p50 {one['encoder_alone']['p50_ms']:.2f} ms, "
                  f"p99 {one['encoder_alone']['p99_ms']:.2f} ms; /v1/embeddings p50 "
                  f"{o['front_door']['served_p50_ms']:.2f} ms (overhead {o['front_door']['p50_ms']:.2f} ms), p99 "
                  f"{o['front_door']['served_p99_ms']:.2f} ms (overhead {o['front_door']['p99_ms']:.2f} ms); KServe "
                  f"nv_embed p50 {o['kserve']['served_p50_ms']:.2f} ms (overhead {o['kserve']['p50_ms']:.2f} ms), p99 "
                  f"{o['kserve']['served_p99_ms']:.2f} ms (overhead {o['kserve']['p99_ms']:.2f} ms).",
              "Where the front door's one-query p50 goes: " + ", ".join(
                  f"{k.replace('_', ' ')} {v:.2f} ms" for k, v in o["breakdown_p50_ms"].items()) + "."]
    a = report.get("aiperf")
    if a and "error" not in a:
        lines.append(f"Cross-check with NVIDIA's aiperf {a['aiperf_version']} at concurrency {a['concurrency']} "
                     f"({a['requests']} requests of {a['texts_per_request']} passages): {a['requests_per_s']:.1f} "
                     f"requests/s, p50 {a['p50_ms']:.1f} ms; our load generator on the same requests: "
                     f"{a['ours_requests_per_s']:.1f} requests/s, p50 {a['ours_p50_ms']:.1f} ms ({a['note']}).")
    elif a:
        lines.append(f"aiperf cross-check failed: {a['error']}")
    return "\n".join(lines) + "\n"


def plot(report: dict, stem: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for key, label in (("served", "/v1/embeddings"), ("kserve", "KServe nv_embed")):
        rows = report[key]
        if rows:
            ax.plot([r["concurrency"] for r in rows], [r["texts_per_s"] for r in rows], marker="o", label=label)
    ax.axhline(report["ceiling"]["texts_per_s"], color="grey", linestyle="--", label="encoder alone (ceiling)")
    ax.set(xscale="log", xlabel="concurrent clients", ylabel="texts/s", title=f"{report['model']} served vs ceiling")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(stem.parent / f"{stem.name}-serving.png", dpi=100)
    plt.close(fig)


def load_json(path: Path) -> dict:
    return json.loads(Path(path).read_text())
