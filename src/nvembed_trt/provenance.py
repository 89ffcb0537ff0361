"""JSON sidecars saying how an artifact was made, and atomic writes (temp name, then rename)."""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import importlib.metadata
import json
import os
import platform
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# every sidecar records the versions of whichever of these are installed (the whole toolchain, one list)
_PACKAGES = ("nvembed-trt", "torch", "numpy", "safetensors", "tokenizers", "sentencepiece", "mistral-common",
             "onnx", "onnxruntime", "onnxscript", "onnx-ir", "onnxslim", "nvidia-modelopt", "tensorrt-rtx",
             "tensorrt", "tritonclient", "nvidia-pytriton")


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in _PACKAGES:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            found[name] = importlib.metadata.version(name)
    return found


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(dest: Path) -> Iterator[Path]:
    """Yield a temporary path beside dest; rename it onto dest only if the block succeeds."""
    dest = Path(dest)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual file mode
        os.replace(tmp, dest)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def write_json(dest: Path, payload: dict[str, Any]) -> None:
    with atomic_path(dest) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n", encoding="utf-8")


def sidecar(kind: str, **fields: Any) -> dict[str, Any]:
    """The common sidecar header: what the artifact is, when and with which versions it was made."""
    now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    return {"artifact": kind, "created_utc": now, "versions": versions(), **fields}
