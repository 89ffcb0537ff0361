"""Triton model repository (`encoder` + the `nv_embed` KServe model), its configs, and a server runner.

Names are imported lazily: Triton's python-backend models import nvembed_trt.triton.models.* inside NVIDIA's image,
where the repository generator's dependencies (onnx, torch) are not installed."""

from __future__ import annotations

import importlib

_EXPORTS = {"RepoResult": ".repository", "RepoSettings": ".repository", "RepositoryError": ".repository",
            "repo_from_encoder": ".repository", "TritonServer": ".server", "ENSEMBLE": ".spec", "RepoSpec": ".spec",
            "RepoMeta": ".meta"}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
