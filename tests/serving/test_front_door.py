"""`nvembed-trt serve` as a user runs it (a child process: Triton supervised + the front door) called by the clients
RAG applications already use, unmodified: the OpenAI SDK, LangChain's NVIDIAEmbeddings, plain HTTP, our CLI; every
vector against the PyTorch reference with the right instruction; the clients' own error types carry our messages."""

from __future__ import annotations

import httpx
import numpy as np
import pytest
from langchain_nvidia_ai_endpoints import NVIDIAEmbeddings
from openai import BadRequestError, NotFoundError, OpenAI

from serving_harness import MAX_LENGTH
from nvembed_trt.cli.main import main
from nvembed_trt.client import ClientError, EmbeddingClient
from nvembed_trt.serving.process import ServeProcess
from nvembed_trt.triton.server import pytriton_root
from texts import SENTENCES

try:
    pytriton_root()
except Exception as exc:  # noqa: BLE001
    pytest.skip(f"nvidia-pytriton is not installed ({exc})", allow_module_level=True)

SHORT = [s for s in SENTENCES if len(s) < 200]       # fit max_length 64 under truncate NONE (the API's default)
DOCS = [f"Document {i}: {SHORT[i % len(SHORT)]}" for i in range(120)]


@pytest.fixture(scope="module")
def served(tiny_repos):
    with ServeProcess(tiny_repos["engine"]) as process:
        yield process


@pytest.fixture(scope="module")
def reference(tiny):
    def encode(texts, input_type=None):
        return tiny.encode(texts, input_type=input_type, max_length=MAX_LENGTH)
    return encode


def test_ready_line_names_both_faces(served):
    assert served.ready_line.startswith(f"ready: API http://127.0.0.1:{served.port}/v1 (model tiny")
    assert f"KServe HTTP 127.0.0.1:{served.http_port}, gRPC 127.0.0.1:{served.grpc_port}" in served.ready_line


@pytest.mark.parametrize("encoding", ["base64 (the SDK's default)", "float"])
def test_openai_sdk(served, reference, tiny, encoding, cosine):
    client = OpenAI(base_url=served.api_url, api_key="unused")
    kw = {} if encoding.startswith("base64") else {"encoding_format": "float"}
    passages = client.embeddings.create(model="tiny", input=SHORT, **kw)
    queries = client.embeddings.create(model="tiny", input=SHORT[:3], extra_body={"input_type": "query"}, **kw)
    got_p = np.asarray([d.embedding for d in passages.data], dtype=np.float32)
    got_q = np.asarray([d.embedding for d in queries.data], dtype=np.float32)
    assert cosine(got_p, reference(SHORT)).min().item() >= 0.9999
    assert cosine(got_q, reference(SHORT[:3], "query")).min().item() >= 0.9999
    tokens = sum(len(ids) for ids in tiny.tokenizer.encode_ids(SHORT, "", MAX_LENGTH))
    assert passages.usage.prompt_tokens == passages.usage.total_tokens == tokens


def test_openai_sdk_model_suffix_and_packed_bits(served, reference, cosine):
    """NIM's `-query` suffix chooses input_type for a client that cannot send it (the SDK's default base64 path);
    embedding_type ubinary through the SDK's extra_body: the sign bits of the reference, MSB first."""
    client = OpenAI(base_url=served.api_url, api_key="unused")
    queries = client.embeddings.create(model="tiny-query", input=SHORT[:3])
    got = np.asarray([d.embedding for d in queries.data], dtype=np.float32)
    assert queries.model == "tiny" and cosine(got, reference(SHORT[:3], "query")).min().item() >= 0.9999
    packed = client.embeddings.create(model="tiny", input=SHORT[:3], encoding_format="float",
                                      extra_body={"embedding_type": "ubinary"})
    bits = np.unpackbits(np.asarray([d.embedding for d in packed.data], dtype=np.uint8), axis=1)
    want = np.asarray(reference(SHORT[:3]))
    assert bits.shape == want.shape and np.all((bits == (want > 0)) | (np.abs(want) < 1e-4))


