"""Hostile requests against a running deployment (the front door and Triton's KServe ports), interleaved with valid
ones, for the reliability tests (test_reliability.py). Each kind is a small generator of one request; the report
counts answers by kind and status, the slowest answer, transport failures (a crash shows as refused connections),
and whether every interleaved valid request got the right vector."""

from __future__ import annotations

import json
import random
import socket
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import httpx
import numpy as np


@dataclass(frozen=True)
class Hostile:
    kind: str
    face: str            # "api" (front door), "kserve-http" or "raw" (bytes on the front door's socket)
    method: str = "POST"
    path: str = "/v1/embeddings"
    body: bytes = b""
    headers: dict = field(default_factory=dict)


def _j(value) -> bytes:
    return json.dumps(value).encode()


def catalogue(model: str, rng: random.Random, max_inputs: int, max_input_bytes: int) -> list[Callable[[], Hostile]]:
    """Generators of hostile requests, one per kind (the issue's reproducers among them)."""
    word = lambda: "".join(rng.choice("abcdefghij ") for _ in range(rng.randint(1, 40)))  # noqa: E731
    api = lambda kind, body, **kw: Hostile(kind, "api", body=body, **kw)  # noqa: E731
    kserve = "/v2/models/nv_embed/infer"
    return [
        lambda: api("random-bytes", bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 300)))),
        lambda: api("truncated-json", _j({"model": model, "input": [word()]})[:rng.randint(1, 20)]),
        lambda: api("deep-nesting", b"[" * 130_000 + b"]" * 130_000),
        lambda: api("deep-object", b'{"a":' * 50_000 + b"1" + b"}" * 50_000),
        lambda: api("not-an-object", _j(rng.choice([[1, 2], "text", 3.5, None, True]))),
        lambda: api("input-wrong-type", _j({"model": model, "input": rng.choice([5, [1, -2], [[]], {"a": 1}, None,
                                                                                  ["ok", 3]])})),
        lambda: api("tiktoken-ids", _j({"model": model, "input": [[rng.randint(32000, 100255)] * rng.randint(1, 9)]})),
        lambda: api("bad-embedding-type", _j({"model": model, "input": "x",
                                              "embedding_type": rng.choice(["int8", "uint8", "bits", 8])})),
        lambda: Hostile("tei-bad-body", "api", path=rng.choice(["/embed", "/", "/tokenize", "/decode"]),
                        body=_j(rng.choice([{"inputs": []}, {"inputs": "x", "normalize": False}, {"ids": [-1]},
                                            {"inputs": "x", "prompt_name": "nope"}, {"ids": [[40000]]}]))),
        lambda: api("missing-field", _j(rng.choice([{"model": model}, {"input": "x"}, {}]))),
        lambda: api("unknown-field", _j({"model": model, "input": "x", rng.choice(["foo", "temperature"]): 1})),
        lambda: api("unknown-model", _j({"model": word() or "m", "input": "x"})),
        lambda: api("bad-enum", _j({"model": model, "input": "x",
                                    rng.choice(["input_type", "truncate", "encoding_format"]): word() or "z"})),
        lambda: api("bad-dimensions", _j({"model": model, "input": "x", "dimensions": rng.choice([-1, 0, 7, 10**12,
                                                                                                   "64", 1.5])})),
        lambda: api("empty-inputs", _j({"model": model, "input": rng.choice([[], "", ["ok", ""]])})),
        lambda: api("too-many-inputs", _j({"model": model, "input": ["x"] * (max_inputs + 1)})),
        lambda: api("oversize-input", _j({"model": model, "input": "é" * (max_input_bytes // 2 + 10)})),
        lambda: api("over-long-none", _j({"model": model, "input": "word " * 2000, "truncate": "NONE"})),
        lambda: api("huge-text-end", _j({"model": model, "input": "a b " * (max_input_bytes // 5),
                                         "truncate": rng.choice(["END", "START"])})),
        lambda: api("invalid-utf8", b'{"model": "' + model.encode() + b'", "input": "\xff\xfe\xfd"}'),
        lambda: api("lone-surrogate", b'{"model": "' + model.encode() + b'", "input": "\\ud800x"}'),
        lambda: api("control-chars", _j({"model": model, "input": "\x00\x01\x07\x1b[31m" + word()})),
        lambda: api("special-tokens", _j({"model": model, "input": "</s><s><unk>" * rng.randint(1, 50),
                                          "instruction": "<s>" * rng.randint(0, 5), "truncate": "END"})),
        lambda: api("wrong-content-type", _j({"model": model, "input": "x"}), headers={"Content-Type": "text/xml"}),
        lambda: Hostile("wrong-method", "api", method=rng.choice(["GET", "PUT", "DELETE", "PATCH"])),
        lambda: Hostile("unknown-path", "api", path=rng.choice(["/v1/../../etc/passwd", "/v2/models", "/", "/v1/"
                                                                "embeddings/x", "/%00", "/v1/" + "a" * 5000])),
        lambda: Hostile("garbage-http", "raw", body=rng.choice([b"GARBAGE\r\n\r\n", b"POST / HTTP/1.1\r\nContent-"
                                                                b"Length: -5\r\n\r\n", b"\x16\x03\x01\x00\xa5",
                                                                b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n"])),
        lambda: Hostile("kserve-deep-nesting", "kserve-http", path=kserve, body=b"[" * 130_000 + b"]" * 130_000),
        lambda: Hostile("kserve-huge-shape", "kserve-http", path=kserve, body=_j({"inputs": [
            {"name": "TEXT", "shape": [1099511627776, 1], "datatype": "BYTES", "data": ["x"]}]})),
        lambda: Hostile("kserve-missing-text", "kserve-http", path=kserve, body=_j({"inputs": [
            {"name": "INPUT_TYPE", "shape": [1, 1], "datatype": "BYTES", "data": ["query"]}]})),
        lambda: Hostile("kserve-malformed", "kserve-http", path=kserve,
                        body=rng.choice([b"{bad", b"[]", b'{"inputs": 5}', b'{"inputs": [{"name": 1}]}'])),
        lambda: Hostile("kserve-bad-rows", "kserve-http", path=kserve, body=_j({"inputs": [
            {"name": "TEXT", "shape": [2, 1], "datatype": "BYTES", "data": ["x", ""]},
            {"name": "TRUNCATE", "shape": [2, 1], "datatype": "BYTES", "data": ["END", "SIDEWAYS"]}]})),
    ]


@dataclass
class FuzzReport:
    sent: int = 0
    by_kind: dict = field(default_factory=dict)
    statuses: Counter = field(default_factory=Counter)
    server_errors: list = field(default_factory=list)      # 5xx from the front door
    transport_errors: list = field(default_factory=list)   # refused / reset: a crash shows here
    slowest_s: float = 0.0
    valid: int = 0
    valid_wrong: list = field(default_factory=list)
    wall_s: float = 0.0

    def summary(self) -> dict:
        return {"sent": self.sent, "kinds": len(self.by_kind), "statuses": dict(self.statuses),
                "server_errors": len(self.server_errors), "transport_errors": len(self.transport_errors),
                "slowest_s": round(self.slowest_s, 2), "valid": self.valid, "valid_wrong": len(self.valid_wrong),
                "wall_s": round(self.wall_s, 1), "requests_per_s": round(self.sent / max(self.wall_s, 1e-9), 1)}


def _raw(host: str, port: int, payload: bytes) -> int:
    """The status of an answer to raw bytes; 0 when the server just closes (a fine answer to garbage)."""
    with socket.create_connection((host, port), timeout=30) as s:
        try:
            s.sendall(payload)
            s.shutdown(socket.SHUT_WR)
            reply = s.recv(64)
        except (ConnectionResetError, BrokenPipeError):
            return 0
    return int(reply.split()[1]) if reply.startswith(b"HTTP/") else 0


def run_fuzz(api_url: str, kserve_http: str, model: str, count: int, valid: list[str],
             expected: np.ndarray, valid_every: int = 10, workers: int = 8, seed: int = 0,
             max_inputs: int = 2048, max_input_bytes: int = 1 << 20) -> FuzzReport:
    """Send `count` hostile requests (kinds in turn, random content) from `workers` threads; every `valid_every`-th
    request is instead a valid one, checked against `expected` (cosine >= 0.9999)."""
    rng = random.Random(seed)
    kinds = catalogue(model, rng, max_inputs, max_input_bytes)
    base = api_url.removesuffix("/v1")
    host, port = base.removeprefix("http://").split(":")
    report = FuzzReport()
    plan = [("valid", i % len(valid)) if i % valid_every == 0 else ("hostile", kinds[i % len(kinds)]())
            for i in range(count)]

    def one(item):
        what, payload = item
        start = time.perf_counter()
        try:
            with httpx.Client(timeout=60) as client:
                if what == "valid":
                    reply = client.post(f"{api_url}/embeddings", json={"model": model, "input": valid[payload]})
                    vector = np.asarray(reply.json()["data"][0]["embedding"], dtype=np.float32)
                    ok = reply.status_code == 200 and float(vector @ expected[payload]) >= 0.9999
                    return "valid", reply.status_code, time.perf_counter() - start, ok
                if payload.face == "raw":
                    status = _raw(host, int(port), payload.body)
                else:
                    url = (base if payload.face == "api" else f"http://{kserve_http}") + payload.path
                    status = client.request(payload.method, url, content=payload.body or None,
                                            headers=payload.headers).status_code
                return payload.kind, status, time.perf_counter() - start, None
        except (httpx.TransportError, OSError) as exc:
            kind = what if what == "valid" else payload.kind
            return kind, f"transport: {type(exc).__name__}", time.perf_counter() - start, False
    start = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        for (what, payload), (kind, status, seconds, ok) in zip(plan, pool.map(one, plan)):
            report.sent += 1
            report.by_kind[kind] = report.by_kind.get(kind, 0) + 1
            report.statuses[str(status)] += 1
            report.slowest_s = max(report.slowest_s, seconds)
            if isinstance(status, str):
                report.transport_errors.append((kind, status))
            elif status >= 500 and (what == "valid" or payload.face == "api"):
                report.server_errors.append((kind, status))
            if what == "valid":
                report.valid += 1
                if not ok:
                    report.valid_wrong.append((payload, status))
    report.wall_s = time.perf_counter() - start
    return report
