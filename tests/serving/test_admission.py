"""Admission by queued work, in-process with a real ONNX Runtime encoder slowed per batch (so its rate is known):
overload is refused at once with 429 and Retry-After, never left to time out; a request no deadline can hold is 413;
the queue's token ledger returns to zero whatever happened to its requests."""

from __future__ import annotations

import asyncio
import json
import time

from serving_harness import build, call

MODEL = "tiny"
ROWS = [f"passage {i}: " + "the summit of a mountain is its highest point " * 8 for i in range(64)]  # 64 tokens each
BIG = {"model": MODEL, "input": ROWS, "truncate": "END"}   # 8 batches of 8 rows at the encoder


def post(client, body):
    return client.post("/v1/embeddings", content=json.dumps(body))


def test_overload_is_refused_at_once_not_timed_out(tiny_repos):
    # 0.05 s per batch: one BIG request is ~0.4 s of encoder work; 12 at once are ~5 s against a 2 s deadline
    service, app = build(tiny_repos["engine"], delay_s=0.05, request_timeout_s=2.0, max_inflight_batches=1)

    async def requests(client):
        assert (await post(client, BIG)).status_code == 200     # the encoder's rate is measured from now on
        start = time.perf_counter()

        async def timed():
            reply = await post(client, BIG)
            return reply, time.perf_counter() - start
        return await asyncio.gather(*[timed() for _ in range(12)])
    answers = call(service, app, requests)
    statuses = sorted(reply.status_code for reply, _ in answers)
    assert 504 not in statuses and set(statuses) == {200, 429} and 2 <= statuses.count(200) <= 5, statuses
    for reply, seconds in answers:
        if reply.status_code == 429:
            # refused at once: well before the 2 s deadline (slack for a loaded 2-core CI machine)
            assert int(reply.headers["retry-after"]) >= 1 and seconds < 1.5, (seconds, reply.headers)
            assert "deadline" in reply.json()["error"]["message"], reply.json()
        else:   # admitted work finished: no 504 above; the client's own time adds a little to the deadline
            assert seconds < 2.5, seconds
    assert service.metrics.refusals.labels("deadline")._value.get() == statuses.count(429)
    assert service.batcher.backlog_tokens == 0


def test_a_request_no_deadline_can_hold_is_413_and_the_token_cap_429(tiny_repos):
    service, app = build(tiny_repos["engine"], delay_s=0.05, request_timeout_s=0.3, max_inflight_batches=1)

    async def requests(client):
        first = await post(client, BIG)          # the rate is unknown yet: admitted, and past its deadline
        await asyncio.sleep(0.5)                  # its batches in flight come back (the rate is now known)
        return first, await post(client, BIG)
    first, second = call(service, app, requests)
    assert first.status_code == 504 and second.status_code == 413, (first.json(), second.json())
    assert "more than the 0.3 s deadline (--request-timeout)" in second.json()["error"]["message"]

    service, app = build(tiny_repos["engine"], delay_s=0.05, max_queued_tokens=3000)

    async def capped(client):
        return await post(client, BIG), await asyncio.gather(*[post(client, {**BIG, "input": ROWS[:40]})
                                                                for _ in range(2)])
    alone, pair = call(service, app, capped)
    assert alone.status_code == 413 and "the queue holds 65536 inputs" in alone.json()["error"]["message"]
    assert sorted(r.status_code for r in pair) == [200, 429], [r.json() for r in pair]
    busy = next(r for r in pair if r.status_code == 429)
    assert "(--max-queued-tokens)" in busy.json()["error"]["message"] and busy.headers["retry-after"]
    assert service.batcher.backlog_tokens == 0 and service.pending_bytes == 0 and service.active == 0
