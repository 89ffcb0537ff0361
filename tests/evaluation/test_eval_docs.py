"""docs/evaluation.md is a manual a user follows: its ```bash blocks run here, in order, in one scratch folder (as a
new user would type them), and its ```python block after them when mteb is installed. ```sh blocks (the GPU host's
anchor commands) are shown, not run."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

DOC = (REPO / "docs" / "evaluation.md").read_text(encoding="utf-8")
BASH = re.findall(r"^```bash\n(.*?)^```", DOC, flags=re.S | re.M)
PYTHON = re.findall(r"^```python\n(.*?)^```", DOC, flags=re.S | re.M)


def test_the_manual_runs(tmp_path):
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", "\n".join(BASH)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    torch, onnx = (json.loads((tmp_path / "runs" / n / "report.json").read_text()) for n in ("torch", "onnx"))
    assert torch["dataset"]["queries"] == 50 and torch["instruction"].startswith("Instruct: Given a one-line")
    assert torch["metrics"]["ndcg@10"] == pytest.approx(onnx["metrics"]["ndcg@10"], abs=1e-4)
    assert "PASS: nDCG@10 drop" in done.stdout and list((tmp_path / "cache").rglob("part-*.parquet"))
    if not PYTHON:
        return
    pytest.importorskip("mteb", reason="mteb is not installed: the manual's mteb example needs the `mteb` extra")
    ran = subprocess.run([sys.executable, "-c", PYTHON[0]], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=600)
    assert ran.returncode == 0, ran.stderr[-3000:]
    assert float(ran.stdout.strip().splitlines()[-1]) == pytest.approx(onnx["metrics"]["ndcg@10"], abs=1e-5)
