"""One pipeline step run as its own process and measured (wall time, peak RSS by wait4), for the full-size
benchmarks in benchmarks/*_scale.py."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path


def measured_step(cmd: list[str]) -> dict:
    """Run `cmd`, echoing it; returns the command, wall seconds, peak RSS in GiB and the exit code. Call it from a
    small process: Linux counts the parent's RSS at fork in the child's peak (ru_maxrss survives exec)."""
    print("+", " ".join(cmd), flush=True)
    start = time.perf_counter()
    proc = subprocess.Popen(cmd)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    step = {"command": " ".join(cmd), "wall_s": round(wall, 1), "peak_rss_gib": round(usage.ru_maxrss / 2**20, 2),
            "exit": code}
    print(f"  -> exit {code}, {step['wall_s']} s, peak RSS {step['peak_rss_gib']} GiB", flush=True)
    return step


def file_bytes(folder: Path, *names: str) -> int:
    """Total size of the named files in `folder` that exist."""
    return sum((folder / n).stat().st_size for n in names if (folder / n).exists())


def machine_facts() -> dict:
    """CPUs and physical memory of this machine, recorded beside every full-size figure."""
    return {"cpus": os.cpu_count(),
            "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)}
