"""The full-width preset: every width of nv-embed-v2, only the decoder depth differs (no weights are made here)."""

from __future__ import annotations

import dataclasses

from nvembed_trt.checkpoint.loader import expected_shapes, meta_model, parameter_count
from nvembed_trt.cli.main import main
from nvembed_trt.config import NVEmbedConfig
from nvembed_trt.presets import PRESETS

FULL = NVEmbedConfig()


def test_every_width_is_nv_embed_v2s():
    preset = PRESETS["full-width-2l"]
    assert preset.weights == "random-in-memory"
    assert preset.body.num_layers == 2
    assert dataclasses.replace(preset.body, num_layers=FULL.body.num_layers) == FULL.body
    assert preset.latent == FULL.latent
    b, la = preset.body, preset.latent
    assert (b.hidden_size, b.num_heads, b.num_kv_heads, b.intermediate_size) == (4096, 32, 8, 14336)
    assert (la.num_latents, la.inner_dim, la.inner_dim * la.ff_mult // 4) == (512, 32768, 32768)


def test_shapes_and_parameter_count():
    cfg = PRESETS["full-width-2l"].config
    shapes = expected_shapes(meta_model(cfg))
    latent = "latent_attention_model.cross_attend_blocks"
    assert shapes[f"{latent}.0.fn.to_q.weight"] == (32768, 4096)
    assert shapes[f"{latent}.0.fn.to_kv.weight"] == (65536, 4096)
    assert shapes[f"{latent}.1.fn.net.0.weight"] == (32768, 4096)   # GEGLU: value and gate halves of 16384
    assert shapes[f"{latent}.1.fn.net.2.weight"] == (4096, 16384)
    assert shapes["latent_attention_model.latents"] == (512, 4096)
    assert shapes["embedding_model.layers.1.mlp.gate_proj.weight"] == (14336, 4096)
    assert "embedding_model.layers.2.input_layernorm.weight" not in shapes
    full_shapes = expected_shapes(meta_model(FULL))
    per_layer = sum(v[0] * (v[1] if len(v) > 1 else 1) for k, v in full_shapes.items()
                    if k.startswith("embedding_model.layers.0."))
    assert parameter_count(cfg) == 7_851_016_192 - 30 * per_layer == 1_307_656_192


def test_listed_by_the_cli(capsys):
    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    assert "full-width-2l:" in out and "1,307,656,192 parameters; hidden 4096, 2 layers, 32/8 heads" in out
