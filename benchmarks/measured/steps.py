"""One pipeline step run as its own process and measured (wall time, peak RSS by wait4, and the peaks of its
anonymous and file-backed resident memory sampled from /proc), for the full-size benchmarks in
benchmarks/*_scale.py. The split matters: file-backed pages (mapped weights) are clean and reclaimable, anonymous
memory is what gets a process OOM-killed."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from contextlib import nullcontext
from pathlib import Path

from nvembed_trt.hostmem import process_memory_gib
from .memlimit import MemoryLimit

SAMPLE_S = 0.2


class RssSampler(threading.Thread):
    """Polls a child's anonymous and file-backed RSS until it exits (every 0.2 s); keeps the maxima in GiB."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.anon, self.file, self.done = pid, 0.0, 0.0, threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            now = process_memory_gib(self.pid)
            self.anon = max(self.anon, now.get("RssAnon", 0.0))
            self.file = max(self.file, now.get("RssFile", 0.0))
            self.done.wait(SAMPLE_S)


def measured_step(cmd: list[str], memory_limit_gib: float | None = None) -> dict:
    """Run `cmd`, echoing it; returns the command, wall seconds, peak RSS in GiB (wait4), the sampled peaks of its
    anonymous and file-backed parts (every 0.2 s, so a shorter spike can be missed) and the exit code; with
    `memory_limit_gib`, run it in a memory cgroup of that size (memlimit.py) and add what the cgroup saw. Call it
    from a small process: Linux counts the parent's RSS at fork in the child's peak (ru_maxrss survives exec)."""
    print("+", " ".join(cmd) + (f"  [memory cgroup limit {memory_limit_gib:g} GiB]" if memory_limit_gib else ""),
          flush=True)
    with (MemoryLimit(memory_limit_gib) if memory_limit_gib else nullcontext()) as limit:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, preexec_fn=limit.enter if limit else None)
        sampler = RssSampler(proc.pid)
        sampler.start()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        sampler.done.set()
        sampler.join()
        cgroup = limit.report() if limit else None
    code = os.waitstatus_to_exitcode(status)
    step = {"command": " ".join(cmd), "wall_s": round(wall, 1), "peak_rss_gib": round(usage.ru_maxrss / 2**20, 2),
            "peak_anon_gib": round(sampler.anon, 2), "peak_file_gib": round(sampler.file, 2), "exit": code}
    if cgroup:
        step["memory_limit"] = cgroup
    print(f"  -> exit {code}, {step['wall_s']} s, peak RSS {step['peak_rss_gib']} GiB (sampled: anonymous "
          f"{step['peak_anon_gib']}, file-backed {step['peak_file_gib']})"
          + (f"; cgroup peak {cgroup['peak_charge_gib']} GiB of {cgroup['limit_gib']:g}, OOM kills "
             f"{cgroup['oom_kills']}" if cgroup else ""), flush=True)
    return step


def drop_file_cache(*paths: Path) -> None:
    """Evict the files' clean pages from the page cache, so the next step reads (and is charged for) them afresh:
    pages cached by the step that wrote them stay charged to that step's cgroup, not to a limited one."""
    for path in paths:
        if Path(path).is_file():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def file_bytes(folder: Path, *names: str) -> int:
    """Total size of the named files in `folder` that exist."""
    return sum((folder / n).stat().st_size for n in names if (folder / n).exists())


def machine_facts() -> dict:
    """CPUs and physical memory of this machine, recorded beside every full-size figure."""
    return {"cpus": os.cpu_count(),
            "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)}
