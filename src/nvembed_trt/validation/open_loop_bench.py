"""Feeding the GPU, measured: a simulated repository (triton-repo --simulate) served by `nvembed-trt serve`, loaded
open-loop (validation/loadgen.py: Poisson arrivals) at shares of the simulated card's capacity.

For one workload ((a) one instructed query per request, or (b) mixed: query requests and requests of 256-token
passages) it measures:
- capacity: the simulated devices' texts/s at full batches, from the performance model the stand-in sleeps by;
- latency p50/p99 of answered requests against offered load (20 %..100 % of capacity), and the highest offered
  load whose p99 stayed <= 150 ms;
- the duty cycle at saturation (120 % of capacity offered) with each front-door worker count: Triton's busy time
  over devices x wall time (serving/duty.py), and the rate achieved;
- CPU per request and per text of our processes, from /proc: the front door (every worker), tritonserver, and the
  simulated encoder's python stubs apart (a GPU host has a TensorRT backend instead); with 64-text requests too;
- the cores projected to feed one and eight such GPUs at their capacity: (front door + tritonserver) CPU per text x
  capacity."""

from __future__ import annotations

import datetime as dt
import os
import platform
import random
import re
import time
from pathlib import Path

import orjson

from ..provenance import sidecar, write_json
from ..tokenizer import INPUT_TYPES, EmbeddingTokenizer
from ..triton.spec import ENSEMBLE, TOKENIZER_DIR
from .loadgen import LoadSpec, run_open_loop

P99_TARGET_MS = 150.0
LEVELS = (0.2, 0.4, 0.6, 0.8, 0.9, 1.0)
PASSAGE_TOKENS = 256
WORKLOADS = ("queries", "mixed")
TICKS = os.sysconf("SC_CLK_TCK")


# ---- processes and their CPU ------------------------------------------------------------------------------------

def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            tree.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(entry))
    return tree


def _name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def process_groups(root: int) -> dict[str, list[int]]:
    """The serve process tree by role: front door (serve itself and its workers), tritonserver, its python stubs."""
    tree, groups = _children(), {"front_door": [root], "tritonserver": [], "encoder_stubs": []}
    todo = list(tree.get(root, []))
    while todo:
        pid = todo.pop()
        name = _name(pid)
        role = ("tritonserver" if "bin/tritonserver" in name else "encoder_stubs" if "python_backend_stub" in name
                else "front_door")
        groups[role].append(pid)
        todo += tree.get(pid, [])
    return groups


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])          # utime + stime
    return total / TICKS


class CPUMeter:
    def __init__(self, root: int):
        self.groups = process_groups(root)
        self.start = {k: cpu_seconds(v) for k, v in self.groups.items()}

    def spent(self) -> dict[str, float]:
        return {k: cpu_seconds(v) - self.start[k] for k, v in self.groups.items()}


# ---- workloads --------------------------------------------------------------------------------------------------

def _prose_words() -> list[str]:
    from .serving_bench import _prose

    return re.findall(r"\S+", _prose()[0])


def _text(tokenizer: EmbeddingTokenizer, words: list[str], rng: random.Random, tokens: int, instruction: str) -> str:
    """A text of about `tokens` tokens with the instruction (cut from the prose by word count, then trimmed)."""
    start = rng.randrange(0, len(words) - 4 * tokens)
    n = max(1, int(tokens * 0.75))
    for _ in range(8):
        text = " ".join(words[start:start + n])
        got = len(tokenizer.encode([text], instruction, 8192, "END")[0].ids)
        if abs(got - tokens) <= 2:
            break
        n = max(1, n + tokens - got if abs(tokens - got) < n else int(n * tokens / got))
    return text


def workload(tokenizer: EmbeddingTokenizer, kind: str, model: str, texts_per_request: int = 1, seed: int = 0,
             count: int = 200) -> dict:
    """Request bodies and what they hold: `queries`: one instructed query of 16-48 tokens; `mixed`: half those,
    half requests of `texts_per_request` passages of ~256 tokens."""
    rng, words = random.Random(seed), _prose_words()
    query = INPUT_TYPES["query"]
    bodies, texts, tokens = [], [], []
    for i in range(count):
        passage = kind == "mixed" and i % 2 == 1
        n = texts_per_request if passage or kind == "queries-batch" else 1
        group = [_text(tokenizer, words, rng, PASSAGE_TOKENS if passage else rng.randint(16, 48),
                       "" if passage else query) for _ in range(n)]
        bodies.append(orjson.dumps({"model": model, "input": group, "input_type": "passage" if passage else "query",
                                    "encoding_format": "base64", "truncate": "END"}))
        texts.append(n)
        tokens.append([len(e.ids) for e in tokenizer.encode(group, "" if passage else query, 8192, "END")])
    return {"bodies": tuple(bodies), "texts": tuple(texts), "tokens": tokens}


