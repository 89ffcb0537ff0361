"""Bounded tokenisation: only the part of a long text that can reach the encoder is tokenised, with exactly the ids
full tokenisation gives.

Why a window is exact. BPE merges only symbols whose concatenation is a vocabulary piece, so no merge can span two
adjacent characters that appear together in no piece (after the normaliser's ' ' -> '▁'): such a position is a
*hard boundary*, and the text's tokens are the tokens of the part before it followed by those of the part after it.
NV-Embed-v2's vocabulary never puts '▁' after another character, so every word start is one; newlines and other
byte-fallback characters are hard on both sides. A prefix window is therefore cut at a hard boundary, and a suffix
window starts at one (tokenised behind a joiner character that occurs in no piece, whose own tokens are dropped).
Where a text has no hard boundary near the window (one long run such as 'aaaa…'), it is tokenised whole: the front
door's per-input byte limit bounds that case. tests/tokenizer/test_bounded.py checks the results against full
tokenisation and SentencePiece on long and adversarial texts.

When is a text long? A token covers at most `piece_chars` characters (the longest piece: 16 here), so a prompt of more
than (max_length + MARGIN) x piece_chars characters certainly exceeds max_length tokens; shorter ones are tokenised
whole in one batched call, exactly as before.

The instruction is tokenised once per instruction, not once per text: it is cut at its own last hard boundary, the
part before it tokenised alone (`Prompt.head`), the short rest (usually its last word) tokenised with each text.
Every string handed to the tokenizer can be charged to a `TokenBudget`, which bounds what one request may cost.

Truncation modes (NIM's `truncate`): END keeps the start (upstream's right truncation, which can drop the EOS);
START keeps the end of the text while BOS + the instruction stay in place, so the pool_mask rule (zero the first
len(tokenize(instruction)) positions) still holds; NONE refuses an over-long input.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from tokenizers import Tokenizer

from ..errors import InputError

TRUNCATE_MODES = ("NONE", "START", "END")
MARGIN = 64              # spare tokens asked of a window, so one window usually suffices
TYPICAL_CHARS = 5        # first window: characters per token of ordinary text
SCAN_CHUNK = 4096        # characters examined at a time when looking for a hard boundary
EXACT_COUNT_WINDOWS = 8  # under NONE, count an over-long prompt exactly up to this many guaranteed windows
SPACE, META = ord(" "), ord("▁")
JOINER_CANDIDATES = "\n\x00\x01\x1f"
GIL_FREE_CHARS = 512     # longer strings go through encode_batch, which releases the GIL while it tokenises


class TooLongError(InputError):
    """An input exceeds max_length tokens under truncate NONE; names the input, its length and the limit."""

    def __init__(self, index: int, tokens: int, exact: bool, max_length: int):
        self.index, self.tokens, self.exact, self.max_length = index, tokens, exact, max_length
        length = f"{tokens}" if exact else f"at least {tokens}"
        super().__init__(f"Input length {length} exceeds maximum allowed token size {max_length} (input {index}, "
                         f"truncate NONE; shorten it or send truncate END or START)")


@dataclass(frozen=True)
class Encoded:
    ids: list[int]   # BOS + instruction + text + EOS as it reaches the encoder (after truncation)
    tokens: int      # the untruncated length; a lower bound when `exact` is False
    exact: bool = True

    @property
    def truncated(self) -> bool:
        return self.tokens > len(self.ids)


def check_truncate(truncate: str) -> str:
    mode = str(truncate).upper()
    if mode not in TRUNCATE_MODES:
        raise InputError(f"truncate must be one of {', '.join(TRUNCATE_MODES)}, got {truncate!r}")
    return mode


class OverBudget(InputError):
    """One call would make the tokenizer read more characters than its budget allows."""

    def __init__(self, limit: int):
        self.limit = limit
        super().__init__(f"tokenising this request needs more than {limit} characters of tokenizer input")


class TokenBudget:
    """Characters the tokenizer may still read for one request (every string handed to it is charged first; chunks
    of one request may be tokenised on several threads)."""

    def __init__(self, chars: int):
        self.limit = self.left = chars
        self.lock = threading.Lock()

    def charge(self, chars: int) -> None:
        with self.lock:
            self.left -= chars
            if self.left < 0:
                raise OverBudget(self.limit)


@dataclass(frozen=True)
class Prompt:
    """An instruction, tokenised once for all the texts it precedes. No merge spans a hard boundary, so the ids of
    instruction + text are `head` (BOS and the instruction up to its last hard boundary) followed by the ids of
    `tail` + text, tokenised per text behind the joiner when `joined` (else as the start of the prompt)."""

    head: list[int]
    tail: str
    joined: bool


def _codes(text: str) -> np.ndarray:
    """Code points with ' ' normalised to '▁' (the normaliser's only character-level change)."""
    points = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32).astype(np.uint64)
    points[points == SPACE] = META
    return points


