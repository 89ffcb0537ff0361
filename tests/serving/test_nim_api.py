"""NIM's API beyond the core, in-process (the app + service + a real ONNX Runtime encoder, as test_app.py): the
compact `embedding_type`s against our binarisation of the served floats and of the PyTorch reference, the
`-query` / `-passage` model-name suffix, /v1/manifest, /v1/license, /v1/version; bad values named. Each request
goes through the hand-written POST /v1/embeddings bypass and through FastAPI's route: the answers must be equal."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest

from serving_harness import MAX_LENGTH, build, call
from nvembed_trt.serving.app import EMBEDDINGS
from nvembed_trt.serving.compact import binary, float16, ubinary
from texts import SENTENCES

MODEL = "tiny"
TEXTS = [s for s in SENTENCES if len(s) < 200][:6]


def post(client, body):
    return client.post("/v1/embeddings", content=json.dumps(body))


def token_ids(tiny, texts):
    """The model's own ids of each text, as a client that tokenises would send them (no BOS, no EOS)."""
    return [tiny.tokenizer.tokenizer.encode(t, add_special_tokens=False).ids for t in texts]


@pytest.fixture(scope="module")
def answers(tiny_repos, tiny):
    """Every request of this module, answered once through the bypass and once through FastAPI's own route."""
    bodies = {
        "float": {"model": MODEL, "input": TEXTS},
        "ubinary": {"model": MODEL, "input": TEXTS, "embedding_type": "ubinary"},
        "binary": {"model": MODEL, "input": TEXTS, "embedding_type": "binary"},
        "binary-b64": {"model": MODEL, "input": TEXTS, "embedding_type": "binary", "encoding_format": "base64"},
        "float16": {"model": MODEL, "input": TEXTS, "embedding_type": "float16"},
        "float16-b64": {"model": MODEL, "input": TEXTS, "embedding_type": "float16", "encoding_format": "base64"},
        "float16-upper": {"model": MODEL, "input": "x", "embedding_type": "FLOAT16"},
        "format-null": {"model": MODEL, "input": TEXTS, "encoding_format": None, "embedding_type": None},
        "format-list": {"model": MODEL, "input": "x", "encoding_format": ["base64"] * 40},
        "suffix-query": {"model": f"{MODEL}-query", "input": TEXTS},
        "explicit-query": {"model": MODEL, "input": TEXTS, "input_type": "query"},
        "suffix-passage": {"model": f"{MODEL}-passage", "input": TEXTS[:1], "input_type": "passage"},
        "suffix-conflict": {"model": f"{MODEL}-query", "input": "x", "input_type": "passage"},
        "int8": {"model": MODEL, "input": "x", "embedding_type": "int8"},
        "bad-type": {"model": MODEL, "input": "x", "embedding_type": "bits"},
        "bad-suffix": {"model": f"{MODEL}-queries", "input": "x"},
        "ids": {"model": MODEL, "input": token_ids(tiny, TEXTS)},
        "ids-query": {"model": f"{MODEL}-query", "input": token_ids(tiny, TEXTS)},
        "ids-one": {"model": MODEL, "input": token_ids(tiny, TEXTS[:1])[0]},
        "ids-end": {"model": MODEL, "input": [[5] * 500], "truncate": "END"},
        "ids-tiktoken": {"model": MODEL, "input": [[40, 1093, 100257, 9606]]},   # cl100k-like: ids past 32,000
        "ids-negative": {"model": MODEL, "input": [[1, 2], [3, -4]]},
        "ids-empty-row": {"model": MODEL, "input": [[1, 2], []]},
        "ids-too-long": {"model": MODEL, "input": [[5] * 63]},                 # + BOS + EOS = 65 > 64
        "ids-mixed": {"model": MODEL, "input": ["text", 5]},
    }
    results = {}
    for face in ("bypass", "fastapi"):
        service, guard = build(tiny_repos["engine"])
        if face == "fastapi":
            guard.direct = {}        # POST /v1/embeddings through FastAPI's routing, not the bypass
        assert face == "fastapi" or ("POST", EMBEDDINGS.path) in guard.direct

        async def requests(client):
            got = {name: await post(client, body) for name, body in bodies.items()}
            for path in ("/v1/manifest", "/v1/license", "/v1/version", "/v1/metadata"):
                got[path] = await client.get(path)
            return got
        results[face] = call(service, guard, requests)
    return results


def rows(reply) -> np.ndarray:
    assert reply.status_code == 200, reply.text
    return np.asarray([d["embedding"] for d in reply.json()["data"]])


def test_bypass_and_fastapi_answer_alike(answers):
    for name, reply in answers["bypass"].items():
        other = answers["fastapi"][name]
        assert (reply.status_code, reply.json()) == (other.status_code, other.json()), name


