"""Tokenisation exactly as NV-Embed-v2's encode(), on a fast tokenizer."""

from .bounded import TRUNCATE_MODES, Encoded, OverBudget, TokenBudget, TooLongError, check_truncate
from .embedding import EmbeddingTokenizer, TokenizedBatch, pad_rows
from .files import bundled_sentencepiece_model, read_fast_tokenizer, write_tokenizer_files
from .instructions import INPUT_TYPES, QUERY_TASK, instruction_for_task, resolve_instruction

__all__ = ["EmbeddingTokenizer", "Encoded", "INPUT_TYPES", "OverBudget", "QUERY_TASK", "TRUNCATE_MODES", "TokenBudget",
           "TokenizedBatch", "TooLongError", "bundled_sentencepiece_model", "check_truncate", "instruction_for_task", "pad_rows",
           "read_fast_tokenizer", "resolve_instruction", "write_tokenizer_files"]
