"""The reference against an independent implementation (transformers MistralModel + plain latent attention)."""

from __future__ import annotations

import pytest
import torch

from independent import IndependentNVEmbed
from nvembed_trt.checkpoint import load_model, write_checkpoint
from nvembed_trt.presets import PRESETS
from nvembed_trt.tokenizer import EmbeddingTokenizer, INPUT_TYPES
from texts import SENTENCES

COS_MIN, ABS_MAX = 0.99999, 1e-5


@pytest.fixture(scope="module")
def sharded_dir(tmp_path_factory):
    preset = PRESETS["tiny"]
    dest = tmp_path_factory.mktemp("ckpt") / "tiny-sharded"
    return write_checkpoint(preset.config, dest, seed=99, max_shard_bytes=150_000, progress=False)


def _compare(checkpoint, instruction, cosine, attention_impl="sdpa"):
    model = load_model(checkpoint, attention_impl=attention_impl, progress=False)
    tokenizer = EmbeddingTokenizer.from_dir(checkpoint)
    batch = tokenizer(SENTENCES, instruction, max_length=512).to_torch()
    with torch.no_grad():
        ours = model(**batch)
    theirs = IndependentNVEmbed(checkpoint, model.cfg)(**batch)
    cos = cosine(ours, theirs)
    err = (ours - theirs).abs().amax(dim=1)
    assert cos.min().item() >= COS_MIN, f"per-row cosine {cos.tolist()}"
    assert err.max().item() <= ABS_MAX, f"per-row max abs error {err.tolist()}"
    return ours


@pytest.mark.parametrize("instruction", ["", INPUT_TYPES["query"]], ids=["passage", "query"])
def test_tiny_matches_independent_implementation(tiny_dir, instruction, cosine):
    ours = _compare(tiny_dir, instruction, cosine)
    assert ours.shape == (len(SENTENCES), PRESETS["tiny"].body.hidden_size)


def test_sharded_checkpoint_matches_independent_implementation(sharded_dir, cosine):
    assert len(list(sharded_dir.glob("model-*.safetensors"))) >= 3
    _compare(sharded_dir, INPUT_TYPES["query"], cosine)


def test_eager_attention_matches_independent_implementation(tiny_dir, cosine):
    _compare(tiny_dir, "", cosine, attention_impl="eager")


def test_attention_is_bidirectional_and_ignores_padding(tiny_dir):
    """Changing the last real token changes the first token's state; changing padding changes nothing."""
    model = load_model(tiny_dir, progress=False)
    ids = torch.tensor([[1, 500, 600, 700, 2, 2, 2]])
    mask = torch.tensor([[1, 1, 1, 1, 1, 0, 0]])
    with torch.no_grad():
        base = model.token_states(ids, mask)
        later = model.token_states(torch.tensor([[1, 500, 600, 701, 2, 2, 2]]), mask)
        padded = model.token_states(torch.tensor([[1, 500, 600, 700, 2, 9, 9]]), mask)
    assert (later[0, 0] - base[0, 0]).abs().max().item() > 1e-3
    assert (padded[0, :5] - base[0, :5]).abs().max().item() == 0.0


def test_pooling_uses_pool_mask_not_attention_mask(tiny_dir):
    model = load_model(tiny_dir, progress=False)
    ids = torch.tensor([[1, 500, 600, 700, 2]])
    full = torch.ones_like(ids)
    pool = torch.tensor([[0, 0, 1, 1, 1]])
    with torch.no_grad():
        a, b = model(ids, full, full), model(ids, full, pool)
    assert torch.nn.functional.cosine_similarity(a, b).item() < 0.9999
