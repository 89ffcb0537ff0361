"""Run a real Triton Inference Server on a generated repository: by default the tritonserver binary inside the
nvidia-pytriton wheel, with its python backend (KNOWLEDGE §4); loopback only unless told otherwise.

Started with explicit model control (every model loaded at start, and reloadable by the supervisor), an exit
timeout shorter than the wrapper's own (a keep-alive client cannot hold a stop for Triton's default 30 s), and a
raised stack limit: Triton 2.51 parses HTTP JSON recursively and a deeply nested body overflowed its threads' 8 MB
stacks (a 260 KB body of '[' killed it); with 1 GiB, bodies up to ~20 MB of nesting are refused with an error. The
ports stay on loopback by default for that reason: the front door is the public face.

How long the wrapper waits for the server to become ready is an option (`ready_timeout_s`, `serve
--triton-ready-timeout`): a full-size plan (15.7 GB) read from a slow volume takes minutes to load. The Kubernetes
manifests derive it from their startup probe (deploy/k8s.py)."""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import resource
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
from .meta import RepoMeta

STACK_LIMIT = 1 << 30        # bytes of stack per thread (see the module docstring)
EXIT_TIMEOUT_S = 3           # Triton's --exit-timeout-secs; the wrapper waits this + KILL_GRACE_S, then SIGKILLs
KILL_GRACE_S = 5
READY_TIMEOUT_S = 120        # default wait for /v2/health/ready after the start
log = logging.getLogger("nvembed_trt.triton")


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


