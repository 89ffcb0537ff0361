"""nvembed-trt presets: list the built-in models from the registry."""

from __future__ import annotations

import argparse

from ..checkpoint.loader import parameter_count
from ..presets import PRESETS


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("presets", help="list built-in models", description="List the built-in model presets.")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    for preset in PRESETS.values():
        b, la = preset.body, preset.latent
        print(f"{preset.name}: {preset.description}")
        print(f"    {parameter_count(preset.config):,} parameters; hidden {b.hidden_size}, {b.num_layers} layers, "
              f"{b.num_heads}/{b.num_kv_heads} heads x {b.head_dim}, MLP {b.intermediate_size}; "
              f"latents {la.num_latents}, {la.num_heads} heads x {la.head_dim}; weights: {preset.weights}")
    return 0
