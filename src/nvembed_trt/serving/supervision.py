"""Supervision: readiness that tells the truth, and healing.

Ready means a real embedding round trip works. A probe sends one short input through the front door's own path
(batcher -> encoder over gRPC, ahead of any waiting rows) on a timer, and again at once when live traffic sees the encoder fail; a probe that times out while batches keep coming back
means busy, not broken (a 2,048-input request of long texts keeps a CPU encoder busy for longer than the probe's
timeout), so nothing is reloaded under load; it also sends one through the KServe model (nv_embed), whose python stub can die while Triton's own /v2/health/ready stays 200.
Healing, one log line per action: a dead tritonserver is restarted with backoff (at once, then 1, 2, 4 ... 30 s); a model whose
round trip fails is reloaded through Triton's model-control API, and Triton is restarted if that does not help.
The front door answers 503 (not ready) meanwhile and is ready again once a probe succeeds."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import numpy as np
import tritonclient.grpc as grpcclient

from ..encoding import Row
from ..triton.server import ServerError, TritonServer
from ..triton.spec import ENCODER, ENSEMBLE, OUTPUT
from .service import EmbeddingService

log = logging.getLogger("nvembed_trt.serving")
PROBE_TEXT = "readiness probe"
PROBE_TIMEOUT_S = 15.0
BACKOFF_S = (0, 1, 2, 4, 8, 16, 30)   # the first restart is immediate
STABLE_S = 60.0       # a server up this long resets the backoff


class Supervisor:
    def __init__(self, make_server: Callable[[], TritonServer], service: EmbeddingService):
        self.make_server, self.service = make_server, service
        self.server: TritonServer | None = None
        self.wake = asyncio.Event()
        self.stopping = False
        self.failures = 0
        self.started_at = 0.0
        self.task: asyncio.Task | None = None
        self.probe_row = Row(service.tokenizer.encode([PROBE_TEXT], "", service.spec.max_length)[0].ids, 0)
        service.on_unready = self.wake.set

    # ---- lifecycle -------------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start tritonserver (raises ServerError with its first error line) and wait for a working round trip."""
        await self._start_server()
        self.service.start()
        if not await self.probe():
            raise ServerError(f"tritonserver started but an embedding round trip failed: {self.service.health.message}")
        self.task = asyncio.get_running_loop().create_task(self._watch(), name="supervisor")

    async def stop(self) -> None:
        self.stopping = True
        if self.task is not None:
            self.task.cancel()
        await self.service.close()
        if self.server is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.server.stop)

    async def _start_server(self) -> None:
        self.server = self.make_server()
        await asyncio.get_running_loop().run_in_executor(None, self.server.start)
        self.started_at = time.monotonic()

    # ---- probing ---------------------------------------------------------------------------------------------

    async def probe(self) -> bool:
        """One real round trip through the front door's path; sets the service's readiness."""
        started = time.monotonic()
        batcher = self.service.batcher
        try:
            vectors = await asyncio.wait_for(batcher.embed([self.probe_row], urgent=True), PROBE_TIMEOUT_S)
            if vectors.shape != (1, self.service.dim) or not np.isfinite(vectors).all():
                raise ValueError(f"probe returned shape {vectors.shape}")
        except asyncio.TimeoutError:
            if batcher.last_progress > started:   # batches came back meanwhile: busy, not broken
                log.warning("probe: no answer within %.0f s, but the encoder answered batches meanwhile: busy, "
                            "not broken; nothing reloaded", PROBE_TIMEOUT_S)
                return self.service.health.ready
            self.service.set_health(False, f"embedding round trip failed: no answer within {PROBE_TIMEOUT_S:g} s "
                                           f"and no batch came back meanwhile")
            return False
        except Exception as exc:  # any other failure of the round trip means not ready
            self.service.set_health(False, f"embedding round trip failed: {str(exc)[:300]}")
            return False
        self.service.set_health(True, "ready")
        return True

    def _kserve_round_trip(self) -> str | None:
        """None when nv_embed answers a one-text request, else the error."""
        try:
            client = grpcclient.InferenceServerClient(self.server.endpoints["grpc"])
            text = grpcclient.InferInput("TEXT", [1, 1], "BYTES")
            text.set_data_from_numpy(np.array([[PROBE_TEXT.encode()]], dtype=object))
            result = client.infer(ENSEMBLE, [text], outputs=[grpcclient.InferRequestedOutput(OUTPUT)],
                                  client_timeout=PROBE_TIMEOUT_S)
            client.close()
            return None if result.as_numpy(OUTPUT).shape == (1, self.service.dim) else "wrong output shape"
        except Exception as exc:  # the error text is Triton's
            return str(exc)[:300]

    # ---- healing ---------------------------------------------------------------------------------------------

    async def _watch(self) -> None:
        interval = self.service.settings.probe_interval_s
        while not self.stopping:
            try:
                await asyncio.wait_for(self.wake.wait(), interval)
            except asyncio.TimeoutError:
                pass
            self.wake.clear()
            if self.stopping:
                return
            await self.check()

    async def check(self) -> None:
        if not self.server.alive():
            await self._restart(f"tritonserver exited with {self.server.process.returncode}")
            return
        was_ready = self.service.health.ready
        if not await self.probe():
            await self._reload([ENCODER, ENSEMBLE], self.service.health.message)
        elif not was_ready:
            log.warning("healed: ready again")
        kserve_error = await asyncio.get_running_loop().run_in_executor(None, self._kserve_round_trip)
        if kserve_error is not None and self.server.alive():
            await self._reload([ENSEMBLE], f"KServe model nv_embed failed: {kserve_error}")

    async def _reload(self, models: list[str], why: str) -> None:
        start = time.monotonic()
        log.warning("healing: %s; reloading %s through Triton's model control", why, ", ".join(models))
        self.service.metrics.restarts.labels("reload").inc()
        try:
            await self.service.backend.reload(models)
        except Exception as exc:  # reload refused or Triton unreachable: restart it
            await self._restart(f"reload failed ({str(exc)[:200]})")
            return
        if await self.probe():
            log.warning("healed: %s reloaded, ready again after %.1f s", ", ".join(models), time.monotonic() - start)
        else:
            await self._restart(f"still failing after reload: {self.service.health.message}")

    async def _restart(self, why: str) -> None:
        if time.monotonic() - self.started_at > STABLE_S:
            self.failures = 0
        delay = BACKOFF_S[min(self.failures, len(BACKOFF_S) - 1)]
        self.failures += 1
        self.service.set_health(False, f"restarting tritonserver: {why}")
        log.warning("healing: %s; restarting tritonserver in %d s (attempt %d)", why, delay, self.failures)
        self.service.metrics.restarts.labels("tritonserver").inc()
        start = time.monotonic()
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self.server.stop)
        await asyncio.sleep(delay)
        if self.stopping:
            return
        try:
            await self._start_server()
        except ServerError as exc:
            log.warning("healing: tritonserver did not start again: %s", exc)
            self.wake.set()
            return
        if await self.probe():
            log.warning("healed: tritonserver restarted, ready again after %.1f s", time.monotonic() - start)
        else:
            self.wake.set()
