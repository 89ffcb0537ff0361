"""The python-backend models' logic, without a server (their TritonPythonModel shells run in the e2e tests)."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest

from nvembed_trt.errors import InputError
from nvembed_trt.export import onnx_from_model
from nvembed_trt.pooling import masked_mean_l2_numpy
from nvembed_trt.tokenizer import INPUT_TYPES
from nvembed_trt.triton.models.common import settings_from_args
from nvembed_trt.triton.models.encoder_onnx import run_grouped
from nvembed_trt.triton.models.pooling import pool_or_check
from nvembed_trt.triton.models.tokenizer import bucket_width, tokenize_rows


def b(*texts):
    return np.array([t.encode() if isinstance(t, str) else t for t in texts], dtype=object)


def test_rows_match_the_reference_tokenizer_and_pad_to_a_bucket(tiny):
    texts = ["how much protein", "a somewhat longer passage about summits and mountains"]
    out = tokenize_rows(tiny.tokenizer, b(*texts), b("query", "passage"), None, None, 512)
    longest = int(out["attention_mask"].sum(1).max())
    assert out["input_ids"].dtype == np.int32 and out["input_ids"].shape == (2, 32) and 16 < longest <= 32
    for row, (text, kind) in enumerate(zip(texts, ("query", "passage"))):
        want = tiny.tokenizer([text], INPUT_TYPES[kind], 512)
        n = int(want.attention_mask.sum())
        assert out["input_ids"][row, :n].tolist() == want.input_ids[0].tolist()
        assert out["pool_mask"][row, :n].tolist() == want.pool_mask[0].tolist()
        assert out["attention_mask"][row, n:].sum() == 0 and (out["input_ids"][row, n:] == 2).all()


def test_instruction_overrides_input_type_and_truncate_end(tiny):
    out = tokenize_rows(tiny.tokenizer, b("word " * 100), b("query"), b("Custom: "), b("END"), 32)
    want = tiny.tokenizer(["word " * 100], "Custom: ", 32)
    assert out["input_ids"].shape == (1, 32) and out["input_ids"][0].tolist() == want.input_ids[0].tolist()


@pytest.mark.parametrize("texts, types, truncate, message", [
    (b(""), None, None, r"TEXT\[0\] is empty"),
    (b("ok", b"\xff\xfe"), None, None, r"TEXT\[1\] is not valid UTF-8"),
    (b("ok"), b("document"), None, r"INPUT_TYPE\[0\] is 'document'; choose one of query, passage"),
    (b("ok"), None, b("START"), r"TRUNCATE\[0\] is 'START'; choose one of NONE, END"),
    (b("word " * 100), None, b("NONE"), r"TEXT\[0\] has 103 tokens, above the limit of 32 \(TRUNCATE=NONE\)"),
])
def test_bad_rows_name_the_row_limit_and_value(tiny, texts, types, truncate, message):
    with pytest.raises(InputError, match=message):
        tokenize_rows(tiny.tokenizer, texts, types, None, truncate, 32)


def test_bucket_widths():
    assert [bucket_width(n, 512) for n in (1, 16, 17, 100, 300, 600)] == [16, 16, 32, 128, 512, 512]


def test_pooling_modes():
    rng = np.random.default_rng(0)
    states = rng.normal(size=(3, 5, 8)).astype(np.float32)
    mask = np.array([[1, 1, 0, 0, 0], [0, 1, 1, 1, 0], [1, 1, 1, 1, 1]], dtype=np.int32)
    pooled = pool_or_check("pool", states, mask, "float32")
    np.testing.assert_allclose(pooled, masked_mean_l2_numpy(states, mask), atol=1e-6)
    assert pool_or_check("check", pooled, mask, "float16").dtype == np.float16
    with pytest.raises(InputError, match=r"row 0 is not a finite unit vector \(norm 2.0000, allowed 1 ± 0.001\)"):
        pool_or_check("check", pooled * 2, mask, "float32")  # norm 2
    with pytest.raises(InputError, match=r"row 0 has no token to pool"):
        pool_or_check("pool", states, mask * 0, "float32")


def test_encoder_groups_requests_by_shape(tmp_path, tiny):
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


def test_settings_from_model_config(tmp_path):
    args = {"model_config": json.dumps({"parameters": {"max_length": {"string_value": "256"}}}),
            "model_repository": str(tmp_path / "tokenizer"), "model_version": "1"}
    params, version_dir = settings_from_args(args)
    assert params == {"max_length": "256"} and version_dir == tmp_path / "tokenizer" / "1"
