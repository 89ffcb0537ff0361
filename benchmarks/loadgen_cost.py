"""What the open-loop load generator (nvembed-trt loadgen) costs: its own CPU per request at each rate, against a
fixed-answer server in another process (22 KB answers, like a base64 4,096-float row, after 5 ms), so the figure is
the generator's alone. Also the achieved rate and how late it sent (send lag p99): a generator that cannot keep its
schedule would show here first.

    python benchmarks/loadgen_cost.py [--rates 250,500,1000,2000,4000,8000] [--seconds 5] [--out FILE]

Writes benchmarks/results/<host>/loadgen-cost.json (publish: copy to published/<machine>/loadgen-cost.json)."""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from nvembed_trt.provenance import sidecar, write_json
from nvembed_trt.serving.process import free_ports
from nvembed_trt.validation.loadgen import LoadSpec, run_open_loop

SERVER = """
import asyncio, sys
from nvembed_trt.validation.loadgen import fixed_server
async def main():
    await fixed_server("127.0.0.1", int(sys.argv[1]), body_bytes=22000, delay_s=0.005)
    print("listening", flush=True)
    await asyncio.sleep(1e9)
try:
    import uvloop
    uvloop.run(main())
except ImportError:
    asyncio.run(main())
"""


def loadgen_markdown(data: dict) -> str:
    m = data["machine"]
    lines = [f"Against {data['server']}; {data['seconds']:g} s per rate; load average {m['load_average_before']} "
             f"before, {m['load_average_after']} after (the machine is shared).", "",
             "| offered/s | answered/s | generator CPU us/request | share of a core | send lag p99 ms |",
             "|---|---|---|---|---|"]
    for r in data["rates"]:
        lines.append(f"| {r['offered_per_s']:,.0f} | {r['achieved_per_s']:,.0f} | "
                     f"{r['generator_cpu_us_per_request']:.0f} | {r['generator_core_share']:.2f} | "
                     f"{r['send_lag_p99_ms']:.1f} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rates", default="250,500,1000,2000,4000,8000")
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--out", type=Path, default=Path("benchmarks") / "results" / platform.node() / "loadgen-cost.json")
    args = p.parse_args()
    port = free_ports(1)[0]
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(port)], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout.readline().strip() == "listening"
        load_before, rows = os.getloadavg()[0], []
        body = b'{"model": "nv-embed-v2", "input": ["what is rotary position embedding"], "input_type": "query"}'
        for rate in [float(r) for r in args.rates.split(",")]:
            report = run_open_loop(LoadSpec(f"http://127.0.0.1:{port}/v1/embeddings", rate, args.seconds, (body,),
                                            warmup_s=0.5))
            rows.append({k: report[k] for k in ("offered_per_s", "sent", "achieved_per_s", "statuses", "p50_ms",
                                                "p99_ms", "send_lag_p99_ms", "connections",
                                                "generator_cpu_us_per_request")})
            rows[-1]["generator_core_share"] = report["generator_cpu_us_per_request"] * report["sent_per_s"] / 1e6
            print(f"{rate:>7.0f}/s: {report['generator_cpu_us_per_request']:6.1f} us/request "
                  f"({rows[-1]['generator_core_share']:.2f} of a core), achieved {report['achieved_per_s']:.0f}/s, "
                  f"p50 {report['p50_ms']:.1f} ms, send lag p99 {report['send_lag_p99_ms']:.1f} ms", flush=True)
            time.sleep(0.5)
    finally:
        server.terminate()
        server.wait()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json(args.out, sidecar("loadgen-cost", host=platform.node(), server="fixed answers: 22,000 bytes after 5 ms "
                                 "(validation.loadgen.fixed_server, its own process)", seconds=args.seconds,
                                 rates=rows, machine={"cpus": os.cpu_count(), "load_average_before": round(load_before, 2),
                                                      "load_average_after": round(os.getloadavg()[0], 2)}))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
