"""The deployment against a live server: `nvembed-trt serve` (front door + the bundled Triton) on the tiny repository,
started with the options and ports the generated Deployment uses. The probes answer on the paths the manifests use,
/v1/metrics exports the histogram the HPA's adapter rule reads, Triton exports its queue metric, and SIGTERM ends the
server within the pod's grace period. Needs the front door (nvembed_trt.serving), which the lead is landing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("nvembed_trt.serving", reason="the front door (nvembed_trt.serving) is not on this branch yet")
parser = pytest.importorskip("prometheus_client.parser", reason="prometheus-client is not installed")

from nvembed_trt.deploy import contract as c  # noqa: E402
from nvembed_trt.deploy import k8s  # noqa: E402
from nvembed_trt.deploy.spec import DeployOptions, resolve  # noqa: E402
from nvembed_trt.serving.process import free_ports  # noqa: E402


def _get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as reply:
            return reply.status, reply.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError:        # not listening yet (connection refused)
        return 0, b""


@pytest.fixture(scope="module")
def live(onnx_repo):
    spec = resolve(onnx_repo, DeployOptions())
    api, http, grpc, metrics = free_ports(4)
    args = k8s.serve_args(spec, str(onnx_repo))
    # the pod's command with free loopback ports and the bundled tritonserver (no NGC image here)
    ports = {"--port": api, "--http-port": http, "--grpc-port": grpc, "--metrics-port": metrics}
    for flag, value in ports.items():
        args[args.index(flag) + 1] = str(value)
    for flag in ("--host", "--triton-host"):
        args[args.index(flag) + 1] = "127.0.0.1"
    i = args.index("--tritonserver")
    del args[i:i + 2]
    cmd = [str(Path(sys.executable).parent / "nvembed-trt"), *args[1:]]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    base = f"http://127.0.0.1:{api}"
    deadline = time.monotonic() + 180
    try:
        while _get(f"{base}{c.HEALTH_READY}", 2)[0] != 200:
            assert proc.poll() is None, proc.stdout.read()
            assert time.monotonic() < deadline, "front door not ready after 180 s"
            time.sleep(0.5)
        yield {"spec": spec, "proc": proc, "base": base, "triton_metrics": f"http://127.0.0.1:{metrics}/metrics"}
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_probe_paths_answer(live):
    status, body = _get(f"{live['base']}{c.HEALTH_READY}")
    assert status == 200 and json.loads(body)["ready"] is True
    assert _get(f"{live['base']}{c.HEALTH_LIVE}")[0] == 200


def test_hpa_metric_is_exported(live):
    model = json.loads(_get(f"{live['base']}/v1/models")[1])["data"][0]["id"]
    request = urllib.request.Request(f"{live['base']}/v1/embeddings", method="POST",
                                     data=json.dumps({"input": ["a queue sample"], "model": model}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as reply:
        assert reply.status == 200
    status, body = _get(f"{live['base']}{c.METRICS_PATH}")
    assert status == 200
    families = {f.name: f for f in parser.text_string_to_metric_families(body.decode())}
    assert c.QUEUE_HISTOGRAM in families, sorted(families)
    count = [s.value for s in families[c.QUEUE_HISTOGRAM].samples if s.name == f"{c.QUEUE_HISTOGRAM}_count"]
    assert count and sum(count) >= 1
    # the parser names counter families without _total
    assert [m for m in c.FRONT_DOOR_METRICS if m.removesuffix("_total") not in families] == []
    status, body = _get(live["triton_metrics"])
    assert status == 200 and "nv_inference_queue_duration_us" in body.decode()


def test_sigterm_ends_within_the_grace_period(live):
    proc, spec = live["proc"], live["spec"]
    start = time.monotonic()
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=spec.termination_grace_s + 30)
    assert time.monotonic() - start <= spec.termination_grace_s - spec.prestop_s
