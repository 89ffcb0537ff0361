"""`nvembed-trt serve`: Triton (supervised) + the front door (uvicorn) in one process, started after pre-flight
checks and stopped cleanly.

Start: the repository and every port are checked before anything starts (one line naming the path or the port);
tritonserver starts and must answer a real round trip; then the front door listens and one line per face is
printed. Stop (SIGTERM or Ctrl-C): readiness turns false, new requests get 503, in-flight ones get up to
--drain-timeout seconds, the front door closes, then Triton is stopped with an exit timeout shorter than the
wrapper's own; exit status 0."""

from __future__ import annotations

import asyncio
import socket
import sys
import time
from pathlib import Path

from ..errors import NVEmbedError
from .duty import encoder_devices
from .lifecycle import TritonOptions, configure_logging, drain, ready_line, start_triton, web_server
from .metrics import Metrics
from .service import read_repository
from .settings import ServeSettings
from .workers import default_workers

__all__ = ["TritonOptions", "preflight", "serve"]


def port_problem(host: str, port: int, role: str) -> str | None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            return f"port {port} on {host} ({role}) is not available: {exc.strerror}; stop what holds it or choose " \
                   f"another port"
    return None


def preflight(repo: Path, settings: ServeSettings, triton: TritonOptions) -> None:
    """Refuse before anything starts: a missing or stale repository, a busy port."""
    if not Path(repo).is_dir():
        raise NVEmbedError(f"repository {repo} not found; make one with nvembed-trt triton-repo")
    read_repository(Path(repo))
    checks = [(settings.host, settings.port, "the front door's --port"),
              (triton.host, triton.http_port, "Triton's --http-port"),
              (triton.host, triton.grpc_port, "Triton's --grpc-port"),
              (triton.host, triton.metrics_port, "Triton's --metrics-port")]
    ports = [port for _, port, _ in checks if port]
    if len(set(ports)) != len(ports):
        raise NVEmbedError(f"ports must differ: front door {settings.port}, Triton HTTP {triton.http_port}, gRPC "
                           f"{triton.grpc_port}, metrics {triton.metrics_port}")
    for host, port, role in checks:
        problem = port_problem(host, port, role)
        if problem:
            raise NVEmbedError(problem)


def serve(repo: Path, settings: ServeSettings, triton: TritonOptions, out=sys.stdout) -> int:
    preflight(repo, settings, triton)
    configure_logging()
    workers = settings.workers or default_workers(devices=encoder_devices(*reversed(read_repository(Path(repo)))))
    if workers > 1:
        from .workers import serve_workers

        main = serve_workers(Path(repo), settings, triton, workers, out)
    else:
        main = _serve(Path(repo), settings, triton, out)
    try:
        import uvloop   # uvicorn[standard]'s event loop: fewer microseconds per request hop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


async def _serve(repo: Path, settings: ServeSettings, triton: TritonOptions, out) -> int:
    service, supervisor, stop = await start_triton(repo, settings, triton, Metrics())
    try:      # Triton runs in its own session: whatever ends this (an unread stdout's BrokenPipeError too) stops it
        started = await _front_door(service, supervisor, settings, stop, out)
    finally:
        await supervisor.stop()
    print(f"stopped in {time.monotonic() - started:.1f} s", file=out, flush=True)
    return 0


async def _front_door(service, supervisor, settings: ServeSettings, stop: asyncio.Event, out) -> float:
    """The front door served until `stop` (SIGTERM, Ctrl-C), then drained and closed: when the stop began."""
    loop = asyncio.get_running_loop()
    web = web_server(service, settings)
    web_task = loop.create_task(web.serve())
    try:
        while not web.started and not web_task.done():
            await asyncio.sleep(0.02)
        if web_task.done():
            raise NVEmbedError(f"the front door could not listen on {settings.host}:{settings.port}")
        print(ready_line(settings, service, supervisor), file=out, flush=True)
        await asyncio.wait([loop.create_task(stop.wait()), web_task], return_when=asyncio.FIRST_COMPLETED)
        started = time.monotonic()
        await drain(service, settings.drain_timeout_s)
    except BaseException:
        web.should_exit = True
        await asyncio.gather(web_task, return_exceptions=True)     # closed; the first error goes on
        raise
    web.should_exit = True
    await web_task
    return started
