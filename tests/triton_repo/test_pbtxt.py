"""config.pbtxt generation: golden files, round trip through Triton's schema, and the consistency check."""

from __future__ import annotations

from pathlib import Path

import pytest

from nvembed_trt.triton.config import check_repository, from_pbtxt, repository_configs, to_pbtxt
from nvembed_trt.triton.spec import ENCODER, ENSEMBLE, POOLING, TOKENIZER, RepoSpec

GOLDEN = Path(__file__).parent / "golden"
SPECS = {"onnx-ensemble": RepoSpec("onnxruntime", "ensemble", 64, 8, 512),
         "plan-engine": RepoSpec("tensorrt_plan", "engine", 4096, 64, 8192, preferred_batch_sizes=(8, 16, 32, 64),
                                 max_queue_delay_us=1000, tokenizer_instances=4, output_dtype="float16",
                                 engine_profiles=("0", "1"))}


@pytest.mark.parametrize("tag", list(SPECS))
@pytest.mark.parametrize("model", [TOKENIZER, ENCODER, POOLING, ENSEMBLE])
def test_generated_config_matches_golden(tag, model):
    config = repository_configs(SPECS[tag])[model]
    assert to_pbtxt(config) == (GOLDEN / f"{tag}-{model}.pbtxt").read_text()
    assert from_pbtxt(to_pbtxt(config)) == config


@pytest.mark.parametrize("tag", list(SPECS))
def test_generated_repositories_are_consistent(tag):
    configs = repository_configs(SPECS[tag])
    assert check_repository(configs) == []
    assert {c.max_batch_size for c in configs.values()} == {SPECS[tag].max_batch_size}


def test_drift_is_reported():
    configs = repository_configs(SPECS["onnx-ensemble"])
    configs[ENCODER].input[0].data_type = configs[ENCODER].output[0].data_type  # INT32 -> FP32
    configs[POOLING].max_batch_size = 4
    problems = check_repository(configs, {"inputs": ["input_ids", "mask"], "outputs": ["token_states"]})
    assert any("max_batch_size differs" in p for p in problems)
    assert any("encoder.input_ids is ('TYPE_FP32', [-1]) but _input_ids is ('TYPE_INT32', [-1])" in p
               for p in problems)
    assert any("does not match the graph's ['input_ids', 'mask']" in p for p in problems)
