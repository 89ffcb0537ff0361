"""Overload: `nvembed-trt serve` offered more than it can do, as an open loop (arrivals do not wait for answers).

1. Capacity: a closed loop of --clients clients for --capacity-seconds, every request the same shape (--inputs
   passages of ~64+ tokens, truncate END); capacity = answered requests per second.
2. Overload: Poisson arrivals at --factor x capacity for --seconds. Every request is timed until its answer.

Reported: the share of 429s (refused at once, with Retry-After), 504s (admitted work that missed its deadline: must
be 0), p50/p99 of admitted requests and of refusals, goodput against capacity, the peak RSS of every process
(VmHWM: front door, tritonserver, each python stub) and the largest RSS sampled during the overload, and the load
average before and after (the machine may be shared: say so when publishing).

    python benchmarks/overload.py --repo triton_repo/tiny
    python benchmarks/overload.py --repo triton_repo/tiny --burst 64 --burst-inputs 2048   # 64 x 2,048 x 4 KB at once

--burst N adds the reliability issue's scenario: N simultaneous requests of --burst-inputs 4 KB passages.
Results: benchmarks/results/<host>/overload-<time>.json (or --output).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import math
import os
import platform
import random
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from soak import memory, tree  # noqa: E402
from nvembed_trt.serving.process import ServeProcess  # noqa: E402
from nvembed_trt.validation.bench import percentiles  # noqa: E402
from measured.steps import machine_facts  # noqa: E402

WORDS = ("the of and to in is was for on are with as by at from this that which be or an have mountain summit river "
         "protein women grams day definition highest point learners english language guideline average").split()


def passages(count: int, chars: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(chars // 4))[:chars] for _ in range(count)]


def peak_rss_mib(pid: int) -> dict[str, float]:
    """{process name: VmHWM MiB} for the serve process and its descendants."""
    out = {}
    for child, name in tree(pid).items():
        try:
            status = Path(f"/proc/{child}/status").read_text()
        except OSError:
            continue
        hwm = next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:")), None)
        if hwm is not None:
            out[name if name not in out else f"{name} ({child})"] = round(hwm / 1024, 1)
    return out


class RssSampler:
    """The largest RSS of each process, sampled every 0.25 s while running."""

    def __init__(self, pid: int):
        self.pid, self.largest, self.stop = pid, {}, threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            for name, entry in memory(self.pid).items():
                self.largest[name] = max(self.largest.get(name, 0.0), entry["rss_mib"])
            time.sleep(0.25)

    def __enter__(self) -> RssSampler:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()


async def post(client: httpx.AsyncClient, url: str, body: bytes) -> tuple[str, float, str | None]:
    start = time.perf_counter()
    try:
        reply = await client.post(url, content=body, headers={"content-type": "application/json"})
        status = str(reply.status_code)
        after = reply.headers.get("retry-after")
    except httpx.HTTPError as exc:
        status, after = f"transport:{type(exc).__name__}", None
    return status, (time.perf_counter() - start) * 1000, after


async def capacity(url: str, body: bytes, clients: int, seconds: float) -> dict:
    answered, deadline = Counter(), time.monotonic() + seconds

    async def loop(client):
        while time.monotonic() < deadline:
            status, _, _ = await post(client, url, body)
            answered[status] += 1
    async with httpx.AsyncClient(timeout=120) as client:
        start = time.monotonic()
        await asyncio.gather(*[loop(client) for _ in range(clients)])
        took = time.monotonic() - start
    return {"clients": clients, "seconds": round(took, 1), "statuses": dict(answered),
            "requests_per_s": answered["200"] / took}


async def open_loop(url: str, body: bytes, rate: float, seconds: float, timeout_s: float, seed: int) -> list:
    rng, results, tasks = random.Random(seed), [], []
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=200)
    async with httpx.AsyncClient(timeout=timeout_s, limits=limits) as client:
        start = time.monotonic()
        next_at = start
        while next_at < start + seconds:
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            tasks.append(asyncio.create_task(post(client, url, body)))
            next_at += rng.expovariate(rate)
        results = await asyncio.gather(*tasks)
    return results


def summarise(results: list, offered_rate: float, seconds: float, capacity_rps: float) -> dict:
    statuses = Counter(status for status, _, _ in results)
    admitted = [ms for status, ms, _ in results if status == "200"]
    refused = [ms for status, ms, _ in results if status == "429"]
    retry = Counter(after for status, _, after in results if status == "429")
    total = len(results)
    return {"offered_per_s": round(offered_rate, 2), "sent": total, "statuses": dict(statuses),
            "share_429": round(statuses["429"] / total, 3) if total else None,
            "answered_504": statuses["504"], "goodput_per_s": round(len(admitted) / seconds, 2),
            "goodput_of_capacity": round(len(admitted) / seconds / capacity_rps, 2),
            "admitted_ms": {k: round(v, 1) for k, v in percentiles(admitted).items()} if admitted else None,
            "refused_ms": {k: round(v, 1) for k, v in percentiles(refused).items()} if refused else None,
            "retry_after_s": dict(sorted(retry.items(), key=lambda kv: int(kv[0] or 0)))}


async def burst(url: str, body: bytes, count: int, timeout_s: float) -> dict:
    async with httpx.AsyncClient(timeout=timeout_s, limits=httpx.Limits(max_connections=None)) as client:
        start = time.monotonic()
        results = await asyncio.gather(*[post(client, url, body) for _ in range(count)])
        took = time.monotonic() - start
    by_status: dict[str, list[float]] = {}
    for status, ms, _ in results:
        by_status.setdefault(status, []).append(ms / 1000)
    return {"requests": count, "wall_s": round(took, 1), "statuses": {k: len(v) for k, v in by_status.items()},
            "seconds_min_median_max": {k: [round(min(v), 2), round(sorted(v)[len(v) // 2], 2), round(max(v), 2)]
                                       for k, v in by_status.items()}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repo", required=True, type=Path)
    parser.add_argument("--factor", type=float, default=2.0, help="offered load / measured capacity (default 2)")
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the overload (default 60)")
    parser.add_argument("--capacity-seconds", type=float, default=20.0)
    parser.add_argument("--clients", type=int, default=32, help="closed-loop clients measuring capacity (enough to "
                                                                "keep the encoder busy; default 32)")
    parser.add_argument("--inputs", type=int, default=64, help="passages per request (default 64)")
    parser.add_argument("--request-timeout", type=float, default=10.0, help="the server's deadline (default 10 s)")
    parser.add_argument("--burst", type=int, default=0, help="also N simultaneous large requests (default none)")
    parser.add_argument("--burst-inputs", type=int, default=2048)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--serve-args", default="", help="more `serve` options, space-separated")
    parser.add_argument("--output", type=Path, help="default: benchmarks/results/<host>/overload-<time>.json")
    args = parser.parse_args()

    load_before = os.getloadavg()
    body = orjson.dumps({"model": "", "input": passages(args.inputs, 400, args.seed), "truncate": "END"})
    serve_args = ("--request-timeout", str(args.request_timeout), "--max-inputs", str(max(args.inputs, 2048)),
                  *args.serve_args.split())
    report = {"artifact": "overload", "created_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
              "host": platform.node(), "machine": machine_facts(), "repo": args.repo.name, "serve_args": serve_args,
              "request": {"inputs": args.inputs, "chars_per_input": 400, "truncate": "END", "bytes": len(body)},
              "load_average_before": [round(x, 2) for x in load_before]}
    with ServeProcess(args.repo, serve_args) as served:
        model = httpx.get(f"{served.api_url}/models").json()["data"][0]["id"]
        body = body.replace(b'"model":""', b'"model":' + orjson.dumps(model))
        url = f"{served.api_url}/embeddings"
        cap = asyncio.run(capacity(url, body, args.clients, args.capacity_seconds))
        rate = args.factor * cap["requests_per_s"]
        print(f"capacity {cap['requests_per_s']:.2f} requests/s ({cap['statuses']}); offering {rate:.2f}/s for "
              f"{args.seconds:g} s", flush=True)
        with RssSampler(served.process.pid) as sampled:
            results = asyncio.run(open_loop(url, body, rate, args.seconds, args.request_timeout + 30, args.seed))
        report.update(capacity=cap, factor=args.factor, seconds=args.seconds,
                      overload=summarise(results, rate, args.seconds, cap["requests_per_s"]),
                      rss_mib_largest_sampled_in_overload=sampled.largest)
        if args.burst:
            big = orjson.dumps({"model": model, "input": passages(args.burst_inputs, 4096, args.seed + 1),
                                "truncate": "END"})
            with RssSampler(served.process.pid) as sampled:
                report["burst"] = {"inputs": args.burst_inputs, "bytes": len(big),
                                   **asyncio.run(burst(url, big, args.burst, args.request_timeout + 120)),
                                   "rss_mib_largest_sampled": sampled.largest}
        report["peak_rss_mib"] = peak_rss_mib(served.process.pid)
        report["stop_status"] = served.stop()
    report["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    out = args.output or ROOT / "benchmarks" / "results" / platform.node() / \
        f"overload-{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(markdown(report), end="")
    print(f"wrote {out}")
    ok = report["overload"]["answered_504"] == 0 and report["stop_status"] == 0
    return 0 if ok else 1


def markdown(r: dict) -> str:
    o = r["overload"]
    admitted = o["admitted_ms"] or {}
    lines = [f"Overload of {r['repo']} on {r['host']} ({r['machine']['cpus']} CPUs, load average "
             f"{r['load_average_before'][0]:.2f} before, {r['load_average_after'][0]:.2f} after): capacity "
             f"{r['capacity']['requests_per_s']:.2f} requests/s of {r['request']['inputs']} inputs; offered "
             f"{o['offered_per_s']:.2f}/s ({r['factor']:g}x) for {r['seconds']:g} s: {o['sent']} requests, "
             f"{100 * (o['share_429'] or 0):.1f} % answered 429, {o['answered_504']} answered 504, goodput "
             f"{o['goodput_of_capacity']:.2f} of capacity, admitted p50 {admitted.get('p50_ms', math.nan):.0f} ms "
             f"p99 {admitted.get('p99_ms', math.nan):.0f} ms (deadline {r['serve_args'][1]} s)", "",
             "| process | peak RSS MiB (VmHWM) | largest sampled in overload MiB |", "|---|---|---|"]
    for name, peak in r["peak_rss_mib"].items():
        lines.append(f"| {name} | {peak} | {r['rss_mib_largest_sampled_in_overload'].get(name, '–')} |")
    if "burst" in r:
        b = r["burst"]
        lines += ["", f"Burst: {b['requests']} simultaneous requests of {b['inputs']} x 4 KB ({b['bytes'] >> 20} MiB "
                      f"each): {b['statuses']} in {b['wall_s']} s; seconds (min, median, max) "
                      f"{b['seconds_min_median_max']}; front door largest RSS "
                      f"{b['rss_mib_largest_sampled'].get('serve (front door)', '–')} MiB"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
