"""Embedder: batched results equal single requests; order is kept; bad arguments get clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from nvembed_trt.errors import InputError
from nvembed_trt.tokenizer import INPUT_TYPES
from texts import SENTENCES


@pytest.mark.parametrize("instruction", ["", INPUT_TYPES["query"], "Represent this: "],
                         ids=["passage", "query", "custom"])
@pytest.mark.parametrize("batch_size", [3, 16])
def test_batched_equals_single(tiny, instruction, batch_size, cosine):
    batched = tiny.encode(SENTENCES, instruction=instruction, batch_size=batch_size)
    single = np.stack([tiny.embed_batch([t], instruction)[0] for t in SENTENCES])
    cos = cosine(batched, single)
    assert cos.min().item() >= 0.99999, cos.tolist()
    assert np.abs(batched - single).max() <= 1e-5


def test_output_is_unit_norm_float32_in_input_order(tiny):
    texts = SENTENCES[::-1]
    out = tiny.encode(texts, batch_size=2)
    assert out.dtype == np.float32 and out.shape == (len(texts), 64)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(out[0], tiny.embed_batch([texts[0]])[0], atol=1e-5)


def test_input_type_query_equals_explicit_instruction(tiny):
    a = tiny.encode(SENTENCES[:3], input_type="query")
    b = tiny.encode(SENTENCES[:3], instruction=INPUT_TYPES["query"])
    c = tiny.encode(SENTENCES[:3], input_type="passage")
    assert np.array_equal(a, b)
    assert np.abs(a - c).max() > 1e-3


def test_max_length_truncates(tiny):
    long_text = "token " * 500
    short = tiny.encode([long_text], max_length=16)
    assert np.array_equal(short, tiny.encode([long_text[:200]], max_length=16))
    assert np.abs(short - tiny.encode([long_text], max_length=600)).max() > 1e-4


@pytest.mark.parametrize("kwargs, message", [
    ({"batch_size": 0}, "batch_size must be an integer >= 1, got 0"),
    ({"max_length": 1}, "max_length must be an integer >= 2"),
    ({"input_type": "doc"}, "unknown input type 'doc'"),
])
def test_bad_arguments(tiny, kwargs, message):
    with pytest.raises(InputError, match=message):
        tiny.encode(["text"], **kwargs)


def test_empty_and_non_string_inputs(tiny):
    with pytest.raises(InputError, match="no texts to embed"):
        tiny.encode([])
    with pytest.raises(InputError, match="input 1 must be a string, got bytes"):
        tiny.encode(["ok", b"bytes"])
