"""Tokenisation against SentencePiece run directly on the same tokenizer.model (the official encode() rule)."""

from __future__ import annotations

import re

import numpy as np
import pytest
import sentencepiece as spm

from nvembed_trt.errors import InputError
from nvembed_trt.tokenizer import (INPUT_TYPES, EmbeddingTokenizer, bundled_sentencepiece_model,
                                   instruction_for_task, read_fast_tokenizer, resolve_instruction)
from nvembed_trt.tokenizer.sentencepiece import fast_tokenizer_from_sentencepiece
from texts import varied_strings

BOS, EOS = 1, 2
SPECIAL = re.compile(r"(<unk>|<s>|</s>)")
INSTRUCTIONS = ["", INPUT_TYPES["query"], instruction_for_task("Retrieve semantically similar text"),
                "no trailing space:", "Überprüfe 🤖\t"]


@pytest.fixture(scope="module")
def sp():
    return spm.SentencePieceProcessor(model_file=str(bundled_sentencepiece_model()))


@pytest.fixture(scope="module")
def tok(tiny_dir):
    return EmbeddingTokenizer.from_dir(tiny_dir)


def sp_reference(sp, text: str, instruction: str, max_length: int) -> tuple[list[int], int]:
    """Ids and masked count, computed with SentencePiece alone: special-token literals are split out and each
    remaining segment is encoded on its own (as transformers' added-token handling does)."""
    ids = [BOS]
    for part in SPECIAL.split(instruction + text):
        if part in ("<unk>", "<s>", "</s>"):
            ids.append(sp.piece_to_id(part))
        elif part:
            ids.extend(sp.encode(part))
    ids.append(EOS)
    masked = len(sp.encode(instruction)) if instruction else 0
    return ids[:max_length], masked


def test_at_least_200_varied_strings():
    strings = varied_strings()
    assert len(strings) >= 200
    assert any(len(s) > 20000 for s in strings) and "" in strings


@pytest.mark.parametrize("instruction", INSTRUCTIONS, ids=["none", "query", "task", "no-space", "unicode"])
def test_ids_and_pool_mask_match_sentencepiece(sp, tok, instruction):
    strings = varied_strings()
    max_length = 32768
    batch = tok(strings, instruction, max_length)
    for row, text in enumerate(strings):
        want_ids, masked = sp_reference(sp, text, instruction, max_length)
        n = int(batch.attention_mask[row].sum())
        assert batch.input_ids[row, :n].tolist() == want_ids, f"ids differ for {text[:60]!r}"
        assert (batch.input_ids[row, n:] == EOS).all(), "padding must be the EOS id"
        want_pool = np.ones(n, dtype=np.int64)
        want_pool[:masked] = 0
        assert batch.pool_mask[row, :n].tolist() == want_pool.tolist(), f"pool mask differs for {text[:60]!r}"
        assert batch.pool_mask[row, n:].sum() == 0


def test_special_token_literals_split_like_transformers(sp, tok):
    for text in ["x</s>y", "<s>", "a</s> b</s>", "<unk> token"]:
        ids = tok([text], "", 64).input_ids[0].tolist()
        assert ids == sp_reference(sp, text, "", 64)[0]


@pytest.mark.parametrize("max_length", [2, 3, 7, 16])
def test_right_truncation_can_drop_eos(sp, tok, max_length):
    text = "The quick brown fox jumps over the lazy dog, repeatedly and at length."
    batch = tok([text], "", max_length)
    want, _ = sp_reference(sp, text, "", max_length)
    assert batch.input_ids[0].tolist() == want
    assert len(want) == max_length and (want[-1] == EOS) is False


def test_standard_query_instruction_masks_bos_and_instruction(tok):
    """For the standard prompt the masked positions are exactly BOS + the instruction: the instruction's trailing
    '▁' merges into the first text token, so the mask count (no BOS) lands right."""
    instruction = INPUT_TYPES["query"]
    batch = tok(["what is rope"], instruction, 64)
    masked = tok.instruction_length(instruction)
    tokens = [tok.tokenizer.id_to_token(int(i)) for i in batch.input_ids[0]]
    assert tokens[0] == "<s>" and tokens[masked] == "▁what"
    assert batch.pool_mask[0, :masked].sum() == 0 and batch.pool_mask[0, masked] == 1


def test_instruction_without_trailing_space_pools_its_last_token(tok):
    """Reproduce the rule, not the outcome: here the last instruction token stays in the pool."""
    instruction = "Query:"
    batch = tok(["hello"], instruction, 64)
    masked = tok.instruction_length(instruction)
    tokens = [tok.tokenizer.id_to_token(int(i)) for i in batch.input_ids[0]]
    assert tokens[masked] == ":" and batch.pool_mask[0, masked] == 1


def test_passage_masks_nothing(tok):
    batch = tok(["a passage", ""], "", 64)
    assert (batch.pool_mask == batch.attention_mask).all()
    assert batch.input_ids[1, :2].tolist() == [BOS, EOS]


def test_fast_tokenizer_file_equals_fresh_conversion(tiny_dir):
    from_file = read_fast_tokenizer(tiny_dir)
    fresh = fast_tokenizer_from_sentencepiece(tiny_dir / "tokenizer.model")
    for text in varied_strings()[:120]:
        assert from_file.encode(text).ids == fresh.encode(text).ids


def test_sentencepiece_only_checkpoint_uses_tokenizer_model(tmp_path, tiny_dir, sp):
    (tmp_path / "tokenizer.model").write_bytes((tiny_dir / "tokenizer.model").read_bytes())
    tok = EmbeddingTokenizer.from_dir(tmp_path)
    assert tok(["héllo wörld"], "", 64).input_ids[0].tolist() == [BOS] + sp.encode("héllo wörld") + [EOS]


@pytest.mark.parametrize("bad", [1, 0, -5, 2.5, True])
def test_max_length_below_two_is_refused(tok, bad):
    with pytest.raises(InputError, match=r"max_length must be an integer >= 2.*got"):
        tok(["text"], "", bad)


def test_max_length_above_model_positions_is_refused(tiny_dir):
    tok = EmbeddingTokenizer.from_dir(tiny_dir, max_positions=32768)
    with pytest.raises(InputError, match="max_length 40000 exceeds the model's max_position_embeddings 32768"):
        tok(["text"], "", 40000)


def test_instruction_longer_than_max_length_is_refused(tok):
    with pytest.raises(InputError, match="leaves no token to pool"):
        tok(["text"], INPUT_TYPES["query"], 4)


def test_input_type_and_explicit_instruction():
    assert resolve_instruction("query") == "Instruct: " + \
        "Given a question, retrieve passages that answer the question\nQuery: "
    assert resolve_instruction("passage") == ""
    assert resolve_instruction("query", "Custom: ") == "Custom: "
    with pytest.raises(InputError, match="unknown input type 'document'; choose one of query, passage"):
        resolve_instruction("document")
