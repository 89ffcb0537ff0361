"""A real `nvembed-trt serve` (loopback, tiny) against what a hostile or unlucky client does, one test per finding of
the second reliability pass, each bounded in count and time: a small request with a huge instruction, huge or
countless headers, a client that leaves mid-body or mid-answer, clients that trickle, overload, the OpenAPI
document served and fuzzed by schemathesis from itself."""

from __future__ import annotations

import json
import math
import re
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from nvembed_trt.serving.app import ENDPOINTS
from nvembed_trt.serving.process import ServeProcess
from nvembed_trt.triton.server import pytriton_root

try:
    pytriton_root()
except Exception as exc:  # noqa: BLE001
    pytest.skip(f"nvidia-pytriton is not installed ({exc})", allow_module_level=True)

DEADLINE_S = 3
LIMITS = ("--header-timeout", "1", "--body-timeout", "1", "--max-header-bytes", "8192", "--max-headers", "50",
          "--request-timeout", str(DEADLINE_S), "--max-inputs", "1024")
ROWS = [f"passage {i}: " + "the summit of a mountain is its highest point " * 8 for i in range(1024)]  # 64 tokens
HEAVY = json.dumps({"model": "tiny", "input": ROWS, "truncate": "END"}).encode()   # ~1 s of encoder work here


@pytest.fixture(scope="module")
def served(tiny_repos):
    with ServeProcess(tiny_repos["engine"], LIMITS) as process:
        yield process


def rss_mib(pid: int) -> float:
    return int(re.search(r"VmRSS:\s+(\d+)", Path(f"/proc/{pid}/status").read_text()).group(1)) / 1024


def counter(served, route: str, status: int) -> float:
    text = httpx.get(f"{served.api_url}/metrics").text
    found = re.search(rf'nvembed_requests_total{{route="{route}",status="{status}"}} ([0-9.]+)', text)
    return float(found.group(1)) if found else 0.0


def metric(served, name: str) -> float:
    return float(re.search(rf"^{name} ([0-9.e+]+)$", httpx.get(f"{served.api_url}/metrics").text, re.M).group(1))


def exchange(port: int, *parts: bytes, pause_s: float = 0.0, timeout: float = 10.0) -> tuple[bytes, float]:
    """Send parts (pausing between them) on one connection; (everything answered until close, seconds)."""
    start, answer = time.perf_counter(), b""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        try:
            for part in parts:
                s.sendall(part)
                time.sleep(pause_s)
        except (BrokenPipeError, ConnectionResetError):   # answered and closed before we finished: read it
            pass
        try:
            while chunk := s.recv(65536):
                answer += chunk
        except ConnectionResetError:
            pass
    return answer, time.perf_counter() - start


class LiveProbe:
    """GET /v1/health/live in a loop on its own thread; `worst_s` is its slowest answer."""

    def __init__(self, served):
        self.url, self.worst_s, self.stop = f"{served.api_url}/health/live", 0.0, threading.Event()
        self.thread = threading.Thread(target=self._run)

    def _run(self):
        with httpx.Client(timeout=120) as client:
            while not self.stop.is_set():
                start = time.perf_counter()
                client.get(self.url)
                self.worst_s = max(self.worst_s, time.perf_counter() - start)
                time.sleep(0.02)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()