class Boundaries:
    """Hard boundaries of a vocabulary: positions no merge can span (see the module docstring)."""

    def __init__(self, tokenizer: Tokenizer, specials: Sequence[str]):
        pieces = list(tokenizer.get_vocab(with_added_tokens=True))
        pairs = {(ord(p[i]) << 21) | ord(p[i + 1]) for p in pieces for i in range(len(p) - 1)}
        self.pairs = np.array(sorted(pairs), dtype=np.uint64)
        self.specials = [s for s in specials if len(s) > 1]
        used = {ch for p in pieces for ch in p}
        self.joiner = next((c for c in JOINER_CANDIDATES if c not in used), None)

    def _hard(self, codes: np.ndarray) -> np.ndarray:
        """For each adjacent pair of codes, whether it is a hard boundary."""
        bigrams = (codes[:-1] << np.uint64(21)) | codes[1:]
        return ~np.isin(bigrams, self.pairs)

    def _inside_special(self, text: str, p: int) -> bool:
        return any(text[p - k:p - k + len(s)] == s for s in self.specials for k in range(1, len(s)))

    def forward(self, text: str, start: int) -> int:
        """The first hard boundary p >= start (0 < p < len), or len(text) if there is none."""
        lo = max(start, 1)
        while lo < len(text):
            hi = min(len(text), lo + SCAN_CHUNK)
            for i in np.flatnonzero(self._hard(_codes(text[lo - 1:hi]))):
                if not self._inside_special(text, lo + int(i)):
                    return lo + int(i)
            lo = hi
        return len(text)

    def backward(self, text: str, end: int) -> int:
        """The last hard boundary 0 < p <= end, or 0 if there is none."""
        hi = min(end, len(text) - 1)
        while hi >= 1:
            lo = max(1, hi - SCAN_CHUNK)
            for i in np.flatnonzero(self._hard(_codes(text[lo - 1:hi + 1])))[::-1]:
                if not self._inside_special(text, lo + int(i)):
                    return lo + int(i)
            hi = lo - 1
        return 0


