"""config.pbtxt generation: golden files, round trip through Triton's schema, and the consistency check."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from nvembed_trt.packing import ShapeLimit
from nvembed_trt.triton.config import check_repository, from_pbtxt, repository_configs, to_pbtxt
from nvembed_trt.triton.spec import ENCODER, ENSEMBLE, RepoSpec

GOLDEN = Path(__file__).parent / "golden"
H100 = (ShapeLimit("short-query", 64, 512), ShapeLimit("long-passage", 2, 8192))
SPECS = {"onnx-ensemble": RepoSpec("onnxruntime", "ensemble", 64, 512, (ShapeLimit("onnx", 8, 512),), 4096),
         "plan-engine": RepoSpec("tensorrt_plan", "engine", 4096, 8192, H100, 16384, max_queue_delay_us=100,
                                 nv_embed_instances=4, output_dtype="float16", engine_profiles=("0", "1"),
                                 encoder_parameters={"execution_context_allocation_strategy": "ON_PROFILE_CHANGE"})}


@pytest.mark.parametrize("tag", list(SPECS))
@pytest.mark.parametrize("model", [ENCODER, ENSEMBLE])
def test_generated_config_matches_golden(tag, model):
    config = repository_configs(SPECS[tag])[model]
    golden = GOLDEN / f"{tag}-{model}.pbtxt"
    if os.environ.get("NVEMBED_TRT_UPDATE_GOLDEN"):
        golden.write_text(to_pbtxt(config))
    assert to_pbtxt(config) == golden.read_text()
    assert from_pbtxt(to_pbtxt(config)) == config


@pytest.mark.parametrize("tag", list(SPECS))
def test_generated_repositories_are_consistent(tag):
    spec = SPECS[tag]
    configs = repository_configs(spec)
    assert check_repository(configs, spec) == []
    assert configs[ENCODER].max_batch_size == max(s.max_batch for s in spec.shape_limits)
    assert not configs[ENCODER].HasField("dynamic_batching")  # callers pack; merging could leave every profile


def test_spec_round_trips_through_json():
    spec = SPECS["plan-engine"]
    assert RepoSpec.from_json(spec.to_json()) == spec


def test_drift_is_reported():
    spec = SPECS["onnx-ensemble"]
    configs = repository_configs(spec)
    configs[ENCODER].input[0].data_type = configs[ENCODER].output[0].data_type  # INT32 -> FP32
    configs[ENCODER].max_batch_size = 4
    problems = check_repository(configs, spec, {"inputs": ["input_ids", "mask"], "outputs": ["token_states"]})
    assert any("nv_embed sends input_ids as INT32 [-1] but the encoder declares ('TYPE_FP32', [-1])" in p
               for p in problems)
    assert any("packed batches reach 8 rows but the encoder's max_batch_size is 4" in p for p in problems)
    assert any("does not match the graph's ['input_ids', 'mask']" in p for p in problems)
    short = RepoSpec("tensorrt_plan", "engine", 4096, 8192, H100[:1], 16384)
    assert any("rows of 513..8192 tokens fit no encoder shape" in p
               for p in check_repository(repository_configs(short), short))
