"""bench: latency (p50/p90/p99) and throughput per runtime over batch x sequence grids, Triton end to end over a
concurrency sweep, the ensemble's overhead against the bare encoder, and the tokenizer alone. Warm-up excluded; on
a GPU, CUDA is synchronised around each timing and every figure carries its physical floor."""

from __future__ import annotations

import datetime as dt
import platform
import threading
import time
from pathlib import Path

import numpy as np

from ..config import NVEmbedConfig
from ..provenance import sidecar, write_json
from ..tokenizer import INPUT_TYPES, EmbeddingTokenizer, TokenizedBatch
from .floors import Cost, attention_dtype, file_bytes, measure_floors, recipe_dtypes, recipe_weight_bytes

RESULTS = Path("benchmarks") / "results"


def synthetic_batch(tokenizer: EmbeddingTokenizer, batch: int, seq: int, rng) -> TokenizedBatch:
    """Exactly `seq` tokens per row: BOS, random vocabulary, EOS; nothing masked."""
    ids = rng.integers(259, tokenizer.tokenizer.get_vocab_size(), size=(batch, seq)).astype(np.int64)
    ids[:, 0], ids[:, -1] = tokenizer.bos_id, tokenizer.eos_id
    ones = np.ones((batch, seq), dtype=np.int64)
    return TokenizedBatch(ids, ones, ones.copy())


def synthetic_text(tokenizer: EmbeddingTokenizer, tokens: int, rng) -> str:
    return tokenizer.tokenizer.decode(rng.integers(259, tokenizer.tokenizer.get_vocab_size(), tokens).tolist())


def percentiles(ms: list[float]) -> dict:
    a = np.asarray(ms)
    return {"p50_ms": float(np.percentile(a, 50)), "p90_ms": float(np.percentile(a, 90)),
            "p95_ms": float(np.percentile(a, 95)), "p99_ms": float(np.percentile(a, 99)), "mean_ms": float(a.mean())}


def timed(fn, warmup: int, iters: int, cuda: bool = False) -> list[float]:
    """Milliseconds per call after warm-up: CUDA events around in-process GPU work, wall clock otherwise."""
    for _ in range(warmup):
        fn()
    out = []
    if cuda:
        import torch

        for _ in range(iters):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            out.append(start.elapsed_time(end))
        return out
    for _ in range(iters):
        start = time.perf_counter()
        fn()
        out.append((time.perf_counter() - start) * 1000)
    return out


def _callable(runtime, batch: TokenizedBatch):
    """One forward pass of the runtime's encoder (the seam's run) on the batch's arrays."""
    encoder = runtime.encoder
    arrays = {name: getattr(batch, name) for name in encoder.inputs}
    return lambda: encoder.run(arrays)


def runtime_cost(runtime, cfg: NVEmbedConfig) -> Cost:
    """The weight bytes a runtime reads per forward pass and the dtypes its matmuls run in: from the files it loaded
    where it has them (engine plan, ONNX graph + external data), else from the recipe's (or PyTorch dtype's) weights."""
    if runtime.name == "torch":   # the parameters as loaded: float32, float16 or bfloat16
        dtype = str(next(runtime.encoder.embedder.model.parameters()).dtype).removeprefix("torch.")
        _, gemm, _ = recipe_dtypes(dtype)
        return Cost(recipe_weight_bytes(cfg, dtype), gemm, attention_dtype(dtype), f"parameters in {dtype}")
    recipe = runtime.recipe
    _, gemm, _ = recipe_dtypes(recipe)
    if runtime.name == "engine":
        plan = runtime.encoder.plan
        return Cost(file_bytes(plan), gemm, attention_dtype(recipe), f"engine plan {plan}")
    if runtime.name == "onnx":
        path = runtime.encoder.path
        return Cost(file_bytes(path, path.with_name(path.name + ".data")), gemm, attention_dtype(recipe),
                    f"ONNX graph {path} and its external data")
    return Cost(recipe_weight_bytes(cfg, recipe), gemm, attention_dtype(recipe), f"recipe {recipe}'s weight dtypes")


