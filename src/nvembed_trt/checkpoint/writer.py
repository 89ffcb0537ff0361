"""Write a checkpoint in the official layout with deterministic random weights, one shard at a time.

Peak memory is one shard plus one fp32 tensor, so the full-size model (15.7 GB in fp16) can be written on a
small machine. The directory appears only when complete: everything goes to a hidden temp folder first.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from ..config import NVEmbedConfig
from ..console import track
from ..provenance import sha256_file, sidecar, write_json
from ..staging import staged_directory
from ..tokenizer.files import bundled_sentencepiece_model, write_tokenizer_files
from .init import random_tensor
from .layout import INDEX_NAME, SINGLE_NAME
from .loader import expected_shapes, meta_model

SIDECAR_NAME = "nvembed-trt.json"
DEFAULT_MAX_SHARD_BYTES = 5 * 10**9  # transformers' default "5GB"


def shard_plan(shapes: dict[str, tuple[int, ...]], bytes_per_element: int,
               max_shard_bytes: int) -> list[list[str]]:
    """Greedy split of keys (in model order) into shards of at most max_shard_bytes (a lone larger tensor
    gets a shard of its own)."""
    shards: list[list[str]] = [[]]
    used = 0
    for key, shape in shapes.items():
        size = bytes_per_element * int(torch.Size(shape).numel())
        if shards[-1] and used + size > max_shard_bytes:
            shards.append([])
            used = 0
        shards[-1].append(key)
        used += size
    return shards


def _shard_names(count: int) -> list[str]:
    if count == 1:
        return [SINGLE_NAME]
    return [f"model-{i:05d}-of-{count:05d}.safetensors" for i in range(1, count + 1)]


def write_checkpoint(cfg: NVEmbedConfig, dest: Path | str, seed: int = 0, dtype: torch.dtype = torch.float16,
                     max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES, progress: bool = True,
                     origin: str = "random") -> Path:
    """Write config.json, safetensors weights (+ index when sharded), tokenizer files and a sidecar to dest."""
    dest = Path(dest)
    element = torch.tensor([], dtype=dtype).element_size()
    with staged_directory(dest) as staging:
        (staging / "config.json").write_text(json.dumps(cfg.to_hf_dict(), indent=2) + "\n")
        shapes = expected_shapes(meta_model(cfg))
        plan = shard_plan(shapes, element, max_shard_bytes)
        names = _shard_names(len(plan))
        shard_iter = zip(names, plan)
        for name, keys in (track(shard_iter, f"writing {dest.name}", len(plan)) if progress else shard_iter):
            tensors = {k: random_tensor(k, shapes[k], seed).to(dtype) for k in keys}
            save_file(tensors, str(staging / name), metadata={"format": "pt"})
            del tensors
        total = sum(torch.Size(s).numel() for s in shapes.values()) * element
        if len(plan) > 1:
            weight_map = {k: name for name, keys in zip(names, plan) for k in keys}
            index = {"metadata": {"total_size": total}, "weight_map": weight_map}
            (staging / INDEX_NAME).write_text(json.dumps(index, indent=2) + "\n")
        sp_model = bundled_sentencepiece_model()
        write_tokenizer_files(staging, sp_model)
        write_json(staging / SIDECAR_NAME, sidecar(
            "checkpoint", origin=origin, seed=seed, dtype=str(dtype).removeprefix("torch."),
            parameters=sum(torch.Size(s).numel() for s in shapes.values()), total_size=total, shards=names,
            max_shard_bytes=max_shard_bytes, tokenizer_model_sha256=sha256_file(sp_model),
            config=cfg.to_hf_dict()))
    return dest