class BoundedEncoder:
    """Token ids of `instruction + text + eos` with BOS, truncated per mode, tokenising bounded windows. The
    instruction is tokenised once (`prompt`), not once per text; a `TokenBudget` bounds what one call may read."""

    def __init__(self, tokenizer: Tokenizer, prefix: list[int], eos_literal: str, specials: Sequence[str] = ()):
        self.tokenizer, self.prefix, self.eos_literal = tokenizer, prefix, eos_literal
        self.piece_chars = max(1, max(len(p) for p in tokenizer.get_vocab(with_added_tokens=True)))
        self.boundaries = Boundaries(tokenizer, [eos_literal, *specials])
        joiner = self.boundaries.joiner
        self.joiner_tokens = len(self._ids(joiner)) if joiner is not None else None

    def _ids(self, text: str, budget: TokenBudget | None = None) -> list[int]:
        if budget is not None:
            budget.charge(len(text))
        if len(text) > GIL_FREE_CHARS:   # Tokenizer.encode holds the GIL throughout (a 1M-character run: ~2 s)
            return self.tokenizer.encode_batch([text], add_special_tokens=False)[0].ids
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def _continued(self, text: str, joined: bool, budget: TokenBudget | None) -> list[int]:
        """Ids of `text` where it follows a hard boundary (behind the joiner, whose tokens are dropped) or, when not
        `joined`, where it starts the prompt."""
        if not joined:
            return self._ids(text, budget)
        return self._ids(self.boundaries.joiner + text, budget)[self.joiner_tokens:]

    def guaranteed_chars(self, tokens: int) -> int:
        """A prompt of more characters than this holds more than `tokens` tokens."""
        return (tokens + MARGIN) * self.piece_chars

    def prompt(self, instruction: str) -> Prompt:
        """The instruction split at its last hard boundary: the part before it tokenised now, once."""
        cut = 0
        if instruction and self.joiner_tokens is not None:
            cut = self.boundaries.backward(instruction, len(instruction))
        if cut <= 0:
            return Prompt(list(self.prefix), instruction, False)
        return Prompt(self.prefix + self._ids(instruction[:cut]), instruction[cut:], True)

    def _head(self, prompt: Prompt, body: str, keep: int, budget: TokenBudget | None) -> list[int] | None:
        """The first `keep` ids (BOS included) of the prompt's head followed by `body` (its tail + the text), from a
        prefix of body cut at a hard boundary; None when body has no usable boundary (tokenise it whole)."""
        need = keep - len(prompt.head)
        if need <= 0:
            return prompt.head[:keep]
        for chars in ((need + MARGIN) * TYPICAL_CHARS, self.guaranteed_chars(need)):
            cut = self.boundaries.forward(body, chars)
            if cut >= len(body):
                return None
            ids = self._continued(body[:cut], prompt.joined, budget)
            if len(ids) >= need:
                return prompt.head + ids[:need]
        return None

    def _tail(self, text: str, keep: int, budget: TokenBudget | None) -> list[int] | None:
        """The last `keep` ids of text + EOS, from a suffix starting at a hard boundary of the text; None when there
        is no usable boundary."""
        if self.joiner_tokens is None:
            return None
        for chars in ((keep + MARGIN) * TYPICAL_CHARS, self.guaranteed_chars(keep)):
            cut = self.boundaries.backward(text, len(text) - chars)
            if cut <= 0:
                return None
            ids = self._continued(text[cut:] + self.eos_literal, True, budget)
            if len(ids) >= keep:
                return ids[len(ids) - keep:]
        return None

    def _count(self, prompt: Prompt, body: str, max_length: int, budget: TokenBudget | None) -> tuple[int, bool]:
        """Length of an over-long prompt (body ends with EOS): exact up to a bounded size, else a lower bound."""
        if len(body) <= EXACT_COUNT_WINDOWS * self.guaranteed_chars(max_length):
            return len(prompt.head) + len(self._continued(body, prompt.joined, budget)), True
        return len(prompt.head) + math.ceil(len(body) / self.piece_chars), False

    @staticmethod
    def _truncate(ids: list[int], max_length: int, mode: str, head: int) -> list[int]:
        if len(ids) <= max_length or mode == "NONE":
            return ids
        if mode == "END":
            return ids[:max_length]
        return ids[:head] + ids[len(ids) - (max_length - head):]

    def _long(self, text: str, prompt: Prompt, max_length: int, mode: str, head: int,
              budget: TokenBudget | None) -> Encoded:
        body = prompt.tail + text
        lower_bound = len(prompt.head) + math.ceil((len(body) + len(self.eos_literal)) / self.piece_chars)
        if mode == "NONE":
            return Encoded([], *self._count(prompt, body + self.eos_literal, max_length, budget))
        if mode == "END":
            ids = self._head(prompt, body, max_length, budget)
        else:
            front, back = self._head(prompt, body, head, budget), self._tail(text, max_length - head, budget)
            ids = None if front is None or back is None else front + back
        if ids is None:  # no hard boundary to cut at: tokenise it whole (bounded by the byte limit and the budget)
            full = prompt.head + self._continued(body + self.eos_literal, prompt.joined, budget)
            return Encoded(self._truncate(full, max_length, mode, head), len(full))
        return Encoded(ids, lower_bound, exact=False)

    def encode(self, texts: Sequence[str], prompt: Prompt, max_length: int, mode: str, head: int,
               budget: TokenBudget | None = None) -> list[Encoded]:
        """One Encoded per text. `head`: positions START keeps at the front (BOS + masked instruction).
        NONE raises TooLongError naming the first over-long input (and tokenises no further)."""
        if mode == "START" and head >= max_length:
            raise InputError(f"max_length {max_length} leaves no token of the text after the instruction's {head} "
                             f"positions; raise max_length or shorten the instruction")
        limit = self.guaranteed_chars(max_length)
        out: list[Encoded | None] = [None] * len(texts)
        short = [i for i, text in enumerate(texts) if len(prompt.tail) + len(text) <= limit]
        joiner, drop = (self.boundaries.joiner, self.joiner_tokens) if prompt.joined else ("", 0)
        bodies = [joiner + prompt.tail + texts[i] + self.eos_literal for i in short]
        if budget is not None:
            budget.charge(sum(map(len, bodies)))
        for i, enc in zip(short, self.tokenizer.encode_batch(bodies, add_special_tokens=False)):
            ids = prompt.head + enc.ids[drop:]
            out[i] = Encoded(self._truncate(ids, max_length, mode, head), len(ids))
        for i, text in enumerate(texts):
            if out[i] is None:
                out[i] = self._long(text, prompt, max_length, mode, head, budget)
            if mode == "NONE" and out[i].tokens > max_length:
                raise TooLongError(i, out[i].tokens, out[i].exact, max_length)
        return out  # type: ignore[return-value]
