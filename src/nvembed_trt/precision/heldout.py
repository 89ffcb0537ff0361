"""The held-out gate set: 1,120 rows in seven slices, from offline sources, never the calibration corpus.

| slice | rows | what | source |
|---|---|---|---|
| queries | 200 | one-line summaries, standard query instruction | docstrings of stdlib functions and classes |
| instructed | 100 | the same kind of line under three other task instructions | idem |
| short | 200 | passages of 8-60 words | docstring bodies of stdlib functions and classes |
| long | 120 | passages of about 0.6x to 2x the gate's max length in tokens (the longest truncated) | stdlib module docstrings and source, concatenated |
| code | 200 | Python functions, source text | stdlib modules |
| non-english | 200 | paragraphs in 16 languages and 12 scripts | Faker's locale word lists (PyPI `faker`) |
| unicode | 100 | emoji (ZWJ sequences, flags, skin tones), combining marks, CJK, RTL, maths, box drawing, mixed | code points picked with a fixed seed, named by `unicodedata` |

The calibration corpus is the language reference (`pydoc_data.topics`); none of it is read here. Everything is
deterministic for a given Python and Faker version; `provenance` records both and a hash of every slice.
"""

from __future__ import annotations

import ast
import hashlib
import random
import sysconfig
import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from ..tokenizer import INPUT_TYPES

QUERY = INPUT_TYPES["query"]
OTHER_TASKS = ("Given a short description of a Python function, retrieve its documentation",
               "Given a question about a library, retrieve the code that answers it",
               "Retrieve semantically similar text")
LOCALES = ("de_DE", "fr_FR", "it_IT", "pl_PL", "cs_CZ", "vi_VN", "ru_RU", "uk_UA", "el_GR", "hy_AM", "ar_AA",
           "fa_IR", "zh_CN", "ja_JP", "th", "bn_BD")
SLICE_ROWS = {"queries": 200, "instructed": 100, "short": 200, "long": 120, "code": 200, "non-english": 200,
              "unicode": 100}
CHARS_PER_TOKEN = 3.5  # stdlib English prose and code with the Mistral tokenizer, roughly


@dataclass(frozen=True)
class Slice:
    name: str
    texts: list[str]
    instructions: list[str]

    def sha256(self) -> str:
        digest = hashlib.sha256()
        for text, instruction in zip(self.texts, self.instructions):
            digest.update(f"{instruction}\x00{text}\x01".encode())
        return digest.hexdigest()


@dataclass(frozen=True)
class SlicedHeldOut:
    slices: list[Slice]
    max_length: int
    provenance: dict = field(default_factory=dict)

    @property
    def rows(self) -> int:
        return sum(len(s.texts) for s in self.slices)

    def texts(self) -> set[str]:
        return {t for s in self.slices for t in s.texts}

    def subset(self, rows_per_slice: int) -> SlicedHeldOut:
        """Every slice cut to its first `rows_per_slice` rows evenly spread (for models too big to embed 1,120
        rows on a CPU in reasonable time); provenance says so."""
        slices = []
        for s in self.slices:
            keep = _spread(list(range(len(s.texts))), min(rows_per_slice, len(s.texts)))
            slices.append(Slice(s.name, [s.texts[i] for i in keep], [s.instructions[i] for i in keep]))
        provenance = {**self.provenance, "rows_per_slice": rows_per_slice,
                      "slices": {s.name: {"rows": len(s.texts), "sha256": s.sha256()} for s in slices}}
        return SlicedHeldOut(slices, self.max_length, provenance)


def _stdlib_files() -> list[Path]:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    return sorted(p for p in stdlib.glob("*.py"))


@lru_cache(maxsize=1)
def _stdlib_material() -> tuple[list[tuple[str, str]], list[str], list[str]]:
    """(summary, body) docstring pairs of functions and classes, function sources, module texts."""
    pairs, functions, modules = [], [], []
    for path in _stdlib_files():
        try:
            source = path.read_text(encoding="utf-8")
            tree = ast.parse(source)
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        module_doc = ast.get_docstring(tree) or ""
        modules.append(" ".join(module_doc.split()) + "\n\n" + source)
        lines = source.splitlines(keepends=True)
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                doc = ast.get_docstring(node)
                if doc:
                    summary, _, body = doc.strip().partition("\n")
                    pairs.append((" ".join(summary.split()), " ".join(body.split())))
                if isinstance(node, ast.FunctionDef) and not node.name.startswith("__"):
                    if node.end_lineno - node.lineno > 40:
                        continue
                    segment = "".join(lines[node.lineno - 1:node.end_lineno]).strip()
                    if 100 <= len(segment) <= 1500:
                        functions.append(segment)
    return pairs, functions, modules


def _spread(items: list, count: int) -> list:
    """`count` items evenly spread over the list (deterministic, covers every module rather than the first)."""
    if len(items) < count:
        raise RuntimeError(f"held-out source has only {len(items)} items, {count} wanted")
    step = len(items) / count
    return [items[int(i * step)] for i in range(count)]


def _unique(texts: list[str]) -> list[str]:
    return list(dict.fromkeys(texts))


def _queries(pairs) -> list[str]:
    return _unique([s for s, _ in pairs if 4 <= len(s.split()) <= 20 and not s.startswith((">>>", ":"))])


def _short(pairs) -> list[str]:
    return _unique([b for _, b in pairs if 8 <= len(b.split()) <= 60])


