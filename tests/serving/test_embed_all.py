"""TEI's POST /embed_all in-process (the app + service + a real ONNX Runtime encoder, as test_tei.py): on the tiny
"ensemble" repository each input's token states equal the PyTorch reference's latent-attention output for the same
tokens, split exactly out of packed batches shared with /embed's rows, and mean-pooling the pooled positions
reproduces /embed; the token-state limit is a 413; the "engine" repository (pooling in the graph) refuses with TEI's
424 naming the fix. /embed_all has no hand-written bypass (only POST /v1/embeddings has one)."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest
import torch

from serving_harness import MAX_LENGTH, build, call
from nvembed_trt.serving.app import EMBED_ALL
from nvembed_trt.tokenizer import INPUT_TYPES
from texts import SENTENCES

TEXTS = sorted((s for s in SENTENCES if len(s) < 200), key=len)[::3][:5]   # mixed lengths in one request
LONG = "the summit of a mountain is its highest point " * 20                # > 64 tokens
LIMIT = 300                                                                   # --max-embed-all-tokens here


@pytest.fixture(scope="module")
def ensemble(tiny_repos):
    service, app = build(tiny_repos["ensemble"], max_embed_all_tokens=LIMIT)
    assert ("POST", EMBED_ALL.path) not in app.direct
    posts = {
        "all": ("/embed_all", {"inputs": TEXTS}),
        "embed": ("/embed", {"inputs": TEXTS}),
        "all-query": ("/embed_all", {"inputs": TEXTS, "prompt_name": "query"}),
        "embed-query": ("/embed", {"inputs": TEXTS, "prompt_name": "query"}),
        "one": ("/embed_all", {"inputs": TEXTS[0]}),
        "left": ("/embed_all", {"inputs": [LONG], "truncate": True, "truncation_direction": "Left"}),
        "too-long": ("/embed_all", {"inputs": [LONG]}),
        "over-limit": ("/embed_all", {"inputs": [LONG] * 5, "truncate": True}),       # 5 x 64 = 320 > 300
        "normalize": ("/embed_all", {"inputs": "x", "normalize": True}),             # not a field of embed_all
    }

    async def requests(client):
        async def post(path, body):
            return await client.post(path, content=json.dumps(body))
        got = {name: await post(*request) for name, request in posts.items()}
        service.backend.batches.clear()
        # token states and pooled rows at once: they share the queue, and batches
        got["together-all"], got["together-embed"] = await asyncio.gather(post(*posts["all"]), post(*posts["embed"]))
        got["batches"] = list(service.backend.batches)
        got["/info"], got["/v1/manifest"] = await client.get("/info"), await client.get("/v1/manifest")
        got["/openapi.json"] = await client.get("/openapi.json")
        return got
    return call(service, app, requests)


def states(reply) -> list[np.ndarray]:
    assert reply.status_code == 200, reply.text
    return [np.asarray(rows, dtype=np.float32) for rows in reply.json()]


def reference_states(tiny, texts, instruction="") -> list[np.ndarray]:
    """The PyTorch reference's latent-attention output per token, each input alone (no padding)."""
    out = []
    for ids in tiny.tokenizer.encode_ids(texts, instruction, MAX_LENGTH):
        ids = torch.tensor([ids])
        with torch.inference_mode():
            out.append(tiny.model.token_states(ids, torch.ones_like(ids))[0].float().numpy())
    return out


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


@pytest.mark.parametrize("name, instruction", [("all", ""), ("together-all", ""), ("all-query", "query")])
def test_token_states_equal_the_reference_per_token(ensemble, tiny, cosine, name, instruction):
    got, want = states(ensemble[name]), reference_states(tiny, TEXTS, INPUT_TYPES.get(instruction, ""))
    assert [g.shape for g in got] == [(len(w), 64) for w in want]     # (tokens_i, 64), each input's own count
    assert len({len(w) for w in want}) == len(TEXTS)                   # lengths all differ: padding was cut per row
    assert min(cosine(g, w).min().item() for g, w in zip(got, want)) >= 0.9999


def test_pooling_the_returned_states_reproduces_embed(ensemble, tiny):
    masked = tiny.tokenizer.instruction_length(INPUT_TYPES["query"])   # BOS + the instruction: not pooled
    assert masked > 1
    for all_name, embed_name, skip in (("all", "embed", 0), ("together-all", "together-embed", 0),
                                       ("all-query", "embed-query", masked)):
        pooled = np.stack([unit(s[skip:].mean(axis=0)) for s in states(ensemble[all_name])])
        embedded = np.asarray(ensemble[embed_name].json(), dtype=np.float32)
        assert (pooled * embedded).sum(axis=1).min() >= 0.9999, all_name


def test_rows_were_packed_across_both_routes(ensemble):
    """The concurrent /embed_all and /embed went through the one batcher, in batches of several rows of mixed
    lengths (10 rows, encoder batch 8): what makes the per-row split matter."""
    batches = ensemble["batches"]
    assert sum(rows for rows, _ in batches) == 2 * len(TEXTS) and max(rows for rows, _ in batches) > len(TEXTS)


def test_one_input_and_truncation(ensemble, tiny, cosine):
    assert [s.shape for s in states(ensemble["one"])] == [(len(reference_states(tiny, TEXTS[:1])[0]), 64)]
    left = states(ensemble["left"])[0]
    ids = tiny.tokenizer.encode([LONG], "", MAX_LENGTH, "START")[0].ids
    assert left.shape == (MAX_LENGTH, 64) and ids[-1] == tiny.tokenizer.eos_id
    want = tiny.model.token_states(torch.tensor([ids]), torch.ones(1, len(ids), dtype=torch.long))[0].detach()
    assert cosine(left, want).min().item() >= 0.9999


def test_errors_are_tei_shaped(ensemble):
    expected = {"too-long": (422, "Input length 183 exceeds maximum allowed token size 64 (inputs[0]; truncate is "
                                  "false: send truncate true"),
                "over-limit": (413, f"this request's token states are 320 tokens of 64 floats each, above the limit "
                                    f"of {LIMIT} tokens per request (--max-embed-all-tokens)"),
                "normalize": (422, "normalize: unknown field")}
    for name, (status, message) in expected.items():
        body = ensemble[name].json()
        assert ensemble[name].status_code == status and set(body) == {"error", "error_type"}, (name, body)
        assert message in body["error"] and body["error_type"] == "Validation", (name, body)


def test_info_manifest_and_openapi_say_token_states_are_served(ensemble):
    info = ensemble["/info"].json()
    assert info["token_states"] is True and info["max_embed_all_tokens"] == LIMIT
    assert ensemble["/v1/manifest"].json()["token_states"] is True
    operation = ensemble["/openapi.json"].json()["paths"]["/embed_all"]["post"]
    assert {"200", "413", "422", "424"} <= set(operation["responses"])


def test_engine_repository_refuses_with_the_fix(tiny_repos):
    service, app = build(tiny_repos["engine"])

    async def requests(client):
        return [await client.post("/embed_all", content=json.dumps(body)) for body in
                ({"inputs": ["a text"]}, {"inputs": []})] + [await client.get("/info")]
    refused, malformed, info = call(service, app, requests)
    body = refused.json()
    assert refused.status_code == 424 and body["error_type"] == "Backend", body
    assert "pools inside the graph (pooling 'engine')" in body["error"]
    assert "nvembed-trt export --model MODEL --output export/NAME-ensemble --pooling ensemble" in body["error"]
    assert malformed.status_code == 422 and malformed.json()["error_type"] == "Validation"   # the body first, as TEI
    assert info.json()["token_states"] is False
