"""Packing under a token budget: every batch any input can produce is covered by one encoder shape, for every GPU
profile in the registry; padding is only the difference to each batch's longest row."""

from __future__ import annotations

import random

import pytest

from nvembed_trt.engines import gpu_registry
from nvembed_trt.packing import Packer, ShapeLimit, default_batch_tokens


def packer_for(gpu) -> Packer:
    return gpu.packer()      # the served shapes (nvembed_trt.shapes.served_limits), as an engine for it states them


@pytest.mark.parametrize("name", sorted(gpu_registry()))
def test_every_shape_the_packer_can_form_is_covered(name):
    gpu = gpu_registry()[name]
    packer = packer_for(gpu)
    assert packer.uncovered_widths(gpu.serving.max_sequence_length) == []
    formed = 0
    for width in range(1, gpu.serving.max_sequence_length + 1):
        for rows in range(1, packer.rows_at(width) + 1):
            assert packer.covered(rows, width), (name, rows, width)
            assert rows == 1 or rows * width <= packer.max_batch_tokens
            formed += 1
    assert formed >= gpu.serving.max_sequence_length


@pytest.mark.parametrize("name", sorted(gpu_registry()))
def test_plans_of_random_mixes_are_covered_and_complete(name):
    gpu = gpu_registry()[name]
    packer, rng = packer_for(gpu), random.Random(0)
    for _ in range(50):
        lengths = [rng.choice([rng.randint(2, 64), rng.randint(64, gpu.serving.max_sequence_length)])
                   for _ in range(rng.randint(1, 300))]
        batches = packer.plan(lengths)
        assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
        for batch in batches:
            width = max(lengths[i] for i in batch)
            assert packer.covered(len(batch), width)


def test_the_h100_case_of_the_issue_is_split():
    """Three 4,000-token passages: no profile covers 3 x 4000 on an H100, so they go as 2 + 1; the short rows do not
    ride along padded to 4,000 tokens."""
    packer = packer_for(gpu_registry()["h100"])
    batches = packer.plan([4000, 4000, 4000, 12, 30])
    assert [len(b) for b in batches] == [2, 1, 2]
    assert not packer.covered(3, 4000)


def test_budget_and_padding():
    packer = Packer([ShapeLimit("all", 8, 512)], max_batch_tokens=1024)
    lengths = [500, 20, 20, 19, 18, 17, 16, 15, 14, 13, 12, 300, 260, 200]
    batches = packer.plan(lengths)
    assert [[lengths[i] for i in b] for b in batches] == [[500, 300], [260, 200], [20, 20, 19, 18, 17, 16, 15, 14],
                                                           [13, 12]]
    real = sum(lengths)
    padded = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    assert real / padded > 0.8
    assert default_batch_tokens([ShapeLimit("a", 64, 512), ShapeLimit("b", 2, 8192)]) == 16384


def test_a_row_no_shape_accepts_is_an_error():
    with pytest.raises(ValueError, match="no encoder shape accepts a row of 600 tokens"):
        Packer([ShapeLimit("short", 8, 512)]).plan([600])
