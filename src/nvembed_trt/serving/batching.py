"""Continuous, length-aware batching across requests (TEI's router/core split: this is the core).

Rows of every admitted request wait in one queue. Whenever a dispatch slot is free, the waiting rows are packed
(nvembed_trt.packing: length-sorted, under the token budget, each batch covered by one encoder shape) and the batch
holding the oldest waiting row is sent; the rest wait for the next slot, where they may pack with newer arrivals.
No timer delays a batch: what accumulates while the encoder is busy is what gets batched. The queue is bounded in
rows (429 beyond it); a cancelled request's waiting rows are dropped. Urgent rows (the readiness probe) go to the
head of the queue, so a probe measures the encoder, not the backlog; `last_progress` says when a batch last came
back, so a slow answer under load can be told from a broken encoder."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import numpy as np

from ..encoding import PackedBatch, Row, batch_of
from ..packing import Packer
from ..pooling import pool_or_check
from .metrics import Metrics


class QueueFull(Exception):
    """More rows would wait than the queue holds."""


@dataclass(eq=False)
class Job:
    rows: list[Row]
    future: asyncio.Future
    out: np.ndarray
    remaining: int
    admitted: float = field(default_factory=time.perf_counter)


@dataclass(eq=False)
class Pending:
    job: Job
    index: int          # row index within the job


class Batcher:
    def __init__(self, packer: Packer, pad_id: int, inputs: tuple[str, ...], dim: int,
                 run: Callable[[dict[str, np.ndarray]], Awaitable[np.ndarray]], metrics: Metrics,
                 max_inflight: int = 2, max_queued_rows: int = 65536):
        self.packer, self.pad_id, self.inputs, self.dim, self.run = packer, pad_id, inputs, dim, run
        self.metrics, self.max_queued_rows = metrics, max_queued_rows
        self.pending: list[Pending] = []
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

    async def embed(self, rows: list[Row], urgent: bool = False) -> np.ndarray:
        """float32 (N, D) for `rows`, in order. Raises QueueFull, or what the encoder run raised. Urgent rows go
        ahead of every waiting row (they still wait for a free dispatch slot)."""
        if not urgent and len(self.pending) + len(rows) > self.max_queued_rows:
            raise QueueFull(f"{len(self.pending)} inputs are waiting and this request adds {len(rows)}; the queue "
                            f"holds {self.max_queued_rows}")
        loop = asyncio.get_running_loop()
        job = Job(rows, loop.create_future(), np.empty((len(rows), self.dim), dtype=np.float32), len(rows))
        waiting = [Pending(job, i) for i in range(len(rows))]
        if urgent:   # the batch holding the oldest waiting row goes next: urgent rows become the oldest
            self.pending[:0] = waiting
        else:
            self.pending.extend(waiting)
        self.metrics.queue_rows.set(len(self.pending))
        self.wakeup.set()
        try:
            return await job.future
        finally:
            if not job.future.done():   # cancelled (client gone, deadline): its waiting rows go too
                job.future.cancel()

    def _next_batch(self) -> tuple[list[Pending], PackedBatch] | None:
        self.pending = [p for p in self.pending if not p.job.future.done()]
        self.metrics.queue_rows.set(len(self.pending))
        if not self.pending:
            return None
        rows = [p.job.rows[p.index] for p in self.pending]
        plan = self.packer.plan([len(r.ids) for r in rows])          # lengths only: arrays for one batch below
        oldest = next(index for index in plan if 0 in index)          # pending keeps admission order
        chosen = batch_of(rows, oldest, self.pad_id, self.inputs)
        members = [self.pending[i] for i in chosen.index]
        taken = set(chosen.index)
        self.pending = [p for i, p in enumerate(self.pending) if i not in taken]
        self.metrics.queue_rows.set(len(self.pending))
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
            task = asyncio.get_running_loop().create_task(self._dispatch(*picked))
            self.inflight.add(task)
            task.add_done_callback(self.inflight.discard)

    async def _dispatch(self, members: list[Pending], batch: PackedBatch) -> None:
        try:
            now = time.perf_counter()
            for p in members:
                self.metrics.queue.observe(now - p.job.admitted)
            self.metrics.batches.inc()
            self.metrics.encoder_tokens.labels("real").inc(batch.real_tokens)
            self.metrics.encoder_tokens.labels("padded").inc(batch.padded_tokens - batch.real_tokens)
            try:
                vectors = pool_or_check(await self.run(batch.arrays), batch.pool_mask)
            except Exception as exc:  # every request in the batch gets the error; the loop keeps serving
                for p in members:
                    if not p.job.future.done():
                        p.job.future.set_exception(exc)
                return
            self.last_progress = time.monotonic()
            for p, vector in zip(members, vectors):
                job = p.job
                if job.future.done():
                    continue
                job.out[p.index] = vector
                job.remaining -= 1
                if job.remaining == 0:
                    job.future.set_result(job.out)
        finally:
            self.slots.release()