@contextlib.contextmanager
def raised_stack_limit():
    """A larger RLIMIT_STACK while a child is spawned, so it inherits it: glibc sizes every thread tritonserver starts
    from it. Set in the parent for the moment of the spawn (a preexec_fn would force fork() beside gRPC threads)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_STACK)
    want = STACK_LIMIT if hard == resource.RLIM_INFINITY else min(STACK_LIMIT, hard)
    raise_it = soft != resource.RLIM_INFINITY and soft < want
    if raise_it:
        resource.setrlimit(resource.RLIMIT_STACK, (want, hard))
    try:
        yield
    finally:
        if raise_it:
            resource.setrlimit(resource.RLIMIT_STACK, (soft, hard))


def bundled_server_problem(repo: Path | str) -> str | None:
    """Why the tritonserver bundled with nvidia-pytriton cannot serve this repository (it has no TensorRT backend),
    with what to pass instead; None when it can."""
    meta = RepoMeta.read(repo)
    if meta.encoder_kind != "tensorrt_plan":
        return None
    return (f"{repo} serves a TensorRT engine, and the tritonserver bundled with nvidia-pytriton has no TensorRT "
            f"backend: pass --tritonserver /opt/tritonserver/bin/tritonserver in NVIDIA's Triton image "
            f"({meta.triton_image.image}, the release carrying the engine's TensorRT; see deploy/Dockerfile), make "
            f"the repository with `triton-repo --encoder-backend python` (the plan run in the python backend), or "
            f"serve an ONNX encoder here")


class TritonServer:
    def __init__(self, repo: Path | str, http_port: int = 8000, grpc_port: int = 8001, metrics_port: int = 8002,
                 host: str = "127.0.0.1", binary: Path | str | None = None, log_path: Path | None = None,
                 exit_timeout_s: int = EXIT_TIMEOUT_S, ready_timeout_s: float = READY_TIMEOUT_S):
        self.repo, self.host = Path(repo).resolve(), host
        self.ports = {"http": http_port, "grpc": grpc_port, "metrics": metrics_port}
        self.bundled = binary is None
        self.binary = Path(binary) if binary else pytriton_root() / "bin" / "tritonserver"
        self.log_path = log_path
        self.exit_timeout_s = exit_timeout_s
        if ready_timeout_s <= 0:
            raise ServerError(f"the ready timeout must be > 0 seconds, got {ready_timeout_s}")
        self.ready_timeout_s = ready_timeout_s
        self.process: subprocess.Popen | None = None
        self._workdir: tempfile.TemporaryDirectory | None = None
        self._log_file = None

    @property
    def connect_host(self) -> str:
        """Where a client on this machine reaches the server (a wildcard listen address is reached on loopback)."""
        return "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host

    @property
    def endpoints(self) -> dict[str, str]:
        host = self.connect_host
        return {"http": f"{host}:{self.ports['http']}", "grpc": f"{host}:{self.ports['grpc']}",
                "metrics": f"http://{host}:{self.ports['metrics']}/metrics"}

    def backend_directory(self, workdir: Path) -> Path | None:
        """The bundled server gets a folder with the python backend and the stub for this Python; another server
        (NVIDIA's image) uses its own backends, which include tensorrt."""
        if self.bundled:
            problem = bundled_server_problem(self.repo)
            if problem:
                raise ServerError(problem)
            return prepare_backends(workdir / "backends")
        own = self.binary.resolve().parent.parent / "backends"
        return own if own.is_dir() else None

    def command(self, backends: Path | None) -> list[str]:
        cmd = [str(self.binary), f"--model-repository={self.repo}",
               f"--http-address={self.host}", f"--grpc-address={self.host}", f"--metrics-address={self.host}",
               f"--http-port={self.ports['http']}", f"--grpc-port={self.ports['grpc']}",
               f"--metrics-port={self.ports['metrics']}", "--model-control-mode=explicit", "--load-model=*",
               f"--exit-timeout-secs={self.exit_timeout_s}", "--exit-on-error=true", "--log-verbose=0"]
        if backends is not None:
            cmd.append(f"--backend-directory={backends}")
        cmd += [f"--backend-config={item}" for item in RepoMeta.read(self.repo).server.backend_config]
        return cmd

    def start(self, timeout: float | None = None) -> TritonServer:
        """Start and wait until ready: `timeout` seconds, or the server's ready_timeout_s."""
        if not self.binary.is_file():
            raise ServerError(f"tritonserver not found at {self.binary}")
        self._workdir = tempfile.TemporaryDirectory(prefix="nvembed-trt-triton-")
        backends = self.backend_directory(Path(self._workdir.name))
        self._log_file = (self.log_path or Path(self._workdir.name) / "server.log").open("a")
        self.log_path = Path(self._log_file.name)
        env = server_environment() if self.bundled else {**os.environ, **_package_path()}
        with raised_stack_limit():
            self.process = subprocess.Popen(self.command(backends), stdout=self._log_file, stderr=subprocess.STDOUT,
                                            env=env, start_new_session=True)
        self.wait_ready(timeout if timeout is not None else self.ready_timeout_s)
        return self

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

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
                raise ServerError(f"tritonserver exited with {self.process.returncode}: {self.failure_summary()}")
            if self.ready():
                return
            time.sleep(0.25)
        self.stop()
        raise ServerError(f"tritonserver was not ready after {timeout:g} s (the ready timeout; raise it with "
                          f"--triton-ready-timeout): {self.failure_summary()}")

    def log_tail(self, lines: int = 30) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def failure_summary(self) -> str:
        """The log's first error line (the cause), or its last line; the log's path for the rest."""
        lines = self.log_tail(400).splitlines()
        errors = [ln for ln in lines if ln.startswith("E") or "error" in ln.lower()]
        cause = (errors[0] if errors else lines[-1] if lines else "no output").strip()
        return f"{cause[:400]} (log: {self.log_path})"

    def stop(self, timeout: float | None = None) -> None:
        """SIGTERM, wait Triton's exit timeout plus a grace period, SIGKILL only as the last resort (logged)."""
        wait = timeout if timeout is not None else self.exit_timeout_s + KILL_GRACE_S
        if self.alive():
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(wait)
            except subprocess.TimeoutExpired:
                log.warning("tritonserver did not exit %.0f s after SIGTERM; killing it (SIGKILL)", wait)
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        elif self.process is not None:
            with contextlib.suppress(ProcessLookupError):   # stubs left behind by a crashed server
                os.killpg(self.process.pid, signal.SIGKILL)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        if self._workdir is not None:
            self._workdir.cleanup()
            self._workdir = None

    def __enter__(self) -> TritonServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _package_path() -> dict[str, str]:
    """PYTHONPATH so another server's python backend finds this package (NVIDIA's image runs its own Python)."""
    package_parent = str(Path(__file__).resolve().parents[2])
    return {"PYTHONPATH": os.pathsep.join([package_parent, os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