def test_openai_sdk_token_input(served, tiny, reference, cosine):
    """The OpenAI spec's token input through the SDK: the model's own ids of each text (no BOS, no EOS) give the
    text's embedding, and usage counts the same tokens as the text."""
    client = OpenAI(base_url=served.api_url, api_key="unused")
    ids = [tiny.tokenizer.tokenizer.encode(t, add_special_tokens=False).ids for t in SHORT[:4]]
    by_ids = client.embeddings.create(model="tiny-query", input=ids)
    by_text = client.embeddings.create(model="tiny-query", input=SHORT[:4])
    got = np.asarray([d.embedding for d in by_ids.data], dtype=np.float32)
    assert cosine(got, reference(SHORT[:4], "query")).min().item() >= 0.9999
    assert by_ids.usage.prompt_tokens == by_text.usage.prompt_tokens


def test_langchain_openai_embeddings(served, reference, cosine, monkeypatch):
    """LangChain's OpenAIEmbeddings, unmodified: with check_embedding_ctx_length=False it sends texts (queries through
    the `-query` model name); by default it sends tiktoken ids, refused with the fix named. tiktoken cannot fetch
    cl100k_base here (no network): a real tiktoken Encoding stands in whose ids lie past 32,000, as 68 % of
    cl100k_base's do."""
    import tiktoken
    from langchain_openai import OpenAIEmbeddings

    common = {"base_url": served.api_url, "api_key": "unused", "check_embedding_ctx_length": False}
    docs = np.asarray(OpenAIEmbeddings(model="tiny", **common).embed_documents(DOCS[:30]), dtype=np.float32)
    query = np.asarray([OpenAIEmbeddings(model="tiny-query", **common).embed_query(SHORT[0])], dtype=np.float32)
    assert docs.shape == (30, 64) and cosine(docs, reference(DOCS[:30])).min().item() >= 0.9999
    assert cosine(query, reference(SHORT[:1], "query")).item() >= 0.9999
    offline = tiktoken.Encoding(name="offline-stand-in", pat_str=r""" ?\w+| ?[^\s\w]+|\s+""",
                                mergeable_ranks={bytes([b]): 100_000 + b for b in range(256)}, special_tokens={})
    monkeypatch.setattr(tiktoken, "get_encoding", lambda name: offline)
    fix = r"outside tiny's vocabulary of 32000 ids.*check_embedding_ctx_length=False"
    with pytest.raises(BadRequestError, match=fix):
        OpenAIEmbeddings(model="tiny", base_url=served.api_url, api_key="unused", max_retries=0).embed_query("hello")


def test_huggingface_inference_client(served, reference, cosine):
    """Hugging Face's InferenceClient, unmodified, on TEI's routes: feature_extraction posts to the server's root
    (TEI's route for an embedding model) with TEI's fields; prompt_name chooses the instruction; errors carry our
    message."""
    from huggingface_hub import InferenceClient
    from huggingface_hub.errors import HfHubHTTPError

    client = InferenceClient(base_url=served.api_url.removesuffix("/v1"))
    docs, queries = client.feature_extraction(DOCS[:20]), client.feature_extraction(SHORT[:3], prompt_name="query")
    assert docs.shape == (20, 64) and cosine(docs, reference(DOCS[:20])).min().item() >= 0.9999
    assert cosine(queries, reference(SHORT[:3], "query")).min().item() >= 0.9999
    cut = client.feature_extraction("word " * 500, truncate=True, truncation_direction="left")
    assert cut.shape == (1, 64) and abs(float(np.linalg.norm(cut)) - 1) < 1e-4
    with pytest.raises(HfHubHTTPError, match=r"Input length \d+ exceeds maximum allowed token size 64"):
        client.feature_extraction("word " * 500)


LANGCHAIN_HF = """
import asyncio, json, sys
import huggingface_hub
from huggingface_hub import AsyncInferenceClient, InferenceClient
from langchain_huggingface import HuggingFaceEndpointEmbeddings

url, texts, query = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
try:
    HuggingFaceEndpointEmbeddings(model=url)
    refused = None
except ValueError as exc:
    refused = str(exc)


def pointed(**settings):
    embeddings = HuggingFaceEndpointEmbeddings(model="nvidia/NV-Embed-v2", **settings)
    embeddings.client, embeddings.async_client = InferenceClient(base_url=url), AsyncInferenceClient(base_url=url)
    return embeddings


print(json.dumps({"hub": huggingface_hub.__version__, "refused": refused,
                  "docs": pointed().embed_documents(texts),
                  "query": pointed(model_kwargs={"prompt_name": "query"}).embed_query(query),
                  "async_docs": asyncio.run(pointed().aembed_documents(texts[:3]))}))
"""


