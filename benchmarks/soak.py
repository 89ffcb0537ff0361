"""Soak: N clients for M minutes through the front door of `nvembed-trt serve`, with faults on request; prints and
writes requests, errors by kind, p50/p99 latency, and the RSS of every process (front door, tritonserver, each python
stub) at start and end. Every accepted request must get an answer or an error: lost requests are counted.

    python benchmarks/soak.py --repo triton_repo/tiny --clients 64 --minutes 10
    python benchmarks/soak.py --repo triton_repo/tiny --clients 16 --minutes 2 --fault stub --fault-every 30

Faults: `stub` SIGKILLs the encoder's python stub, `tritonserver` SIGKILLs the server; the front door must heal and
the report says for how long requests failed. Results: benchmarks/results/<host>/soak-<time>.json and .md.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import random
import signal
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from nvembed_trt.serving.process import ServeProcess  # noqa: E402
from nvembed_trt.validation.bench import percentiles  # noqa: E402

TEXTS = ["how much protein should a female eat", "summit define",
         "As a general guideline, the CDC's average requirement of protein for women ages 19 to 70 is 46 grams per day.",
         "Definition of summit for English Language Learners: the highest point of a mountain."]


def _name(cmd: list[str]) -> str:
    """'python (serve)', 'tritonserver', or 'stub encoder' / 'stub nv_embed' (the model the stub runs)."""
    program = Path(cmd[0]).name if cmd else "?"
    if program == "triton_python_backend_stub" and len(cmd) > 1:
        return f"stub {Path(cmd[1]).parent.parent.name}"
    return "serve (front door)" if "nvembed_trt" in " ".join(cmd) else program


def tree(pid: int) -> dict[int, str]:
    """{pid: name} of a process and all its descendants (from /proc)."""
    parents: dict[int, int] = {}
    names: dict[int, str] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            child = int(stat.parent.name)
            parents[child] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            cmd = [c.decode(errors="replace") for c in (stat.parent / "cmdline").read_bytes().split(b"\0") if c]
            names[child] = _name(cmd)
        except (OSError, IndexError, ValueError):
            continue
    found, frontier = {pid: names.get(pid, "serve")}, [pid]
    while frontier:
        current = frontier.pop()
        for child, parent in parents.items():
            if parent == current and child not in found:
                found[child] = names.get(child, "?")
                frontier.append(child)
    return found


def rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def memory(pid: int) -> dict[str, dict]:
    """{name: {"pid", "rss_mib"}} for the serve process and its descendants."""
    out = {}
    for child, name in tree(pid).items():
        value = rss_mib(child)
        if value is not None:
            out[name if name not in out else f"{name} ({child})"] = {"pid": child, "rss_mib": round(value, 1)}
    return out


async def client_loop(url: str, model: str, deadline: float, stats: dict, rng: random.Random) -> None:
    async with httpx.AsyncClient(timeout=60) as client:
        while time.monotonic() < deadline:
            texts = rng.sample(TEXTS * 2, rng.randint(1, 8))
            start = time.perf_counter()
            try:
                reply = await client.post(f"{url}/embeddings", json={"model": model, "input": texts})
                status = reply.status_code
                if status == 200 and len(reply.json()["data"]) != len(texts):
                    status = "wrong-rows"
            except httpx.HTTPError as exc:
                status = f"transport:{type(exc).__name__}"
            stats["latency"].append((time.perf_counter() - start) * 1000)
            stats["status"][str(status)] += 1
            if status != 200:
                stats["failures"].append(time.monotonic())


async def faults(served: ServeProcess, kind: str, every: float, deadline: float, log: list) -> None:
    start = time.monotonic()
    while time.monotonic() + every < deadline:
        await asyncio.sleep(every)
        procs = tree(served.process.pid)
        if kind == "stub":
            target = next((p for p, n in procs.items() if n == "stub encoder"), None)
        else:
            target = next((p for p, n in procs.items() if n == "tritonserver"), None)
        if target:
            os.kill(target, signal.SIGKILL)
            killed = time.monotonic()
            await asyncio.sleep(0.5)
            async with httpx.AsyncClient(timeout=5) as client:
                while time.monotonic() < deadline:
                    try:
                        if (await client.get(f"{served.api_url}/health/ready")).status_code == 200:
                            break
                    except httpx.HTTPError:
                        pass
                    await asyncio.sleep(0.2)
            log.append({"at_s": round(killed - start, 1), "killed": procs[target],
                        "ready_again_after_s": round(time.monotonic() - killed, 1)})


async def soak(served: ServeProcess, model: str, clients: int, seconds: float, fault: str | None,
               fault_every: float) -> dict:
    stats = {"latency": [], "status": Counter(), "failures": []}
    deadline = time.monotonic() + seconds
    log: list = []
    rng = random.Random(0)
    tasks = [client_loop(served.api_url, model, deadline, stats, random.Random(rng.random())) for _ in range(clients)]
    if fault:
        tasks.append(faults(served, fault, fault_every, deadline, log))
    await asyncio.gather(*tasks)
    total = sum(stats["status"].values())
    return {"requests": total, "statuses": dict(stats["status"]), "errors": total - stats["status"].get("200", 0),
            "requests_per_s": total / seconds, **percentiles(stats["latency"]), "faults": log}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repo", required=True, type=Path)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--fault", choices=("stub", "tritonserver"))
    parser.add_argument("--fault-every", type=float, default=60.0, help="seconds between faults")
    parser.add_argument("--output-dir", type=Path, default=ROOT / "benchmarks" / "results" / platform.node())
    args = parser.parse_args()
    with ServeProcess(args.repo) as served:
        model = httpx.get(f"{served.api_url}/models").json()["data"][0]["id"]
        asyncio.run(soak(served, model, min(args.clients, 4), 10, None, 0))             # warm-up
        before = memory(served.process.pid)
        result = asyncio.run(soak(served, model, args.clients, args.minutes * 60, args.fault, args.fault_every))
        after = memory(served.process.pid)
        status = served.stop()
    growth = {name: round(100 * (after[name]["rss_mib"] - b["rss_mib"]) / b["rss_mib"], 2)
              for name, b in before.items() if name in after and after[name]["pid"] == b["pid"]}
    report = {"artifact": "soak", "created_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
              "host": platform.node(), "repo": str(args.repo), "clients": args.clients, "minutes": args.minutes,
              "fault": args.fault, **result, "rss_mib_start": before, "rss_mib_end": after, "rss_growth_pct": growth,
              "stop_status": status}
    args.output_dir.mkdir(parents=True, exist_ok=True)
    stem = args.output_dir / f"soak-{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}"
    stem.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    stem.with_suffix(".md").write_text(soak_markdown(report))
    print(soak_markdown(report), end="")
    print(f"wrote {stem.with_suffix('.json')} and {stem.with_suffix('.md')}")
    return 0 if report["stop_status"] == 0 else 1


def soak_markdown(r: dict) -> str:
    heals = ", ".join(f"{f['ready_again_after_s']:g} s" for f in r["faults"])
    lines = [f"Soak of {r['repo']} on {r['host']}: {r['clients']} clients for {r['minutes']:g} min"
             + (f", {len(r['faults'])} SIGKILLs of the {r['fault']} (ready again after {heals})" if r["fault"] else "")
             + f": {r['requests']} requests ({r['requests_per_s']:.0f}/s), {r['errors']} errors "
             f"({', '.join(f'{k}: {v}' for k, v in sorted(r['statuses'].items()))}), p50 {r['p50_ms']:.1f} ms, "
             f"p99 {r['p99_ms']:.1f} ms; stopped with status {r['stop_status']}", "",
             "| process | RSS start MiB | RSS end MiB | growth |", "|---|---|---|---|"]
    for name, start in r["rss_mib_start"].items():
        end = r["rss_mib_end"].get(name, {}).get("rss_mib")
        growth = r["rss_growth_pct"].get(name)
        lines.append(f"| {name} | {start['rss_mib']:.1f} | {end if end is not None else '–'} | "
                     f"{'%+.2f %%' % growth if growth is not None else 'restarted'} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    np.seterr(all="ignore")
    sys.exit(main())
