"""Load NV-Embed-v2 from a checkpoint directory in the official layout.

The model is built on the meta device (no memory), every key and shape is checked against the safetensors headers
before any tensor is read (one error lists every problem), then shards are read one at a time and each tensor goes
straight to the target device and dtype: never an fp32 copy of the whole model.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from safetensors import safe_open
from torch import nn

from ..config import NVEmbedConfig
from ..console import track
from ..errors import CheckpointError, CheckpointKeyError
from ..model import NVEmbedModel
from ..model.body import AttentionImpl
from .init import random_tensor
from .layout import TensorInfo, tensor_infos


def meta_model(cfg: NVEmbedConfig, attention_impl: AttentionImpl = "sdpa") -> NVEmbedModel:
    """The model's structure without storage: parameters live on the meta device until assigned."""
    with torch.device("meta"):
        return NVEmbedModel(cfg, attention_impl)


def expected_shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def parameter_count(cfg: NVEmbedConfig) -> int:
    return sum(math.prod(shape) for shape in expected_shapes(meta_model(cfg)).values())


def check_keys(expected: dict[str, tuple[int, ...]], found: dict[str, TensorInfo], source: str) -> None:
    """Raise one CheckpointKeyError naming every missing key, unexpected key and shape mismatch."""
    missing = sorted(k for k in expected if k not in found)
    unexpected = sorted(k for k in found if k not in expected)
    mismatched = [(k, found[k].shape, expected[k]) for k in sorted(expected)
                  if k in found and found[k].shape != expected[k]]
    if missing or unexpected or mismatched:
        raise CheckpointKeyError(missing, unexpected, mismatched, source)
    not_float = sorted(k for k, info in found.items() if info.dtype not in {"F16", "BF16", "F32", "F64"})
    if not_float:
        raise CheckpointError(f"{source}: tensors must be floating point; not so: {not_float[:5]}")


def assign(model: nn.Module, key: str, tensor: torch.Tensor) -> None:
    """Replace the (meta) parameter `key` with `tensor`, without copying it again."""
    module_name, _, name = key.rpartition(".")
    module = model.get_submodule(module_name)
    if name not in module._parameters:
        raise CheckpointError(f"model has no parameter {key!r}")
    module._parameters[name] = nn.Parameter(tensor, requires_grad=False)


def load_model(root: Path | str, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
               attention_impl: AttentionImpl = "sdpa", progress: bool = True) -> NVEmbedModel:
    """Read config.json and the safetensors weights of `root` into an NVEmbedModel on device/dtype."""
    root = Path(root)
    if not root.is_dir():
        raise CheckpointError(f"checkpoint directory not found: {root}")
    cfg = NVEmbedConfig.from_dir(root)
    model = meta_model(cfg, attention_impl)
    infos = tensor_infos(root)
    check_keys(expected_shapes(model), infos, str(root))
    device = torch.device(device)
    shards = sorted({info.shard for info in infos.values()})
    for shard in (track(shards, f"loading {root.name}", len(shards)) if progress else shards):
        # safetensors maps the file; get_tensor materialises one tensor in its stored dtype on `device`.
        with safe_open(shard, framework="pt", device=str(device)) as f:
            for key in f.keys():
                assign(model, key, f.get_tensor(key).to(dtype=dtype))
    return model.eval()


def random_model(cfg: NVEmbedConfig, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
                 seed: int = 0, attention_impl: AttentionImpl = "sdpa", progress: bool = True) -> NVEmbedModel:
    """A model with deterministic random weights, generated tensor by tensor straight into device/dtype."""
    model = meta_model(cfg, attention_impl)
    shapes = expected_shapes(model)
    for key in (track(shapes, "random weights", len(shapes)) if progress else shapes):
        assign(model, key, random_tensor(key, shapes[key], seed).to(device=device, dtype=dtype))
    return model.eval()
