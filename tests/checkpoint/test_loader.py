"""Checkpoint loading: strict keys reported all at once, streaming dtypes, layout errors."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from nvembed_trt.checkpoint import load_model, tensor_infos, write_checkpoint
from nvembed_trt.checkpoint.loader import parameter_count
from nvembed_trt.config import NVEmbedConfig
from nvembed_trt.errors import CheckpointError, CheckpointKeyError, ConfigError
from nvembed_trt.presets import PRESETS


@pytest.fixture
def tiny_copy(tmp_path, tiny_dir):
    dest = tmp_path / "ckpt"
    shutil.copytree(tiny_dir, dest)
    return dest


def _rewrite(ckpt, edit):
    state = load_file(ckpt / "model.safetensors")
    edit(state)
    save_file(state, ckpt / "model.safetensors")


def test_full_size_config_has_official_parameter_count():
    assert parameter_count(NVEmbedConfig()) == 7_851_016_192  # total_size 15,702,032,384 bytes in fp16


def test_missing_directory():
    with pytest.raises(CheckpointError, match="checkpoint directory not found: /no/such/dir"):
        load_model("/no/such/dir")


def test_every_key_problem_is_reported_at_once(tiny_copy):
    def edit(state):
        del state["latent_attention_model.latents"]
        del state["embedding_model.layers.1.mlp.up_proj.weight"]
        state["embedding_model.lm_head.weight"] = torch.zeros(2, 2, dtype=torch.float16)
        state["embedding_model.norm.weight"] = torch.ones(65, dtype=torch.float16)
    _rewrite(tiny_copy, edit)
    with pytest.raises(CheckpointKeyError) as info:
        load_model(tiny_copy, progress=False)
    err = info.value
    assert err.missing == ["embedding_model.layers.1.mlp.up_proj.weight", "latent_attention_model.latents"]
    assert err.unexpected == ["embedding_model.lm_head.weight"]
    assert err.mismatched == [("embedding_model.norm.weight", (65,), (64,))]
    text = str(err)
    assert "missing key: latent_attention_model.latents" in text
    assert "unexpected key: embedding_model.lm_head.weight" in text
    assert "shape mismatch: embedding_model.norm.weight: checkpoint [65], model expects [64]" in text


def test_config_and_weights_disagree(tiny_copy):
    cfg = json.loads((tiny_copy / "config.json").read_text())
    cfg["text_config"]["intermediate_size"] = 100
    (tiny_copy / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointKeyError, match=r"mlp.gate_proj.weight: checkpoint \[176, 64\], model expects "
                                                r"\[100, 64\]"):
        load_model(tiny_copy, progress=False)


def test_only_safetensors_are_read(tiny_copy):
    (tiny_copy / "model.safetensors").rename(tiny_copy / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="found pytorch_model.bin: only safetensors checkpoints are read"):
        load_model(tiny_copy, progress=False)


def test_missing_config(tiny_copy):
    (tiny_copy / "config.json").unlink()
    with pytest.raises(ConfigError, match="no config.json"):
        load_model(tiny_copy, progress=False)


def test_config_without_text_config(tiny_copy):
    (tiny_copy / "config.json").write_text('{"model_type": "nvembed"}')
    with pytest.raises(ConfigError, match="missing 'text_config'"):
        load_model(tiny_copy, progress=False)


def test_index_naming_a_missing_shard(tmp_path):
    dest = write_checkpoint(PRESETS["tiny"].config, tmp_path / "s", max_shard_bytes=150_000, progress=False)
    (dest / "model-00002-of-00004.safetensors").unlink()
    with pytest.raises(CheckpointError, match="names shard files that are not in .*model-00002-of-00004"):
        load_model(dest, progress=False)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_weights_land_in_the_requested_dtype(tiny_dir, dtype):
    model = load_model(tiny_dir, dtype=dtype, progress=False)
    dtypes = {p.dtype for p in model.parameters()}
    devices = {p.device.type for p in model.parameters()}
    assert dtypes == {dtype} and devices == {"cpu"}
    assert not any(p.requires_grad for p in model.parameters())


def test_sharded_and_single_file_checkpoints_hold_identical_weights(tmp_path):
    cfg = PRESETS["tiny"].config
    one = write_checkpoint(cfg, tmp_path / "one", seed=5, progress=False)
    many = write_checkpoint(cfg, tmp_path / "many", seed=5, max_shard_bytes=150_000, progress=False)
    a, b = load_model(one, progress=False).state_dict(), load_model(many, progress=False).state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    index = json.loads((many / "model.safetensors.index.json").read_text())
    assert index["metadata"]["total_size"] == 2 * parameter_count(cfg)
    assert set(index["weight_map"]) == set(tensor_infos(many))


def test_writer_refuses_non_empty_destination_and_leaves_nothing(tmp_path):
    dest = tmp_path / "taken"
    dest.mkdir()
    (dest / "keep.txt").write_text("mine")
    with pytest.raises(Exception, match="already exists and is not empty"):
        write_checkpoint(PRESETS["tiny"].config, dest, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]
    assert [p.name for p in dest.iterdir()] == ["keep.txt"]


def test_writer_interrupted_leaves_no_partial_directory(tmp_path, monkeypatch):
    import nvembed_trt.checkpoint.writer as writer

    def explode(*args, **kwargs):
        raise OSError("disk full")
    monkeypatch.setattr(writer, "write_tokenizer_files", explode)
    with pytest.raises(OSError, match="disk full"):
        write_checkpoint(PRESETS["tiny"].config, tmp_path / "new", progress=False)
    assert list(tmp_path.iterdir()) == []
