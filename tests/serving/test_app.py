"""The front door in-process (FastAPI app + service + batcher) with a real ONNX Runtime encoder: the API's schema,
vectors against the PyTorch reference, batched = single, every error status with a message naming the limit and
the value, auth, health, metrics and metadata. The same app over a real Triton is tested in test_front_door.py."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path

import numpy as np
import pytest

from serving_harness import MAX_LENGTH, build, call
from nvembed_trt.tokenizer import INPUT_TYPES
from texts import SENTENCES, random_strings

MODEL = "tiny"


def post(client, body, **kw):
    return client.post("/v1/embeddings", content=body if isinstance(body, (bytes, str)) else json.dumps(body), **kw)


@pytest.mark.parametrize("pooling", ["engine", "ensemble"])
@pytest.mark.parametrize("encoding", ["float", "base64"])
def test_vectors_match_the_reference_in_input_order(tiny_repos, tiny, pooling, encoding, cosine):
    service, app = build(tiny_repos[pooling])
    texts = SENTENCES + ["x" * 3]

    async def requests(client):
        return (await post(client, {"model": MODEL, "input": texts, "input_type": "query", "truncate": "END",
                                    "encoding_format": encoding})).json()
    body = call(service, app, requests)
    assert body["object"] == "list" and body["model"] == MODEL
    assert [d["index"] for d in body["data"]] == list(range(len(texts)))
    rows = [d["embedding"] for d in body["data"]]
    got = (np.stack([np.frombuffer(base64.b64decode(r), "<f4") for r in rows]) if encoding == "base64"
           else np.asarray(rows, dtype=np.float32))
    want = tiny.encode(texts, input_type="query", max_length=MAX_LENGTH)
    assert cosine(got, want).min().item() >= 0.99999
    tokens = sum(len(r) for r in tiny.tokenizer.encode_ids(texts, INPUT_TYPES["query"], MAX_LENGTH))
    assert body["usage"] == {"prompt_tokens": tokens, "total_tokens": tokens}


def test_batched_equals_single_and_any_client_batch_size(tiny_repos, cosine):
    service, app = build(tiny_repos["engine"])
    texts = random_strings(300, seed=11)
    texts = ([t for t in texts if t.strip()] * 10)[:2048]      # OpenAI's maximum, mixed lengths and scripts

    async def requests(client):
        together = (await post(client, {"model": MODEL, "input": texts, "truncate": "END"})).json()
        singles = await asyncio.gather(*[post(client, {"model": MODEL, "input": t, "truncate": "END"})
                                         for t in texts[:40]])
        return together, [r.json() for r in singles]
    together, singles = call(service, app, requests)
    batched = np.asarray([d["embedding"] for d in together["data"]], dtype=np.float32)
    single = np.asarray([s["data"][0]["embedding"] for s in singles], dtype=np.float32)
    assert batched.shape == (2048, 64)
    assert cosine(batched[:40], single).min().item() >= 0.99999
    limits = service.packer
    assert all(limits.covered(rows, width) for rows, width in service.backend.batches)
    assert service.metrics.padding_efficiency() > 0.6


ERRORS = [
    (b"{bad json", 400, None, "request body is not valid JSON"),
    (b"[" * 5000 + b"]" * 5000, 400, None, "request body is not valid JSON"),
    (b'["a list"]', 400, None, "request body must be a JSON object, got list"),
    ({"model": MODEL}, 422, "input", "input: field required"),
    ({"input": "x"}, 422, "model", "model: field required"),
    ({"model": MODEL, "input": [1, -2]}, 422, "input", "input[1] is a negative token id"),
    ({"model": MODEL, "input": [[1], "x"]}, 422, "input", "input: must be a string, a list of strings, a list of "
                                                            "token ids (integers) or a list of lists of token ids"),
    ({"model": MODEL, "input": "x", "colour": "red"}, 422, "colour", "colour: unknown field"),
    ({"model": MODEL, "input": "x", "input_type": "document"}, 422, "input_type", "input_type: Input should be"),
    ({"model": MODEL, "input": "x", "truncate": "MIDDLE"}, 422, "truncate", "Input should be 'NONE', 'START' or 'END'"),
    # strict where the README is strict: exact enum values, real integers, a key given once
    ({"model": MODEL, "input": "x", "truncate": "none"}, 422, "truncate",
     "Input should be 'NONE', 'START' or 'END', got \"none\" (did you mean 'NONE'? the values are case-sensitive)"),
    ({"model": MODEL, "input": "x", "truncate": "End"}, 422, "truncate", "Input should be 'NONE', 'START' or 'END'"),
    ({"model": MODEL, "input": "x", "truncate": "\u017ftart"}, 422, "truncate", "Input should be 'NONE', 'START'"),
    ({"model": MODEL, "input": "x", "input_type": "Query"}, 422, "input_type", "Input should be 'query' or 'passage'"),
    ({"model": MODEL, "input": "x", "dimensions": "64"}, 422, "dimensions", "dimensions: Input should be a valid integer"),
    ({"model": MODEL, "input": "x", "dimensions": 64.0}, 422, "dimensions", "dimensions: Input should be a valid integer"),
    ({"model": MODEL, "input": "x", "dimensions": True}, 422, "dimensions",
     "dimensions: Input should be a valid integer, got true"),
    # integers past 64 bits (which orjson cannot write) shown as given, not a 500
    ({"model": MODEL, "input": "x", "truncate": [32589158477190044731]}, 422, "truncate",
     "Input should be 'NONE', 'START' or 'END', got [32589158477190044731]"),
    ({"model": MODEL, "input": "x", "dimensions": 2 ** 70}, 400, "dimensions", f"dimensions {2 ** 70} is not supported"),
    (b'{"model": "x", "model": "tiny", "input": "x"}', 400, None, 'Detected duplicate key "model"'),
    (b'{"model": "tiny", "input": "x", "user": NaN}', 400, None, "request body is not valid JSON"),
    # the instruction: its own byte limit (before any tokenisation), and room for the input after it
    ({"model": MODEL, "input": ["a"] * 10, "instruction": "x" * 30000, "truncate": "END"}, 413, "instruction",
     "instruction is 30000 bytes, above the limit of 4096 bytes (--max-instruction-bytes)"),
    ({"model": MODEL, "input": "a", "instruction": "x" * 200, "truncate": "END"}, 400, "instruction",
     "instruction is 100 tokens: the model's 64-token limit leaves no token of the input after it"),
    ({"model": MODEL, "input": "x", "encoding_format": "int8"}, 422, "encoding_format", "encoding_format"),
    ({"model": "other", "input": "x"}, 404, "model", "model 'other' is not served here; served models: tiny"),
    ({"model": MODEL, "input": "x", "dimensions": 32}, 400, "dimensions",
     "dimensions 32 is not supported: tiny gives 64-dimensional embeddings"),
    ({"model": MODEL, "input": []}, 422, "input", "input is an empty list"),
    ({"model": MODEL, "input": ["ok", ""]}, 422, "input", "input[1] is an empty string"),
    ({"model": MODEL, "input": ""}, 422, "input", "input is an empty string"),
    ({"model": MODEL, "input": ["ok", 3]}, 422, "input", "input: must be a string, a list of strings, a list of"),
    ({"model": MODEL, "input": ["ok", "word " * 100]}, 400, "input",
     "Input length 103 exceeds maximum allowed token size 64 (input[1]"),
    ({"model": MODEL, "input": ["x"] * 11}, 413, "input", "input has 11 items, above the limit of 10 per request"),
    ({"model": MODEL, "input": ["é" * 300]}, 413, "input", "input[0] is 600 bytes, above the limit of 500 bytes"),
]


def test_errors_name_the_field_limit_and_value(tiny_repos):
    """Every bad request of ERRORS against one app (each followed by a good one that must still be served); all
    mismatches are reported at once."""
    service, app = build(tiny_repos["engine"], max_inputs=10, max_input_bytes=500)

    async def requests(client):
        return [(await post(client, body), await post(client, {"model": MODEL, "input": "still serving"}))
                for body, *_ in ERRORS]
    wrong = []
    for (body, status, param, message), (bad, good) in zip(ERRORS, call(service, app, requests)):
        error = bad.json()["error"]
        if not (bad.status_code == status and message in error["message"] and error["param"] == param
                and error["type"] and error["code"] and good.status_code == 200):
            wrong.append((str(body)[:60], bad.status_code, error, good.status_code))
    assert not wrong, "\n".join(map(str, wrong))


def test_limits_on_the_body_routes_and_methods(tiny_repos):
    service, app = build(tiny_repos["engine"], max_request_bytes=2048)

    async def requests(client):
        return (await post(client, {"model": MODEL, "input": "x" * 3000}), await client.get("/v1/nothing"),
                await client.get("/v1/embeddings"), await client.post("/v1/models"))
    big, missing, method, method2 = call(service, app, requests)
    assert big.status_code == 413 and "above the limit of 2048 bytes" in big.json()["error"]["message"]
    assert missing.status_code == 404 and "no route /v1/nothing; routes: /v1/embeddings" in missing.text
    assert method.status_code == 405 and method2.status_code == 405


@pytest.mark.parametrize("truncate", ["END", "START"])
def test_truncation_modes(tiny_repos, tiny, truncate, cosine):
    service, app = build(tiny_repos["engine"])
    text = "alpha " * 60 + "the end"

    async def requests(client):
        return (await post(client, {"model": MODEL, "input": text, "truncate": truncate})).json()
    got = np.asarray(call(service, app, requests)["data"][0]["embedding"], dtype=np.float32)[None]
    enc = tiny.tokenizer.encode([text], "", MAX_LENGTH, truncate)[0]
    want = tiny._forward(tiny.tokenizer.batch_from_ids([enc.ids], ""))
    assert len(enc.ids) == MAX_LENGTH and cosine(got, want).item() >= 0.99999


def test_api_key(tiny_repos):
    service, app = build(tiny_repos["engine"], api_key="s3cret")

    async def requests(client):
        body = {"model": MODEL, "input": "x"}
        return (await post(client, body), await post(client, body, headers={"Authorization": "Bearer wrong"}),
                await post(client, body, headers={"Authorization": "Bearer s3cret"}),
                await client.get("/v1/models"), await client.get("/v1/health/ready"))
    none, wrong, right, models, health = call(service, app, requests)
    assert none.status_code == wrong.status_code == models.status_code == 401
    assert "missing or wrong API key" in none.json()["error"]["message"]
    assert none.headers["www-authenticate"] == "Bearer"
    assert right.status_code == 200 and health.status_code == 200


def test_api_key_scheme_is_case_insensitive_and_given_once(tiny_repos):
    """RFC 7235: the auth scheme is case-insensitive and one or more spaces follow it; Authorization is not a list,
    so two of them are refused (400), not resolved last-wins."""
    service, app = build(tiny_repos["engine"], api_key="s3cret")
    given = [[("Authorization", "bearer s3cret")], [("Authorization", "BEARER   s3cret")],
             [("Authorization", "Basic s3cret")], [("Authorization", "Bearer s3cret"), ("Authorization", "Bearer x")],
             [("Authorization", "Bearer x"), ("Authorization", "Bearer s3cret")]]

    async def requests(client):
        return [await client.get("/v1/models", headers=headers) for headers in given]
    statuses = [r.status_code for r in call(service, app, requests)]
    assert statuses == [200, 200, 401, 400, 400], statuses


def test_health_models_metadata_metrics(tiny_repos):
    service, app = build(tiny_repos["engine"])

    async def requests(client):
        await post(client, {"model": MODEL, "input": ["a", "bb", "ccc"]})
        ready = await client.get("/v1/health/ready")
        service.set_health(False, "restarting tritonserver: test")
        unready = await client.get("/v1/health/ready")
        refused = await post(client, {"model": MODEL, "input": "x"})
        service.set_health(True, "ready")
        return (ready, unready, refused, await client.get("/v1/health/live"), await client.get("/v1/models"),
                await client.get("/v1/metadata"), await client.get("/v1/metrics"))
    ready, unready, refused, live, models, metadata, metrics = call(service, app, requests)
    assert ready.json() == {"object": "health.response", "message": "ready", "ready": True}
    assert float(ready.headers["server-timing"].removeprefix("app;dur=")) > 0
    assert unready.status_code == 503 and unready.json()["message"] == "restarting tritonserver: test"
    assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
    assert live.status_code == 200
    model = models.json()["data"][0]
    assert (model["id"], model["object"], model["max_input_tokens"], model["dimensions"]) == (MODEL, "model", 64, 64)
    meta = metadata.json()
    assert meta["model"]["id"] == MODEL and meta["recipe"] == "fp32" and meta["encoder"]["kind"] == "onnxruntime"
    assert "api_key" not in meta["limits"] and meta["versions"]["python"]
    # names and hashes, no host path: not the repository's, the export's, nor the preset cache's under $HOME
    assert meta["repository"]["name"] == tiny_repos["engine"].name and len(meta["repository"]["sha256"]) == 64
    assert meta["model"]["source"] == "tiny" and len(meta["model"]["fingerprint"]) == 64
    assert len(meta["encoder"]["artifact"]["sha256"]) == 64
    assert "/" not in metadata.text.replace("</", "") and str(Path.home()) not in metadata.text
    text = metrics.text
    for name in ("nvembed_requests_total", "nvembed_request_duration_seconds_bucket", "nvembed_queue_duration_seconds",
                 "nvembed_input_tokens_total", "nvembed_inputs_per_request", "nvembed_requests_in_flight",
                 "nvembed_queue_rows", "nvembed_ready", "nvembed_encoder_tokens_total"):
        assert name in text, name
    assert 'nvembed_requests_total{route="/v1/embeddings",status="200"} 1.0' in text
    assert 'nvembed_requests_total{route="/v1/embeddings",status="503"} 1.0' in text
    assert "nvembed_inputs_per_request_count 1.0" in text


def test_busy_deadline_and_drain(tiny_repos):
    service, app = build(tiny_repos["engine"], delay_s=0.3, max_concurrent_requests=2, request_timeout_s=0.5)

    async def requests(client):
        body = {"model": MODEL, "input": "x"}
        burst = await asyncio.gather(*[post(client, body) for _ in range(4)])
        slow = await post(client, {"model": MODEL, "input": [f"text {i} " * 20 for i in range(64)],
                                   "truncate": "END"})
        service.health.draining = True
        drained = await post(client, body)
        return burst, slow, drained
    burst, slow, drained = call(service, app, requests)
    statuses = sorted(r.status_code for r in burst)
    assert statuses.count(429) == 2, statuses
    busy = next(r for r in burst if r.status_code == 429)
    assert "2 requests in progress, the limit is 2" in busy.json()["error"]["message"]
    assert busy.headers["retry-after"] == "1"
    assert slow.status_code == 504 and "0.5 s deadline" in slow.json()["error"]["message"]
    assert drained.status_code == 503 and "shutting down" in drained.json()["error"]["message"]


def test_openapi_document_is_generated_from_the_validating_models(tiny_repos):
    """/openapi.json and /docs are served; the request schema is the one the app validates with (strict enums, the
    served model, its limits); every route is documented with its errors; 405 names the allowed method."""
    from nvembed_trt.serving.app import ENDPOINTS
    from nvembed_trt.serving.schemas import EmbeddingRequest

    service, app = build(tiny_repos["engine"], max_inputs=10)

    async def requests(client):
        return (await client.get("/openapi.json"), await client.get("/docs"), await client.put("/v1/embeddings"))
    doc, docs, put = call(service, app, requests)
    spec = doc.json()
    assert doc.status_code == 200 and spec["openapi"].startswith("3.1") and docs.status_code == 200
    assert {(p, m.upper()) for p, ops in spec["paths"].items() for m in ops} == {(e.path, e.method) for e in ENDPOINTS}
    request = spec["components"]["schemas"]["EmbeddingRequest"]
    assert set(request["properties"]) == set(EmbeddingRequest.model_fields)
    assert request["additionalProperties"] is False and request["required"] == ["input", "model"]
    assert request["properties"]["truncate"]["enum"] == ["NONE", "START", "END"]
    assert request["properties"]["model"]["enum"] == [MODEL, f"{MODEL}-query", f"{MODEL}-passage"]
    assert request["properties"]["input"]["anyOf"][1]["maxItems"] == 10
    operation = spec["paths"]["/v1/embeddings"]["post"]
    assert operation["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/EmbeddingRequest")
    assert {"200", "400", "413", "422", "429", "504"} <= set(operation["responses"])
    assert operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/EmbeddingResponse")
    assert put.status_code == 405 and put.headers["allow"] == "POST"
