"""Run a real Triton Inference Server on a generated repository: by default the tritonserver binary inside the
nvidia-pytriton wheel, with its python backend (KNOWLEDGE §4); loopback only unless told otherwise."""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.request
from pathlib import Path

from ..errors import NVEmbedError

NGC_IMAGE = "nvcr.io/nvidia/tritonserver:24.10-py3"


class ServerError(NVEmbedError):
    """The server could not be found, did not start, or did not become ready."""


def pytriton_root() -> Path:
    """nvidia-pytriton's tritonserver folder, found without importing pytriton (its Python API is not needed and
    its dependencies, numpy<2 among them, are not installed)."""
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise ServerError("the bundled Triton server comes with nvidia-pytriton: pip install --no-deps "
                          "nvidia-pytriton (or pass --tritonserver PATH)")
    return Path(list(spec.submodule_search_locations)[0]) / "tritonserver"


def prepare_backends(dest: Path) -> Path:
    """A backend directory holding the python backend and the stub built for this Python."""
    root = pytriton_root()
    python = dest / "python"
    shutil.copytree(root / "backends" / "python", python, dirs_exist_ok=True)
    stub = root / "python_backend_stubs" / f"{sys.version_info.major}.{sys.version_info.minor}" / \
        "triton_python_backend_stub"
    if not stub.is_file():
        raise ServerError(f"nvidia-pytriton has no python backend stub for Python {sys.version_info[:2]}")
    shutil.copy2(stub, python / "triton_python_backend_stub")
    return dest


def server_environment() -> dict[str, str]:
    """The python backend's stub must import this package and its dependencies from this environment."""
    env = os.environ.copy()
    package_parent = str(Path(__file__).resolve().parents[2])
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = os.pathsep.join([package_parent, sysconfig.get_paths()["purelib"],
                                         env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    libs = pytriton_root().parent.parent / "nvidia_pytriton.libs"
    env["LD_LIBRARY_PATH"] = os.pathsep.join([str(libs), env.get("LD_LIBRARY_PATH", "")]).rstrip(os.pathsep)
    return env


class TritonServer:
    def __init__(self, repo: Path | str, http_port: int = 8000, grpc_port: int = 8001, metrics_port: int = 8002,
                 host: str = "127.0.0.1", binary: Path | str | None = None, log_path: Path | None = None):
        self.repo, self.host = Path(repo).resolve(), host
        self.ports = {"http": http_port, "grpc": grpc_port, "metrics": metrics_port}
        self.binary = Path(binary) if binary else pytriton_root() / "bin" / "tritonserver"
        self.log_path = log_path
        self.process: subprocess.Popen | None = None
        self._workdir: tempfile.TemporaryDirectory | None = None

    @property
    def endpoints(self) -> dict[str, str]:
        return {"http": f"{self.host}:{self.ports['http']}", "grpc": f"{self.host}:{self.ports['grpc']}",
                "metrics": f"http://{self.host}:{self.ports['metrics']}/metrics"}

    def command(self, backends: Path) -> list[str]:
        return [str(self.binary), f"--model-repository={self.repo}", f"--backend-directory={backends}",
                f"--http-address={self.host}", f"--grpc-address={self.host}", f"--metrics-address={self.host}",
                f"--http-port={self.ports['http']}", f"--grpc-port={self.ports['grpc']}",
                f"--metrics-port={self.ports['metrics']}", "--exit-on-error=true", "--log-verbose=0"]

    def start(self, timeout: float = 120.0) -> TritonServer:
        if not self.binary.is_file():
            raise ServerError(f"tritonserver not found at {self.binary}")
        self._workdir = tempfile.TemporaryDirectory(prefix="nvembed-trt-triton-")
        backends = prepare_backends(Path(self._workdir.name) / "backends")
        log = (self.log_path or Path(self._workdir.name) / "server.log").open("w")
        self.log_path = Path(log.name)
        self.process = subprocess.Popen(self.command(backends), stdout=log, stderr=subprocess.STDOUT,
                                        env=server_environment(), start_new_session=True)
        self.wait_ready(timeout)
        return self

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.endpoints['http']}/v2/health/ready", timeout=2) as reply:
                return reply.status == 200
        except OSError:
            return False

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServerError(f"tritonserver exited with {self.process.returncode}:\n{self.log_tail()}")
            if self.ready():
                return
            time.sleep(0.25)
        self.stop()
        raise ServerError(f"tritonserver was not ready after {timeout:.0f} s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, timeout: float = 30.0) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        if self._workdir is not None:
            self._workdir.cleanup()
            self._workdir = None

    def __enter__(self) -> TritonServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def ngc_command(repo: Path) -> str:
    return (f"docker run --gpus all --rm -p8000:8000 -p8001:8001 -p8002:8002 -v {Path(repo).resolve()}:/models "
            f"{NGC_IMAGE} bash -c 'pip install nvembed-trt && tritonserver --model-repository=/models'")
