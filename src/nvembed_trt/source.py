"""Resolve --model: a preset name from the registry, or a checkpoint directory in the official layout."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from .checkpoint import fingerprint, load_model, random_model
from .config import NVEmbedConfig
from .console import note
from .errors import CheckpointError, PresetError
from .model import NVEmbedModel
from .model.body import AttentionImpl
from .presets import PRESETS, Preset, ensure_preset_checkpoint
from .tokenizer import EmbeddingTokenizer, bundled_sentencepiece_model
from .tokenizer.files import SpecialTokens
from .tokenizer.sentencepiece import fast_tokenizer_from_sentencepiece


@dataclass(frozen=True)
class ModelSource:
    """Where a model comes from: `checkpoint` is None only for random in-memory presets."""

    spec: str
    config: NVEmbedConfig
    checkpoint: Path | None
    preset: Preset | None

    def describe(self) -> dict:
        return {"spec": self.spec, "preset": self.preset.name if self.preset else None,
                "checkpoint": str(self.checkpoint) if self.checkpoint else None,
                "weights": "random (seed %d)" % self.preset.seed if self.checkpoint is None else "checkpoint",
                "weights_fingerprint": fingerprint(self.checkpoint) if self.checkpoint else None,
                "config_fingerprint": self.config.fingerprint()}


def _looks_like_path(spec: str) -> bool:
    return "/" in spec or spec.startswith(".") or spec.startswith("~")


def resolve_model(spec: str, progress: bool = True) -> ModelSource:
    """Map --model to a source; a cached preset checkpoint is written on first use."""
    path = Path(spec).expanduser()
    if spec in PRESETS and not path.is_dir():
        preset = PRESETS[spec]
        if preset.weights == "cached-checkpoint":
            return ModelSource(spec, preset.config, ensure_preset_checkpoint(preset, progress), preset)
        return ModelSource(spec, preset.config, None, preset)
    if path.is_dir():
        return ModelSource(spec, NVEmbedConfig.from_dir(path), path, None)
    if _looks_like_path(spec):
        raise CheckpointError(f"checkpoint directory not found: {spec}")
    raise PresetError(f"unknown model {spec!r}: not a preset ({', '.join(PRESETS)}) and no such directory")


def tokenizer_for(source: ModelSource) -> EmbeddingTokenizer:
    """The checkpoint's own tokenizer files, or the bundled NV-Embed-v2 tokenizer for random presets."""
    max_positions = source.config.body.max_position_embeddings
    if source.checkpoint is None:
        return EmbeddingTokenizer(fast_tokenizer_from_sentencepiece(bundled_sentencepiece_model()),
                                  SpecialTokens(), source.config.mask_instruction, max_positions)
    return EmbeddingTokenizer.from_dir(source.checkpoint, source.config.mask_instruction, max_positions)


def load_source(source: ModelSource, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
                attention_impl: AttentionImpl = "sdpa",
                progress: bool = True) -> tuple[NVEmbedModel, EmbeddingTokenizer]:
    """Build the model on device/dtype and its tokenizer."""
    if source.checkpoint is None and source.preset is not None:
        note(f"{source.spec}: no checkpoint given, using RANDOM weights (seed {source.preset.seed}): for shape, "
             f"memory and latency work only; pass --model DIR for real weights")
        model = random_model(source.config, device, dtype, source.preset.seed, attention_impl, progress)
    elif source.checkpoint is not None:
        model = load_model(source.checkpoint, device, dtype, attention_impl, progress)
    else:
        raise CheckpointError(f"{source.spec}: no checkpoint and no preset to generate weights from")
    return model, tokenizer_for(source)
