"""nvembed-trt checkpoint: write a preset's architecture with random weights in the official layout."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..checkpoint import write_checkpoint
from ..checkpoint.writer import DEFAULT_MAX_SHARD_BYTES
from ..embedder import DTYPES, torch_dtype
from ..presets import PRESETS, get_preset
from ..units import parse_size


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("checkpoint", help="write a random-weight checkpoint in the official layout",
                       description="Write config.json, safetensors shards (+ index), tokenizer files and a "
                                   "sidecar, one shard at a time (the full-size model fits a small machine).")
    p.add_argument("--model", required=True, choices=tuple(PRESETS), help="architecture preset")
    p.add_argument("--output", required=True, type=Path, help="new (or empty) directory")
    p.add_argument("--seed", type=int, default=None, help="weight seed (default: the preset's)")
    p.add_argument("--dtype", choices=tuple(DTYPES), default="float16", help="stored dtype (official: float16)")
    p.add_argument("--max-shard-size", default=str(DEFAULT_MAX_SHARD_BYTES),
                   help="largest shard, e.g. 5GB (default) or 2MB; one shard means model.safetensors")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    preset = get_preset(args.model)
    seed = preset.seed if args.seed is None else args.seed
    dest = write_checkpoint(preset.config, args.output, seed=seed, dtype=torch_dtype(args.dtype),
                            max_shard_bytes=parse_size(args.max_shard_size), origin=f"preset:{preset.name}")
    print(f"wrote {preset.name} checkpoint (seed {seed}) to {dest}")
    return 0
