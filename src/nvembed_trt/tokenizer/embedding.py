"""Tokenisation exactly as NV-Embed-v2's encode() (KNOWLEDGE §1).

text fed to the tokenizer: instruction + text + "</s>"; BOS added, EOS not added by the tokenizer (the literal
"</s>" is the EOS); right truncation to max_length (may drop the EOS); right padding with the pad id (EOS, 2)
to the longest row. pool_mask is attention_mask with its first len(tokenize(instruction)) positions zeroed: that
count excludes BOS, so for the standard prompt it covers BOS + the instruction (its trailing "▁" merges into the
first text token). The rule is reproduced, not the outcome.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tokenizers import Tokenizer

from ..errors import InputError, TokenizerError
from .files import SpecialTokens, read_fast_tokenizer, read_special_tokens

MIN_MAX_LENGTH = 2  # BOS plus one token


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

    def to_torch(self, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
        return {name: torch.from_numpy(getattr(self, name)).to(device)
                for name in ("input_ids", "attention_mask", "pool_mask")}


class EmbeddingTokenizer:
    def __init__(self, tokenizer: Tokenizer, special: SpecialTokens = SpecialTokens(),
                 mask_instruction: bool = True, max_positions: int | None = None):
        self.tokenizer, self.special = tokenizer, special
        self.mask_instruction, self.max_positions = mask_instruction, max_positions
        self.bos_id, self.eos_id, self.pad_id = (self._id(special.bos), self._id(special.eos),
                                                 self._id(special.pad))

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
        return self.tokenizer.encode(text, add_special_tokens=False).tokens

    def instruction_length(self, instruction: str) -> int:
        """How many leading positions the pool mask drops for this instruction (upstream's instruction_lens)."""
        if not (self.mask_instruction and instruction):
            return 0
        return len(self.tokenize(instruction))

    def check_max_length(self, max_length: int) -> None:
        check_max_length(max_length, self.max_positions)

    def encode_untruncated(self, texts: Sequence[str], instruction: str) -> list[list[int]]:
        """Token ids per text: BOS + instruction + text + EOS, not truncated (one batched tokenizer call)."""
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise InputError(f"input {i} must be a string, got {type(text).__name__}")
        prompts = [instruction + text + self.special.eos for text in texts]
        prefix = [self.bos_id] if self.special.add_bos else []
        return [prefix + enc.ids for enc in self.tokenizer.encode_batch(prompts, add_special_tokens=False)]

    def encode_ids(self, texts: Sequence[str], instruction: str, max_length: int) -> list[list[int]]:
        """Token ids per text, right-truncated to max_length (which can drop the EOS), unpadded."""
        self.check_max_length(max_length)
        return [ids[:max_length] for ids in self.encode_untruncated(texts, instruction)]

    def batch_from_ids(self, rows: Sequence[Sequence[int]], instruction: str, width: int | None = None,
                       max_length: int | None = None) -> TokenizedBatch:
        """Right-pad encoded rows to `width` (default: the longest) and derive attention and pool masks."""
        if len(rows) == 0:
            raise InputError("no texts to tokenize (got an empty list)")
        width = width or max(len(r) for r in rows)
        input_ids = np.full((len(rows), width), self.pad_id, dtype=np.int64)              # (B, T)
        attention_mask = np.zeros((len(rows), width), dtype=np.int64)                      # (B, T)
        for i, row in enumerate(rows):
            input_ids[i, : len(row)] = row
            attention_mask[i, : len(row)] = 1
        pool_mask = attention_mask.copy()
        masked = self.instruction_length(instruction)
        pool_mask[:, :masked] = 0
        empty = np.flatnonzero(pool_mask.sum(axis=1) == 0)
        if empty.size:
            raise InputError(f"input {int(empty[0])}: max_length {max_length or width} leaves no token to pool "
                             f"after the instruction ({masked} masked positions); raise max_length or shorten "
                             f"the instruction")
        return TokenizedBatch(input_ids, attention_mask, pool_mask)

    def __call__(self, texts: Sequence[str], instruction: str = "", max_length: int = 4096) -> TokenizedBatch:
        if len(texts) == 0:
            raise InputError("no texts to tokenize (got an empty list)")
        return self.batch_from_ids(self.encode_ids(texts, instruction, max_length), instruction,
                                   max_length=max_length)
