"""The front-door worker pool (serving/workers.py) with stand-in children: all start and say ready, a killed one is
started again (a new process, counted), stop ends every one, a child that dies before ready is reported; the
default count from cores and devices."""

from __future__ import annotations

import asyncio
import os
import signal
import sys

import pytest

from nvembed_trt.errors import NVEmbedError
from nvembed_trt.serving.workers import WorkerPool, default_workers

CHILD = ("import os, signal, sys, time\n"
         "signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))\n"
         "time.sleep(float(sys.argv[1]))\n"
         "print('ready', os.getpid(), flush=True)\n"
         "time.sleep(60)\n")


def command(delay: float = 0.0):
    return lambda index: [sys.executable, "-c", CHILD, str(delay)]


def test_workers_start_heal_and_stop():
    restarts = []

    async def main():
        pool = WorkerPool(command(), 2, on_restart=lambda i, why, pid: restarts.append((i, why, pid)))
        await pool.start()
        first = pool.pids
        assert len(set(first)) == 2 and all(pool.workers[i].ready.is_set() for i in (0, 1))
        os.kill(first[1], signal.SIGKILL)
        for _ in range(200):
            if pool.pids[1] != first[1] and pool.workers[1].ready.is_set():
                break
            await asyncio.sleep(0.05)
        healed = pool.pids
        codes = await pool.stop(timeout_s=10)
        return first, healed, codes
    first, healed, codes = asyncio.run(main())
    assert healed[0] == first[0] and healed[1] != first[1]
    assert restarts == [(1, f"front-door worker 1 (pid {first[1]}) exited with -9", first[1])]
    assert codes == [0, 0]


def test_a_worker_that_dies_before_ready_is_reported():
    async def main():
        pool = WorkerPool(lambda i: [sys.executable, "-c", "import sys; sys.exit(3)"], 1)
        try:
            await pool.start()
        finally:
            await pool.stop()
    with pytest.raises(NVEmbedError, match="front-door worker 0 exited with 3 before it was ready"):
        asyncio.run(main())


@pytest.mark.parametrize("cpus, devices, want", [(2, 1, 1), (1, 1, 1), (16, 1, 4), (64, 8, 32), (8, 8, 7)])
def test_default_worker_count(cpus, devices, want):
    assert default_workers(cpus, devices) == want
