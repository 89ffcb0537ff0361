"""Model configuration: the Mistral body, the latent-attention block, and the official config.json layout.

Field defaults are NV-Embed-v2's (KNOWLEDGE §1). `NVEmbedConfig.from_hf_dict` reads the official nested layout
(`text_config` + `latent_attention_config`); `to_hf_dict` writes it back so generated checkpoints look official.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError

# transformers.MistralConfig defaults: what upstream's from_pretrained falls back to for a key not in text_config.
_MISTRAL_DEFAULTS: dict[str, Any] = {
    "vocab_size": 32000, "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
    "num_attention_heads": 32, "num_key_value_heads": 8, "max_position_embeddings": 4096 * 32,
    "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "hidden_act": "silu",
}


@dataclass(frozen=True)
class BodyConfig:
    """The bidirectional Mistral-7B body (no LM head)."""

    vocab_size: int = 32000
    hidden_size: int = 4096
    num_layers: int = 32
    num_heads: int = 32
    num_kv_heads: int = 8
    head_dim: int = 128
    intermediate_size: int = 14336
    rms_norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    max_position_embeddings: int = 32768
    bos_token_id: int = 1
    eos_token_id: int = 2

    def __post_init__(self) -> None:
        for name in ("vocab_size", "hidden_size", "num_layers", "num_heads", "num_kv_heads", "head_dim",
                     "intermediate_size", "max_position_embeddings"):
            if getattr(self, name) < 1:
                raise ConfigError(f"text_config.{name} must be >= 1, got {getattr(self, name)}")
        if self.num_heads % self.num_kv_heads:
            raise ConfigError(f"num_attention_heads ({self.num_heads}) must be a multiple of "
                              f"num_key_value_heads ({self.num_kv_heads})")
        if self.head_dim % 2:
            raise ConfigError(f"head_dim must be even for rotary embeddings, got {self.head_dim}")


@dataclass(frozen=True)
class LatentAttentionConfig:
    """The latent-attention pooling block: token states attend to learned latents, then a GEGLU feed-forward."""

    num_latents: int = 512
    num_heads: int = 8
    head_dim: int = 4096
    ff_mult: int = 4
    layer_norm_eps: float = 1e-5
    output_normalize: bool = True

    @property
    def inner_dim(self) -> int:
        return self.num_heads * self.head_dim


@dataclass(frozen=True)
class NVEmbedConfig:
    body: BodyConfig = field(default_factory=BodyConfig)
    latent: LatentAttentionConfig = field(default_factory=LatentAttentionConfig)
    mask_instruction: bool = True  # upstream `is_mask_instruction`: instruction tokens are left out of pooling

    @property
    def embedding_dim(self) -> int:
        return self.body.hidden_size

    # ---- official config.json layout -------------------------------------------------------------------------
    @classmethod
    def from_hf_dict(cls, raw: dict[str, Any], source: str = "config.json") -> NVEmbedConfig:
        text = raw.get("text_config")
        if not isinstance(text, dict):
            raise ConfigError(f"{source}: missing 'text_config' object (official NV-Embed-v2 layout expected)")
        t = {**_MISTRAL_DEFAULTS, **{k: v for k, v in text.items() if v is not None}}
        if t["hidden_act"] != "silu":
            raise ConfigError(f"{source}: text_config.hidden_act must be 'silu', got {t['hidden_act']!r}")
        heads = int(t["num_attention_heads"])
        body = BodyConfig(
            vocab_size=int(t["vocab_size"]), hidden_size=int(t["hidden_size"]),
            num_layers=int(t["num_hidden_layers"]), num_heads=heads,
            num_kv_heads=int(t["num_key_value_heads"]),
            head_dim=int(t.get("head_dim") or int(t["hidden_size"]) // heads),
            intermediate_size=int(t["intermediate_size"]), rms_norm_eps=float(t["rms_norm_eps"]),
            rope_theta=float(t["rope_theta"]), max_position_embeddings=int(t["max_position_embeddings"]),
            bos_token_id=int(t.get("bos_token_id", 1)), eos_token_id=int(t.get("eos_token_id", 2)),
        )
        latent = cls._latent_from_hf(raw.get("latent_attention_config") or {}, body, source)
        return cls(body=body, latent=latent, mask_instruction=bool(raw.get("is_mask_instruction", True)))

    @staticmethod
    def _latent_from_hf(la: dict[str, Any], body: BodyConfig, source: str) -> LatentAttentionConfig:
        # Upstream defaults: hidden_dim = latent_dim = 4096. Both must equal the body width: the token states are
        # the queries (latent_dim) and the latents are keys/values normalised over hidden_dim.
        for key in ("hidden_dim", "latent_dim"):
            value = int(la.get(key, 4096))
            if value != body.hidden_size:
                raise ConfigError(f"{source}: latent_attention_config.{key} ({value}, upstream default 4096) must "
                                  f"equal text_config.hidden_size ({body.hidden_size})")
        return LatentAttentionConfig(
            num_latents=int(la.get("num_latents_value", 512)), num_heads=int(la.get("num_cross_heads", 8)),
            head_dim=int(la.get("cross_dim_head", 4096)), output_normalize=bool(la.get("output_normalize", True)),
        )

    def to_hf_dict(self) -> dict[str, Any]:
        b, la = self.body, self.latent
        return {
            "architectures": ["NVEmbedModel"],
            "model_type": "nvembed",
            "hidden_size": b.hidden_size,
            "is_mask_instruction": self.mask_instruction,
            "padding_side": "right",
            "torch_dtype": "float16",
            "text_config": {
                "architectures": ["MistralModel"], "model_type": "bidir_mistral", "hidden_act": "silu",
                "vocab_size": b.vocab_size, "hidden_size": b.hidden_size, "num_hidden_layers": b.num_layers,
                "num_attention_heads": b.num_heads, "num_key_value_heads": b.num_kv_heads, "head_dim": b.head_dim,
                "intermediate_size": b.intermediate_size, "rms_norm_eps": b.rms_norm_eps,
                "rope_theta": b.rope_theta, "max_position_embeddings": b.max_position_embeddings,
                "bos_token_id": b.bos_token_id, "eos_token_id": b.eos_token_id, "sliding_window": None,
                "tie_word_embeddings": False,
            },
            "latent_attention_config": {
                "model_type": "latent_attention", "num_latents_value": la.num_latents,
                "num_cross_heads": la.num_heads, "cross_dim_head": la.head_dim,
                "hidden_dim": b.hidden_size, "latent_dim": b.hidden_size, "output_normalize": la.output_normalize,
            },
        }

    @classmethod
    def from_dir(cls, path: Path) -> NVEmbedConfig:
        cfg_file = Path(path) / "config.json"
        if not cfg_file.is_file():
            raise ConfigError(f"{path}: no config.json (expected the official NV-Embed-v2 checkpoint layout)")
        try:
            raw = json.loads(cfg_file.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ConfigError(f"{cfg_file}: not valid JSON: {exc}") from exc
        if not isinstance(raw, dict):
            raise ConfigError(f"{cfg_file}: top level must be a JSON object")
        return cls.from_hf_dict(raw, source=str(cfg_file))

    def fingerprint(self) -> str:
        """A short stable hash of the architecture, for cache keys and sidecars."""
        blob = json.dumps(dataclasses.asdict(self), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]