def capacity(meta, spec, wl: dict) -> dict:
    """The simulated devices' requests/s and texts/s at full batches for this workload (the performance model)."""
    from ..packing import Packer
    from ..performance import BatchTime

    timing = BatchTime(**meta.simulated["timing"])
    packer = Packer(spec.shape_limits, spec.max_batch_tokens)
    seconds = texts = 0.0
    for row_tokens in wl["tokens"]:
        for t in row_tokens:
            rows = packer.rows_at(t)
            seconds += timing.seconds(rows, t) / rows
            texts += 1
    devices = meta.simulated["devices"]
    texts_per_s = devices * texts / seconds
    return {"texts_per_s": texts_per_s, "requests_per_s": texts_per_s * len(wl["texts"]) / sum(wl["texts"]),
            "devices": devices}


# ---- one server, several loads ------------------------------------------------------------------------------------

def _load(process, wl: dict, rate: float, seconds: float, seed: int, devices: int) -> dict:
    import httpx

    from ..serving.duty import between, sample_from_text

    meter = CPUMeter(process.process.pid)
    before = sample_from_text(httpx.get(process.kserve["metrics"]).text)
    report = run_open_loop(LoadSpec(process.api_url + "/embeddings", rate, seconds, wl["bodies"], wl["texts"],
                                    warmup_s=min(2.0, seconds / 4), seed=seed))
    after = sample_from_text(httpx.get(process.kserve["metrics"]).text)
    spent = meter.spent()
    # per request answered: the CPU of the whole run (warm-up and drain included) over the 200s of the whole run
    answered = max(1.0, report["statuses"].get("200", 0) * seconds / (seconds - report["warmup_s"]))
    texts = answered * sum(wl["texts"]) / len(wl["texts"])      # bodies are sent in turn
    cpu = {k: {"us_per_request": 1e6 * v / answered, "us_per_text": 1e6 * v / texts, "cores": v / report["wall_s"]}
           for k, v in spent.items()}
    return {**{k: report[k] for k in ("offered_per_s", "sent", "achieved_per_s", "texts_per_s", "statuses", "p50_ms",
                                      "p90_ms", "p99_ms", "send_lag_p99_ms", "generator_cpu_us_per_request")},
            "duty": between(before, after, devices), "cpu": cpu}