def bench_grid(runtime, tokenizer, batches, seqs, warmup, iters, floors, cfg: NVEmbedConfig | None = None,
               skipped: list[str] | None = None) -> list[dict]:
    rng, rows = np.random.default_rng(0), []
    cost = runtime_cost(runtime, cfg) if floors is not None and cfg is not None else None
    for b in batches:
        for s in seqs:
            if runtime.name == "engine" and not runtime.accepts(b, s):  # beyond the card's profiles: not a figure
                if skipped is not None:
                    shapes = "; ".join(limit.describe() for limit in runtime.encoder.shape_limits)
                    skipped.append(f"engine {runtime.recipe}: batch {b} x sequence {s} is outside its profiles and "
                                   f"serving limits ({shapes})")
                continue
            if runtime.name == "triton":
                texts = [synthetic_text(tokenizer, max(1, s - 2), rng) for _ in range(b)]
                fn = lambda texts=texts: runtime.embed(texts, "", b)  # noqa: E731
            else:
                fn = _callable(runtime, synthetic_batch(tokenizer, b, s, rng))
            # Triton is timed end to end over HTTP (wall clock); in-process runtimes with CUDA events on a GPU
            stats = percentiles(timed(fn, warmup, iters, cuda=floors is not None and runtime.name != "triton"))
            row = {"runtime": runtime.name, "recipe": runtime.recipe, "batch": b, "seq": s, **stats,
                   "requests_per_s": 1000 * b / stats["mean_ms"], "tokens_per_s": 1000 * b * s / stats["mean_ms"]}
            if cost is not None:
                row.update(floors.annotate(cost, b, s, stats["p50_ms"]))
            rows.append(row)
    return rows


def concurrency_sweep(runtime, tokenizer, levels, requests_per_client: int) -> list[dict]:
    rng = np.random.default_rng(1)
    query = synthetic_text(tokenizer, 12, rng)
    rows = []
    for level in levels:
        latencies: list[float] = []
        errors: list[BaseException] = []
        lock = threading.Lock()

        def client():
            own = runtime.new_client()  # tritonclient's clients are not shared across threads
            try:
                for _ in range(requests_per_client):
                    start = time.perf_counter()
                    own.embed([query], input_type="query")
                    with lock:
                        latencies.append((time.perf_counter() - start) * 1000)
            except BaseException as exc:  # surfaced below, after the threads join
                errors.append(exc)
        threads = [threading.Thread(target=client) for _ in range(level)]
        start = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - start
        if errors:
            raise errors[0]
        rows.append({"concurrency": level, "requests": len(latencies), **percentiles(latencies),
                     "requests_per_s": len(latencies) / wall})
    return rows


def tokenizer_throughput(tokenizer: EmbeddingTokenizer, count: int = 2000) -> dict:
    rng = np.random.default_rng(2)
    texts = [synthetic_text(tokenizer, int(n), rng) for n in rng.integers(8, 128, count)]
    start = time.perf_counter()
    for i in range(0, count, 64):
        tokenizer(texts[i:i + 64], INPUT_TYPES["query"], 512)
    return {"texts": count, "texts_per_s": count / (time.perf_counter() - start)}


def run_bench(model: str, tokenizer: EmbeddingTokenizer, runtimes: list, missing: list[str], batches, seqs,
              concurrency, slo_ms: float = 150.0, warmup: int = 2, iters: int = 10, requests_per_client: int = 5,
              cfg: NVEmbedConfig | None = None, results_dir: Path | None = None) -> tuple[dict, Path]:
    """`cfg`: the model's configuration, for the physical floors on a GPU (weights and FLOPs per runtime)."""
    floors = measure_floors(cfg) if cfg is not None else None
    missing = list(missing)
    grid = []
    for r in runtimes:
        grid += bench_grid(r, tokenizer, batches, seqs, warmup, iters, floors, cfg, missing)
        if r.name == "engine":
            r.close()   # one engine on the GPU at a time

    triton = next((r for r in runtimes if r.name == "triton"), None)
    sweep = concurrency_sweep(triton, tokenizer, concurrency, requests_per_client) if triton else []
    overhead = _overhead(grid)
    slo = [{"runtime": r["runtime"], "recipe": r["recipe"], "p95_ms": r["p95_ms"], "slo_ms": slo_ms,
            "pass": r["p95_ms"] <= slo_ms} for r in grid if r["batch"] == 1 and r["seq"] == min(seqs)]
    report = sidecar("benchmark", model=model, host=platform.node(), device=floors.device if floors else "cpu",
                     floors=floors.describe() if floors else "no GPU: floors are reported on GPUs only",
                     grid=grid, concurrency=sweep, serving_overhead=overhead,
                     tokenizer=tokenizer_throughput(tokenizer), slo=slo, not_available=missing,
                     settings={"batches": list(batches), "seqs": list(seqs), "concurrency": list(concurrency),
                               "warmup": warmup, "iters": iters})
    out_dir = results_dir or RESULTS / platform.node()
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = out_dir / f"bench-{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}"
    write_json(stem.with_suffix(".json"), report)
    stem.with_suffix(".md").write_text(bench_markdown(report))
    plot(report, stem)
    return report, stem.with_suffix(".json")


