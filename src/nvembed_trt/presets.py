"""Built-in models, one registry. Choices shown to users come from PRESETS, never from a hand-kept list.

- tiny: NV-Embed-v2's architecture at toy sizes (hidden 64, MLP 176, latent head 40: all different, so a mix-up
  of dimensions fails), deterministic weights written once as an official-layout checkpoint in the cache and
  read back through the same loader as real checkpoints; the real NV-Embed-v2 tokenizer.
- nv-embed-v2: the full-size config (7.85B parameters) with random weights generated in memory, for shape,
  memory and latency work. Real weights come as a directory: --model /path/to/NV-Embed-v2.
- full-width-2l: every width of nv-embed-v2 (hidden 4096, 32/8 heads, MLP 14336, 512 latents, latent inner 32768,
  GEGLU 32768) but 2 decoder layers (1.31B parameters): the full-width graph (int32 index limits, the 32,768-wide
  latent projections, external data) exported and built on every commit. Its random weights are generated on
  demand, tensor by tensor, never cached: CI starts from an empty cache, and a 2.6 GB checkpoint written per run
  would cost more time and disk than generating the weights where they are streamed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from .config import BodyConfig, LatentAttentionConfig, NVEmbedConfig
from .errors import InputError, PresetError

INIT_SCHEME_VERSION = 1  # bump when checkpoint.init changes, so cached preset checkpoints regenerate


class Preset(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    description: str
    body: BodyConfig
    latent: LatentAttentionConfig
    seed: int = 0
    weights: Literal["cached-checkpoint", "random-in-memory"]

    @property
    def config(self) -> NVEmbedConfig:
        return NVEmbedConfig(body=self.body, latent=self.latent)


PRESETS: dict[str, Preset] = {p.name: p for p in (
    Preset(name="tiny", weights="cached-checkpoint", seed=1234,
           description="NV-Embed-v2 architecture at toy size, deterministic weights, real tokenizer (tests, CI)",
           body=BodyConfig(hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2, head_dim=16,
                           intermediate_size=176, max_position_embeddings=32768),
           latent=LatentAttentionConfig(num_latents=16, num_heads=2, head_dim=40)),
    Preset(name="nv-embed-v2", weights="random-in-memory", seed=0,
           description="full-size NV-Embed-v2 config (7.85B) with random weights, for shape/memory/latency work",
           body=BodyConfig(), latent=LatentAttentionConfig()),
    Preset(name="full-width-2l", weights="random-in-memory", seed=0,
           description="every width of nv-embed-v2 with 2 decoder layers (1.31B), random weights generated on "
                       "demand: full-width export and engine builds in CI",
           body=BodyConfig(num_layers=2), latent=LatentAttentionConfig()),
)}


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise PresetError(f"unknown preset {name!r}; presets: {', '.join(PRESETS)}")
    return PRESETS[name]


def cache_dir() -> Path:
    return Path(os.environ.get("NVEMBED_TRT_CACHE", Path.home() / ".cache" / "nvembed-trt"))


def preset_checkpoint_dir(preset: Preset) -> Path:
    tag = f"{preset.config.fingerprint()}-seed{preset.seed}-init{INIT_SCHEME_VERSION}"
    return cache_dir() / "presets" / f"{preset.name}-{tag}"


def ensure_preset_checkpoint(preset: Preset, progress: bool = True) -> Path:
    """The preset's checkpoint directory, written on first use (atomically, so concurrent users are safe)."""
    from .checkpoint.writer import write_checkpoint

    dest = preset_checkpoint_dir(preset)
    if (dest / "config.json").is_file():
        return dest
    try:
        write_checkpoint(preset.config, dest, seed=preset.seed, progress=progress, origin=f"preset:{preset.name}")
    except (OSError, InputError):
        if not (dest / "config.json").is_file():  # another process won the rename race: fine; else re-raise
            raise
    return dest
