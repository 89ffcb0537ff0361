"""Bind traced initializers to real weights lazily: each tensor is read (from a safetensors shard, or generated
for a random preset) only when the ONNX writer streams it to disk, then dropped. Weights used only through a
2-D Transpose (nn.Linear) are stored pre-transposed and the Transpose removed."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import onnx_ir as ir
import torch
from safetensors import safe_open

from ..checkpoint.init import random_tensor
from ..checkpoint.layout import tensor_infos
from ..errors import CheckpointError
from .trace import MODULE_PREFIX

Loader = Callable[[str], torch.Tensor]


def checkpoint_loader(root: Path) -> Loader:
    infos = tensor_infos(root)

    def load(key: str) -> torch.Tensor:
        with safe_open(infos[key].shard, framework="pt", device="cpu") as f:
            return f.get_tensor(key)
    return load


def random_loader(shapes: dict[str, tuple[int, ...]], seed: int) -> Loader:
    """The same deterministic weights as checkpoint.random_model / write_checkpoint, generated on demand."""
    def load(key: str) -> torch.Tensor:
        return random_tensor(key, shapes[key], seed)
    return load


def _lazy(load: Loader, key: str, dtype: torch.dtype, transpose: bool, ir_dtype, shape: ir.Shape) -> ir.LazyTensor:
    def materialise() -> ir.Tensor:
        tensor = load(key).to(dtype)
        if transpose:
            tensor = tensor.T.contiguous()
        return ir.Tensor(tensor.numpy())
    return ir.LazyTensor(materialise, dtype=ir_dtype, shape=shape)


def _transpose_users(value: ir.Value) -> list[ir.Node] | None:
    """The Transpose(perm=[1, 0]) nodes that are a 2-D value's only users, or None."""
    users = [use.node for use in value.uses()]
    if len(value.shape) != 2 or not users:
        return None
    for node in users:
        perm = node.attributes.get("perm")
        if node.op_type != "Transpose" or perm is None or list(perm.value) != [1, 0]:
            return None
    return users


def bind_weights(model: ir.Model, load: Loader, expected: dict[str, tuple[int, ...]], dtype: torch.dtype) -> int:
    """Point every weight initializer at `load(key)`; returns how many were stored pre-transposed."""
    graph = model.graph
    names = {name.removeprefix(MODULE_PREFIX) for name in graph.initializers if name.startswith(MODULE_PREFIX)}
    missing = sorted(set(expected) - names)
    if missing:
        raise CheckpointError(f"traced graph lacks weights {missing[:5]} ({len(missing)} in all)")
    transposed = 0
    for name, value in list(graph.initializers.items()):
        key = name.removeprefix(MODULE_PREFIX)
        if key not in expected:
            continue
        users = _transpose_users(value)
        if users is None:
            value.const_value = _lazy(load, key, dtype, False, value.dtype, value.shape)
            continue
        shape = ir.Shape([value.shape[1], value.shape[0]])
        new = ir.Value(name=name + ".T", shape=shape, type=ir.TensorType(value.dtype),
                       const_value=_lazy(load, key, dtype, True, value.dtype, shape))
        graph.register_initializer(new)
        for node in users:
            node.outputs[0].replace_all_uses_with(new)
            graph.remove(node, safe=True)
        graph.initializers.pop(name)
        transposed += 1
    return transposed
