"""Tokenisation exactly as NV-Embed-v2's encode() (KNOWLEDGE §1).

text fed to the tokenizer: instruction + text + "</s>"; BOS added, EOS not added by the tokenizer (the literal
"</s>" is the EOS); right truncation to max_length (may drop the EOS); right padding with the pad id (EOS, 2)
to the longest row. pool_mask is attention_mask with its first len(tokenize(instruction)) positions zeroed: that
count excludes BOS, so for the standard prompt it covers BOS + the instruction (its trailing "▁" merges into the
first text token). The rule is reproduced, not the outcome.

Imports only numpy and tokenizers (torch is imported by `to_torch` alone), so Triton's python-backend models and
the serving front door run in NVIDIA's Triton image without PyTorch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from ..errors import InputError, TokenizerError
from .bounded import GIL_FREE_CHARS, BoundedEncoder, Encoded, TokenBudget, TooLongError, check_truncate
from .files import SpecialTokens, read_fast_tokenizer, read_special_tokens

MIN_MAX_LENGTH = 2  # BOS plus one token
PROMPT_CACHE = 64   # instructions whose tokenisation is kept


def check_max_length(max_length: int, max_positions: int | None = None) -> None:
    """max_length must leave room for BOS plus one token and stay within the model's positions."""
    if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < MIN_MAX_LENGTH:
        raise InputError(f"max_length must be an integer >= {MIN_MAX_LENGTH} (BOS plus one token), "
                         f"got {max_length!r}")
    if max_positions is not None and max_length > max_positions:
        raise InputError(f"max_length {max_length} exceeds the model's max_position_embeddings {max_positions}")


@dataclass(frozen=True)
class TokenizedBatch:
    input_ids: np.ndarray       # (B, T) int64
    attention_mask: np.ndarray  # (B, T) int64
    pool_mask: np.ndarray       # (B, T) int64

    @property
    def lengths(self) -> np.ndarray:
        return self.attention_mask.sum(axis=1)

    def to_torch(self, device="cpu") -> dict:
        import torch

        return {name: torch.from_numpy(getattr(self, name)).to(device)
                for name in ("input_ids", "attention_mask", "pool_mask")}


