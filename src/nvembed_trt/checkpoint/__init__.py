"""Checkpoints in the official NV-Embed-v2 layout: read (strict, streaming) and write (shard by shard)."""

from .layout import fingerprint, tensor_infos, weight_files
from .loader import load_model, meta_model, random_model
from .writer import write_checkpoint

__all__ = ["fingerprint", "load_model", "meta_model", "random_model", "tensor_infos", "weight_files",
           "write_checkpoint"]
