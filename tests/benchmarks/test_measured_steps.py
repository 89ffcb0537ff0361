"""The measured step of the full-size benchmarks (benchmarks/measured/): a real child process, its exit code, its peak
RSS and the sampled peaks of its anonymous and file-backed parts."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import REPO
from nvembed_trt.errors import InputError

BENCHMARKS = str(REPO / "benchmarks")   # where the scripts find `measured` (beside them)
sys.path.insert(0, BENCHMARKS)
from measured.memlimit import MemoryLimit  # noqa: E402
from measured.steps import file_bytes, machine_facts, measured_step  # noqa: E402

MEASURE = """
import json, sys
sys.path.insert(0, sys.argv[2])
from measured.steps import measured_step
grow = "import time; b = bytearray(400 * 2**20); b[::4096] = b'x' * len(b[::4096]); time.sleep(0.8)"
path = sys.argv[1]
open(path, "wb").write(b"z" * (300 * 2**20))
mapped = ("import mmap, sys, time; f = open(sys.argv[1], 'rb'); m = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ); "
          "s = sum(m[i] for i in range(0, len(m), 4096)); time.sleep(0.8)")
print(json.dumps([measured_step([sys.executable, "-c", grow]), measured_step([sys.executable, "-c", "raise SystemExit(3)"]),
                  measured_step([sys.executable, "-c", mapped, path])]))
"""


def test_peak_rss_and_exit_code_of_a_real_process(tmp_path):
    # measured from a small parent, as the benchmarks are: Linux keeps the parent's RSS at fork in the child's
    # peak (a multi-GiB pytest process would show up in it)
    out = subprocess.run([sys.executable, "-c", MEASURE, str(tmp_path / "weights.bin"), BENCHMARKS], capture_output=True,
                         text=True, check=True).stdout
    step, failed, mapped = json.loads(out.strip().splitlines()[-1])
    assert step["exit"] == 0 and 0.39 <= step["peak_rss_gib"] < 1.0 and step["wall_s"] >= 0, step
    # 400 MiB written into a bytearray is anonymous memory; 300 MiB read through a file mapping is file-backed
    assert 0.39 <= step["peak_anon_gib"] < 1.0 and step["peak_file_gib"] < 0.2, step
    assert 0.29 <= mapped["peak_file_gib"] < 0.6 and mapped["peak_anon_gib"] < 0.2, mapped
    assert failed["exit"] == 3 and failed["peak_rss_gib"] < 0.39, failed
    assert "-> exit 3" in out and "anonymous" in out


def test_file_bytes_and_machine_facts(tmp_path):
    (tmp_path / "model.onnx").write_bytes(b"x" * 10)
    (tmp_path / "model.onnx.data").write_bytes(b"y" * 32)
    assert file_bytes(tmp_path, "model.onnx", "model.onnx.data", "missing") == 42
    facts = machine_facts()
    assert facts["cpus"] >= 1 and facts["memory_gib"] > 0.5


LIMITED = """
import json, sys
sys.path.insert(0, sys.argv[2])
from measured.steps import drop_file_cache, measured_step
path = sys.argv[1]
open(path, "wb").write(b"z" * (600 * 2**20))
drop_file_cache(path)
mapped = ("import mmap, sys; f = open(sys.argv[1], 'rb'); m = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ); "
          "s = sum(m[i] for i in range(0, len(m), 4096))")
grow = "b = bytearray(600 * 2**20); b[::4096] = b'x' * len(b[::4096])"
print(json.dumps([measured_step([sys.executable, "-c", mapped, path], memory_limit_gib=0.3),
                  measured_step([sys.executable, "-c", grow], memory_limit_gib=0.3)]))
"""


def test_memory_limit_reclaims_mapped_pages_and_kills_what_does_not_fit(tmp_path):
    try:
        with MemoryLimit(0.3):
            pass
    except InputError as exc:
        pytest.skip(f"no writable memory cgroup here: {exc}")
    out = subprocess.run([sys.executable, "-c", LIMITED, str(tmp_path / "weights.bin"), BENCHMARKS], capture_output=True,
                         text=True, check=True).stdout
    mapped, grown = json.loads(out.strip().splitlines()[-1])
    # 600 MiB read through a mapping completes under a 0.3 GiB limit: the kernel drops clean file pages
    assert mapped["exit"] == 0 and mapped["peak_rss_gib"] <= 0.32, mapped
    assert mapped["memory_limit"]["limit_gib"] == 0.3 and mapped["memory_limit"]["peak_charge_gib"] <= 0.31
    # 600 MiB of anonymous memory cannot fit: the kernel kills it inside the cgroup
    assert grown["exit"] == -9 and grown["memory_limit"]["oom_kills"] >= 1, grown


def test_memory_limit_refuses_nonsense():
    with pytest.raises(InputError, match="must be > 0 GiB, got -1"):
        with MemoryLimit(-1):
            pass
