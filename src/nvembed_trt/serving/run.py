"""`nvembed-trt serve`: Triton (supervised) + the front door (uvicorn) in one process, started after pre-flight
checks and stopped cleanly.

Start: the repository and every port are checked before anything starts (one line naming the path or the port);
tritonserver starts and must answer a real round trip; then the front door listens and one line per face is
printed. Stop (SIGTERM or Ctrl-C): readiness turns false, new requests get 503, in-flight ones get up to
--drain-timeout seconds, the front door closes, then Triton is stopped with an exit timeout shorter than the
wrapper's own; exit status 0."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import uvicorn

from ..errors import NVEmbedError
from ..triton.server import EXIT_TIMEOUT_S, READY_TIMEOUT_S, ServerError, TritonServer
from ..triton.spec import ENSEMBLE
from .app import create_app, engine_header
from .duty import encoder_devices
from .metrics import Metrics
from .protocol import protocol_class
from .service import EmbeddingService, read_repository
from .settings import ServeSettings
from .supervision import Supervisor
from .workers import default_workers

log = logging.getLogger("nvembed_trt.serving")


@dataclass(frozen=True)
class TritonOptions:
    host: str = "127.0.0.1"
    http_port: int = 8000
    grpc_port: int = 8001
    metrics_port: int = 8002
    binary: Path | None = None
    exit_timeout_s: int = EXIT_TIMEOUT_S
    ready_timeout_s: float = READY_TIMEOUT_S


class QuietServer(uvicorn.Server):
    """uvicorn without its own signal handling: `serve` drains first, then tells it to exit."""

    def capture_signals(self):  # noqa: D102 (uvicorn hook)
        import contextlib

        return contextlib.nullcontext()


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


def _configure_logging() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    for name in ("nvembed_trt.serving", "nvembed_trt.triton"):
        logger = logging.getLogger(name)
        logger.setLevel(logging.INFO)
        if not logger.handlers:
            logger.addHandler(handler)


def serve(repo: Path, settings: ServeSettings, triton: TritonOptions, out=sys.stdout) -> int:
    preflight(repo, settings, triton)
    _configure_logging()
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


async def start_triton(repo: Path, settings: ServeSettings, triton: TritonOptions,
                       metrics: Metrics) -> tuple[EmbeddingService, Supervisor, asyncio.Event]:
    """tritonserver started, supervised and answering a real round trip through a service of this process; the
    event SIGTERM and Ctrl-C set."""
    def make_server() -> TritonServer:
        return TritonServer(repo, triton.http_port, triton.grpc_port, triton.metrics_port, triton.host, triton.binary,
                            exit_timeout_s=triton.exit_timeout_s, ready_timeout_s=triton.ready_timeout_s)
    endpoints = make_server().endpoints   # for its endpoints only
    service = EmbeddingService(repo, settings, endpoints["grpc"], metrics, triton_metrics_url=endpoints["metrics"])
    supervisor = Supervisor(make_server, service)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await supervisor.start()
    except (ServerError, asyncio.CancelledError) as exc:
        await supervisor.stop()
        raise ServerError(str(exc)) from None
    return service, supervisor, stop


def web_server(service: EmbeddingService, settings: ServeSettings) -> QuietServer:
    """The front door's uvicorn server (host and port from the settings, or a socket given to serve())."""
    http = protocol_class(settings, lambda status: service.metrics.requests.labels("other", str(status)).inc(),
                          (engine_header(service),))
    config = uvicorn.Config(create_app(service), host=settings.host, port=settings.port, log_level="error",
                            access_log=False, lifespan="off", http=http,
                            timeout_keep_alive=settings.keep_alive_timeout_s,  # type: ignore[arg-type] (a float)
                            timeout_graceful_shutdown=max(1, int(settings.drain_timeout_s)))
    return QuietServer(config)


def ready_line(settings: ServeSettings, service: EmbeddingService, supervisor: Supervisor, how: str = "") -> str:
    ep = supervisor.server.endpoints
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host
    return (f"ready: API http://{host}:{settings.port}/v1 ({how}model {service.model_id}; POST /v1/embeddings, GET "
            f"/v1/models, /v1/health/ready, /v1/metrics); KServe HTTP {ep['http']}, gRPC {ep['grpc']}, metrics "
            f"{ep['metrics']} (model {ENSEMBLE})\n"
            f"try: curl -s http://{host}:{settings.port}/v1/embeddings -H 'Content-Type: application/json' -d "
            f"'{{\"model\": \"{service.model_id}\", \"input\": [\"hello\"]}}'\nSIGTERM or Ctrl-C stops both.")


async def _serve(repo: Path, settings: ServeSettings, triton: TritonOptions, out) -> int:
    service, supervisor, stop = await start_triton(repo, settings, triton, Metrics())
    loop = asyncio.get_running_loop()
    web = web_server(service, settings)
    web_task = loop.create_task(web.serve())
    while not web.started and not web_task.done():
        await asyncio.sleep(0.02)
    if web_task.done():
        await supervisor.stop()
        raise NVEmbedError(f"the front door could not listen on {settings.host}:{settings.port}")
    print(ready_line(settings, service, supervisor), file=out, flush=True)
    await asyncio.wait([loop.create_task(stop.wait()), web_task], return_when=asyncio.FIRST_COMPLETED)
    started = time.monotonic()
    await drain(service, settings.drain_timeout_s)
    web.should_exit = True
    await web_task
    await supervisor.stop()
    print(f"stopped in {time.monotonic() - started:.1f} s", file=out, flush=True)
    return 0


async def drain(service: EmbeddingService, timeout_s: float) -> None:
    """Readiness false and new requests refused (503), then wait for in-flight requests up to timeout_s."""
    service.health.draining = True
    service.metrics.ready.set(0)
    deadline = time.monotonic() + timeout_s
    while service.active > 0 and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    if service.active:
        log.warning("drain: %d request(s) still in flight after %.0f s; stopping anyway", service.active, timeout_s)
