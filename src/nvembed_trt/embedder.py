"""Embed texts with the PyTorch reference: tokenise as encode(), batch by length, restore input order."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from .console import track
from .errors import InputError
from .model import NVEmbedModel
from .model.body import AttentionImpl
from .source import ModelSource, load_source, resolve_model
from .tokenizer import EmbeddingTokenizer, TokenizedBatch, resolve_instruction

DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
DEVICES = ("cpu", "cuda")
DEFAULT_MAX_LENGTH = 4096  # upstream encode()'s default


def torch_device(name: str) -> torch.device:
    if name not in DEVICES:
        raise InputError(f"unknown device {name!r}; choose one of {', '.join(DEVICES)}")
    if name == "cuda" and not torch.cuda.is_available():
        raise InputError(f"--device cuda requested but this torch ({torch.__version__}) sees no CUDA GPU; "
                         f"use --device cpu or install a CUDA build of torch (see README)")
    return torch.device(name)


def torch_dtype(name: str) -> torch.dtype:
    if name not in DTYPES:
        raise InputError(f"unknown dtype {name!r}; choose one of {', '.join(DTYPES)}")
    return DTYPES[name]


class Embedder:
    """The reference embedding pipeline: EmbeddingTokenizer -> NVEmbedModel -> float32 [N, D]."""

    def __init__(self, model: NVEmbedModel, tokenizer: EmbeddingTokenizer, source: ModelSource | None = None):
        self.model, self.tokenizer, self.source = model, tokenizer, source

    @classmethod
    def from_model(cls, spec: str, device: str = "cpu", dtype: str = "float32",
                   attention_impl: AttentionImpl = "sdpa", progress: bool = True) -> Embedder:
        """Load a preset name or checkpoint directory (see source.resolve_model)."""
        return cls.from_source(resolve_model(spec, progress), device, dtype, attention_impl, progress)

    @classmethod
    def from_source(cls, source: ModelSource, device: str = "cpu", dtype: str = "float32",
                    attention_impl: AttentionImpl = "sdpa", progress: bool = True) -> Embedder:
        dev, dt = torch_device(device), torch_dtype(dtype)
        model, tokenizer = load_source(source, dev, dt, attention_impl, progress)
        return cls(model, tokenizer, source)

    @property
    def dim(self) -> int:
        return self.model.cfg.embedding_dim

    @torch.inference_mode()
    def embed_batch(self, texts: Sequence[str], instruction: str = "",
                    max_length: int = DEFAULT_MAX_LENGTH) -> np.ndarray:
        """One forward pass over texts as a single padded batch (exactly upstream encode())."""
        return self._forward(self.tokenizer(texts, instruction, max_length))

    @torch.inference_mode()
    def _forward(self, batch: TokenizedBatch) -> np.ndarray:
        return self.model(**batch.to_torch(self.model.device)).float().cpu().numpy()

    def encode(self, texts: Sequence[str], instruction: str | None = None, input_type: str | None = None,
               max_length: int = DEFAULT_MAX_LENGTH, batch_size: int = 8, progress: bool = False) -> np.ndarray:
        """Embeddings float32 (N, D) in input order; batches are formed from length-sorted texts."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise InputError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        if len(texts) == 0:
            raise InputError("no texts to embed (got an empty list)")
        prefix = resolve_instruction(input_type, instruction)
        rows = self.tokenizer.encode_ids(texts, prefix, max_length)  # tokenised once, batched by length below
        order = np.argsort(-np.asarray([len(r) for r in rows]), kind="stable")
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        starts = range(0, len(texts), batch_size)
        for start in (track(starts, "embedding", len(starts)) if progress else starts):
            idx = order[start:start + batch_size]
            batch = self.tokenizer.batch_from_ids([rows[i] for i in idx], prefix, max_length=max_length)
            out[idx] = self._forward(batch)
        return out