def test_an_instruction_costs_one_request_little_and_freezes_nothing(served):
    """Finding 1: 2,048 x "a" with a 30,000-character instruction stalled the front door for 27 s."""
    url, before = f"{served.api_url}/embeddings", rss_mib(served.process.pid)
    with LiveProbe(served) as probe, httpx.Client(timeout=30) as client:
        huge = client.post(url, json={"model": "tiny", "input": ["a"] * 256, "instruction": "x" * 30000,
                                      "truncate": "END"})
        long = client.post(url, json={"model": "tiny", "input": ["a"] * 256, "instruction": "x" * 4000})
        run = client.post(url, json={"model": "tiny", "input": ["a" * 200_000], "truncate": "END"})  # no boundary
    assert huge.status_code == 413 and "instruction is 30000 bytes, above the limit of 4096 bytes " \
                                      "(--max-instruction-bytes)" in huge.json()["error"]["message"]
    assert long.status_code == 400 and "instruction is 2000 tokens" in long.json()["error"]["message"]
    assert run.status_code == 200 and huge.elapsed.total_seconds() < 2 and long.elapsed.total_seconds() < 2
    assert probe.worst_s < 1.0, f"/v1/health/live waited {probe.worst_s:.2f} s"   # tokenised off the event loop
    assert rss_mib(served.process.pid) - before < 64


def test_headers_past_the_limits_get_431(served):
    """Finding 2: a 48 MB header and 10,000 headers were answered 200."""
    big, _ = exchange(served.port, b"GET /v1/health/live HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n")
    many, _ = exchange(served.port, b"GET /v1/health/live HTTP/1.1\r\nHost: x\r\n"
                       + b"".join(b"X-%d: 1\r\n" % i for i in range(60)) + b"\r\n")
    assert big.startswith(b"HTTP/1.1 431 ") and b"above the limit of 8192 bytes (--max-header-bytes)" in big
    assert many.startswith(b"HTTP/1.1 431 ") and b"(--max-headers)" in many
    before = rss_mib(served.process.pid)
    streamed, _ = exchange(served.port, b"GET /v1/health/live HTTP/1.1\r\nHost: x\r\nX-Big: ",
                           *[b"a" * 65536] * 256)                                  # 16 MB, never finished
    assert streamed.startswith(b"HTTP/1.1 431 ") and rss_mib(served.process.pid) - before < 16
    assert all(b"\r\nx-nvembed-engine: plan=" in answer for answer in (big, many, streamed))   # either layer
    assert httpx.get(f"{served.api_url}/health/live").status_code == 200


def test_a_client_that_leaves_is_counted_499_in_one_line(served):
    """Finding 3: a disconnect mid-body was a 500 with two tracebacks; one after the body was counted as 200."""
    route = "/v1/embeddings"
    before = {status: counter(served, route, status) for status in (200, 499, 500)}
    log_lines = len(served.log().splitlines())
    head = b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    with socket.create_connection(("127.0.0.1", served.port)) as s:   # leaves after 100 of 1,000 bytes
        s.sendall(head + b"Content-Length: 1000\r\n\r\n" + b" " * 100)
        time.sleep(0.3)
    leaver = json.dumps({"model": "tiny", "input": ROWS[:64], "truncate": "END"}).encode()
    for attempt in range(3):    # on a loaded machine admission may refuse it (429) before it queues: once more
        refused = counter(served, route, 429)
        with ThreadPoolExecutor(1) as pool:
            ahead = pool.submit(httpx.post, f"{served.api_url}/embeddings", content=HEAVY, timeout=30)
            while metric(served, "nvembed_queue_rows") < len(ROWS) / 2:    # its rows are in the queue
                time.sleep(0.02)
            with socket.create_connection(("127.0.0.1", served.port)) as s:   # leaves while queued behind them
                s.sendall(head + b"Content-Length: %d\r\n\r\n" % len(leaver) + leaver)
                wait = time.monotonic() + 5     # until the app holds it (in flight: the heavy one, it, this scrape)
                while metric(served, "nvembed_requests_in_flight") < 3 and time.monotonic() < wait:
                    time.sleep(0.02)
                time.sleep(0.1)
            assert ahead.result().status_code == 200, ahead.result().text
        if counter(served, route, 429) == refused:
            break
    deadline = time.monotonic() + 5
    while counter(served, route, 499) < before[499] + 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert counter(served, route, 499) == before[499] + 2
    assert counter(served, route, 500) == before[500] and counter(served, route, 200) == before[200] + attempt + 1
    new = [line for line in served.log().splitlines()[log_lines:] if "499" in line]
    assert [line.split(": ", 1)[1] for line in new] == [
        "client closed the connection while sending its body (POST /v1/embeddings): counted as 499",
        "client closed the connection while its embeddings were computed (POST /v1/embeddings): counted as 499"], new
    assert "Traceback" not in served.log()
    assert metric(served, "nvembed_queue_tokens") == 0                # its rows left the queue