class EmbeddingTokenizer:
    def __init__(self, tokenizer: Tokenizer, special: SpecialTokens = SpecialTokens(),
                 mask_instruction: bool = True, max_positions: int | None = None):
        self.tokenizer, self.special = tokenizer, special
        self.mask_instruction, self.max_positions = mask_instruction, max_positions
        self.bos_id, self.eos_id, self.pad_id = (self._id(special.bos), self._id(special.eos),
                                                 self._id(special.pad))
        added = [t.content for t in tokenizer.get_added_tokens_decoder().values()]
        self.bounded = BoundedEncoder(tokenizer, [self.bos_id] if special.add_bos else [], special.eos, added)
        # an instruction is tokenised once, not once per text or per request: recent ones are kept
        self.prompt = lru_cache(maxsize=PROMPT_CACHE)(self.bounded.prompt)
        self.instruction_length = lru_cache(maxsize=PROMPT_CACHE)(self._instruction_length)
        self.id_prefix = lru_cache(maxsize=PROMPT_CACHE)(self._id_prefix)
        self.vocab_size = tokenizer.get_vocab_size()

    @classmethod
    def from_dir(cls, root: Path, mask_instruction: bool = True,
                 max_positions: int | None = None) -> EmbeddingTokenizer:
        return cls(read_fast_tokenizer(root), read_special_tokens(root), mask_instruction, max_positions)

    def _id(self, token: str) -> int:
        token_id = self.tokenizer.token_to_id(token)
        if token_id is None:
            raise TokenizerError(f"special token {token!r} is not in the tokenizer's vocabulary")
        return token_id

    def tokenize(self, text: str) -> list[str]:
        """Tokens without special tokens added, like transformers' tokenizer.tokenize()."""
        if len(text) > GIL_FREE_CHARS:   # encode_batch releases the GIL while it tokenises; encode does not
            return self.tokenizer.encode_batch([text], add_special_tokens=False)[0].tokens
        return self.tokenizer.encode(text, add_special_tokens=False).tokens

    def _instruction_length(self, instruction: str) -> int:
        """How many leading positions the pool mask drops for this instruction (upstream's instruction_lens);
        `instruction_length` is this, cached."""
        if not (self.mask_instruction and instruction):
            return 0
        return len(self.tokenize(instruction))

    def check_max_length(self, max_length: int) -> None:
        check_max_length(max_length, self.max_positions)

    def encode_untruncated(self, texts: Sequence[str], instruction: str) -> list[list[int]]:
        """Token ids per text: BOS + instruction + text + EOS, not truncated (one batched tokenizer call)."""
        self._check_texts(texts)
        prompts = [instruction + text + self.special.eos for text in texts]
        prefix = [self.bos_id] if self.special.add_bos else []
        return [prefix + enc.ids for enc in self.tokenizer.encode_batch(prompts, add_special_tokens=False)]

    @staticmethod
    def _check_texts(texts: Sequence[str]) -> None:
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise InputError(f"input {i} must be a string, got {type(text).__name__}")

    def head_positions(self, instruction: str) -> int:
        """Positions truncate START keeps at the front: BOS + the masked instruction (at least BOS)."""
        return max(self.instruction_length(instruction), 1 if self.special.add_bos else 0)

    def encode(self, texts: Sequence[str], instruction: str, max_length: int, truncate: str = "END",
               budget: TokenBudget | None = None) -> list[Encoded]:
        """Ids per text truncated per `truncate` (END, START or NONE), tokenising only what can reach the encoder
        and the instruction once; NONE raises TooLongError naming the first over-long input, `budget` OverBudget
        (see tokenizer/bounded.py)."""
        self.check_max_length(max_length)
        self._check_texts(texts)
        mode = check_truncate(truncate)
        head = self.head_positions(instruction) if mode == "START" else 0
        return self.bounded.encode(texts, self.prompt(instruction), max_length, mode, head, budget)

    def _id_prefix(self, instruction: str) -> tuple[int, ...]:
        """BOS + the instruction's ids as they stand before a text's ids: a trailing lone "▁" (the instruction's
        final space) is dropped, because in `instruction + text` SentencePiece merges it into the text's first token,
        which a text's own ids already carry. `id_prefix` is this, cached."""
        prefix = [self.bos_id] if self.special.add_bos else []
        if not instruction:
            return tuple(prefix)
        encoded = self.tokenizer.encode(instruction, add_special_tokens=False)
        ids = encoded.ids[:-1] if instruction.endswith(" ") and encoded.tokens[-1:] == ["▁"] else encoded.ids
        return tuple(prefix + ids)

    def encode_token_ids(self, rows: Sequence[Sequence[int]], instruction: str, max_length: int,
                         truncate: str = "END") -> list[Encoded]:
        """Rows of the model's own token ids (a text's, without BOS or EOS, as `tokenizer.encode(text,
        add_special_tokens=False)` gives them) -> BOS + instruction + ids + EOS, truncated as encode() truncates:
        the same ids encode() gives the text. NONE raises TooLongError naming the first over-long row."""
        self.check_max_length(max_length)
        mode = check_truncate(truncate)
        head = self.head_positions(instruction) if mode == "START" else 0
        prefix, out = list(self.id_prefix(instruction)), []
        for i, ids in enumerate(rows):
            full = prefix + list(ids) + [self.eos_id]
            if mode == "NONE" and len(full) > max_length:
                raise TooLongError(i, len(full), True, max_length)
            out.append(Encoded(BoundedEncoder._truncate(full, max_length, mode, head), len(full)))
        return out

    def encode_ids(self, texts: Sequence[str], instruction: str, max_length: int) -> list[list[int]]:
        """Token ids per text, right-truncated to max_length (which can drop the EOS), unpadded."""
        return [enc.ids for enc in self.encode(texts, instruction, max_length, "END")]

    def batch_from_ids(self, rows: Sequence[Sequence[int]], instruction: str, width: int | None = None,
                       max_length: int | None = None) -> TokenizedBatch:
        """Right-pad encoded rows to `width` (default: the longest) and derive attention and pool masks."""
        if len(rows) == 0:
            raise InputError("no texts to tokenize (got an empty list)")
        masked = self.instruction_length(instruction)
        input_ids, attention_mask, pool_mask = pad_rows(rows, [masked] * len(rows), self.pad_id, width, np.int64)
        empty = np.flatnonzero(pool_mask.sum(axis=1) == 0)
        if empty.size:
            raise InputError(f"input {int(empty[0])}: max_length {max_length or input_ids.shape[1]} leaves no token "
                             f"to pool after the instruction ({masked} masked positions); raise max_length or "
                             f"shorten the instruction")
        return TokenizedBatch(input_ids, attention_mask, pool_mask)

    def __call__(self, texts: Sequence[str], instruction: str = "", max_length: int = 4096) -> TokenizedBatch:
        if len(texts) == 0:
            raise InputError("no texts to tokenize (got an empty list)")
        return self.batch_from_ids(self.encode_ids(texts, instruction, max_length), instruction,
                                   max_length=max_length)


def pad_rows(rows: Sequence[Sequence[int]], masked: Sequence[int], pad_id: int, width: int | None = None,
             dtype=np.int32) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """input_ids, attention_mask, pool_mask (B, T) for rows right-padded to `width` (default: the longest); row i's
    first masked[i] positions are left out of the pool mask (its instruction: rows may carry different ones)."""
    width = width or max(len(r) for r in rows)
    input_ids = np.full((len(rows), width), pad_id, dtype=dtype)                       # (B, T)
    attention_mask = np.zeros((len(rows), width), dtype=dtype)                          # (B, T)
    for i, row in enumerate(rows):
        input_ids[i, : len(row)] = row
        attention_mask[i, : len(row)] = 1
    pool_mask = attention_mask.copy()                                                   # (B, T)
    for i, count in enumerate(masked):
        pool_mask[i, :count] = 0
    return input_ids, attention_mask, pool_mask
