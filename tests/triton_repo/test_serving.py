"""End to end with a real Triton server (the one in nvidia-pytriton) on free loopback ports: HTTP and gRPC against
the reference, concurrency, bad requests that leave the server serving, and a clean stop."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from nvembed_trt.cli.main import main
from nvembed_trt.client import ClientError, EmbeddingClient
from nvembed_trt.errors import InputError
from nvembed_trt.export import onnx_from_model
from nvembed_trt.triton import TritonServer, repo_from_encoder
from nvembed_trt.triton.server import pytriton_root
from nvembed_trt.triton.smoke import free_ports
from texts import SENTENCES

try:
    pytriton_root()
except Exception as exc:  # noqa: BLE001
    pytest.skip(f"nvidia-pytriton is not installed ({exc})", allow_module_level=True)

MAX_BATCH = 8


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    root = tmp_path_factory.mktemp("triton")
    export = onnx_from_model("tiny", root / "export", pooling="ensemble")
    return repo_from_encoder("tiny", export.directory, root / "repo", max_batch_size=MAX_BATCH, max_length=64)


@pytest.fixture(scope="module")
def server(repo):
    http, grpc, metrics = free_ports(3)
    with TritonServer(repo.directory, http, grpc, metrics) as running:
        yield running
    for port in (http, grpc, metrics):  # freed once stopped
        assert_free(port)


def assert_free(port: int) -> None:
    """Nothing listens on the port: bind + listen succeed (SO_REUSEADDR, as a restarted server would bind,
    tolerates the TIME_WAIT sockets that finished connections leave)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        s.listen()


@pytest.mark.parametrize("protocol", ["http", "grpc"])
@pytest.mark.parametrize("input_type", ["query", "passage"])
def test_served_embeddings_match_reference(server, tiny, protocol, input_type, cosine):
    client = EmbeddingClient(server.endpoints[protocol], protocol)
    got = client.embed(SENTENCES, input_type=input_type, batch_size=3)
    want = tiny.encode(SENTENCES, input_type=input_type, max_length=64)
    assert got.shape == want.shape and cosine(got, want).min().item() >= 0.9999


def test_32_concurrent_clients_get_serial_results(server):
    serial = EmbeddingClient(server.endpoints["http"]).embed(SENTENCES, batch_size=1)

    def one(i):
        return i, EmbeddingClient(server.endpoints["http"]).embed([SENTENCES[i % len(SENTENCES)]])[0]
    with ThreadPoolExecutor(32) as pool:
        results = list(pool.map(one, range(64)))
    for i, vector in results:
        assert np.abs(vector - serial[i % len(SENTENCES)]).max() < 1e-5


@pytest.mark.parametrize("inputs, message", [
    ({"TEXT": [""]}, "TEXT[0] is empty"),
    ({"TEXT": [b"\xff\xfe"]}, "TEXT[0] is not valid UTF-8"),
    ({"TEXT": ["word " * 100], "TRUNCATE": ["NONE"]}, "has 103 tokens, above the limit of 64"),
    ({"TEXT": ["ok"], "INPUT_TYPE": ["document"]}, "INPUT_TYPE[0] is 'document'"),
    ({"TEXT": ["ok"] * (MAX_BATCH + 1)}, "batch-size must be <= 8"),
    ({"TEXT": np.ones((1, 1), dtype=np.float32)}, "TEXT"),
])
def test_bad_requests_fail_and_the_server_keeps_serving(server, inputs, message):
    client = EmbeddingClient(server.endpoints["http"])
    with pytest.raises(ClientError) as info:
        client.infer_raw(inputs)
    assert message in str(info.value)
    assert client.ready() and client.embed(["still serving"]).shape == (1, 64)


def test_truncate_end_accepts_long_text(server):
    vector = EmbeddingClient(server.endpoints["grpc"], "grpc").embed(["word " * 100], truncate="END")
    assert np.isclose(np.linalg.norm(vector), 1.0, atol=1e-4)


def test_client_cli(server, tmp_path, tiny, capsys):
    src, out = tmp_path / "in.txt", tmp_path / "o.npy"
    src.write_text("\n".join(SENTENCES[:3]))
    assert main(["client", "embed", "--url", server.endpoints["grpc"], "--protocol", "grpc", "--input", str(src),
                 "--output", str(out), "--input-type", "query"]) == 0
    np.testing.assert_allclose(np.load(out), tiny.encode(SENTENCES[:3], input_type="query", max_length=64), atol=1e-4)


def test_serve_command_stops_cleanly_on_sigterm(repo, tmp_path):
    http, grpc, metrics = free_ports(3)
    proc = subprocess.Popen([str(Path(sys.executable).parent / "nvembed-trt"), "serve", "--repo", str(repo.directory),
                             "--http-port", str(http), "--grpc-port", str(grpc), "--metrics-port", str(metrics)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=os.environ.copy())
    try:
        first = proc.stdout.readline()
        assert first.startswith(f"ready: HTTP 127.0.0.1:{http}"), first
        assert EmbeddingClient(f"127.0.0.1:{http}").embed(["hello"]).shape == (1, 64)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0 and "stopped" in proc.stdout.read()
    finally:
        proc.kill()
    assert_free(http)


def test_repository_errors(tmp_path):
    with pytest.raises(InputError, match="neither an engine folder"):
        repo_from_encoder("tiny", tmp_path, tmp_path / "r")
