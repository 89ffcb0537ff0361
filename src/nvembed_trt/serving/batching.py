"""Continuous, length-aware batching across requests (TEI's router/core split: this is the core).

Rows of every admitted request wait in one queue. Whenever a dispatch slot is free, the waiting rows are packed
(nvembed_trt.packing: length-sorted, under the token budget, each batch covered by one encoder shape) and the batch
holding the oldest waiting row is sent; the rest wait for the next slot, where they may pack with newer arrivals.
No timer delays a batch: what accumulates while the encoder is busy is what gets batched. A cancelled request's
waiting rows are dropped. Urgent rows (the readiness probe) go to the head of the queue, so a probe measures the
encoder, not the backlog; `last_progress` says when a batch last came back, so a slow answer under load can be told
from a broken encoder.

Admission: a request enters the queue only if the work it would wait behind (tokens queued, at the encoder, and
reserved by requests still being tokenised), plus its own, and its own tokenisation, can be done before its deadline at the encoder's measured rate (real tokens per second of busy time,
`Throughput`); else QueueFull says how long to wait (429 + Retry-After), and a request that alone needs more than a
whole deadline is TooBig (413). The queue is also bounded in rows and tokens, which bounds its memory."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import numpy as np

from ..encoding import PackedBatch, Row, batch_of
from ..packing import Packer
from ..pooling import pool_or_check, token_rows
from .metrics import Metrics


PACK_WINDOW = 256   # at least this many of the oldest waiting rows are packed into the next batch
COLD_BATCHES = 64   # full batches of work a busy queue takes before the encoder's rate is measured
SAFETY = 0.8   # a request is admitted if its estimated finish is within this share of the time it has left


class QueueFull(Exception):
    """The queue cannot take this request now; `retry_after_s` estimates when it could."""

    def __init__(self, message: str, retry_after_s: float = 1.0):
        super().__init__(message)
        self.retry_after = max(1, math.ceil(retry_after_s))


class TooBig(Exception):
    """This request alone is more than the queue or one deadline can ever hold: retrying will not help."""


class Throughput:
    """A stage's rate while it has work (the encoder's here, the tokenizer pool's in the service): real tokens per
    second of the time each piece of work took to come back after the previous one (or after the stage became
    busy), decayed with a half-life of HALF_LIFE_S such seconds. For the encoder that time includes the front door's
    own gaps between batches, which a deadline must also absorb. Only work that shows capacity counts: for the
    encoder, batches sent while more rows waited, or as full as their width allows (a lone small batch under light
    load, such as the readiness probe, would make it look slow). Known after MIN_SAMPLES of them."""

    HALF_LIFE_S = 3.0
    MIN_SAMPLES = 3

    def __init__(self) -> None:
        self.tokens = self.seconds = 0.0
        self.samples = 0
        self.last_return = self.busy_since = 0.0

    def busy(self, now: float) -> None:
        """Work arrived at the idle stage: a busy period begins."""
        self.busy_since = now

    def returned(self, now: float, tokens: int, counts: bool) -> None:
        took, self.last_return = now - max(self.last_return, self.busy_since), now
        if counts and took > 0:
            decay = 0.5 ** (took / self.HALF_LIFE_S)
            self.tokens, self.seconds = self.tokens * decay + tokens, self.seconds * decay + took
            self.samples += 1

    def rate(self) -> float | None:
        return self.tokens / self.seconds if self.samples >= self.MIN_SAMPLES else None


@dataclass(eq=False)
class Job:
    rows: list[Row]
    future: asyncio.Future
    out: np.ndarray | list   # (N, D) pooled vectors, or (states) one (tokens_i, D) array per row
    remaining: int
    queued_tokens: int   # tokens of its rows still waiting (not yet sent to the encoder)
    waiting: int         # its rows still waiting
    states: bool = False
    admitted: float = field(default_factory=time.perf_counter)


@dataclass(eq=False)
class Pending:
    job: Job
    index: int          # row index within the job


class Batcher:
    def __init__(self, packer: Packer, pad_id: int, inputs: tuple[str, ...], dim: int,
                 run: Callable[[dict[str, np.ndarray]], Awaitable[np.ndarray]], metrics: Metrics,
                 max_inflight: int = 2, max_queued_rows: int = 65536, max_queued_tokens: int = 1 << 22,
                 timeout_s: float = 60.0):
        self.packer, self.pad_id, self.inputs, self.dim, self.run = packer, pad_id, inputs, dim, run
        self.metrics, self.max_queued_rows, self.max_queued_tokens = metrics, max_queued_rows, max_queued_tokens
        self.timeout_s = timeout_s
        self.pending: list[Pending] = []
        self.queued_rows = 0       # live pending rows (finished jobs' rows may still sit in `pending`)
        self.queued_tokens = 0     # their tokens
        self.inflight_tokens = 0   # tokens of the batches at the encoder
        self.reserved_tokens = 0   # estimated tokens of admitted requests still being tokenised
        self.throughput = Throughput()
        self.window = max(PACK_WINDOW, 4 * max(limit.max_batch for limit in packer.limits))
        self.cold_tokens = COLD_BATCHES * packer.max_batch_tokens
        self.slots = asyncio.Semaphore(max_inflight)
        self.wakeup = asyncio.Event()
        self.task: asyncio.Task | None = None
        self.inflight: set[asyncio.Task] = set()
        self.last_progress = time.monotonic()   # when a batch last came back from the encoder

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._loop(), name="batcher")

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
        for task in list(self.inflight):
            task.cancel()

    @property
    def backlog_tokens(self) -> int:
        return self.queued_tokens + self.inflight_tokens + self.reserved_tokens

    def wait_s(self, tokens: int = 0) -> float | None:
        """Estimated seconds until the backlog plus `tokens` more are done (None while the rate is unknown)."""
        rate = self.throughput.rate()
        return None if rate is None else (self.backlog_tokens + tokens) / rate

    def admit(self, rows: int, tokens: int, deadline: float | None, lead_s: float = 0.0) -> None:
        """Raise TooBig or QueueFull unless `rows` rows of `tokens` tokens can join the queue and, at the measured
        rate, be done before `deadline` (time.monotonic()), `lead_s` seconds from now being spent before they
        join (tokenising)."""
        rate, backlog = self.throughput.rate(), self.backlog_tokens
        drain_s = backlog / rate if rate else 1.0
        if rows > self.max_queued_rows or tokens > self.max_queued_tokens:
            raise TooBig(f"this request has {rows} inputs of {tokens} tokens after truncation; the queue holds "
                         f"{self.max_queued_rows} inputs (--max-queued-inputs) and {self.max_queued_tokens} tokens "
                         f"(--max-queued-tokens)")
        if self.queued_rows + rows > self.max_queued_rows:
            raise QueueFull(f"{self.queued_rows} inputs are waiting and this request adds {rows}; the queue holds "
                            f"{self.max_queued_rows} (--max-queued-inputs)", drain_s)
        if backlog + tokens > self.max_queued_tokens:
            raise QueueFull(f"{backlog} tokens are queued or at the encoder and this request adds {tokens}; the queue "
                            f"holds {self.max_queued_tokens} (--max-queued-tokens)", drain_s)
        if deadline is None:
            return
        if rate is None:   # until the rate is measured: an idle queue takes any request, a busy one COLD_BATCHES
            if backlog and backlog + tokens > self.cold_tokens:
                raise QueueFull(f"the encoder's rate is not measured yet and {backlog} tokens are queued ahead of "
                                f"this request's {tokens}; until it is, the queue takes {self.cold_tokens} tokens",
                                1.0)
            return
        if tokens / rate > SAFETY * self.timeout_s:
            raise TooBig(f"this request is {tokens} tokens after truncation: at the encoder's measured {rate:.0f} "
                         f"tokens/s it needs ~{tokens / rate:.1f} s, more than the {self.timeout_s:g} s deadline "
                         f"(--request-timeout); send fewer inputs per request")
        left = deadline - time.monotonic()
        finish = lead_s + (backlog + tokens) / rate
        if finish > SAFETY * left:
            raise QueueFull(f"{backlog} tokens are queued or at the encoder ahead of this request's {tokens} "
                            f"(~{finish:.1f} s at the measured {rate:.0f} tokens/s"
                            f"{f', tokenising included' if lead_s else ''}), more than the {left:.1f} s left "
                            f"before its deadline (--request-timeout)", finish - SAFETY * left)

    def reserve(self, rows: int, tokens: int, deadline: float | None, lead_s: float = 0.0) -> None:
        """Admit a request on its estimated size before it is tokenised (so a burst is refused before its
        tokenisation is paid for; `lead_s`: the time its tokenisation is expected to take): `admit`, then its tokens
        count in the backlog until `embed` replaces them with its rows, or they are `release`d."""
        self.admit(rows, tokens, deadline, lead_s)
        self.reserved_tokens += tokens
        self._gauges()

    def release(self, tokens: int) -> None:
        self.reserved_tokens -= tokens
        self._gauges()

    async def embed(self, rows: list[Row], urgent: bool = False, deadline: float | None = None,
                    reserved: int = 0, states: bool = False) -> np.ndarray | list[np.ndarray]:
        """float32 (N, D) for `rows`, in order; with `states`, each row's token states instead, float32
        (len(ids), D) per row (an encoder that emits token states only). Raises TooBig or QueueFull (see `admit`),
        or what the encoder run raised. `reserved`: the tokens this request reserved, which its exact count
        replaces. Urgent rows (the probe) are not refused and go ahead of every waiting row (they still wait for a
        free dispatch slot). Rows of both kinds share batches."""
        tokens = sum(len(r.ids) for r in rows)
        self.reserved_tokens -= reserved
        if not urgent:
            self.admit(len(rows), tokens, deadline)
        if not self.queued_rows and not self.inflight_tokens:
            self.throughput.busy(time.monotonic())
        loop = asyncio.get_running_loop()
        out = [None] * len(rows) if states else np.empty((len(rows), self.dim), dtype=np.float32)
        job = Job(rows, loop.create_future(), out, len(rows), tokens, len(rows), states)
        waiting = [Pending(job, i) for i in range(len(rows))]
        if urgent:   # the batch holding the oldest waiting row goes next: urgent rows become the oldest
            self.pending[:0] = waiting
        else:
            self.pending.extend(waiting)
        self.queued_tokens += tokens
        self.queued_rows += len(rows)
        self._gauges()
        self.wakeup.set()
        try:
            return await job.future
        finally:
            if not job.future.done():   # cancelled (client gone, deadline): its waiting rows go too
                job.future.cancel()
                self._forget(job)
                self._gauges()

    def _forget(self, job: Job) -> None:
        """A finished job's rows still waiting no longer count (they leave `pending` when they reach the window)."""
        self.queued_tokens -= job.queued_tokens
        self.queued_rows -= job.waiting
        job.queued_tokens = job.waiting = 0

    def _gauges(self) -> None:
        self.metrics.queue_rows.set(self.queued_rows)
        self.metrics.queue_tokens.set(self.backlog_tokens)
        rate = self.throughput.rate()
        if rate is not None:
            self.metrics.encoder_rate.set(rate)

    def _next_batch(self) -> tuple[list[Pending], PackedBatch] | None:
        """The batch holding the oldest waiting row, packed among the oldest `window` rows only: a deep queue
        costs the event loop O(window log window) per batch, not O(queue) (50,000 waiting rows: 55 ms a batch)."""
        window, scanned = [], 0
        while scanned < len(self.pending) and len(window) < self.window:
            p = self.pending[scanned]
            scanned += 1
            if p.job.future.done():   # cancelled, or failed in another batch: its rows leave here
                self._forget(p.job)
            else:
                window.append(p)
        rest = self.pending[scanned:]
        if not window:
            self.pending = rest
            self._gauges()
            return None
        rows = [p.job.rows[p.index] for p in window]
        plan = self.packer.plan([len(r.ids) for r in rows])          # lengths only: arrays for one batch below
        oldest = next(index for index in plan if 0 in index)          # pending keeps admission order
        chosen = batch_of(rows, oldest, self.pad_id, self.inputs)
        members = [window[i] for i in chosen.index]
        taken = set(chosen.index)
        self.pending = [p for i, p in enumerate(window) if i not in taken] + rest
        for p in members:
            p.job.queued_tokens -= len(p.job.rows[p.index].ids)
            p.job.waiting -= 1
        self.queued_tokens -= chosen.real_tokens
        self.queued_rows -= len(members)
        self.inflight_tokens += chosen.real_tokens
        self._gauges()
        return members, chosen

    async def _loop(self) -> None:
        while True:
            await self.wakeup.wait()
            await self.slots.acquire()
            picked = self._next_batch()
            if picked is None:
                self.slots.release()
                self.wakeup.clear()
                continue
            members, batch = picked
            full = len(members) >= self.packer.rows_at(batch.arrays["input_ids"].shape[1])
            saturated = full or self.queued_rows > 0
            task = asyncio.get_running_loop().create_task(self._dispatch(members, batch, saturated))
            self.inflight.add(task)
            task.add_done_callback(self.inflight.discard)

    async def _dispatch(self, members: list[Pending], batch: PackedBatch, shows_capacity: bool) -> None:
        ok = False
        try:
            now = time.perf_counter()
            for p in members:
                self.metrics.queue.observe(now - p.job.admitted)
            self.metrics.batches.inc()
            self.metrics.encoder_tokens.labels("real").inc(batch.real_tokens)
            self.metrics.encoder_tokens.labels("padded").inc(batch.padded_tokens - batch.real_tokens)
            try:
                values = await self.run(batch.arrays)
                vectors = pool_or_check(values, batch.pool_mask)   # every batch: the encoder's output is checked
                which = [b for b, p in enumerate(members) if p.job.states]   # members[b] is the batch's row b
                states = dict(zip(which, token_rows(values, [len(p.job.rows[p.index].ids) for p in members],
                                                    which))) if which else {}
            except Exception as exc:  # every request in the batch gets the error; the loop keeps serving
                for p in members:
                    if not p.job.future.done():
                        p.job.future.set_exception(exc)
                return
            ok = True
            self.last_progress = time.monotonic()
            for b, (p, vector) in enumerate(zip(members, vectors)):
                job = p.job
                if job.future.done():
                    continue
                job.out[p.index] = states[b] if job.states else vector
                job.remaining -= 1
                if job.remaining == 0:
                    job.future.set_result(job.out)
        finally:
            self.throughput.returned(time.monotonic(), batch.real_tokens, ok and shows_capacity)
            self.inflight_tokens -= batch.real_tokens
            self._gauges()
            self.slots.release()
