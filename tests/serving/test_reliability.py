"""Reliability of `nvembed-trt serve`, as a user meets it: thousands of hostile requests through the front door and
Triton's KServe port (no crash, no hang, valid requests still right); a killed python stub or tritonserver heals
itself; SIGTERM under keep-alive load stops within the bound; busy ports and missing repositories are refused in
one line before anything starts."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from fuzz import run_fuzz
from serving_harness import MAX_LENGTH
from nvembed_trt.client import EmbeddingClient
from nvembed_trt.serving.process import ServeProcess, free_ports
from nvembed_trt.triton.server import pytriton_root

try:
    pytriton_root()
except Exception as exc:  # noqa: BLE001
    pytest.skip(f"nvidia-pytriton is not installed ({exc})", allow_module_level=True)

LIMITS = ("--probe-interval", "1", "--max-input-bytes", "65536", "--max-request-bytes", "1048576",
          "--max-inputs", "64")
VALID = ["how much protein should a female eat", "summit define", "a passage about mountains and their summits"]
HEAL_S = 15


def children(pid: int) -> dict[int, str]:
    """{pid: command line} of a process's children (from /proc: no procps needed)."""
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                child = int(stat.parent.name)
                found[child] = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, IndexError, ValueError):
            continue
    return found


def tritonserver_pid(served: ServeProcess) -> int:
    return next(pid for pid, cmd in children(served.process.pid).items() if "tritonserver" in cmd)


def wait_for(condition, timeout: float) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if condition():
            return time.monotonic() - start
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout} s")


def ready(served: ServeProcess) -> bool:
    try:
        return httpx.get(f"{served.api_url}/health/ready", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture(scope="module")
def served(tiny_repos):
    with ServeProcess(tiny_repos["engine"], LIMITS) as process:
        yield process


@pytest.fixture(scope="module")
def expected(tiny):
    return tiny.encode(VALID, max_length=MAX_LENGTH)


def embeds_correctly(served, expected) -> bool:
    got = EmbeddingClient(served.api_url).embed(VALID)
    return bool((np.sum(got * expected, axis=1) >= 0.9999).all())


def test_fuzz_no_crash_no_hang_valid_requests_still_right(served, expected):
    triton = tritonserver_pid(served)
    report = run_fuzz(served.api_url, served.kserve["http"], "tiny", 2000, VALID, expected, valid_every=10,
                      max_inputs=64, max_input_bytes=65536)
    summary = report.summary()
    assert summary["sent"] == 2000 and summary["kinds"] >= 20, summary
    assert report.transport_errors == [] and report.server_errors == [], summary
    assert report.slowest_s < 30 and report.valid == 200 and report.valid_wrong == [], summary
    assert served.process.poll() is None and tritonserver_pid(served) == triton, "a process died"
    assert 200 < summary["statuses"].get("200", 0) and summary["statuses"].get("400", 0) > 500
    assert embeds_correctly(served, expected)


@pytest.mark.parametrize("model", ["encoder", "nv_embed"])
def test_a_killed_python_stub_heals(served, expected, model):
    stubs = [pid for pid, cmd in children(tritonserver_pid(served)).items() if f"/{model}/1/model.py" in cmd]
    assert stubs, children(tritonserver_pid(served))
    os.kill(stubs[0], signal.SIGKILL)
    if model == "encoder":   # the front door's path: unready, then ready again
        with pytest.raises(Exception):
            EmbeddingClient(served.api_url).embed(VALID[:1])   # live traffic sees the failure...
        wait_for(lambda: not ready(served), 5)                 # ...and readiness tells the truth
    kserve = EmbeddingClient(served.kserve["grpc"], "grpc")
    wait_for(lambda: ready(served) and _kserve_ok(kserve), HEAL_S)
    assert embeds_correctly(served, expected)
    log = served.log()
    assert "healed:" in log and f"reloading {model}" in log, log[-2000:]


def _kserve_ok(client) -> bool:
    try:
        return client.embed(VALID[:1]).shape == (1, 64)
    except Exception:  # noqa: BLE001 (still healing)
        return False


def test_a_killed_tritonserver_is_restarted(served, expected):
    old = tritonserver_pid(served)
    os.kill(old, signal.SIGKILL)
    wait_for(lambda: not ready(served), 5)
    healed_in = wait_for(lambda: ready(served), HEAL_S)
    assert tritonserver_pid(served) != old and embeds_correctly(served, expected)
    assert "restarting tritonserver" in served.log() and healed_in < HEAL_S
    metrics = httpx.get(f"{served.api_url}/metrics").text
    assert 'nvembed_restarts_total{what="tritonserver"} 1.0' in metrics


def test_sigterm_under_keep_alive_load_stops_within_the_bound(tiny_repos):
    process = ServeProcess(tiny_repos["engine"], ("--drain-timeout", "10")).start()
    stop = threading.Event()
    outcomes = []

    def client(url_kind):
        with httpx.Client(timeout=30) as http:            # keep-alive connections, as real clients hold them
            while not stop.is_set():
                try:
                    if url_kind == "api":
                        status = http.post(f"{process.api_url}/embeddings",
                                           json={"model": "tiny", "input": VALID}).status_code
                    else:
                        status = http.get(f"http://{process.kserve['http']}/v2/health/ready").status_code
                    outcomes.append(status)
                except httpx.HTTPError:
                    outcomes.append("closed")
                    time.sleep(0.05)
    threads = [threading.Thread(target=client, args=(k,)) for k in ("api",) * 6 + ("kserve",) * 2]
    for t in threads:
        t.start()
    time.sleep(2)
    start = time.monotonic()
    process.process.send_signal(signal.SIGTERM)
    status = process.process.wait(30)
    took = time.monotonic() - start
    stop.set()
    for t in threads:
        t.join(30)
    process.stop()
    assert status == 0 and took <= 10, (status, took)
    assert set(outcomes) <= {200, 503, "closed"} and outcomes.count(200) > 10, set(outcomes)
    for port in (process.port, process.http_port, process.grpc_port, process.metrics_port):
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", port))
    assert not any("tritonserver" in cmd for cmd in children(process.process.pid).values())


def test_busy_ports_and_missing_repositories_are_refused_in_one_line(tiny_repos, tmp_path):
    def serve(*args):
        start = time.monotonic()
        proc = subprocess.run([sys.executable, "-m", "nvembed_trt", "serve", *args], capture_output=True, text=True,
                              timeout=60)
        return proc, time.monotonic() - start
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = busy.getsockname()[1]
    api, http, grpc, metrics = free_ports(4)
    try:
        for flag in ("--port", "--grpc-port"):
            ports = {"--port": api, "--http-port": http, "--grpc-port": grpc, "--metrics-port": metrics, flag: port}
            proc, took = serve("--repo", str(tiny_repos["engine"]), *[x for kv in ports.items() for x in map(str, kv)])
            lines = proc.stderr.strip().splitlines()
            assert proc.returncode == 2 and len(lines) == 1 and took < 20, proc.stderr
            assert f"port {port} on 127.0.0.1" in lines[0] and "not available" in lines[0]
            assert proc.stdout == ""   # never "ready"
    finally:
        busy.close()
    proc, _ = serve("--repo", str(tmp_path / "nowhere"))
    assert proc.returncode == 2 and proc.stderr.strip() == f"error: repository {tmp_path / 'nowhere'} not found; " \
                                                           f"make one with nvembed-trt triton-repo"
