"""The open-loop load generator against a fixed-answer server in the same event loop: Poisson arrivals (mean gap
1/rate, coefficient of variation 1), status counts, latency from the scheduled arrival, requests sent whatever the
server does (open loop: a slow server gets more connections, not fewer requests), what it could not send or was
not answered, and the CLI against a real front door is in tests/triton_repo/test_simulated.py."""

from __future__ import annotations

import asyncio
import statistics

import pytest

from nvembed_trt.serving.process import free_ports
from nvembed_trt.validation.loadgen import LoadSpec, fixed_server, open_loop, poisson_arrivals


def test_arrivals_are_poisson():
    arrivals = poisson_arrivals(1000.0, 20.0, seed=3)
    gaps = [b - a for a, b in zip(arrivals, arrivals[1:])]
    assert len(arrivals) == pytest.approx(20000, rel=0.03) and 0 < arrivals[0] and arrivals[-1] < 20.0
    assert statistics.mean(gaps) == pytest.approx(0.001, rel=0.02)
    assert statistics.stdev(gaps) / statistics.mean(gaps) == pytest.approx(1.0, abs=0.05)   # exponential gaps


def _run(spec_kwargs: dict, server_kwargs: dict) -> dict:
    port = free_ports(1)[0]

    async def main():
        server = await fixed_server("127.0.0.1", port, body_bytes=1000, **server_kwargs)
        try:
            return await open_loop(LoadSpec(f"http://127.0.0.1:{port}/v1/embeddings", bodies=(b'{"input": "x"}',),
                                            **spec_kwargs))
        finally:
            server.close()
    return asyncio.run(main())


def test_rate_statuses_and_latency():
    report = _run({"rate": 300.0, "duration_s": 1.5, "warmup_s": 0.2, "seed": 1},
                  {"delay_s": 0.02, "statuses": (200, 200, 429)})
    counted = sum(report["statuses"].values())
    assert report["sent"] == report["scheduled"] and report["not_sent"] == 0
    assert report["statuses"]["429"] == pytest.approx(counted / 3, abs=2)
    assert report["achieved_per_s"] == pytest.approx(200, rel=0.2)                   # 2 of 3 answers are 200
    assert 20.0 <= report["p50_ms"] < 40.0 and report["p99_ms"] >= report["p50_ms"]
    assert report["generator_cpu_us_per_request"] > 0


def test_open_loop_keeps_sending_to_a_slow_server():
    """100 requests/s to a server that takes 300 ms: every request is sent on time (about 30 in flight at once), and
    latency is the server's 300 ms, not shortened by waiting to send."""
    report = _run({"rate": 100.0, "duration_s": 1.0, "seed": 2}, {"delay_s": 0.3})
    assert report["sent"] == report["scheduled"] == report["statuses"]["200"]
    assert report["connections"] >= 20 and report["send_lag_p99_ms"] < 20
    assert 300.0 <= report["p50_ms"] < 360.0


def test_what_it_cannot_send_or_is_not_answered_is_counted():
    capped = _run({"rate": 200.0, "duration_s": 0.5, "max_connections": 5, "seed": 4}, {"delay_s": 0.2})
    assert capped["connections"] == 5 and capped["not_sent"] > 50 and capped["sent"] + capped["not_sent"] == \
        capped["scheduled"]
    late = _run({"rate": 50.0, "duration_s": 0.3, "timeout_s": 0.3, "seed": 5}, {"delay_s": 2.0})
    assert late["statuses"] == {"unanswered": late["sent"]} and late["achieved_per_s"] == 0
