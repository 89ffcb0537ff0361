"""Bounded tokenisation (truncate END / START / NONE) equals full tokenisation, on long and adversarial texts, while
tokenising only windows of a long text; START keeps BOS + the instruction and the end of the text."""

from __future__ import annotations

import random
import re

import pytest
import sentencepiece as spm

from nvembed_trt.errors import InputError
from nvembed_trt.tokenizer import (INPUT_TYPES, EmbeddingTokenizer, OverBudget, TokenBudget, TooLongError,
                                   bundled_sentencepiece_model)
from nvembed_trt.tokenizer.bounded import MARGIN
from texts import _POOLS, varied_strings

INSTRUCTIONS = ["", INPUT_TYPES["query"], "no trailing space:", "Überprüfe 🤖\t"]
SPECIAL = re.compile(r"(<unk>|<s>|</s>)")


def adversarial_long_texts(size: int, seed: int = 3) -> list[str]:
    """Texts longer than any window: runs of one piece, whitespace runs (16-char tokens), byte-fallback emoji,
    special-token literals, scripts without spaces, and random mixes."""
    rng = random.Random(seed)
    mixes = ["".join(rng.choice(rng.choice(_POOLS)) for _ in range(size)) for _ in range(4)]
    return [
        "a" * size, " " * size, "\n" * size, " a" * (size // 2), "🤖" * (size // 2), "</s>" * (size // 4),
        "的一是不了人我在有他" * (size // 10), "The quick brown fox jumps over the lazy dog. " * (size // 45),
        "x" + " " * (size - 2) + "y", "\u0301" * size, ("ab" * 7 + " ") * (size // 15), *mixes,
    ]


@pytest.fixture(scope="module")
def tok(tiny_dir):
    return EmbeddingTokenizer.from_dir(tiny_dir)


class Recording:
    """The real tokenizer, recording the longest string it was asked to tokenise and the characters in all."""

    def __init__(self, tokenizer):
        self.inner, self.longest, self.total = tokenizer, 0, 0

    def encode(self, text, **kw):
        self.longest, self.total = max(self.longest, len(text)), self.total + len(text)
        return self.inner.encode(text, **kw)

    def encode_batch(self, texts, **kw):
        self.longest = max([self.longest, *map(len, texts)])
        self.total += sum(map(len, texts))
        return self.inner.encode_batch(texts, **kw)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def by_rule(tok: EmbeddingTokenizer, text: str, instruction: str, max_length: int, mode: str) -> list[int]:
    """The truncation rule applied to the full tokenisation."""
    full = tok.encode_untruncated([text], instruction)[0]
    if len(full) <= max_length:
        return full
    if mode == "END":
        return full[:max_length]
    head = tok.head_positions(instruction)
    return full[:head] + full[len(full) - (max_length - head):]


@pytest.mark.parametrize("mode", ["END", "START"])
@pytest.mark.parametrize("max_length", [24, 64, 512])
@pytest.mark.parametrize("instruction", INSTRUCTIONS, ids=["none", "query", "no-space", "unicode"])
def test_bounded_equals_full_tokenisation(tok, mode, max_length, instruction):
    texts = varied_strings() + adversarial_long_texts(3 * tok.bounded.guaranteed_chars(max_length))
    got = tok.encode(texts, instruction, max_length, mode)
    for text, enc in zip(texts, got):
        want = by_rule(tok, text, instruction, max_length, mode)
        assert enc.ids == want, f"{mode} max_length {max_length} differs for {text[:40]!r} ({len(text)} chars)"
        assert enc.truncated == (len(tok.encode_untruncated([text], instruction)[0]) > max_length)


def test_start_matches_sentencepiece(tok):
    sp = spm.SentencePieceProcessor(model_file=str(bundled_sentencepiece_model()))
    texts = ["how much protein should a female eat " * 30, "中文测试 " * 200, "word " * 2000]
    for instruction in INSTRUCTIONS[:3]:
        for enc, text in zip(tok.encode(texts, instruction, 32, "START"), texts):
            ids = [1]
            for part in SPECIAL.split(instruction + text):
                ids += [sp.piece_to_id(part)] if part in ("<unk>", "<s>", "</s>") else sp.encode(part) if part else []
            ids.append(2)
            head = max(len(sp.encode(instruction)) if instruction else 0, 1)
            assert enc.ids == ids[:head] + ids[len(ids) - (32 - head):]


def test_start_keeps_the_instruction_and_pools_only_the_tail(tok):
    text = "alpha " * 50 + "the very end"
    (enc,) = tok.encode([text], INPUT_TYPES["query"], 24, "START")
    batch = tok.batch_from_ids([enc.ids], INPUT_TYPES["query"])
    masked = tok.instruction_length(INPUT_TYPES["query"])
    assert len(enc.ids) == 24 and enc.ids[-1] == tok.eos_id
    assert tok.tokenizer.decode(enc.ids[1:masked]).startswith("Instruct: Given a question")
    assert "the very end" in tok.tokenizer.decode(enc.ids[masked:])
    assert batch.pool_mask[0].tolist() == [0] * masked + [1] * (24 - masked)


@pytest.mark.parametrize("mode", ["END", "START", "NONE"])
def test_a_huge_text_is_tokenised_only_in_windows(tok, mode):
    recording = EmbeddingTokenizer(Recording(tok.tokenizer), tok.special)
    huge = "The quick brown fox jumps over the lazy dog. " * 200_000          # 9 MB
    max_length = 512
    if mode == "NONE":
        with pytest.raises(TooLongError, match=r"Input length at least \d+ exceeds maximum allowed token size 512"):
            recording.encode(["ok", huge], "", max_length, mode)
    else:
        (enc,) = recording.encode([huge], "", max_length, mode)
        assert len(enc.ids) == max_length and enc.truncated and not enc.exact
    bound = tok.bounded.guaranteed_chars(max_length)
    assert 0 < recording.tokenizer.longest <= bound < len(huge) / 100


def test_none_counts_exactly_and_names_the_input(tok):
    texts = ["fits", "word " * 100]
    with pytest.raises(TooLongError) as info:
        tok.encode(texts, "", 64, "NONE")
    assert (info.value.index, info.value.tokens, info.value.exact) == (1, 103, True)
    assert str(info.value).startswith("Input length 103 exceeds maximum allowed token size 64 (input 1")
    assert [len(e.ids) for e in tok.encode(["fits"], "", 64, "NONE")] == [3]


def test_bad_modes_and_lengths(tok):
    with pytest.raises(InputError, match="truncate must be one of NONE, START, END, got 'MIDDLE'"):
        tok.encode(["x"], "", 16, "MIDDLE")
    with pytest.raises(InputError, match="leaves no token of the text after the instruction"):
        tok.encode(["x"], INPUT_TYPES["query"], 8, "START")
    assert MARGIN > 0


# instructions cut at different hard boundaries: none at all (one run), a special-token literal, a line break last,
# a long one whose last boundary is far from its end, only spaces
SPLIT_INSTRUCTIONS = ["x" * 300, "Task</s>: <s>find it ", "Query:\n", "Instruct: " + "word " * 40 + "z" * 90 + ": ",
                      "   "]


@pytest.mark.parametrize("instruction", SPLIT_INSTRUCTIONS, ids=["run", "specials", "newline", "long-tail", "spaces"])
def test_an_instruction_tokenised_once_gives_the_full_tokenisation(tok, instruction):
    texts = varied_strings()[:40] + [" leading space", "\nnewline first", "</s>x", "z" * 40]
    texts += adversarial_long_texts(2 * tok.bounded.guaranteed_chars(160))[:6]
    for mode in ("END", "START"):
        for text, enc in zip(texts, tok.encode(texts, instruction, 160, mode)):
            assert enc.ids == by_rule(tok, text, instruction, 160, mode), (mode, text[:40])


def test_a_long_instruction_is_tokenised_once_per_request_not_per_input(tok):
    """The front door's finding: a 30,000-character instruction over 2,048 inputs was tokenised 2,048 times."""
    recording = EmbeddingTokenizer(Recording(tok.tokenizer), tok.special)
    instruction = "Instruct: " + "retrieve passages about mountains " * 100 + "\nQuery: "
    texts = [f"text {i}" for i in range(2048)]
    encoded = recording.encode(texts, instruction, 2048, "END")
    assert encoded[5].ids == by_rule(tok, texts[5], instruction, 2048, "END")
    per_text = sum(len(t) + len("Query: </s>") + 1 for t in texts)      # tail + text + EOS + joiner
    # the instruction's head once (plus its length, counted once for the pool mask), the short tail with each text
    assert recording.tokenizer.total <= 2 * len(instruction) + per_text, (recording.tokenizer.total, per_text)
    before = recording.tokenizer.total
    recording.encode(texts[:3], instruction, 2048, "END")
    assert recording.tokenizer.total - before < 3 * 30       # the same instruction again: its head is cached


def test_a_budget_bounds_the_characters_tokenised(tok):
    texts = ["word " * 100] * 10
    assert len(tok.encode(texts, "", 64, "END", TokenBudget(10_000))) == 10
    with pytest.raises(OverBudget, match="needs more than 2000 characters of tokenizer input"):
        tok.encode(texts, "", 64, "END", TokenBudget(2000))
    run = "a" * 300_000                        # no hard boundary: tokenised whole, so charged whole
    budget = TokenBudget(1_000_000)
    tok.encode([run], "", 64, "END", budget)
    assert 1_000_000 - budget.left >= 300_000
    with pytest.raises(OverBudget):
        tok.encode([run], "", 64, "END", TokenBudget(200_000))
