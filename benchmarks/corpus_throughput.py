"""embed-corpus against single-process `nvembed-trt embed` on the same rows, on this machine.

    python benchmarks/corpus_throughput.py [--rows 20000] [--model tiny] [--max-length 128] [--workdir DIR]

Rows are real prose (the Python language reference, as the calibration set; repeated with distinct ids to reach
--rows). Each command runs as its own process, as a user would run it, so wall times include imports, model load
and (for embed-corpus) starting a local Ray. Measured:
  - `nvembed-trt embed` (PyTorch reference, one process, all cores): rows/s;
  - `nvembed-trt embed-corpus --runtime torch` and `--runtime onnx` (local Ray; the actor pool leaves one CPU for
    reading): rows/s end to end, and from the job's sidecar its time split into startup (scan, actor start: until
    the first worker call), span (first call to last) and tail, the workers' busy time (tokenise, encode, write)
    per row, their idle time inside the span per row (how well Ray keeps them fed), and the job's overhead per
    row (job time beyond the workers' busy time, startup included);
  - the ratio of embed-corpus rows/s to embed rows/s (the faster of torch's default threads and one thread).
Prints a table and writes benchmarks/results/<host>/corpus-throughput.json (with the load average, since these
machines are shared).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / platform.node()


def timed(cmd: list[str], **env: str) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, **env})
    if proc.returncode != 0:
        sys.exit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-3000:]}")
    return time.perf_counter() - start


def write_corpus(path: Path, rows: int) -> int:
    from nvembed_trt.calibration.corpus import python_reference_corpus

    texts = [s.text for s in python_reference_corpus().samples if s.input_type == "passage"]
    with path.open("w", encoding="utf-8") as fh:
        for i in range(rows):
            fh.write(json.dumps({"id": f"doc-{i}", "text": texts[i % len(texts)]}) + "\n")
    return len(texts)


def encode_only(corpus: Path, args) -> float:
    """Embedder.encode alone on the same rows (one thread, model loaded, no I/O): the compute both commands do."""
    import torch

    from nvembed_trt.embedder import Embedder

    torch.set_num_threads(1)
    texts = [json.loads(line)["text"] for line in corpus.open(encoding="utf-8")]
    embedder = Embedder.from_model(args.model, progress=False)
    start = time.perf_counter()
    embedder.encode(texts, max_length=args.max_length, batch_size=args.batch_size)
    return time.perf_counter() - start


def corpus_markdown(payload: dict) -> str:
    """The table of one run (printed here; the Results page renders the published one)."""
    lines = [f"{payload['rows']:,} rows, model {payload['model']}, max length {payload['max_length']}, "
             f"{payload['cpus']} CPUs, 1-minute load average {payload['load_average_before'][0]:.1f} before and "
             f"{payload['load_average_after'][0]:.1f} after; `Embedder.encode` alone (1 thread, in process): "
             f"{payload['encode_only_rows_per_s']:,.1f} rows/s", "",
             "| command | wall s | rows/s | vs faster embed | job s = startup + span + tail | span rows/s | "
             "worker busy ms/row | idle in span ms/row | job overhead ms/row |", "|---|---|---|---|---|---|---|---|---|"]
    for name, r in payload["results"].items():
        job = (f"{r['job_s']:.1f} = {r['startup_s']:.1f} + {r['span_s']:.1f} + {r['tail_s']:.1f}"
               if "job_s" in r else "–")
        lines.append(f"| {name} | {r['wall_s']:.1f} | {r['rows_per_s']:,.1f} | {r['ratio_vs_embed']:.2f} | {job} | "
                     f"{r.get('span_rows_per_s', '–')} | {r.get('busy_ms_per_row', '–')} | "
                     f"{r.get('idle_in_span_ms_per_row', '–')} | {r.get('overhead_per_row_ms', '–')} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=20000)
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=32, help="nvembed-trt embed --batch-size")
    parser.add_argument("--batch-tokens", type=int, default=4096, help="embed-corpus --batch-tokens")
    parser.add_argument("--shard-rows", type=int, default=4096, help="embed-corpus --shard-rows")
    parser.add_argument("--workdir", type=Path)
    args = parser.parse_args()
    cli = shutil.which("nvembed-trt") or str(Path(sys.executable).parent / "nvembed-trt")
    work = args.workdir or Path(tempfile.mkdtemp(prefix="corpus-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    corpus = work / "corpus.jsonl"
    distinct = write_corpus(corpus, args.rows)
    length = ["--max-length", str(args.max_length)]
    subprocess.run([cli, "export", "--model", args.model, "--output", str(work / "export"), "--no-parity",
                    "--overwrite"], check=True, capture_output=True)
    load_before = os.getloadavg()

    results = {}
    embed = [cli, "embed", "--model", args.model, "--input", str(corpus), "--output", str(work / "single.npy"),
             "--batch-size", str(args.batch_size), *length]
    # torch's default uses every core; on a shared (oversubscribed) machine one thread can be faster: the
    # baseline is whichever is faster here
    results["embed (torch, default threads)"] = {"wall_s": timed(embed)}
    results["embed (torch, 1 thread)"] = {"wall_s": timed(embed, OMP_NUM_THREADS="1")}
    single = min(r["wall_s"] for r in results.values())
    encode_s = encode_only(corpus, args)
    for runtime, extra in (("torch", []), ("onnx", ["--encoder", str(work / "export")])):
        out = work / f"corpus-{runtime}"
        shutil.rmtree(out, ignore_errors=True)
        wall = timed([cli, "embed-corpus", "--input", str(corpus), "--output", str(out), "--model", args.model,
                      "--runtime", runtime, *extra, *length, "--batch-tokens", str(args.batch_tokens),
                      "--shard-rows", str(args.shard_rows)])
        run = json.loads((out / "corpus.json").read_text())["runs"][-1]
        busy = sum(run["worker_seconds"][k] for k in ("tokenize", "encode", "write"))
        results[f"embed-corpus --runtime {runtime}"] = {
            "wall_s": wall, "outside_job_s": round(wall - run["seconds"], 1), "job_s": run["seconds"],
            "scan_s": run["scan_seconds"], "startup_s": run["startup_s"], "span_s": run["span_s"],
            "tail_s": run["tail_s"], "span_rows_per_s": run["span_rows_per_s"], "workers": run["workers"],
            "worker_s": run["worker_seconds"], "busy_ms_per_row": round(1000 * busy / args.rows, 3),
            "idle_in_span_ms_per_row": run["idle_in_span_ms_per_row"],
            "padded_over_real_tokens": round(run["padded_tokens"] / max(run["tokens"], 1), 3),
            # everything the job spends beyond the workers' own tokenise + encode + write, per row
            "overhead_per_row_ms": round(1000 * (run["seconds"] - busy) / args.rows, 3)}

    for r in results.values():
        r["rows_per_s"] = round(args.rows / r["wall_s"], 1)
        r["ratio_vs_embed"] = round(args.rows / r["wall_s"] / (args.rows / single), 3)
    payload = {"created_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
               "host": platform.node(), "cpus": os.cpu_count(), "rows": args.rows, "model": args.model,
               "distinct": distinct, "encode_only_rows_per_s": round(args.rows / encode_s, 1),
               "max_length": args.max_length, "load_average_before": load_before,
               "load_average_after": os.getloadavg(), "results": results}
    print(corpus_markdown(payload))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "corpus-throughput.json").write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {RESULTS / 'corpus-throughput.json'}")
    if args.workdir is None:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
