"""docs/gpu-deployment.md: its ```bash blocks run here, in order, in one scratch folder (they build on each other:
export, plan-less repository, manifests); its figures are the code's. ```sh blocks need a GPU host or a cluster."""

from __future__ import annotations

import re
import subprocess

import pytest
import yaml

from conftest import REPO
from test_readme import _env

PAGE = (REPO / "docs" / "gpu-deployment.md").read_text(encoding="utf-8")
BASH = re.findall(r"^```bash\n(.*?)^```", PAGE, flags=re.S | re.M)


def test_bash_blocks_run_in_order(tmp_path):
    assert len(BASH) >= 3
    for block in BASH:
        proc = subprocess.run(["bash", "-euo", "pipefail", "-c", block], cwd=tmp_path, env=_env(),
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, f"block failed:\n{block}\n--- stderr ---\n{proc.stderr}"
    assert not (tmp_path / "triton_repo" / "tiny-h100" / "encoder" / "1" / "model.plan").exists()
    pod = yaml.safe_load((tmp_path / "deploy" / "tiny-h100-pvc" / "deployment.yaml").read_text())["spec"]["template"]
    claim = {v["name"]: v for v in pod["spec"]["volumes"]}["scratch"]["ephemeral"]["volumeClaimTemplate"]["spec"]
    assert claim["storageClassName"] == "fast-ssd"


def test_card_table_is_the_registry_arithmetic():
    from nvembed_trt.config import NVEmbedConfig
    from nvembed_trt.engines.gpus import full_size_fp16_bytes, gpu_registry
    from nvembed_trt.engines.memory import GIB

    rows = dict(re.findall(r"^\| ([^|]+) \| (\d+\.\d\d \| \d+\.\d\d \| \d+\.\d\d)", PAGE, flags=re.M))
    names = {"A10": "a10", "A100 40 GB": "a100-40gb", "A100 80 GB": "a100", "H100 80 GB": "h100", "H200": "h200",
             "L40S, RTX 6000 Ada": "l40s"}
    assert set(rows) == set(names)
    for label, name in names.items():
        gpu = gpu_registry()[name]
        static = gpu.model_copy(update={"serving": gpu.serving.model_copy(
            update={"execution_context_allocation_strategy": "STATIC"})})
        got = [gpu.memory_gib] + [g.device_memory(NVEmbedConfig(), full_size_fp16_bytes()).total / GIB
                                  for g in (gpu, static)]
        assert [float(x) for x in rows[label].split(" | ")] == pytest.approx(got, abs=0.005), label