def test_clients_that_trickle_are_cut_off(served):
    """Finding 4: 200 connections trickling headers were held; so was a body short of its Content-Length."""
    head, head_s = exchange(served.port, *[bytes([c]) for c in b"GET /v1/health/live HTTP/1.1\r\nHost: x\r\n"],
                            pause_s=0.2)
    body, body_s = exchange(served.port, b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n"
                                         b'{"model"')
    idle, idle_s = exchange(served.port)
    assert head.startswith(b"HTTP/1.1 408 ") and b"(--header-timeout)" in head and head_s < 3
    assert body.startswith(b"HTTP/1.1 408 ") and b"read 8 of 100 bytes" in body and body_s < 3
    assert b"connection: close" in body.lower()
    assert idle == b"" and idle_s < 3


def test_overload_is_refused_with_429_not_left_to_time_out(served):
    """Finding 5: 64 clients of large requests got 504s at the deadline, never a 429."""
    def one(_):
        with httpx.Client(timeout=30) as client:
            start = time.perf_counter()
            reply = client.post(f"{served.api_url}/embeddings", content=HEAVY)
            return reply.status_code, time.perf_counter() - start, reply.headers.get("retry-after")
    with ThreadPoolExecutor(24) as pool:
        warm = [one(i) for i in range(2)]                      # the server measures its encoder's rate...
        assert [status for status, _, _ in warm] == [200, 200]
        offered = min(24, max(6, math.ceil(3 * DEADLINE_S / warm[1][1])))    # ...and we offer 3 deadlines' work
        answers = list(pool.map(one, range(offered)))
    statuses = sorted(status for status, _, _ in answers)
    assert 504 not in statuses and statuses.count(200) >= 1 and statuses.count(429) >= offered // 3, answers
    assert all(int(after) >= 1 and seconds < DEADLINE_S for status, seconds, after in answers if status == 429)


def test_metadata_names_no_host_path(served, tiny_repos):
    """Finding 7: /v1/metadata showed the preset cache, the repository and the export folders to anyone."""
    text = httpx.get(f"{served.api_url}/metadata").text
    assert str(tiny_repos["engine"].parent) not in text and str(Path.home()) not in text
    assert json.loads(text)["repository"]["name"] == tiny_repos["engine"].name


def test_schemathesis_fuzzes_the_served_openapi_document(served, tmp_path):
    """The OpenAPI document is what schema-based fuzzers read: every check must pass (positive_data_acceptance
    aside, and 413 counted as a rejection: schemathesis.toml says why), in 40 s."""
    command = [str(Path(sys.executable).with_name("schemathesis")), "--config-file",
               str(Path(__file__).with_name("schemathesis.toml")), "run", f"{served.api_url[:-3]}/openapi.json",
               "--checks", "all", "--exclude-checks", "positive_data_acceptance", "--max-time", "40", "--seed", "7",
               "--workers", "2", "--report", "json", "--report-dir", str(tmp_path)]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=tmp_path)  # its cache: not in the repo
    report = json.loads(next(tmp_path.glob("*.json")).read_text())
    assert proc.returncode == 0 and report["failures"] == [] and report["errors"] == [], proc.stdout[-3000:]
    assert report["operations"]["tested"] == len(ENDPOINTS) and report["test_cases"]["generated"] > 200, report["test_cases"]
    assert served.process.poll() is None and httpx.get(f"{served.api_url}/health/ready").status_code == 200
