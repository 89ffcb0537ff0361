"""Embed texts with the PyTorch reference: tokenise as encode(), batch by length, restore input order."""

from __future__ import annotations

import contextlib
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
AUTOCAST_DTYPE = torch.float16  # torch.autocast("cuda")'s default dtype: what upstream's forward runs under on a GPU
UPSTREAM_GPU = "fp32 weights under torch.autocast('cuda') (fp16 matmuls and attention, fp32 residual stream)"


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
    """The reference embedding pipeline: EmbeddingTokenizer -> NVEmbedModel -> float32 [N, D].

    `autocast=True` runs each forward under `torch.autocast("cuda", torch.float16)`, as upstream's encode() does on a
    GPU (with fp32 weights that is exactly upstream's GPU forward); CUDA only, since upstream never autocasts on CPU.
    `describe()` states which reference this is and how it compares with upstream."""

    def __init__(self, model: NVEmbedModel, tokenizer: EmbeddingTokenizer, source: ModelSource | None = None,
                 autocast: bool = False):
        if autocast and model.device.type != "cuda":
            raise InputError(f"autocast needs the model on CUDA (it is on {model.device.type}): upstream autocasts "
                             f"only on a GPU and runs fp32 on a CPU; drop autocast or use --device cuda")
        self.model, self.tokenizer, self.source, self.autocast = model, tokenizer, source, autocast

    @classmethod
    def from_model(cls, spec: str, device: str = "cpu", dtype: str = "float32",
                   attention_impl: AttentionImpl = "sdpa", progress: bool = True, autocast: bool = False) -> Embedder:
        """Load a preset name or checkpoint directory (see source.resolve_model)."""
        return cls.from_source(resolve_model(spec, progress), device, dtype, attention_impl, progress, autocast)

    @classmethod
    def from_source(cls, source: ModelSource, device: str = "cpu", dtype: str = "float32",
                    attention_impl: AttentionImpl = "sdpa", progress: bool = True, autocast: bool = False) -> Embedder:
        dev, dt = torch_device(device), torch_dtype(dtype)
        if autocast and dev.type != "cuda":  # before loading a checkpoint
            raise InputError(f"autocast needs --device cuda (got {device!r}): upstream autocasts only on a GPU and "
                             f"runs fp32 on a CPU")
        model, tokenizer = load_source(source, dev, dt, attention_impl, progress)
        return cls(model, tokenizer, source, autocast)

    def describe(self) -> dict:
        """Which reference this is (device, weight dtype, autocast, attention) and how it compares with upstream,
        whose forward runs fp32 on a CPU and under torch.autocast('cuda') (fp16) with fp32 weights on a GPU."""
        device, dtype = self.model.device, str(self.model.dtype).removeprefix("torch.")
        compute = str(AUTOCAST_DTYPE).removeprefix("torch.") if self.autocast else dtype
        name = torch.cuda.get_device_name(device) if device.type == "cuda" and torch.cuda.is_available() else \
            device.type
        if device.type == "cpu":
            same = dtype == "float32"
            upstream = ("same as upstream on a CPU (fp32 throughout, no autocast). Upstream on a GPU runs "
                        f"{UPSTREAM_GPU}, which differs from this reference by fp16 rounding" if same else
                        f"not an upstream configuration: upstream on a CPU runs fp32; {dtype} weights round every "
                        "layer, residual stream included")
        elif self.autocast and dtype == "float32":
            same, upstream = True, f"same as upstream on a GPU: {UPSTREAM_GPU}"
        elif dtype == "float32":
            same = False
            upstream = (f"stricter than upstream on a GPU, which runs {UPSTREAM_GPU}; equal to upstream on a CPU. "
                        "Use autocast (--reference-autocast) to reproduce upstream's GPU forward")
        else:
            same = False
            upstream = (f"differs from upstream on a GPU ({UPSTREAM_GPU}): here weights and the residual stream are "
                        f"{dtype} and matmuls run in {compute}, so rounding accumulates over the layers where "
                        "upstream's residual stream stays fp32" +
                        ("; bfloat16 keeps 8 significant bits against fp16's 11" if "bfloat16" in (dtype, compute)
                         else ""))
        return {"runtime": "torch", "device": device.type, "device_name": name, "weights_dtype": dtype,
                "autocast": str(AUTOCAST_DTYPE).removeprefix("torch.") if self.autocast else None,
                "matmul_dtype": compute, "fp32_ops": "RMSNorm, LayerNorm, softmax, pooling",
                "attention": self.model.attention_impl, "matches_upstream": same, "vs_upstream": upstream}

    @property
    def dim(self) -> int:
        return self.model.cfg.embedding_dim

    @torch.inference_mode()
    def embed_batch(self, texts: Sequence[str], instruction: str = "",
                    max_length: int = DEFAULT_MAX_LENGTH) -> np.ndarray:
        """One forward pass over texts as a single padded batch (exactly upstream encode())."""
        return self._forward(self.tokenizer(texts, instruction, max_length))

    def forward(self, batch: TokenizedBatch) -> np.ndarray:
        """float32 (B, D) for one tokenised batch, as this reference runs it (autocast included)."""
        return self._forward(batch)

    @torch.inference_mode()
    def _forward(self, batch: TokenizedBatch) -> np.ndarray:
        autocast = torch.autocast("cuda", dtype=AUTOCAST_DTYPE) if self.autocast else contextlib.nullcontext()
        with autocast:
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
