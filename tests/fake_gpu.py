"""Strict stand-ins for the NVIDIA tools a GPU host has, as executables on PATH: `nvidia-smi` (the query interface
and the plain table's header, exactly the arguments nvembed_trt.hostgpu sends; anything else fails like the real one
on an unknown field) and `tritonserver` (answers --help and --version the way the NGC binary does)."""

from __future__ import annotations

import importlib.util
import stat
from pathlib import Path

from nvembed_trt.hostgpu import QUERY_FIELDS, forget

# (index, name, compute capability, memory.total MiB, uuid) as nvidia-smi prints them
H100 = (0, "NVIDIA H100 80GB HBM3", "9.0", 81559, "GPU-1e5d6a4c-0000-4000-8000-000000000001")
L40S = (0, "NVIDIA L40S", "8.9", 46068, "GPU-2e5d6a4c-0000-4000-8000-000000000002")
H200 = (0, "NVIDIA H200", "9.0", 143771, "GPU-3e5d6a4c-0000-4000-8000-000000000003")
DRIVER_ERROR = ("NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. Make sure that the "
                "latest NVIDIA driver is installed and running.")


def _executable(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def fake_smi(bin_dir: Path, gpus=(H100,), driver: str = "570.86.10", cuda: str = "12.8",
             fail: str | None = None) -> Path:
    """An nvidia-smi listing `gpus` (re-indexed in order), or failing with exit 9 and `fail` (a driver error)."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    if fail is not None:
        return _executable(bin_dir / "nvidia-smi", f"#!/bin/sh\nPATH=/usr/bin:/bin\ncat <<'EOF'\n{fail}\nEOF\nexit 9\n")
    rows = "\n".join(f"{i}, {name}, {cc}, {mem}, {driver}, {uuid}"
                     for i, (_, name, cc, mem, uuid) in enumerate(gpus))
    header = (f"| NVIDIA-SMI {driver}    Driver Version: {driver}    CUDA Version: {cuda}     |\n"
              f"| GPU  Name                 Persistence-M | Bus-Id          Disp.A | Volatile Uncorr. ECC |")
    query = f"--query-gpu={','.join(QUERY_FIELDS)}"
    return _executable(bin_dir / "nvidia-smi", f"""#!/bin/sh
PATH=/usr/bin:/bin
if [ "$#" -eq 0 ]; then
cat <<'EOF'
{header}
EOF
exit 0
fi
if [ "$1" = "{query}" ] && [ "$2" = "--format=csv,noheader,nounits" ] && [ "$#" -eq 2 ]; then
cat <<'EOF'
{rows}
EOF
exit 0
fi
echo "Invalid combination of input arguments: $*" >&2
exit 2
""")


def fake_tritonserver(bin_dir: Path, backends: tuple[str, ...] = ("python", "tensorrt", "onnxruntime"),
                      version: str = "2.73.0") -> Path:
    """An NGC-layout tritonserver: <root>/bin/tritonserver beside <root>/backends/<name>/ for each backend."""
    root = bin_dir.parent
    for name in backends:
        (root / "backends" / name).mkdir(parents=True, exist_ok=True)
    bin_dir.mkdir(parents=True, exist_ok=True)
    return _executable(bin_dir / "tritonserver", f"""#!/bin/sh
case "$1" in
  --version) echo "tritonserver {version}"; exit 0 ;;
  --help) echo "Usage: tritonserver [options]"; exit 0 ;;
esac
echo "error: creating server: Invalid argument - --model-repository must be specified" >&2
exit 1
""")


class FakeHost:
    """A PATH holding only fake NVIDIA tools (see the `fake_host` fixture); detection forgets between uses."""

    def __init__(self, root: Path, monkeypatch):
        self.bin = root / "fake-bin"
        self.bin.mkdir(parents=True, exist_ok=True)
        self.monkeypatch = monkeypatch
        monkeypatch.setenv("PATH", str(self.bin))
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
        find_spec = importlib.util.find_spec   # pynvml, where installed, would read the real driver
        monkeypatch.setattr(importlib.util, "find_spec",
                            lambda name, *a, **k: None if name == "pynvml" else find_spec(name, *a, **k))
        forget()

    def smi(self, *args, **kwargs) -> Path:
        forget()
        return fake_smi(self.bin, *args, **kwargs)

    def tritonserver(self, *args, root: str = "triton", **kwargs) -> Path:
        return fake_tritonserver(self.bin.parent / root / "bin", *args, **kwargs)
