"""The readiness probe under load, in-process with a real ONNX Runtime encoder slowed per batch: it jumps the
queue (it measures the encoder, not the backlog), a probe that times out while batches keep coming back means busy
(nothing is reloaded), and one that gets no answer while nothing comes back means broken."""

from __future__ import annotations

import asyncio
import time

import pytest

from serving_harness import build
from nvembed_trt.serving import supervision
from nvembed_trt.serving.batching import QueueFull
from nvembed_trt.serving.supervision import Supervisor

LONG = [f"passage {i}: " + "the with statement wraps a block of code " * 12 for i in range(160)]


def scenario(repo, delay_s, probe_timeout_s, monkeypatch, inflight=2):
    """Admit 160 long rows (20 batches of 8), then probe once; return what the probe and the backlog did."""
    monkeypatch.setattr(supervision, "PROBE_TIMEOUT_S", probe_timeout_s)
    service, _ = build(repo, delay_s=delay_s, max_inflight_batches=inflight)
    supervisor = Supervisor(lambda: None, service)

    async def main():
        service.start()
        service.set_health(True, "ready")
        backlog = asyncio.create_task(service.batcher.embed(service.tokenize(LONG, "", "END")))
        await asyncio.sleep(0.01)          # the backlog is queued and both slots are busy
        start = time.perf_counter()
        ready = await supervisor.probe()
        probe_s = time.perf_counter() - start
        backlog_done = backlog.done()
        backlog.cancel()
        await service.close()
        return ready, probe_s, backlog_done, service.health.message
    return asyncio.run(main())


def test_probe_jumps_the_queue(tiny_repos, monkeypatch):
    ready, probe_s, backlog_done, message = scenario(tiny_repos["engine"], 0.1, 5.0, monkeypatch)
    # 20 batches at 0.1 s over 2 slots is >= 1 s of backlog; the probe waits for one slot and its own batch
    assert ready and message == "ready"
    assert probe_s < 0.5 and not backlog_done, (probe_s, backlog_done)


def test_busy_is_not_broken(tiny_repos, monkeypatch):
    # both slots hold 0.4 s batches; the probe gets a slot at ~0.4 s and answers at ~0.8 s, past its 0.6 s timeout,
    # but two batches came back meanwhile: the encoder works, so readiness stays true and nothing is reloaded
    ready, probe_s, _, message = scenario(tiny_repos["engine"], 0.4, 0.6, monkeypatch)
    assert ready and message == "ready" and 0.55 < probe_s < 0.8, (ready, probe_s, message)


def test_no_progress_is_broken(tiny_repos, monkeypatch):
    ready, probe_s, _, message = scenario(tiny_repos["engine"], 30.0, 0.5, monkeypatch)
    assert not ready and probe_s < 1.0
    assert "no answer within 0.5 s and no batch came back meanwhile" in message


@pytest.mark.parametrize("urgent", [False, True])
def test_a_full_queue_refuses_requests_but_not_the_probe(tiny_repos, urgent):
    """A full queue means busy: a probe that got QueueFull would mark a working server unready and reload it."""
    service, _ = build(tiny_repos["engine"], delay_s=0.2, max_queued_inputs=8)

    async def main():
        service.start()
        first = asyncio.create_task(service.batcher.embed(service.tokenize(LONG[:8], "", "END")))
        await asyncio.sleep(0)             # its 8 rows wait in the queue
        try:
            return (await service.batcher.embed(service.tokenize(LONG[8:12], "", "END"), urgent=urgent)).shape
        finally:
            await first
            await service.close()
    if urgent:
        assert asyncio.run(main()) == (4, 64)
    else:
        with pytest.raises(QueueFull, match="8 inputs are waiting and this request adds 4; the queue holds 8"):
            asyncio.run(main())