def test_binary_types_are_our_sign_bits_of_the_reference(answers, tiny):
    got = answers["bypass"]
    floats = rows(got["float"]).astype(np.float32)
    packed = rows(got["ubinary"])
    assert packed.shape == (len(TEXTS), 64 // 8) and packed.min() >= 0 and packed.max() <= 255
    assert np.array_equal(packed, ubinary(floats))                         # exact: our binarisation of our floats
    assert np.array_equal(rows(got["binary"]), binary(floats)) and rows(got["binary"]).min() >= -128
    assert np.array_equal(rows(got["binary"]) + 128, packed)
    raw = [np.frombuffer(base64.b64decode(d["embedding"]), np.int8) for d in got["binary-b64"].json()["data"]]
    assert np.array_equal(np.stack(raw), binary(floats))
    # against the PyTorch reference: every bit agrees but where the reference value is within 1e-4 of zero
    want = np.asarray(tiny.encode(TEXTS, max_length=MAX_LENGTH))
    bits, want_bits = np.unpackbits(packed.astype(np.uint8), axis=1), (want > 0).astype(np.uint8)
    assert np.all((bits == want_bits) | (np.abs(want) < 1e-4)), "bits disagree with the reference"
    assert (bits == want_bits).mean() >= 0.99
    # MSB first: the first dimension is the top bit of the first byte
    assert ((packed[:, 0] >> 7) == (floats[:, 0] > 0)).all()


def test_float16_is_the_served_floats_rounded_to_halves(answers, tiny, cosine):
    """float16: JSON carries each half as float32 prints it (exact read as float32 or float16), base64 its
    little-endian 2-byte halves; both equal our rounding
    of the served float32 rows, and within half precision of the PyTorch reference."""
    got = answers["bypass"]
    floats = rows(got["float"]).astype(np.float32)
    halves = rows(got["float16"])
    assert halves.shape == floats.shape and np.array_equal(halves.astype(np.float16), float16(floats))
    assert np.array_equal(halves.astype(np.float32), float16(floats).astype(np.float32))   # exact, read as float32
    raw = [base64.b64decode(d["embedding"]) for d in got["float16-b64"].json()["data"]]
    assert {len(r) for r in raw} == {64 * 2}                                         # 2 bytes a dimension
    assert np.array_equal(np.stack([np.frombuffer(r, "<f2") for r in raw]), float16(floats))
    assert np.abs(halves - floats).max() <= 2.0 ** -11 * np.abs(floats).max()        # round to nearest half
    want = tiny.encode(TEXTS, max_length=MAX_LENGTH)
    assert cosine(halves.astype(np.float32), want).min().item() >= 0.9999


def test_model_suffix_chooses_input_type(answers, tiny, cosine):
    got = answers["bypass"]
    query = rows(got["suffix-query"]).astype(np.float32)
    assert np.array_equal(query, rows(got["explicit-query"]).astype(np.float32))
    assert cosine(query, tiny.encode(TEXTS, input_type="query", max_length=MAX_LENGTH)).min().item() >= 0.9999
    assert got["suffix-query"].json()["model"] == MODEL
    assert got["suffix-passage"].status_code == 200


def test_bad_values_are_named(answers):
    got = answers["bypass"]
    expected = {"suffix-conflict": (400, "input_type"), "int8": (400, "embedding_type"),
                "bad-type": (422, "embedding_type"), "float16-upper": (422, "embedding_type"),
                "format-list": (422, "encoding_format"), "bad-suffix": (404, "model"), "ids-tiktoken": (400, "input"),
                "ids-negative": (422, "input"), "ids-empty-row": (422, "input"), "ids-too-long": (400, "input"),
                "ids-mixed": (422, "input")}
    for name, (status, field) in expected.items():
        error = got[name].json()["error"]
        assert (got[name].status_code, error["param"]) == (status, field), (name, error)
        assert field in error["message"] or name in ("bad-suffix", "ids-too-long"), error
    assert "calibrated" in got["int8"].json()["error"]["message"]
    message = {name: got[name].json()["error"]["message"] for name in ("bad-type", "float16-upper", "format-list")}
    assert message["bad-type"].endswith(', got "bits"'), message                     # the value given, as JSON
    assert message["float16-upper"].endswith(', got "FLOAT16" (did you mean \'float16\'? the values are case-sensitive)')
    assert ', got ["base64","base64",' in message["format-list"] and message["format-list"].endswith('...')
    assert np.array_equal(rows(got["format-null"]), rows(got["float"]))               # null: the defaults
    assert "tiny-query" in got["bad-suffix"].json()["error"]["message"]


def test_manifest_license_version(answers):
    from nvembed_trt import __version__
    got = answers["bypass"]
    manifest, licence, version = (got[p].json() for p in ("/v1/manifest", "/v1/license", "/v1/version"))
    assert manifest["model_ids"] == [MODEL, f"{MODEL}-query", f"{MODEL}-passage"]
    assert manifest["embedding_types"] == ["float", "float16", "binary", "ubinary"]
    assert manifest["embedding_types_refused"] == ["int8", "uint8"]
    assert manifest["dimensions"] == 64 and manifest["profile"]["kind"] == "onnxruntime"
    assert licence["weights"]["nv_embed_v2"]["name"] == "CC-BY-NC-4.0" and licence["weights"]["source"] == "random"
    assert "non-commercial" in licence["weights"]["note"]
    assert version == {"object": "version", "release": __version__, "api": "v1"}
    meta = got["/v1/metadata"].json()
    assert meta["embedding_types"] == manifest["embedding_types"] and meta["output_ranges"] is None


def test_token_ids_equal_their_texts(answers, tiny, cosine):
    """The OpenAI spec's token input: the model's own ids give the text's embedding (BOS, the instruction and EOS
    added as for text), usage counts the same tokens."""
    got = answers["bypass"]
    text, ids = got["float"].json(), got["ids"].json()
    assert cosine(rows(got["ids"]), rows(got["float"])).min().item() >= 0.99999
    assert ids["usage"] == text["usage"]
    want = tiny.encode(TEXTS, input_type="query", max_length=MAX_LENGTH)
    assert cosine(rows(got["ids-query"]), want).min().item() >= 0.9999
    assert got["ids-query"].json()["usage"] == got["explicit-query"].json()["usage"]
    assert cosine(rows(got["ids-one"]), rows(got["float"])[:1]).item() >= 0.99999
    assert got["ids-end"].json()["usage"]["prompt_tokens"] == MAX_LENGTH     # truncated to the model's limit


def test_token_id_errors_name_the_limit_and_the_fix(answers):
    got = answers["bypass"]
    tiktoken = got["ids-tiktoken"].json()["error"]["message"]
    assert "input[0] holds token id 100257" in tiktoken and "vocabulary of 32000 ids" in tiktoken
    assert "check_embedding_ctx_length=False" in tiktoken
    assert "[1][1] is a negative token id" in got["ids-negative"].json()["error"]["message"]
    assert "Input length 65 exceeds maximum allowed token size 64" in got["ids-too-long"].json()["error"]["message"]


def test_every_answer_names_the_engine(answers, tiny_repos):
    """The fleet fingerprint: every answer (200s and errors alike, both faces) carries X-NVEmbed-Engine, the same
    facts /v1/metadata states, read from repo.json's records."""
    meta = json.loads((tiny_repos["engine"] / "repo.json").read_text())
    fingerprint = answers["bypass"]["/v1/metadata"].json()["fingerprint"]
    assert fingerprint["plan"] == meta["encoder_sha256"][:16] and fingerprint["kind"] == "onnxruntime"
    assert fingerprint["recipe"] == "fp32" and fingerprint["gpu"] is None
    assert fingerprint["weights"] == meta["model"]["weights_fingerprint"][:16]
    assert fingerprint["header"] == (f"plan={meta['encoder_sha256'][:16]}; kind=onnxruntime; recipe=fp32; gpu=none; "
                                     f"trt=none; weights={meta['model']['weights_fingerprint'][:16]}")
    for face in answers.values():
        for name, reply in face.items():
            assert reply.headers["x-nvembed-engine"] == fingerprint["header"], name


def test_fingerprint_of_an_engine_repository(tiny_repos, tmp_path):
    """A repository of a TensorRT engine (here the plan-less one a node builds for an H100): the GPU profile and the
    TensorRT flavour and version come from repo.json's engine record, as /v1/metadata states them."""
    from nvembed_trt.serving import EmbeddingService, Metrics, ServeSettings
    from nvembed_trt.triton import repo_from_encoder
    from nvembed_trt.triton.meta import RepoMeta
    from nvembed_trt.triton.repository import RepoSettings

    export = RepoMeta.read(tiny_repos["engine"]).encoder_source
    repo = repo_from_encoder("tiny", export, tmp_path / "h100", RepoSettings(gpu="h100")).directory
    meta = RepoMeta.read(repo)
    service = EmbeddingService(repo, ServeSettings(), "127.0.0.1:1", Metrics())
    assert service.fingerprint["header"] == (
        f"plan={meta.encoder_sha256[:16]}; kind=tensorrt_plan; recipe={meta.recipe}; gpu=h100; "
        f"trt=tensorrt {meta.engine.flavor_version}; weights={meta.model.weights_fingerprint[:16]}")
    encoder = service.metadata()["encoder"]
    assert (encoder["gpu_profile"], encoder["flavor"]) == ("h100", "tensorrt")
