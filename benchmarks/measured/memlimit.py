"""A hard memory limit for one measured child process: a Linux memory cgroup (v2, or v1 where the memory controller
is mounted there), the way a container or a smaller machine limits it.

Why the benchmarks want it: a process's peak RSS counts file-backed pages (the mapped weights of a TensorRT build)
that the kernel keeps while memory is free and reclaims when it is not, so an unlimited run on a 24 GiB machine
reports more than the job needs. Under a limit the kernel must reclaim those pages to stay below it and kills the
job only if its anonymous memory cannot fit: a step that completes under `limit_gib` fits a machine or container
of that size, measured. Needs a writable cgroup hierarchy (root, or a delegated subtree)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from nvembed_trt.errors import InputError

GIB = 2**30
V2_ROOT = (Path("/sys/fs/cgroup"), Path("/sys/fs/cgroup/unified"))
V1_ROOT = Path("/sys/fs/cgroup/memory")


def _v2_root() -> Path | None:
    for root in V2_ROOT:
        controllers = root / "cgroup.controllers"
        if controllers.is_file() and "memory" in controllers.read_text().split():
            return root
    return None


@dataclass
class MemoryLimit:
    """with MemoryLimit(20) as limit: Popen(..., preexec_fn=limit.enter) -> limit.report() after the child exits."""
    limit_gib: float
    path: Path | None = None
    version: int = 0

    def __enter__(self) -> "MemoryLimit":
        if self.limit_gib <= 0:
            raise InputError(f"a memory limit must be > 0 GiB, got {self.limit_gib}")
        name = f"nvembed-trt-{os.getpid()}-{id(self)}"
        root = _v2_root()
        try:
            if root is not None:
                self.path, self.version = root / name, 2
                self.path.mkdir()
                (self.path / "memory.max").write_text(str(int(self.limit_gib * GIB)))
                if (self.path / "memory.swap.max").exists():
                    (self.path / "memory.swap.max").write_text("0")
            elif (V1_ROOT / "memory.limit_in_bytes").is_file():
                self.path, self.version = V1_ROOT / name, 1
                self.path.mkdir()
                (self.path / "memory.limit_in_bytes").write_text(str(int(self.limit_gib * GIB)))
            else:
                raise InputError("no memory cgroup controller is mounted (/sys/fs/cgroup): a memory limit needs one")
        except OSError as exc:
            self._remove()
            raise InputError(f"cannot create a memory cgroup for a {self.limit_gib:g} GiB limit ({exc}): it needs a "
                             f"writable cgroup hierarchy (root or a delegated subtree)") from exc
        return self

    def enter(self) -> None:
        """preexec_fn: move the child (before exec) into the cgroup."""
        (self.path / "cgroup.procs").write_text(str(os.getpid()))

    def report(self) -> dict:
        """The limit, the cgroup's peak charge (anonymous + page cache) and how often the kernel had to act."""
        read = (lambda n: (self.path / n).read_text() if (self.path / n).exists() else "")
        if self.version == 2:
            events = dict(line.split() for line in read("memory.events").splitlines())
            peak = read("memory.peak").strip()
            return {"limit_gib": self.limit_gib, "cgroup": "v2",
                    "peak_charge_gib": round(int(peak) / GIB, 2) if peak else None,
                    "reclaim_events": int(events.get("max", 0)), "oom_kills": int(events.get("oom_kill", 0))}
        control = dict(line.split() for line in read("memory.oom_control").splitlines())
        return {"limit_gib": self.limit_gib, "cgroup": "v1",
                "peak_charge_gib": round(int(read("memory.max_usage_in_bytes")) / GIB, 2),
                "reclaim_events": int(read("memory.failcnt") or 0), "oom_kills": int(control.get("oom_kill", 0))}

    def _remove(self) -> None:
        if self.path is not None and self.path.is_dir():
            try:
                self.path.rmdir()
            except OSError:
                pass

    def __exit__(self, *exc) -> None:
        self._remove()
