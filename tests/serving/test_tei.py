"""TEI's routes in-process (the app + service + a real ONNX Runtime encoder, as test_app.py): /embed and / against the
PyTorch reference and against /v1/embeddings (truncation directions, prompts), /tokenize against the ids the model is
fed, /decode, /info, /health, /metrics; every error in TEI's shape with TEI's status. The Hugging Face client itself
is tested against a real `nvembed-trt serve` in test_front_door.py."""

from __future__ import annotations

import json

import numpy as np
import pytest

from serving_harness import MAX_LENGTH, build, call
from nvembed_trt.tokenizer import INPUT_TYPES
from texts import SENTENCES

MODEL = "tiny"
TEXTS = [s for s in SENTENCES if len(s) < 200][:5]
LONG = "the summit of a mountain is its highest point " * 20      # > 64 tokens


@pytest.fixture(scope="module")
def answers(tiny_repos):
    service, app = build(tiny_repos["engine"], max_inputs=8)
    posts = {
        "embed": ("/embed", {"inputs": TEXTS}),
        "root": ("/", {"inputs": TEXTS}),
        "query": ("/embed", {"inputs": TEXTS, "prompt_name": "query", "normalize": True}),
        "one": ("/embed", {"inputs": TEXTS[0]}),
        "right": ("/embed", {"inputs": [LONG], "truncate": True}),
        "left": ("/embed", {"inputs": [LONG], "truncate": True, "truncation_direction": "left"}),
        "v1-end": ("/v1/embeddings", {"model": MODEL, "input": [LONG], "truncate": "END"}),
        "v1-start": ("/v1/embeddings", {"model": MODEL, "input": [LONG], "truncate": "START"}),
        "too-long": ("/embed", {"inputs": [LONG]}),
        "unnormalized": ("/embed", {"inputs": "x", "normalize": False}),
        "bad-prompt": ("/embed", {"inputs": "x", "prompt_name": "document"}),
        "bad-field": ("/embed", {"inputs": "x", "model": MODEL}),
        "too-many": ("/embed", {"inputs": ["x"] * 9}),
        "bad-json": ("/embed", b"{oops"),
        "tokenize": ("/tokenize", {"inputs": TEXTS[:2], "prompt_name": "query"}),
        "tokenize-plain": ("/tokenize", {"inputs": TEXTS[0], "add_special_tokens": False}),
        "decode": ("/decode", {"ids": [[1, 22557, 1526], [1, 2]]}),
        "decode-bad": ("/decode", {"ids": [5, 32000]}),
        "decode-huge": ("/decode", {"ids": [[1, 2], [171738678205356288351674564608]]}),
        "embed-huge": ("/embed", {"inputs": "x", "truncate": [{"a": 32589158477190044731}]}),
        "embed-mixed": ("/embed", {"inputs": ["ok", 5]}),
        "decode-negative": ("/decode", {"ids": [[1, 2], [1, -5]]}),
    }

    async def requests(client):
        got = {name: await client.post(path, content=body if isinstance(body, bytes) else json.dumps(body))
               for name, (path, body) in posts.items()}
        for path in ("/info", "/health", "/metrics"):
            got[path] = await client.get(path)
        service.set_health(False, "restarting tritonserver: test")
        got["unhealthy"] = await client.get("/health")
        service.set_health(True, "ready")
        return got
    return call(service, app, requests)


def rows(reply) -> np.ndarray:
    assert reply.status_code == 200, reply.text
    body = reply.json()
    return np.asarray(body if isinstance(body, list) else [d["embedding"] for d in body["data"]], dtype=np.float32)


def test_embed_equals_the_reference_and_the_openai_route(answers, tiny, cosine):
    assert cosine(rows(answers["embed"]), tiny.encode(TEXTS, max_length=MAX_LENGTH)).min().item() >= 0.9999
    assert np.array_equal(rows(answers["root"]), rows(answers["embed"]))
    want = tiny.encode(TEXTS, input_type="query", max_length=MAX_LENGTH)
    assert cosine(rows(answers["query"]), want).min().item() >= 0.9999
    assert rows(answers["one"]).shape == (1, 64)
    # truncate + direction: Right keeps the start (END), Left the end (START), as /v1/embeddings
    assert cosine(rows(answers["right"]), rows(answers["v1-end"])).item() >= 0.99999
    assert cosine(rows(answers["left"]), rows(answers["v1-start"])).item() >= 0.99999
    assert cosine(rows(answers["left"]), rows(answers["right"])).item() < 0.9999


def test_errors_are_tei_shaped(answers):
    expected = {"too-long": (422, "Input length 183 exceeds maximum allowed token size 64 (inputs[0]; truncate is "
                                  "false: send truncate true"),
                "unnormalized": (422, "normalize false is not served"),
                "bad-prompt": (422, "prompt_name 'document' is not one of this model's prompts: query, passage"),
                "bad-field": (422, "model: unknown field"),
                "too-many": (413, "inputs has 9 items, above the limit of 8"),
                "bad-json": (422, "not valid JSON"), "decode-bad": (422, "ids[0] holds token id 32000"),
                "decode-huge": (422, "171738678205356288351674564608"),
                "embed-huge": (422, 'truncate: Input should be a valid boolean, got [{"a":32589158477190044731}]'),
                # a union's problem named where it lies, not as the other branch's type complaint
                "embed-mixed": (422, "inputs[1]: Input should be a valid string, got 5"),
                "decode-negative": (422, "ids[1][1]: Input should be greater than or equal to 0, got -5"),
                "unhealthy": (503, "restarting tritonserver: test")}
    for name, (status, message) in expected.items():
        reply = answers[name]
        body = reply.json()
        assert reply.status_code == status and set(body) == {"error", "error_type"}, (name, reply.text)
        assert message in body["error"], (name, body)
    assert answers["too-many"].json()["error_type"] == "Validation"
    assert answers["unhealthy"].json()["error_type"] == "Unhealthy"


def test_tokenize_gives_the_ids_the_model_is_fed_and_decode_inverts(answers, tiny):
    tokens = answers["tokenize"].json()
    want = tiny.tokenizer.encode_ids(TEXTS[:2], INPUT_TYPES["query"], 4096)
    assert [[t["id"] for t in row] for row in tokens] == want
    assert tokens[0][0] == {"id": 1, "text": "<s>", "special": True, "start": None, "stop": None}
    assert tokens[0][-1]["special"] and tokens[0][-1]["id"] == 2
    plain = answers["tokenize-plain"].json()[0]
    assert not any(t["special"] for t in plain)
    assert "".join(TEXTS[0][t["start"]:t["stop"]] for t in plain).replace(" ", "") == TEXTS[0].replace(" ", "")
    assert answers["decode"].json() == [tiny.tokenizer.tokenizer.decode([22557, 1526]), ""]


def test_info_health_metrics(answers):
    info = answers["/info"].json()
    assert (info["model_id"], info["max_input_length"], info["max_client_batch_size"]) == (MODEL, 64, 8)
    assert info["prompts"] == INPUT_TYPES and info["auto_truncate"] is False
    assert answers["/health"].status_code == 200 and answers["/health"].content == b""
    assert 'nvembed_requests_total{route="/embed",status="200"}' in answers["/metrics"].text
