"""Triton model repository: tokenizer -> encoder -> pooling ensemble, its configs, and a server runner."""

from .repository import RepoResult, RepositoryError, repo_from_encoder
from .server import TritonServer
from .spec import ENSEMBLE, RepoSpec

__all__ = ["ENSEMBLE", "RepoResult", "RepoSpec", "RepositoryError", "TritonServer", "repo_from_encoder"]
