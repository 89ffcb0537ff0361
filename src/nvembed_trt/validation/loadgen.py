"""Open-loop load: requests sent at Poisson arrival times at a set rate, whatever the server answers, so latency
under a given load is measured (a closed loop only ever measures the load the server lets through).

Why our own generator: Debian's wrk (4.1) is closed-loop (each connection waits for its answer; its Lua delay()
only spaces one connection's requests), and h2load's --rate starts connections at a rate, each then closed-loop;
neither sends Poisson arrivals independent of the answers. This one is an asyncio Protocol per raw HTTP/1.1
keep-alive connection (uvloop when installed): a due request takes an idle connection or opens one (up to
max_connections; beyond, it is counted as not sent), its latency runs from its *scheduled* arrival (no coordinated
omission: a stalled server shows as latency, not as fewer requests), and the answer is read by its head and length
only (never JSON-parsed). It measures its own CPU time per request (process time over requests sent), and how late
it sent (the lag behind the schedule): a report whose lag or CPU is high says the generator, not the server, was the
limit."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import numpy as np

EARLY_S = 0.0005       # an arrival due this soon is sent now


@dataclass(frozen=True)
class LoadSpec:
    url: str                          # e.g. http://127.0.0.1:8080/v1/embeddings
    rate: float                       # requests per second (Poisson)
    duration_s: float                 # arrivals are scheduled over this long
    bodies: tuple[bytes, ...]         # request bodies, used in turn
    texts: tuple[int, ...] = ()       # texts per body (for texts/s), default 1 each
    headers: tuple[tuple[str, str], ...] = (("Content-Type", "application/json"),)
    warmup_s: float = 0.0             # requests scheduled before this are sent but not counted
    timeout_s: float = 30.0           # an answer later than this after the last arrival counts as status 0
    max_connections: int = 4096
    seed: int = 0


def poisson_arrivals(rate: float, duration_s: float, seed: int = 0) -> list[float]:
    """Arrival offsets in seconds: exponential gaps of mean 1/rate over duration_s."""
    rng, t, out = random.Random(seed), 0.0, []
    while True:
        t += rng.expovariate(rate)
        if t >= duration_s:
            return out
        out.append(t)


class _Connection(asyncio.Protocol):
    """One keep-alive connection: one request at a time; an answer is complete at its Content-Length (or the end
    of a chunked body)."""

    def __init__(self, pool: list, on_answer, clock):
        self.pool, self.on_answer, self.clock = pool, on_answer, clock
        self.transport = None
        self.buffer = bytearray()
        self.expect: int | None = None
        self.chunked = False
        self.status = 0
        self.pending = None           # the request in flight: (index, scheduled time)

    def connection_made(self, transport) -> None:
        self.transport = transport

    def send(self, request: bytes, index: int, scheduled: float) -> None:
        self.pending = (index, scheduled)
        self.transport.write(request)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.expect is None:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buffer[:end]).lower()
            self.status = int(head[9:12])
            at = head.find(b"content-length:")
            self.chunked = at < 0
            stop = head.find(b"\r\n", at)
            self.expect = end + 4 + (int(head[at + 15:stop if stop >= 0 else len(head)]) if at >= 0 else 0)
        if self.chunked:
            if not self.buffer.endswith(b"0\r\n\r\n"):
                return
        elif len(self.buffer) < self.expect:
            return
        self.buffer.clear()
        self.expect, (index, scheduled), self.pending = None, self.pending, None
        self.pool.append(self)
        self.on_answer(index, scheduled, self.status, self.clock())

    def connection_lost(self, exc) -> None:
        if self in self.pool:
            self.pool.remove(self)
        if self.pending is not None:
            index, scheduled = self.pending
            self.pending = None
            self.on_answer(index, scheduled, 0, self.clock())


@dataclass
class _Run:
    sent: int = 0
    not_sent: int = 0
    answered: int = 0
    statuses: Counter = field(default_factory=Counter)
    latency_ms: list = field(default_factory=list)      # of counted 200s
    texts_ok: int = 0
    lag_ms: list = field(default_factory=list)


async def open_loop(spec: LoadSpec) -> dict:
    parts = urlsplit(spec.url)
    host, port = parts.hostname, parts.port or 80
    head = (f"POST {parts.path or '/'} HTTP/1.1\r\nHost: {host}:{port}\r\n"
            + "".join(f"{k}: {v}\r\n" for k, v in spec.headers))
    requests = [f"{head}Content-Length: {len(b)}\r\n\r\n".encode() + b for b in spec.bodies]
    texts = spec.texts or (1,) * len(requests)
    loop = asyncio.get_running_loop()
    arrivals = poisson_arrivals(spec.rate, spec.duration_s, spec.seed)
    idle: list[_Connection] = []
    every: list[_Connection] = []
    clock = time.perf_counter                    # the loop's clock may be cached at millisecond resolution
    run = _Run()
    all_done = loop.create_future()
    sending_over = False

    def on_answer(index: int, scheduled: float, status: int, now: float) -> None:
        run.answered += 1
        if scheduled - start >= spec.warmup_s:
            run.statuses[status] += 1
            if status == 200:
                run.latency_ms.append((now - scheduled) * 1000)
                run.texts_ok += texts[index % len(texts)]
        if run.answered == run.sent and sending_over and not all_done.done():
            all_done.set_result(None)

    async def open_and_send(index: int, scheduled: float) -> None:
        try:
            _, conn = await loop.create_connection(lambda: _Connection(idle, on_answer, clock), host, port)
        except OSError:
            on_answer(index, scheduled, 0, clock())
            return
        every.append(conn)
        conn.send(requests[index % len(requests)], index, scheduled)

    def dispatch(i: int, scheduled: float, now: float) -> None:
        if scheduled - start >= spec.warmup_s:
            run.lag_ms.append((now - scheduled) * 1000)
        if idle:
            run.sent += 1
            idle.pop().send(requests[i % len(requests)], i, scheduled)
        elif len(every) + len(opening) < spec.max_connections:
            run.sent += 1
            task = loop.create_task(open_and_send(i, scheduled))
            opening.add(task)
            task.add_done_callback(opening.discard)
        else:
            run.not_sent += 1

    def fire() -> None:
        """Send every arrival due (within half a millisecond: uvloop's timers round to the millisecond), then
        sleep until the next one: one timer callback per wake-up, no coroutine per request."""
        nonlocal nxt
        now = clock()
        while nxt < len(arrivals) and start + arrivals[nxt] <= now + EARLY_S:
            dispatch(nxt, start + arrivals[nxt], now)
            nxt += 1
        if nxt < len(arrivals):
            loop.call_later(start + arrivals[nxt] - now, fire)
        elif not sending.done():
            sending.set_result(clock())

    opening: set = set()
    sending = loop.create_future()
    nxt = 0
    cpu0, start = time.process_time(), clock()
    fire()
    sent_at = await sending
    sending_over = True
    if run.answered < run.sent:
        try:
            await asyncio.wait_for(asyncio.shield(all_done), spec.timeout_s)
        except asyncio.TimeoutError:
            pass
    cpu = time.process_time() - cpu0
    wall = clock() - start
    for conn in every:
        conn.transport.close()
    unanswered = run.sent - run.answered
    measured_s = spec.duration_s - spec.warmup_s
    lat = np.asarray(run.latency_ms)
    lag = np.asarray(run.lag_ms) if run.lag_ms else np.asarray([0.0])
    statuses = {str(k): v for k, v in sorted(run.statuses.items())}
    if unanswered:
        statuses["unanswered"] = unanswered
    return {"offered_per_s": spec.rate, "scheduled": len(arrivals), "sent": run.sent, "not_sent": run.not_sent,
            "sent_per_s": run.sent / spec.duration_s, "achieved_per_s": run.statuses.get(200, 0) / measured_s,
            "texts_per_s": run.texts_ok / measured_s, "statuses": statuses, "connections": len(every),
            **{f"p{q}_ms": float(np.percentile(lat, q)) if lat.size else None for q in (50, 90, 99)},
            "max_ms": float(lat.max()) if lat.size else None,
            "send_lag_p99_ms": float(np.percentile(lag, 99)), "duration_s": spec.duration_s,
            "warmup_s": spec.warmup_s, "drain_s": clock() - sent_at, "wall_s": wall,
            "generator_cpu_us_per_request": 1e6 * cpu / max(1, run.sent)}


def run_open_loop(spec: LoadSpec) -> dict:
    """open_loop in a fresh event loop (uvloop where installed: fewer microseconds per request)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(open_loop(spec))
    return uvloop.run(open_loop(spec))


class _Fixed(asyncio.Protocol):
    def __init__(self, answers, delay_s: float):
        self.answers, self.delay_s, self.buffer = answers, delay_s, bytearray()

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buffer[:end]).lower()
            at = head.find(b"content-length:")
            stop = head.find(b"\r\n", at)
            length = int(head[at + 15:stop if stop >= 0 else len(head)]) if at >= 0 else 0
            if len(self.buffer) < end + 4 + length:
                return
            del self.buffer[:end + 4 + length]
            answer = next(self.answers)
            if self.delay_s:
                asyncio.get_running_loop().call_later(self.delay_s, self.transport.write, answer)
            else:
                self.transport.write(answer)


async def fixed_server(host: str, port: int, body_bytes: int = 22000, delay_s: float = 0.0,
                       statuses: tuple[int, ...] = (200,)):
    """A server that answers every POST with `body_bytes` bytes after `delay_s`, cycling through `statuses`: the
    generator measured alone (its CPU per request, its rate) without a model behind it. Returns the asyncio
    server."""
    import itertools

    body = b"x" * body_bytes
    answers = [f"HTTP/1.1 {s} X\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
               + body for s in statuses]
    cycle = itertools.cycle(answers)
    return await asyncio.get_running_loop().create_server(lambda: _Fixed(cycle, delay_s), host, port)