def run_open_loop_bench(repo: Path, kind: str = "queries", workers: tuple[int, ...] = (1, 2), seconds: float = 8.0,
                        levels: tuple[float, ...] = LEVELS, seed: int = 0,
                        results_dir: Path | None = None) -> tuple[dict, Path]:
    from ..serving.process import ServeProcess
    from ..serving.service import read_repository

    repo = Path(repo)
    meta, spec = read_repository(repo)
    if not meta.simulated:
        raise ValueError(f"{repo} is not a simulated repository (make one with triton-repo --simulate GPU:RECIPE)")
    tokenizer = EmbeddingTokenizer.from_dir(repo / ENSEMBLE / "1" / TOKENIZER_DIR)
    model = meta.served_model_id
    wl = workload(tokenizer, kind, model, seed=seed)
    cap = capacity(meta, spec, wl)
    load_before = os.getloadavg()
    sweep, saturation, batch64 = [], [], None
    for count in workers:
        with ServeProcess(repo, ("--workers", str(count))) as process:
            time.sleep(1.0)
            if count == workers[0]:
                for level in levels:
                    row = _load(process, wl, level * cap["requests_per_s"], seconds, seed, cap["devices"])
                    sweep.append({"share_of_capacity": level, **row})
                big = workload(tokenizer, "queries-batch", model, texts_per_request=64, seed=seed, count=20)
                batch64 = _load(process, big, 0.5 * cap["texts_per_s"] / 64, seconds, seed, cap["devices"])
            offered = 1.2 * cap["requests_per_s"]
            saturation.append({"workers": count, **_load(process, wl, offered, seconds, seed, cap["devices"])})
    met = [r for r in sweep if r["p99_ms"] is not None and r["p99_ms"] <= P99_TARGET_MS
           and r["statuses"].get("200", 0) >= 0.99 * sum(v for v in r["statuses"].values())]
    own = ("front_door", "tritonserver")
    kept_up = [r for r in sweep if r["achieved_per_s"] >= 0.95 * r["offered_per_s"]] or sweep[:1]
    per_text = sum(kept_up[-1]["cpu"][k]["us_per_text"] for k in own)   # at the highest load it kept up with
    sim = meta.simulated
    report = sidecar("open-loop-serving", repo=str(repo), host=platform.node(), simulated=sim, workload=kind,
                     model=model, capacity=cap, levels=sweep, saturation=saturation, batch64=batch64,
                     p99_target_ms=P99_TARGET_MS,
                     highest_rate_meeting_p99={"requests_per_s": max((r["offered_per_s"] for r in met), default=None),
                                               "share_of_capacity": max((r["share_of_capacity"] for r in met),
                                                                        default=None)},
                     projected_cores={"us_per_text": per_text,
                                      "one_gpu": per_text * cap["texts_per_s"] / cap["devices"] / 1e6,
                                      "eight_gpus": 8 * per_text * cap["texts_per_s"] / cap["devices"] / 1e6},
                     settings={"seconds": seconds, "levels": list(levels), "workers": list(workers), "seed": seed},
                     machine={"cpus": os.cpu_count(), "load_average_before": [round(x, 2) for x in load_before],
                              "load_average_after": [round(x, 2) for x in os.getloadavg()]})
    out_dir = results_dir or Path("benchmarks") / "results" / platform.node()
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"open-loop-{sim['name'].replace(':', '-')}-{kind}-{dt.datetime.now():%Y%m%d-%H%M%S}.json"
    write_json(path, report)
    return report, path


def markdown(report: dict) -> str:
    sim, cap = report["simulated"], report["capacity"]
    lines = [f"SIMULATED {sim['name']}, workload `{report['workload']}`: capacity {cap['requests_per_s']:,.0f} "
             f"requests/s ({cap['texts_per_s']:,.0f} texts/s) on {cap['devices']} simulated device(s); load average "
             f"{report['machine']['load_average_before'][0]} before, {report['machine']['load_average_after'][0]} "
             f"after", "",
             "| offered | requests/s offered | answered 200/s | p50 ms | p99 ms | duty cycle | front door us per "
             "answered request | tritonserver us per answered request |", "|---|---|---|---|---|---|---|---|"]
    for r in report["levels"]:
        lines.append(_row(f"{r['share_of_capacity']:.0%}", r))
    for r in report["saturation"]:
        lines.append(_row(f"120 % ({r['workers']} worker{'s' if r['workers'] > 1 else ''})", r))
    best, cores = report["highest_rate_meeting_p99"], report["projected_cores"]
    b = report["batch64"]
    lines += ["", f"Highest offered load with p99 <= {report['p99_target_ms']:g} ms: "
                  + (f"{best['requests_per_s']:,.0f} requests/s ({best['share_of_capacity']:.0%} of capacity)"
                     if best["requests_per_s"] else "none of the measured levels") + ".",
              f"64-text requests: front door {b['cpu']['front_door']['us_per_request']:,.0f} us per request, "
              f"{b['cpu']['front_door']['us_per_text']:.0f} us per text.",
              f"Projected cores (front door + tritonserver, {cores['us_per_text']:.0f} us per text at the highest "
              f"load answered in full): "
              f"{cores['one_gpu']:.1f} to feed one {sim['gpu_profile']}, {cores['eight_gpus']:.1f} for eight."]
    return "\n".join(lines) + "\n"


def _row(label: str, r: dict) -> str:
    p = {k: "-" if r[k] is None else f"{r[k]:.1f}" for k in ("p50_ms", "p99_ms")}
    duty = r["duty"]["overall"]
    return (f"| {label} | {r['offered_per_s']:,.0f} | {r['achieved_per_s']:,.0f} | {p['p50_ms']} | {p['p99_ms']} | "
            f"{'-' if duty is None else f'{duty:.2f}'} | {r['cpu']['front_door']['us_per_request']:,.0f} | "
            f"{r['cpu']['tritonserver']['us_per_request']:,.0f} |")
