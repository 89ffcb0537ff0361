"""The KServe face end to end with a real Triton server (the one in nvidia-pytriton) on free loopback ports: nv_embed
over HTTP and gRPC against the reference, requests larger than the encoder's batch, concurrency, bad requests that
leave the server serving. The front door (`nvembed-trt serve`) is tested in tests/serving."""

from __future__ import annotations

import socket
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from nvembed_trt.cli.main import main
from nvembed_trt.client import ClientError, EmbeddingClient
from nvembed_trt.errors import InputError
from nvembed_trt.tokenizer import INPUT_TYPES
from nvembed_trt.export import onnx_from_model
from nvembed_trt.triton import TritonServer, repo_from_encoder
from nvembed_trt.triton.meta import RepoMeta
from nvembed_trt.triton.repository import RepoSettings
from nvembed_trt.serving.process import free_ports
from nvembed_trt.triton.server import ServerError, pytriton_root
from texts import SENTENCES

try:
    pytriton_root()
except Exception as exc:  # noqa: BLE001
    pytest.skip(f"nvidia-pytriton is not installed ({exc})", allow_module_level=True)

MAX_BATCH = 8        # the encoder's; a KServe request may carry more rows (nv_embed packs them)
MAX_ROWS = 32        # rows per KServe request


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    root = tmp_path_factory.mktemp("triton")
    export = onnx_from_model("tiny", root / "export", pooling="ensemble")
    return repo_from_encoder("tiny", export.directory, root / "repo",
                             RepoSettings(max_batch_size=MAX_BATCH, max_length=64, max_request_rows=MAX_ROWS))


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
    texts = SENTENCES * 4                     # 28 rows in one request: more than the encoder's batch of 8
    got = client.embed(texts, input_type=input_type, batch_size=len(texts))
    want = tiny.encode(texts, input_type=input_type, max_length=64)
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
    ({"TEXT": ["word " * 100], "TRUNCATE": ["NONE"]}, "Input length 103 exceeds maximum allowed token size 64"),
    ({"TEXT": ["ok"], "INPUT_TYPE": ["document"]}, "INPUT_TYPE[0] is 'document'"),
    ({"TEXT": ["ok"] * (MAX_ROWS + 1)}, "batch-size must be <= 32"),
    ({"TEXT": np.ones((1, 1), dtype=np.float32)}, "TEXT"),
    ({"INPUT_TYPE": ["query"]}, "TEXT"),
])
def test_bad_requests_fail_and_the_server_keeps_serving(server, inputs, message):
    client = EmbeddingClient(server.endpoints["http"])
    with pytest.raises(ClientError) as info:
        client.infer_raw(inputs)
    assert message in str(info.value)
    assert client.ready() and client.embed(["still serving"]).shape == (1, 64)


@pytest.mark.parametrize("truncate", ["END", "START"])
def test_truncation_modes_match_the_reference(server, tiny, truncate, cosine):
    text = "alpha " * 60 + "the very end of a long passage"
    got = EmbeddingClient(server.endpoints["grpc"], "grpc").embed([text], input_type="query", truncate=truncate)
    rows = tiny.tokenizer.encode([text], INPUT_TYPES["query"], 64, truncate)
    batch = tiny.tokenizer.batch_from_ids([rows[0].ids], INPUT_TYPES["query"])
    want = tiny._forward(batch)
    assert cosine(got, want).item() >= 0.9999


def test_client_cli(server, tmp_path, tiny, capsys):
    src, out = tmp_path / "in.txt", tmp_path / "o.npy"
    src.write_text("\n".join(SENTENCES[:3]))
    assert main(["client", "embed", "--url", server.endpoints["grpc"], "--protocol", "grpc", "--input", str(src),
                 "--output", str(out), "--input-type", "query"]) == 0
    np.testing.assert_allclose(np.load(out), tiny.encode(SENTENCES[:3], input_type="query", max_length=64), atol=1e-4)


def test_repository_errors(tmp_path, repo):
    with pytest.raises(InputError, match="neither an engine folder"):
        repo_from_encoder("tiny", tmp_path, tmp_path / "r")
    with pytest.raises(InputError, match="max_request_rows must be an integer >= 1, got 0"):
        repo_from_encoder("tiny", repo.meta.encoder_source, tmp_path / "r", RepoSettings(max_request_rows=0))


def test_bundled_server_refuses_a_tensorrt_repository(repo, tmp_path):
    import dataclasses
    import shutil

    plan_repo = tmp_path / "plan-repo"
    shutil.copytree(repo.directory, plan_repo)
    meta = RepoMeta.read(plan_repo)
    meta.updated(spec=dataclasses.replace(meta.spec, encoder_kind="tensorrt_plan")).write(plan_repo)
    with pytest.raises(ServerError, match="has no TensorRT backend: pass --tritonserver"):
        TritonServer(plan_repo, *free_ports(3)).start()