def _overhead(grid: list[dict]) -> list[dict]:
    rows = []
    for t in (r for r in grid if r["runtime"] == "triton"):
        direct = next((r for r in grid if r["runtime"] == "onnx" and r["recipe"] == t["recipe"]
                       and r["batch"] == t["batch"] and r["seq"] == t["seq"]), None)
        if direct:
            rows.append({"recipe": t["recipe"], "batch": t["batch"], "seq": t["seq"], "triton_p50_ms": t["p50_ms"],
                         "encoder_p50_ms": direct["p50_ms"], "overhead_ms": t["p50_ms"] - direct["p50_ms"]})
    return rows


def bench_markdown(report: dict) -> str:
    lines = [f"Benchmark of `{report['model']}` on {report['host']} ({report['device']})", "",
             "| runtime | recipe | batch | seq | p50 ms | p90 ms | p99 ms | requests/s | tokens/s | floor |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in report["grid"]:
        floor = f"{r['floor_ms']:.2f} ms ({100 * r['floor_fraction']:.0f}%)" if "floor_ms" in r else "–"
        lines.append(f"| {r['runtime']} | {r['recipe']} | {r['batch']} | {r['seq']} | {r['p50_ms']:.2f} | "
                     f"{r['p90_ms']:.2f} | {r['p99_ms']:.2f} | {r['requests_per_s']:.1f} | {r['tokens_per_s']:.0f} | "
                     f"{floor} |")
    if report["concurrency"]:
        lines += ["", "| Triton concurrency | requests | p50 ms | p99 ms | requests/s |", "|---|---|---|---|---|"]
        lines += [f"| {r['concurrency']} | {r['requests']} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | "
                  f"{r['requests_per_s']:.1f} |" for r in report["concurrency"]]
    for o in report["serving_overhead"]:
        lines.append(f"- ensemble overhead ({o['recipe']}, batch {o['batch']}, seq {o['seq']}): Triton p50 "
                     f"{o['triton_p50_ms']:.2f} ms vs encoder alone {o['encoder_p50_ms']:.2f} ms "
                     f"(+{o['overhead_ms']:.2f} ms)")
    lines.append(f"- tokenizer alone: {report['tokenizer']['texts_per_s']:.0f} texts/s")
    lines += [f"- SLO p95 <= {s['slo_ms']:g} ms for a one-query request, {s['runtime']} ({s['recipe']}): "
              f"{s['p95_ms']:.2f} ms, {'pass' if s['pass'] else 'FAIL'}" for s in report["slo"]]
    lines += [f"- not available here: {m}" for m in report["not_available"]]
    return "\n".join(lines) + "\n"


def plot(report: dict, stem: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for key in sorted({(r["runtime"], r["recipe"]) for r in report["grid"]}):
        rows = sorted((r for r in report["grid"] if (r["runtime"], r["recipe"]) == key and r["batch"] == 1),
                      key=lambda r: r["seq"])
        if rows:
            ax.plot([r["seq"] for r in rows], [r["p50_ms"] for r in rows], marker="o", label=f"{key[0]} {key[1]}")
    ax.set(xscale="log", xlabel="sequence length (tokens)", ylabel="p50 latency at batch 1 (ms)",
           title=f"{report['model']} on {report['device']}")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(stem.parent / f"{stem.name}-latency.png", dpi=100)
    plt.close(fig)
    if report["concurrency"]:
        fig, ax = plt.subplots(figsize=(6, 4))
        rows = report["concurrency"]
        ax.plot([r["concurrency"] for r in rows], [r["requests_per_s"] for r in rows], marker="o")
        ax.set(xlabel="concurrent clients", ylabel="requests/s", title="Triton end to end")
        fig.tight_layout()
        fig.savefig(stem.parent / f"{stem.name}-throughput.png", dpi=100)
        plt.close(fig)