def test_langchain_huggingface_endpoint_embeddings(served, reference, cosine):
    """LangChain's HuggingFaceEndpointEmbeddings, unmodified, in its own import path (it needs huggingface-hub<2):
    since 1.2.2 it refuses a URL as `model`, so its public `client` / `async_client` fields are pointed at the server
    (the documented way, docs/clients.md); documents, a query (model_kwargs prompt_name) and the async path against
    the reference."""
    import json
    import subprocess
    import sys

    from conftest import langchain_hf_env

    url = served.api_url.removesuffix("/v1")
    proc = subprocess.run([sys.executable, "-c", LANGCHAIN_HF, url, json.dumps(DOCS[:12]), SHORT[0]],
                          env=langchain_hf_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout)
    assert got["hub"].startswith("1.") and "must be a HuggingFace repo ID, not a URL" in got["refused"]
    docs, query = np.asarray(got["docs"], dtype=np.float32), np.asarray([got["query"]], dtype=np.float32)
    assert docs.shape == (12, 64) and cosine(docs, reference(DOCS[:12])).min().item() >= 0.9999
    assert cosine(query, reference(SHORT[:1], "query")).item() >= 0.9999
    assert cosine(np.asarray(got["async_docs"]), reference(DOCS[:3])).min().item() >= 0.9999


def test_output_ranges_calibrated_through_the_server_serve_int8(served, tiny_repos, tmp_path, cosine):
    """`nvembed-trt output-ranges` measures the served encoder's per-dimension ranges on the shipped calibration text
    and stores them with the repository; a server of that repository then answers int8 / uint8 (exactly our
    quantisation of its own floats, stated in /v1/metadata); ranges of another encoder are refused at start."""
    import asyncio
    import json
    import shutil

    from serving_harness import build, call
    from nvembed_trt.errors import NVEmbedError
    from nvembed_trt.serving.compact import OutputRanges, int8, uint8

    repo = shutil.copytree(tiny_repos["engine"], tmp_path / "repo")
    assert main(["output-ranges", "--repo", str(repo), "--url", served.api_url, "--max-texts", "256"]) == 0
    ranges = OutputRanges.find(repo)
    assert ranges.texts == 256 and len(ranges.low) == 64 and all(lo < hi for lo, hi in zip(ranges.low, ranges.high))
    service, app = build(repo)

    async def requests(client):
        bodies = [{"model": "tiny", "input": SHORT, "embedding_type": kind} for kind in ("float", "int8", "uint8")]
        replies = await asyncio.gather(*[client.post("/v1/embeddings", json=body) for body in bodies])
        return [r.json() for r in replies] + [(await client.get("/v1/metadata")).json()]
    floats, signed, unsigned, meta = call(service, app, requests)
    vectors = np.asarray([d["embedding"] for d in floats["data"]], dtype=np.float32)
    got_int8 = np.asarray([d["embedding"] for d in signed["data"]])
    assert np.array_equal(got_int8, int8(vectors, ranges))
    assert np.array_equal(np.asarray([d["embedding"] for d in unsigned["data"]]), uint8(vectors, ranges))
    assert got_int8.min() >= -128 and got_int8.max() <= 127
    low, high = ranges.arrays()
    restored = low + (got_int8 + 128) * (high - low) / 255                       # dequantised
    assert cosine(restored, vectors).min().item() >= 0.99   # measured 0.996: rows past the calibrated range clip
    assert meta["output_ranges"]["low"] == ranges.low and meta["embedding_types"][-2:] == ["int8", "uint8"]
    stale = json.loads((repo / "output_ranges.json").read_text())
    (repo / "output_ranges.json").write_text(json.dumps({**stale, "encoder_sha256": "0" * 64}))
    with pytest.raises(NVEmbedError, match="measured on another encoder"):
        build(repo)


def test_client_compare_reports_fleet_drift_against_a_budget(served, tmp_path, capsys):
    """`client compare A B`: the held-out set through both front doors, row cosine and top-10 agreement with A's
    index, both engines' fingerprints. Here A and B are one server (no second one is started in CI): no drift
    (exit 1 past the budget: test_fleet_drift.py, against a stand-in front door that drifts)."""
    import json

    args = ["client", "compare", "--a", served.api_url, "--b", served.api_url, "--pairs", "40"]
    assert main([*args, "--report", str(tmp_path / "drift.json")]) == 0
    report = json.loads((tmp_path / "drift.json").read_text())
    assert report["cosine"]["min"] >= 0.99999 and report["top10_agreement"]["index_a_queries_b"] == 1.0
    assert report["a"]["engine"] == report["b"]["engine"] and report["a"]["engine"].startswith("plan=")
    assert report["set"]["queries"] == 40 and report["within_budget"]
    assert "40 queries, 40 passages: cosine min" in capsys.readouterr().out


