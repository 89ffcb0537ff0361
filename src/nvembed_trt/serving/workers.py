"""Several front-door processes feeding one Triton (`serve --workers N`): the process side.

`WorkerPool` starts N child processes, each a complete front door (its own tokeniser, batcher and gRPC channel to
the one Triton) that accepts connections on one listening socket the parent bound and passed down, and that prints
a line starting with "ready" once its own embedding round trip works. The pool heals per worker: a worker that
exits while the pool is not stopping is started again (at once, then with backoff 1, 2, 4 ... 30 s; a worker up
for a minute starts the backoff over). `stop` sends SIGTERM to every worker (each drains its requests), waits, and
kills what is left. One process per core beyond the first: batches are packed per process, and every process keeps
its own batches in flight, so the encoder is never left waiting on one event loop."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ..errors import NVEmbedError

log = logging.getLogger("nvembed_trt.serving")
BACKOFF_S = (0, 1, 2, 4, 8, 16, 30)
STABLE_S = 60.0
WORKERS_PER_DEVICE = 4


def default_workers(cpus: int | None = None, devices: int = 1) -> int:
    """Front-door processes by default: one per core, less one for Triton and the encoder's host side, and no more
    than WORKERS_PER_DEVICE per encoder device (one H100 in fp8 takes ~3,200 one-text requests/s; a process
    serves ~1,000-3,000); at least one."""
    cpus = cpus or os.cpu_count() or 1
    return max(1, min(cpus - 1, WORKERS_PER_DEVICE * max(1, devices)))


@dataclass(eq=False)
class Worker:
    index: int
    process: asyncio.subprocess.Process | None = None
    started_at: float = 0.0
    failures: int = 0
    ready: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None


class WorkerPool:
    def __init__(self, command: Callable[[int], list[str]], count: int, pass_fds: tuple[int, ...] = (),
                 env: dict[str, str] | None = None, ready_timeout_s: float = 240.0,
                 on_restart: Callable[[int, str, int | None], None] | None = None):
        if count < 1:
            raise NVEmbedError(f"--workers must be at least 1, got {count}")
        self.command, self.pass_fds, self.env = command, pass_fds, env
        self.ready_timeout_s, self.on_restart = ready_timeout_s, on_restart
        self.workers = [Worker(i) for i in range(count)]
        self.stopping = False
        self.watchers: set[asyncio.Task] = set()

    @property
    def pids(self) -> list[int | None]:
        return [w.pid for w in self.workers]

    async def start(self) -> None:
        """Start every worker and wait until each says ready; NVEmbedError naming the first that does not."""
        await asyncio.gather(*(self._spawn(w) for w in self.workers))
        for worker in self.workers:
            await self._until_ready(worker)
        for worker in self.workers:
            task = asyncio.get_running_loop().create_task(self._watch(worker), name=f"worker-{worker.index}")
            self.watchers.add(task)

    async def _spawn(self, worker: Worker) -> None:
        worker.ready.clear()
        worker.process = await asyncio.create_subprocess_exec(
            *self.command(worker.index), stdout=asyncio.subprocess.PIPE, pass_fds=self.pass_fds,
            env={**os.environ, **(self.env or {})})
        worker.started_at = time.monotonic()
        asyncio.get_running_loop().create_task(self._read(worker, worker.process))

    async def _read(self, worker: Worker, process: asyncio.subprocess.Process) -> None:
        """The worker's stdout: its ready line, then whatever else it prints (read, so its pipe never fills)."""
        while True:
            line = await process.stdout.readline()
            if not line:
                return
            if line.startswith(b"ready") and process is worker.process:
                worker.ready.set()

    async def _until_ready(self, worker: Worker) -> None:
        process = worker.process
        waiter = asyncio.ensure_future(worker.ready.wait())
        exited = asyncio.ensure_future(process.wait())
        done, _ = await asyncio.wait({waiter, exited}, timeout=self.ready_timeout_s,
                                     return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        exited.cancel()
        if worker.ready.is_set():
            return
        if exited in done:
            raise NVEmbedError(f"front-door worker {worker.index} exited with {process.returncode} before it was "
                               f"ready (its log is above)")
        raise NVEmbedError(f"front-door worker {worker.index} was not ready after {self.ready_timeout_s:.0f} s")

    async def _watch(self, worker: Worker) -> None:
        while not self.stopping:
            code = await worker.process.wait()
            if self.stopping:
                return
            if time.monotonic() - worker.started_at > STABLE_S:
                worker.failures = 0
            delay = BACKOFF_S[min(worker.failures, len(BACKOFF_S) - 1)]
            worker.failures += 1
            why = f"front-door worker {worker.index} (pid {worker.pid}) exited with {code}"
            log.warning("healing: %s; starting it again in %d s (attempt %d)", why, delay, worker.failures)
            if self.on_restart is not None:
                self.on_restart(worker.index, why, worker.pid)
            await asyncio.sleep(delay)
            if self.stopping:
                return
            await self._spawn(worker)
            try:
                await self._until_ready(worker)
                log.warning("healed: front-door worker %d ready again (pid %d)", worker.index, worker.pid)
            except NVEmbedError as exc:
                log.warning("healing: %s", exc)

    async def stop(self, timeout_s: float = 20.0) -> list[int | None]:
        """SIGTERM every worker, wait up to timeout_s for all, SIGKILL the rest; their exit statuses."""
        self.stopping = True
        for task in self.watchers:
            task.cancel()
        running = [w.process for w in self.workers if w.process is not None and w.process.returncode is None]
        for process in running:
            process.send_signal(signal.SIGTERM)
        if running:
            _, late = await asyncio.wait([asyncio.ensure_future(p.wait()) for p in running], timeout=timeout_s)
            for process in running:
                if process.returncode is None:
                    log.warning("front-door worker pid %d did not stop within %.0f s; killing it", process.pid,
                                timeout_s)
                    process.kill()
                    await process.wait()
        return [w.process.returncode if w.process else None for w in self.workers]


# ---- the parent: Triton, supervised, and the pool on one socket ---------------------------------------------------

async def serve_workers(repo, settings, triton, count: int, out) -> int:
    """`serve` with `count` front-door processes: Triton started and healed here (through a service of this process
    that only probes), the listening socket bound here and passed to every worker, their metrics summed through
    prometheus-client's multiprocess files; SIGTERM drains the workers, then stops Triton."""
    import json
    import shutil
    import socket
    import sys
    import tempfile

    from .metrics import Metrics
    from .lifecycle import ready_line, start_triton

    service, supervisor, stop = await start_triton(repo, settings, triton, Metrics())
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    listener = socket.create_server((settings.host, settings.port), family=family, backlog=4096)
    metrics_dir = tempfile.mkdtemp(prefix="nvembed-trt-metrics-")
    command = [sys.executable, "-m", "nvembed_trt.serving.workers", "--repo", str(repo), "--fd",
               str(listener.fileno()), "--grpc", service.encoder_url, "--triton-metrics",
               service.triton_metrics_url, "--settings", json.dumps(settings.model_dump())]

    def restarted(index: int, why: str, pid: int | None) -> None:   # its live gauges leave the sums
        from prometheus_client import multiprocess

        if pid is not None:
            multiprocess.mark_process_dead(pid, metrics_dir)
    pool = WorkerPool(lambda i: [*command, "--index", str(i)], count, (listener.fileno(),),
                      env={"PROMETHEUS_MULTIPROC_DIR": metrics_dir}, on_restart=restarted)
    try:
        await pool.start()
        print(ready_line(settings, service, supervisor, f"{count} front-door workers, pids "
                         f"{', '.join(map(str, pool.pids))}; "), file=out, flush=True)
        await stop.wait()
        started = time.monotonic()
        await pool.stop(settings.drain_timeout_s + 10)
    finally:
        await pool.stop()
        listener.close()
        await supervisor.stop()
        shutil.rmtree(metrics_dir, ignore_errors=True)
    print(f"stopped in {time.monotonic() - started:.1f} s", file=out, flush=True)
    return 0


# ---- the child: one front door on the inherited socket ----------------------------------------------------------

async def run_worker(repo, settings, grpc_url: str, fd: int, index: int, triton_metrics_url: str | None = None
                     ) -> int:
    """One front-door process: its own service and batcher, probing its own round trip (Triton is the parent's to
    heal), serving HTTP on the listening socket `fd` once ready; SIGTERM drains it."""
    import socket

    from .metrics import Metrics
    from .lifecycle import drain, web_server
    from .service import EmbeddingService
    from .supervision import Supervisor

    service = EmbeddingService(repo, settings, grpc_url, Metrics(), triton_metrics_url)
    service.start()
    prober = Supervisor(lambda: None, service)   # its probe only: reloads and restarts are the parent's
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    while not await prober.probe():
        if stop.is_set():
            await service.close()
            return 0
        await asyncio.sleep(0.5)

    async def keep_probing() -> None:
        while True:
            try:
                await asyncio.wait_for(prober.wake.wait(), settings.probe_interval_s)
            except asyncio.TimeoutError:
                pass
            prober.wake.clear()
            await prober.probe()
    probing = loop.create_task(keep_probing())
    web = web_server(service, settings)
    web_task = loop.create_task(web.serve(sockets=[socket.socket(fileno=fd)]))
    while not web.started and not web_task.done():
        await asyncio.sleep(0.02)
    print(f"ready: front-door worker {index} (pid {os.getpid()})", flush=True)
    await asyncio.wait([loop.create_task(stop.wait()), web_task], return_when=asyncio.FIRST_COMPLETED)
    await drain(service, settings.drain_timeout_s)
    web.should_exit = True
    await web_task
    probing.cancel()
    await service.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    import argparse
    import json
    from pathlib import Path

    from .lifecycle import configure_logging
    from .settings import ServeSettings

    p = argparse.ArgumentParser(prog="python -m nvembed_trt.serving.workers",
                                description="one front-door worker of `nvembed-trt serve --workers N`")
    p.add_argument("--repo", required=True, type=Path)
    p.add_argument("--fd", required=True, type=int, help="the listening socket, inherited")
    p.add_argument("--grpc", required=True, help="Triton's gRPC host:port")
    p.add_argument("--triton-metrics", help="Triton's metrics URL (the duty cycle)")
    p.add_argument("--settings", required=True, help="ServeSettings as JSON")
    p.add_argument("--index", type=int, default=0)
    args = p.parse_args(argv)
    configure_logging()
    settings = ServeSettings(**json.loads(args.settings))
    coroutine = run_worker(args.repo, settings, args.grpc, args.fd, args.index, args.triton_metrics)
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)


if __name__ == "__main__":
    import sys

    sys.exit(main())
