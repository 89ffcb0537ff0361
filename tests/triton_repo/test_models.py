"""The python-backend models' logic, without a server (their TritonPythonModel shells run in the end-to-end tests):
request parsing, nv_embed's routing with a real ONNX Runtime encoder, the ONNX encoder's providers and grouping."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest

from nvembed_trt.errors import InputError
from nvembed_trt.export import onnx_from_model
from nvembed_trt.packing import Packer, ShapeLimit
from nvembed_trt.tokenizer import INPUT_TYPES
from nvembed_trt.triton.models.common import settings_from_args
from nvembed_trt.triton.models.embed import Router
from nvembed_trt.triton.models.encoder_onnx import run_grouped, session_providers
from nvembed_trt.triton.models.inputs import parse_rows
from texts import SENTENCES


def b(*texts):
    return np.array([t.encode() if isinstance(t, str) else t for t in texts], dtype=object)


@pytest.fixture(scope="module", params=["engine", "ensemble"])
def graph(request, tmp_path_factory):
    export = onnx_from_model("tiny", tmp_path_factory.mktemp("e") / request.param, pooling=request.param,
                             parity=False)
    session = ort.InferenceSession(str(export.onnx_path))
    return request.param, session


def router_for(tiny, pooling: str, limits, tokens: int, max_length: int = 64) -> Router:
    inputs = ("input_ids", "attention_mask", "pool_mask") if pooling == "engine" else ("input_ids", "attention_mask")
    return Router(tiny.tokenizer, Packer(limits, tokens), max_length, inputs,
                  "embeddings" if pooling == "engine" else "token_states", "float32", 1 << 20, 64)


@pytest.mark.parametrize("limits, tokens", [((ShapeLimit("onnx", 8, 64),), 512),
                                            ((ShapeLimit("short", 4, 16), ShapeLimit("long", 1, 64)), 64)])
def test_router_matches_the_reference_and_only_sends_covered_batches(tiny, graph, limits, tokens, cosine):
    pooling, session = graph
    router = router_for(tiny, pooling, limits, tokens)
    seen = []

    def run(arrays):
        seen.append(arrays["input_ids"].shape)
        assert all(a.dtype == np.int32 for a in arrays.values())
        return session.run(None, arrays)[0]
    texts = SENTENCES * 3
    rows = router.rows([b(*texts), b(*(["query", "passage"] * len(texts))[:len(texts)]), None, b(*["END"] * len(texts))])
    got = router.embed(rows, run)
    for i, text in enumerate(texts):
        kind = "query" if i % 2 == 0 else "passage"
        want = tiny.encode([text], input_type=kind, max_length=64)
        assert cosine(got[i:i + 1], want).item() >= 0.99999
    assert all(router.packer.covered(rows_, width) for rows_, width in seen) and len(seen) >= 2


def test_inputs_instruction_overrides_input_type_and_truncate_modes(tiny):
    texts, instructions, truncates = parse_rows(b("a", "b"), b("query", "passage"), b("Custom: ", "Other: "),
                                                b("start", "END"), 1 << 20)
    assert instructions == ["Custom: ", "Other: "] and truncates == ["START", "END"]
    assert parse_rows(b("a"), b("query"), None, None, 100)[1:] == ([INPUT_TYPES["query"]], ["END"])


@pytest.mark.parametrize("texts, types, truncate, message", [
    (None, None, None, r"TEXT is required"),
    (b(""), None, None, r"TEXT\[0\] is empty"),
    (b("ok", b"\xff\xfe"), None, None, r"TEXT\[1\] is not valid UTF-8"),
    (b("ok"), b("document"), None, r"INPUT_TYPE\[0\] is 'document'; choose one of query, passage"),
    (b("ok"), None, b("MIDDLE"), r"TRUNCATE\[0\] is 'MIDDLE'; choose one of NONE, START, END"),
    (b("ok", "ok"), b("query"), None, r"INPUT_TYPE has 1 rows but TEXT has 2"),
    (b("x" * 200), None, None, r"TEXT\[0\] is 200 bytes, above the limit of 100 bytes per input"),
])
def test_bad_rows_name_the_row_limit_and_value(texts, types, truncate, message):
    with pytest.raises(InputError, match=message):
        parse_rows(texts, types, None, truncate, 100)


def test_router_refuses_over_long_rows_under_none(tiny):
    router = router_for(tiny, "engine", (ShapeLimit("onnx", 8, 32),), 256, max_length=32)
    with pytest.raises(InputError, match=r"Input length 103 exceeds maximum allowed token size 32 \(input 1"):
        router.rows([b("fine", "word " * 100), None, None, b("NONE", "NONE")])


def test_onnx_encoder_groups_requests_by_shape(tmp_path, tiny):
    export = onnx_from_model("tiny", tmp_path / "e", parity=False)
    session = ort.InferenceSession(str(export.onnx_path))
    names = [i.name for i in session.get_inputs()]
    requests = []
    for texts in (["a", "bb"], ["ccc"], ["a much longer text than the others, to get another bucket"] * 2):
        batch = tiny.tokenizer(texts, "", 64)
        requests.append({n: getattr(batch, n).astype(np.int32) for n in names})
    grouped = run_grouped(session, names, requests)
    for arrays, out in zip(requests, grouped):
        assert np.allclose(out, session.run(None, arrays)[0], atol=1e-6)


def test_cuda_is_honoured_or_refused_never_silently_cpu():
    with pytest.raises(RuntimeError, match="asks for CUDAExecutionProvider but this ONNX Runtime has none"):
        session_providers(["CUDAExecutionProvider", "CPUExecutionProvider"], ["CPUExecutionProvider"], 0)
    providers = session_providers(["CUDAExecutionProvider", "CPUExecutionProvider"],
                                  ["CUDAExecutionProvider", "CPUExecutionProvider"], 3)
    assert providers == [("CUDAExecutionProvider", {"device_id": 3}), "CPUExecutionProvider"]


def test_settings_from_model_config(tmp_path):
    args = {"model_config": json.dumps({"parameters": {"max_length": {"string_value": "256"}}}),
            "model_repository": str(tmp_path / "nv_embed"), "model_version": "1"}
    params, version_dir = settings_from_args(args)
    assert params == {"max_length": "256"} and version_dir == tmp_path / "nv_embed" / "1"