def test_openai_sdk_errors_carry_our_messages(served):
    client = OpenAI(base_url=served.api_url, api_key="unused", max_retries=0)
    with pytest.raises(BadRequestError, match=r"Input length \d+ exceeds maximum allowed token size 64"):
        client.embeddings.create(model="tiny", input="word " * 500)
    with pytest.raises(NotFoundError, match="model 'gpt' is not served here; served models: tiny"):
        client.embeddings.create(model="gpt", input="x")


def test_langchain_nvidia_embeddings(served, reference, cosine):
    embeddings = NVIDIAEmbeddings(base_url=served.api_url, model="tiny")
    query = np.asarray(embeddings.embed_query(SHORT[0]), dtype=np.float32)[None]
    docs = np.asarray(embeddings.embed_documents(DOCS), dtype=np.float32)     # batches of 50, truncate NONE
    assert cosine(query, reference(SHORT[:1], "query")).item() >= 0.9999
    assert docs.shape == (120, 64) and cosine(docs, reference(DOCS)).min().item() >= 0.9999
    with pytest.raises(Exception, match=r"\[400\].*Input length \d+ exceeds maximum allowed token size 64"):
        embeddings.embed_query("word " * 500)
    with pytest.raises(Exception, match=r"\[404\].*model 'nope' is not served here"):
        NVIDIAEmbeddings(base_url=served.api_url, model="nope").embed_query("x")


def test_plain_http_and_instruction_extension(served, tiny, cosine):
    instruction = "Instruct: Retrieve semantically similar text\nQuery: "
    reply = httpx.post(f"{served.api_url}/embeddings", json={"model": "tiny", "input": SHORT[1],
                                                             "instruction": instruction})
    assert reply.status_code == 200
    got = np.asarray(reply.json()["data"][0]["embedding"], dtype=np.float32)[None]
    assert cosine(got, tiny.encode([SHORT[1]], instruction=instruction, max_length=MAX_LENGTH)).item() >= 0.9999
    bad = httpx.post(f"{served.api_url}/embeddings", content=b"{oops", headers={"Content-Type": "application/json"})
    assert bad.status_code == 400 and "not valid JSON" in bad.json()["error"]["message"]


def test_largest_request_and_both_faces_agree(served, reference, cosine):
    texts = [f"{i} {SHORT[i % len(SHORT)]}" for i in range(2048)]
    front = EmbeddingClient(served.api_url).embed(texts, batch_size=2048)
    kserve = EmbeddingClient(served.kserve["grpc"], "grpc").embed(texts[:64], batch_size=64)
    assert front.shape == (2048, 64)
    assert cosine(front[:64], kserve).min().item() >= 0.99999
    assert cosine(front[::97], reference(texts[::97])).min().item() >= 0.9999
    with pytest.raises(ClientError, match=r"\[413\] input has 2049 items, above the limit of 2048 per request"):
        EmbeddingClient(served.api_url).embed(texts + ["one more"], batch_size=4096)


def test_client_cli_through_the_front_door(served, tmp_path, reference):
    src, out = tmp_path / "in.txt", tmp_path / "o.npy"
    src.write_text("\n".join(SHORT))
    assert main(["client", "embed", "--url", served.api_url, "--input", str(src), "--output", str(out),
                 "--input-type", "query"]) == 0
    np.testing.assert_allclose(np.load(out), reference(SHORT, "query"), atol=1e-4)


def test_metrics_from_both_faces(served):
    EmbeddingClient(served.api_url).embed(SHORT)
    ours = httpx.get(f"{served.api_url}/metrics").text
    triton = httpx.get(served.kserve["metrics"]).text
    assert 'nvembed_requests_total{route="/v1/embeddings",status="200"}' in ours
    assert "nvembed_queue_duration_seconds_count" in ours and "nvembed_ready 1.0" in ours
    assert 'nv_inference_queue_duration_us{model="encoder"' in triton
