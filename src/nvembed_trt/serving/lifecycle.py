"""What one front-door process needs to start, run and stop, shared by `serve` (serving/run.py: one process) and
its workers (serving/workers.py: `serve --workers N`): Triton started and supervised, the front door's uvicorn server,
the ready line, the drain, the log format."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import uvicorn

from ..triton.server import EXIT_TIMEOUT_S, READY_TIMEOUT_S, ServerError, TritonServer
from ..triton.spec import ENSEMBLE
from .app import create_app, engine_header
from .metrics import Metrics
from .protocol import protocol_class
from .service import EmbeddingService
from .settings import ServeSettings
from .supervision import Supervisor

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


def configure_logging() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    for name in ("nvembed_trt.serving", "nvembed_trt.triton"):
        logger = logging.getLogger(name)
        logger.setLevel(logging.INFO)
        if not logger.handlers:
            logger.addHandler(handler)


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
    except BaseException:     # anything else: Triton (in its own session) must not outlive serve
        await supervisor.stop()
        raise
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


async def drain(service: EmbeddingService, timeout_s: float) -> None:
    """Readiness false and new requests refused (503), then wait for in-flight requests up to timeout_s."""
    service.health.draining = True
    service.metrics.ready.set(0)
    deadline = time.monotonic() + timeout_s
    while service.active > 0 and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    if service.active:
        log.warning("drain: %d request(s) still in flight after %.0f s; stopping anyway", service.active, timeout_s)
