"""ServeProcess stops its child whatever ends the wait for "ready:", and keeps its log only when serve failed. The
child is a short Python program standing in for `nvembed-trt serve` (its stdout and exit status are all ServeProcess
reads); no Triton. Cost: ~1 s."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import tritonservers_with
from nvembed_trt.errors import NVEmbedError
from nvembed_trt.serving.process import ServeProcess, sigterm_exits

SLOW = "import time; time.sleep(30)"                                     # never ready
NOT_READY_FOR_3_S = "import time, sys; time.sleep(3); sys.exit(1)"     # (fails in 3 s, should SIGTERM be ignored)
READY = ("import signal, sys, time; signal.signal(signal.SIGTERM, lambda *a: sys.exit(0)); "
         "print('ready: API', flush=True); time.sleep(30)")               # ready; SIGTERM: a clean exit (0)
FAILS = "import sys; print('boom: port taken', file=sys.stderr); sys.exit(3)"


class Program(ServeProcess):
    def __init__(self, code: str):
        super().__init__("unused")
        self.code = code

    @property
    def command(self) -> list[str]:
        return [sys.executable, "-c", self.code]


def _interrupt_in(seconds: float):
    def handler(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, seconds)


def test_an_interrupted_start_stops_the_child():
    served = Program(SLOW)
    previous = signal.getsignal(signal.SIGALRM)
    try:
        _interrupt_in(0.5)
        with pytest.raises(KeyboardInterrupt):
            served.start()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert served.process.poll() == -signal.SIGTERM       # stopped (and reaped) before the interrupt went on
    Path(served.stderr.name).unlink()


def test_the_log_is_removed_after_a_clean_stop_and_kept_when_serve_failed():
    with Program(READY) as served:
        assert served.ready_line.startswith("ready: API")
    assert served.process.returncode == 0 and not Path(served.stderr.name).exists()
    failed = Program(FAILS)
    with pytest.raises(NVEmbedError, match=rf"serve exited with 3 \(its log: {failed.stderr.name}\): boom: port taken"):
        failed.start()
    assert "boom" in Path(failed.stderr.name).read_text()
    Path(failed.stderr.name).unlink()


def test_sigterm_inside_sigterm_exits_stops_the_child_and_exits_143(sigterm_later):
    served = Program(NOT_READY_FOR_3_S)
    with pytest.raises(SystemExit) as info, sigterm_exits():
        sigterm_later(0.3)
        served.start()
    assert info.value.code == 143 and served.process.poll() == -signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) is sigterm_later.handler        # restored
    Path(served.stderr.name).unlink()


def test_serve_stops_its_triton_when_its_ready_line_cannot_be_written(tiny_repos):
    """The starter of `serve` is gone (killed) before "ready:": printing it fails, and Triton, which runs in its own
    session, must not outlive serve. Real serve and Triton on tiny: ~8 s."""
    served = ServeProcess(tiny_repos["engine"])
    served.process = subprocess.Popen(served.command, stdout=subprocess.PIPE, stderr=served.stderr)
    served.process.stdout.close()                    # nobody will read "ready:"
    try:
        assert served.process.wait(120) != 0
        assert "BrokenPipeError" in served.log()
        assert tritonservers_with(f"--http-port={served.http_port}") == []
    finally:
        for pid in tritonservers_with(f"--http-port={served.http_port}"):
            os.killpg(pid, signal.SIGKILL)
        served.stop()
        Path(served.stderr.name).unlink(missing_ok=True)
