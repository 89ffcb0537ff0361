"""config.json in the official layout: read, written back, and refused with a clear reason."""

from __future__ import annotations

import pytest

from nvembed_trt.config import BodyConfig, NVEmbedConfig
from nvembed_trt.errors import ConfigError
from nvembed_trt.presets import PRESETS, get_preset
from nvembed_trt.errors import PresetError


def official_like() -> dict:
    """The keys NV-Embed-v2's config.json carries (latent_attention_config has only model_type set)."""
    return {"model_type": "nvembed", "is_mask_instruction": True, "padding_side": "right",
            "latent_attention_config": {"model_type": "latent_attention"},
            "text_config": {"model_type": "bidir_mistral", "hidden_act": "silu", "hidden_size": 4096,
                            "intermediate_size": 14336, "num_attention_heads": 32, "num_hidden_layers": 32,
                            "num_key_value_heads": 8, "rms_norm_eps": 1e-05, "rope_theta": 10000.0,
                            "max_position_embeddings": 32768, "sliding_window": 4096, "vocab_size": 32000}}


def test_official_layout_reads_as_defaults():
    assert NVEmbedConfig.from_hf_dict(official_like()) == NVEmbedConfig()


@pytest.mark.parametrize("name", list(PRESETS))
def test_round_trip(name):
    cfg = PRESETS[name].config
    assert NVEmbedConfig.from_hf_dict(cfg.to_hf_dict()) == cfg


def test_latent_width_must_match_body():
    raw = PRESETS["tiny"].config.to_hf_dict()
    del raw["latent_attention_config"]["latent_dim"]  # upstream default 4096 != tiny's 64
    with pytest.raises(ConfigError, match=r"latent_dim \(4096, upstream default 4096\) must equal "
                                          r"text_config.hidden_size \(64\)"):
        NVEmbedConfig.from_hf_dict(raw)


def test_bad_head_layout_and_activation():
    with pytest.raises(ConfigError, match=r"num_attention_heads \(32\) must be a multiple of num_key_value_heads"):
        BodyConfig(num_kv_heads=5)
    raw = official_like()
    raw["text_config"]["hidden_act"] = "gelu"
    with pytest.raises(ConfigError, match="hidden_act must be 'silu', got 'gelu'"):
        NVEmbedConfig.from_hf_dict(raw)


def test_unknown_preset_lists_choices():
    with pytest.raises(PresetError, match="unknown preset 'large'; presets: tiny, nv-embed-v2"):
        get_preset("large")


def test_tiny_dimensions_all_differ():
    b, la = PRESETS["tiny"].body, PRESETS["tiny"].latent
    sizes = [b.hidden_size, b.intermediate_size, la.head_dim, la.inner_dim, b.head_dim, b.hidden_size * la.ff_mult]
    assert len(set(sizes)) == len(sizes)