def _long(modules: list[str], max_length: int, count: int) -> list[str]:
    rng = random.Random(7)
    texts = []
    for i in range(count):
        target = int(max_length * CHARS_PER_TOKEN * (0.6 + 1.4 * i / max(count - 1, 1)))
        start = rng.randrange(len(modules))
        text, j = "", start
        while len(text) < target:
            text += modules[j % len(modules)] + "\n\n"
            j += 1
        texts.append(text[:target])
    return texts


def _non_english(count: int) -> list[str]:
    import faker

    texts = []
    per_locale = -(-count // len(LOCALES))
    for locale in LOCALES:
        fake = faker.Faker(locale)
        fake.seed_instance(2026)
        for i in range(per_locale):
            texts.append(fake.paragraph(nb_sentences=1 + i % 6))
    return _spread(texts, count)


UNICODE_RANGES = {
    "emoji": (0x1F300, 0x1FAFF), "cjk": (0x4E00, 0x9FFF), "hangul": (0xAC00, 0xD7A3), "arabic": (0x0621, 0x064A),
    "hebrew": (0x05D0, 0x05EA), "devanagari": (0x0905, 0x0939), "maths": (0x2200, 0x22FF),
    "box": (0x2500, 0x257F), "greek": (0x03B1, 0x03C9), "cyrillic": (0x0430, 0x044F), "latin-ext": (0x0100, 0x017F),
    "symbols": (0x2600, 0x26FF), "math-alnum": (0x1D400, 0x1D7FF),
}
COMBINING = [chr(c) for c in range(0x0300, 0x0370)]
SPECIAL = ["\u200d", "\u200b", "\u200e", "\u200f", "\ufe0f", "\u2028", "\t", "\u00a0", "\u3000"]
SKIN = [chr(c) for c in range(0x1F3FB, 0x1F400)]
FLAGS = ["\U0001F1FA\U0001F1F8", "\U0001F1EF\U0001F1F5", "\U0001F1E9\U0001F1EA", "\U0001F1E7\U0001F1F7"]
ZWJ = ["\U0001F468\u200d\U0001F469\u200d\U0001F467", "\U0001F3F3\ufe0f\u200d\U0001F308", "\U0001F9D1\u200d\U0001F4BB"]


def _named(rng: random.Random, low: int, high: int) -> str:
    while True:
        ch = chr(rng.randint(low, high))
        if unicodedata.name(ch, ""):
            return ch


def _unicode(count: int) -> list[str]:
    rng = random.Random(2026)
    names = list(UNICODE_RANGES)
    texts = []
    for i in range(count):
        parts = []
        for _ in range(rng.randint(3, 40)):
            kind = rng.random()
            if kind < 0.6:
                low, high = UNICODE_RANGES[names[(i + len(parts)) % len(names)] if rng.random() < 0.5
                                           else rng.choice(names)]
                word = "".join(_named(rng, low, high) for _ in range(rng.randint(1, 6)))
            elif kind < 0.7:
                word = "".join(rng.choice("aeiouxyz") + rng.choice(COMBINING) for _ in range(rng.randint(1, 4)))
            elif kind < 0.8:
                word = rng.choice(ZWJ + FLAGS) + (rng.choice(SKIN) if rng.random() < 0.3 else "")
            elif kind < 0.9:
                word = rng.choice(SPECIAL).join(["x", _named(rng, 0x1F600, 0x1F64F)])
            else:
                word = rng.choice(["naïve", "Straße", "ﬁle", "Ⅻ", "①②③", "ｆｕｌｌｗｉｄｔｈ", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢"])
            parts.append(word)
        texts.append(" ".join(parts))
    return texts


@lru_cache(maxsize=4)
def sliced_heldout(max_length: int = 512) -> SlicedHeldOut:
    """The gate's held-out set for graphs serving up to `max_length` tokens (the long slice reaches past it)."""
    import faker

    from ..calibration.corpus import python_reference_corpus

    calibration = {s.text for s in python_reference_corpus().samples}
    pairs, functions, modules = _stdlib_material()
    pairs = [(q, b) for q, b in pairs if q not in calibration and b not in calibration]
    queries = _queries(pairs)
    picked = _spread(queries, SLICE_ROWS["queries"] + SLICE_ROWS["instructed"])
    standard, other = picked[0::3] + picked[1::3], picked[2::3]
    standard = standard[:SLICE_ROWS["queries"]]
    other = (other + standard[SLICE_ROWS["queries"]:])[:SLICE_ROWS["instructed"]]
    other_instr = [f"Instruct: {OTHER_TASKS[i % len(OTHER_TASKS)]}\nQuery: " for i in range(len(other))]
    short = _spread(_short(pairs), SLICE_ROWS["short"])
    code = _spread(_unique(functions), SLICE_ROWS["code"])
    slices = [
        Slice("queries", standard, [QUERY] * len(standard)),
        Slice("instructed", other, other_instr),
        Slice("short", short, [""] * len(short)),
        Slice("long", _long(modules, max_length, SLICE_ROWS["long"]), [""] * SLICE_ROWS["long"]),
        Slice("code", code, [""] * len(code)),
        Slice("non-english", _non_english(SLICE_ROWS["non-english"]), [""] * SLICE_ROWS["non-english"]),
        Slice("unicode", _unicode(SLICE_ROWS["unicode"]), [""] * SLICE_ROWS["unicode"]),
    ]
    provenance = {"source": "sliced-heldout", "python": sysconfig.get_python_version(),
                  "stdlib": sysconfig.get_paths()["stdlib"], "faker": faker.VERSION, "max_length": max_length,
                  "slices": {s.name: {"rows": len(s.texts), "sha256": s.sha256()} for s in slices}}
    return SlicedHeldOut(slices, max_length, provenance)
