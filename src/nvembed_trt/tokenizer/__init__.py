"""Tokenisation exactly as NV-Embed-v2's encode(), on a fast tokenizer."""

from .embedding import EmbeddingTokenizer, TokenizedBatch
from .files import bundled_sentencepiece_model, read_fast_tokenizer, write_tokenizer_files
from .instructions import INPUT_TYPES, QUERY_TASK, instruction_for_task, resolve_instruction

__all__ = ["EmbeddingTokenizer", "INPUT_TYPES", "QUERY_TASK", "TokenizedBatch", "bundled_sentencepiece_model",
           "instruction_for_task", "read_fast_tokenizer", "resolve_instruction", "write_tokenizer_files"]
