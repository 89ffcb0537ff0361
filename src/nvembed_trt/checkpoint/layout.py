"""The official checkpoint layout on disk: config.json + model.safetensors or shards with an index."""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass
from pathlib import Path

from safetensors import safe_open

from ..errors import CheckpointError

INDEX_NAME = "model.safetensors.index.json"
SINGLE_NAME = "model.safetensors"


@dataclass(frozen=True)
class TensorInfo:
    shape: tuple[int, ...]
    dtype: str
    shard: Path


def weight_files(root: Path) -> list[Path]:
    """The safetensors files of a checkpoint, in shard order; clear errors for every other layout."""
    index, single = root / INDEX_NAME, root / SINGLE_NAME
    if index.is_file():
        weight_map = _read_index(index)
        shards = [root / name for name in sorted(set(weight_map.values()))]
        absent = [p.name for p in shards if not p.is_file()]
        if absent:
            raise CheckpointError(f"{index} names shard files that are not in {root}: {', '.join(absent)}")
        return shards
    if single.is_file():
        return [single]
    others = sorted(p.name for p in root.glob("*") if p.suffix in {".bin", ".pt", ".pth", ".ckpt"})
    hint = f" (found {', '.join(others)}: only safetensors checkpoints are read)" if others else ""
    raise CheckpointError(f"{root}: no {SINGLE_NAME} and no {INDEX_NAME}{hint}")


def _read_index(index: Path) -> dict[str, str]:
    try:
        weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{index}: not a safetensors index with a 'weight_map' ({exc})") from exc
    if not isinstance(weight_map, dict) or not weight_map:
        raise CheckpointError(f"{index}: 'weight_map' must be a non-empty object")
    return weight_map


def tensor_infos(root: Path) -> dict[str, TensorInfo]:
    """Shape, dtype and shard of every tensor, read from the safetensors headers only (no tensor data)."""
    infos: dict[str, TensorInfo] = {}
    for shard in weight_files(root):
        try:
            with safe_open(shard, framework="pt", device="cpu") as f:
                for key in f.keys():
                    sl = f.get_slice(key)
                    infos[key] = TensorInfo(tuple(sl.get_shape()), sl.get_dtype(), shard)
        except Exception as exc:  # safetensors raises its own SafetensorError for corrupt headers
            raise CheckpointError(f"{shard}: not a readable safetensors file ({exc})") from exc
    index = root / INDEX_NAME
    if index.is_file():
        misplaced = [k for k, name in _read_index(index).items() if k not in infos or infos[k].shard.name != name]
        if misplaced:
            raise CheckpointError(f"{index}: {len(misplaced)} indexed tensors are not in the shard the index "
                                  f"names, first: {misplaced[:5]}")
    return infos


def fingerprint(root: Path) -> str:
    """sha256 over config.json and every shard's name, size and safetensors header (fast; no tensor bytes)."""
    digest = hashlib.sha256((root / "config.json").read_bytes())
    for shard in weight_files(root):
        with shard.open("rb") as fh:
            (header_len,) = struct.unpack("<Q", fh.read(8))
            digest.update(shard.name.encode() + str(shard.stat().st_size).encode() + fh.read(header_len))
    return digest.hexdigest()
