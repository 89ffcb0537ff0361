"""The encoder seam (nvembed_trt.encoders) its users share: the PyTorch reference behind it gives exactly what
Embedder.encode gives (validate's reference figures are unchanged), batches stay within the encoder's shapes and
come back in input order, and a broken row is a figure for the measuring tools but an error for serving (~2 s)."""

from __future__ import annotations

import numpy as np
import pytest

from nvembed_trt.encoders import ANY_SHAPE, LocalEmbedder
from nvembed_trt.encoders.base import encode_packed
from nvembed_trt.encoders.local import TorchEncoder
from nvembed_trt.encoding import INPUT_NAMES, Row, batch_of
from nvembed_trt.errors import InputError
from nvembed_trt.packing import ShapeLimit
from nvembed_trt.tokenizer import INPUT_TYPES
from texts import SENTENCES


def test_reference_behind_the_seam_is_embedder_encode(tiny):
    seam = LocalEmbedder(TorchEncoder(tiny), tiny.tokenizer, 512, sort=True)
    for instruction in ("", INPUT_TYPES["query"]):
        for batch_size in (1, 3, 16):
            got = seam.embed(SENTENCES, instruction, batch_size)
            want = tiny.encode(SENTENCES, instruction=instruction, max_length=512, batch_size=batch_size)
            assert np.array_equal(got, want), (instruction, batch_size)
    assert seam.recipe == "fp32" and seam.name == "torch"


class Recorder:
    """An Encoder that answers each row with (its first id, its length) and records the batch shapes."""

    name, recipe, inputs = "fake", "fp16", INPUT_NAMES

    def __init__(self, limits, value=None):
        self.shape_limits, self.value, self.batches = tuple(limits), value, []

    def run(self, arrays):
        ids = arrays["input_ids"]
        self.batches.append(ids.shape)
        out = np.stack([ids[:, 1], arrays["attention_mask"].sum(1)], axis=1).astype(np.float32)
        return out if self.value is None else np.full_like(out, self.value)

    def encode(self, batch):
        return encode_packed(self, batch)

    def close(self):
        pass


def test_batches_fit_the_shapes_and_rows_come_back_in_order(tiny):
    limits = (ShapeLimit("short", 4, 8), ShapeLimit("long", 1, 64))
    encoder = Recorder(limits)
    texts = ["a", "b c d e f g h i j k l m n", "c", "d", "e", "f"]
    out = LocalEmbedder(encoder, tiny.tokenizer, 64).embed(texts, "", batch_size=4)
    lengths = [len(ids) for ids in tiny.tokenizer.encode_ids(texts, "", 64)]
    assert out[:, 1].tolist() == lengths                               # input order
    assert all(any(s.covers(r, w) for s in limits) for r, w in encoder.batches)
    assert [r for r, _ in encoder.batches] == [1, 1, 4]                # the long row cut the first batch
    with pytest.raises(InputError, match="no encoder shape takes a row of"):
        LocalEmbedder(Recorder([ShapeLimit("short", 4, 8)]), tiny.tokenizer, 64).embed(texts, "")
    assert LocalEmbedder(Recorder([ANY_SHAPE]), tiny.tokenizer, 64).accepts(1000, 30000)


def test_a_broken_row_is_measured_by_validate_but_refused_by_serving(tiny):
    encoder = Recorder([ANY_SHAPE], value=np.nan)
    assert np.isnan(LocalEmbedder(encoder, tiny.tokenizer, 64).embed(["x"], "")).all()
    batch = batch_of([Row([1, 5, 2], 0)], [0], tiny.tokenizer.pad_id)
    with pytest.raises(InputError, match="not a finite unit vector"):
        encoder.encode(batch)
