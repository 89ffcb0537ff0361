"""Test inputs: hand-picked edge cases plus deterministic random strings from many scripts."""

from __future__ import annotations

import random

EDGE_CASES = [
    "", " ", "  ", "\t", "\n", "\r\n", "a", "hello world", "  leading spaces", "trailing spaces   ",
    "multiple   inner    spaces", "tab\tseparated\tvalues", "line one\nline two\n\nline four",
    "Ünïcödé àccents ñ ç ß", "中文测试：自然语言处理", "日本語のテキストです。", "한국어 문장입니다",
    "Русский текст с пунктуацией!", "العربية من اليمين إلى اليسار", "עברית", "हिन्दी पाठ", "ελληνικά",
    "emoji 🤖🚀🔥 and 👨‍👩‍👧‍👦 family", "flags 🇫🇷🇯🇵", "math ∑∫√∞ ≤ ≥ ≠", "zero\u200bwidth\u200cjoin",
    "combining e\u0301 vs é", "ligature ﬁ ﬂ", "fullwidth ＡＢＣ１２３", "null\x00byte", "bell\x07 char",
    "numbers 1234567890 3.14159 -42 1e-5", "URL https://example.com/a?b=c&d=e#f", "email a.b@c.org",
    "code: def f(x):\n    return x ** 2", "JSON {\"k\": [1, 2, {\"z\": null}]}", "<html><b>bold</b></html>",
    "C:\\Windows\\path", "quotes “smart” ‘single’ «guillemets»", "dashes – — ‑", "ellipsis…",
    "Instruct: Given a question, retrieve passages that answer the question\nQuery: what is RoPE?",
    "ALL CAPS SENTENCE", "MiXeD cAsE", "a" * 300, "word " * 200, "🤖" * 50,
    "The quick brown fox jumps over the lazy dog. " * 40,
]

_POOLS = [
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
    "0123456789", " ", "  \t\n", ".,;:!?'\"()[]{}<>/\\|@#$%^&*-_=+~`",
    "àáâãäåæçèéêëìíîïñòóôõöøùúûüýÿßœ", "αβγδεζηθικλμνξοπρστυφχψω", "абвгдежзийклмнопрстуфхцчшщыэюя",
    "的一是不了人我在有他这为之大来以个中上们", "あいうえおかきくけこアイウエオ", "가나다라마바사아자차카타파하",
    "😀😂🥲🤖🚀🔥💡🎉🍕🐍", "\u0301\u0308\u200d\ufe0f",
]


def random_strings(count: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        pools = rng.sample(_POOLS, k=rng.randint(1, 4))
        length = rng.choice([1, 3, 10, 40, 120, 600])
        out.append("".join(rng.choice(rng.choice(pools)) for _ in range(length)))
    return out


def varied_strings() -> list[str]:
    """At least 200 strings: edge cases, random mixes and one very long text."""
    return EDGE_CASES + random_strings(200) + ["Long document. " * 3000]


SENTENCES = [
    "how much protein should a female eat",
    "summit define",
    "As a general guideline, the CDC's average requirement of protein for women ages 19 to 70 is 46 grams per day.",
    "Definition of summit for English Language Learners: the highest point of a mountain.",
    "Rotary position embeddings rotate query and key vectors by position-dependent angles.",
    "x",
    "Dynamic batching groups requests that arrive within a short window into one engine call, "
    "trading a little latency for much higher throughput on a busy server. " * 3,
]
