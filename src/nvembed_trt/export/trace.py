"""Trace NV-Embed-v2 to ONNX without weights: the model lives on the meta device, so tracing the full 7.85B
model costs no memory; initializers are bound to real data afterwards (see weights.py)."""

from __future__ import annotations

import warnings

import onnx_ir as ir
import torch

from ..checkpoint.loader import meta_model
from ..config import NVEmbedConfig
from ..console import quiet_logger
from .signature import BATCH, SEQUENCE, GraphSignature, Pooling
from .wrapper import ExportWrapper

MODULE_PREFIX = "model."  # ExportWrapper.model: initializer names are this prefix + the checkpoint key


def trace_onnx(cfg: NVEmbedConfig, dtype: torch.dtype, pooling: Pooling, opset: int) -> ir.Model:
    """An ONNX IR model whose initializers still hold meta tensors (shapes and dtypes only)."""
    model = meta_model(cfg, attention_impl="eager").to(dtype)  # eager: softmax spelled out in fp32
    wrapper = ExportWrapper(model, pooling).eval()
    sig = GraphSignature(pooling, cfg.embedding_dim)
    batch = torch.export.Dim(BATCH, min=1, max=4096)
    seq = torch.export.Dim(SEQUENCE, min=2, max=cfg.body.max_position_embeddings)
    # distinct example tensors: identical objects would be traced as one aliased input
    args = tuple(torch.ones(2, 8, dtype=torch.int32, device="meta") for _ in sig.inputs)
    with warnings.catch_warnings(), quiet_logger("torch.onnx"):
        warnings.simplefilter("ignore")  # the exporter's notes on renamed dims and deprecated pytree APIs
        program = torch.onnx.export(
            wrapper, args, dynamo=True, opset_version=opset, optimize=False, verbose=False,
            input_names=list(sig.inputs), output_names=list(sig.outputs),
            dynamic_shapes={name: {0: batch, 1: seq} for name in sig.inputs})
    return program.model
