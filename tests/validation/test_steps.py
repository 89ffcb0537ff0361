"""The measured step of the full-size benchmarks: a real child process, its exit code and its peak RSS."""

from __future__ import annotations

import json
import subprocess
import sys

from nvembed_trt.validation.steps import file_bytes, machine_facts, measured_step


MEASURE = """
import json, sys
from nvembed_trt.validation.steps import measured_step
grow = "b = bytearray(400 * 2**20); b[::4096] = b'x' * len(b[::4096])"
print(json.dumps([measured_step([sys.executable, "-c", grow]), measured_step([sys.executable, "-c", "raise SystemExit(3)"])]))
"""


def test_peak_rss_and_exit_code_of_a_real_process():
    # measured from a small parent, as the benchmarks are: Linux keeps the parent's RSS at fork in the child's
    # peak (a multi-GiB pytest process would show up in it)
    out = subprocess.run([sys.executable, "-c", MEASURE], capture_output=True, text=True, check=True).stdout
    step, failed = json.loads(out.strip().splitlines()[-1])
    assert step["exit"] == 0 and 0.39 <= step["peak_rss_gib"] < 1.0 and step["wall_s"] >= 0, step
    assert failed["exit"] == 3 and failed["peak_rss_gib"] < 0.39, failed
    assert "-> exit 3" in out


def test_file_bytes_and_machine_facts(tmp_path):
    (tmp_path / "model.onnx").write_bytes(b"x" * 10)
    (tmp_path / "model.onnx.data").write_bytes(b"y" * 32)
    assert file_bytes(tmp_path, "model.onnx", "model.onnx.data", "missing") == 42
    facts = machine_facts()
    assert facts["cpus"] >= 1 and facts["memory_gib"] > 0.5
