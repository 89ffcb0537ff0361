"""`nvembed-trt serve` as a child process on free loopback ports: what the serving check, the benchmarks and the
tests start, exactly as a user would (the command line, its "ready:" line, SIGTERM). The child is stopped whatever
ends the wait for "ready:" (an error, Ctrl-C, or SIGTERM inside `sigterm_exits()`); its stderr log is removed after a
clean stop and kept, named in the error, when serve failed."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from ..errors import NVEmbedError


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind((host, 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


class ServeProcess:
    def __init__(self, repo: Path | str, args: tuple[str, ...] = (), env: dict[str, str] | None = None,
                 ports: tuple[int, int, int, int] | None = None):
        """ports: (front door, KServe HTTP, gRPC, metrics); free loopback ports by default."""
        self.repo = Path(repo)
        self.port, self.http_port, self.grpc_port, self.metrics_port = ports or free_ports(4)
        self.args, self.env = tuple(args), env
        self.process: subprocess.Popen | None = None
        self.stderr = tempfile.NamedTemporaryFile(prefix="nvembed-serve-", suffix=".log", delete=False)
        self.ready_line = ""

    @property
    def command(self) -> list[str]:
        return [sys.executable, "-m", "nvembed_trt", "serve", "--repo", str(self.repo), "--port", str(self.port),
                "--http-port", str(self.http_port), "--grpc-port", str(self.grpc_port),
                "--metrics-port", str(self.metrics_port), *self.args]

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def kserve(self) -> dict[str, str]:
        return {"http": f"127.0.0.1:{self.http_port}", "grpc": f"127.0.0.1:{self.grpc_port}",
                "metrics": f"http://127.0.0.1:{self.metrics_port}/metrics"}

    def log(self) -> str:
        return Path(self.stderr.name).read_text(errors="replace")

    def start(self, timeout: float = 240.0) -> ServeProcess:
        """Start serve and wait for its "ready:" line; on anything else (its exit, the timeout, an exception,
        KeyboardInterrupt or SystemExit included) the child is stopped before the error goes on."""
        self.process = subprocess.Popen(self.command, stdout=subprocess.PIPE, stderr=self.stderr, text=True,
                                        env={**os.environ, **(self.env or {})})
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if line.startswith("ready:"):
                self.ready_line = line
                return
            if not line and self.process.poll() is not None:
                raise NVEmbedError(f"nvembed-trt serve exited with {self.process.returncode} (its log: "
                                   f"{self.stderr.name}): {self.log()[-2000:]}")
        raise NVEmbedError(f"nvembed-trt serve was not ready after {timeout:.0f} s (its log: {self.stderr.name}): "
                           f"{self.log()[-2000:]}")

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM and wait; the exit status (SIGKILL after `timeout`, then -9). The log is removed after a clean
        exit (0) and kept otherwise."""
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process.stdout.close()
        self.stderr.close()
        if self.process.returncode == 0:
            Path(self.stderr.name).unlink(missing_ok=True)
        return self.process.returncode

    def __enter__(self) -> ServeProcess:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


@contextlib.contextmanager
def sigterm_exits() -> Iterator[None]:
    """Inside: SIGTERM (a CI timeout, a Kubernetes Job) unwinds like Ctrl-C, as SystemExit(143) where the main thread
    is, so every `with ServeProcess(...)` stops its child on the way out (serve then stops its Triton); a second
    SIGTERM during that cleanup is ignored. The previous handler is restored on the way out. No-op off the main
    thread (only it may set signal handlers)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("terminated (SIGTERM): stopping the servers started here", file=sys.stderr, flush=True)
        raise SystemExit(128 + signum)
    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)
