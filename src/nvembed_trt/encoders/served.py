"""Deployments behind the seam: servers that take text (Triton's nv_embed KServe model at host:port, the front door
at http://host:port/v1) implement TextEmbedder directly; they tokenise, pack and pool on their side. Its limits are
read from the server: nv_embed's config (rows per request, max_length) or the front door's /v1/models."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from ..errors import InputError
from ..tokenizer import INPUT_TYPES

API_KEY_ENV = "NVEMBED_TRT_API_KEY"   # the front door's key, read by every client of it


def front_door_models(client) -> dict:
    """GET {url}/models of the front door (the description it serves: id, max_input_tokens, dimensions)."""
    return next(m for m in client.front_door.models() if m["id"] == client.model)


def served_limits(url: str, protocol: str, api_key: str | None = None) -> tuple[int | None, int | None]:
    """(max rows per request, max tokens per row) of a deployment: a Triton repository's nv_embed model config
    (KServe), or the front door's /v1/models (its row limit is its own business: None). Asked with a client of its
    own: tritonclient's HTTP client (gevent) must stay in the thread that first uses it."""
    from ..client import EmbeddingClient
    from ..triton.spec import ENSEMBLE

    client = EmbeddingClient(url, protocol, api_key=api_key or os.environ.get(API_KEY_ENV))
    if client.front_door is not None:
        return None, int(front_door_models(client)["max_input_tokens"])
    if client.protocol == "grpc":
        config = client.client.get_model_config(ENSEMBLE, as_json=True)["config"]
    else:
        config = client.client.get_model_config(ENSEMBLE)
    max_rows = int(config.get("max_batch_size") or 0) or None
    max_length = config.get("parameters", {}).get("max_length", {}).get("string_value")
    return max_rows, int(max_length) if max_length else None


class ServedEmbedder:
    """A client of a running deployment. The instruction goes as INPUT_TYPE (query, passage) where it is one of the
    standard ones, else as INSTRUCTION; `truncate` as given (None: the server's default)."""

    def __init__(self, url: str, protocol: str = "http", truncate: str | None = None, batch_size: int = 16,
                 recipe: str = "served", api_key: str | None = None):
        from ..client import EmbeddingClient

        self.url, self.truncate, self.recipe, self.batch_size = url, truncate, recipe, batch_size
        self.max_rows, limit = served_limits(url, protocol, api_key)   # rows per request (KServe), tokens per row
        self.client = EmbeddingClient(url, protocol, api_key=api_key or os.environ.get(API_KEY_ENV))
        self.max_length = limit or 0
        self.name = "front-door" if self.client.front_door is not None else f"kserve-{protocol}"

    def new_client(self):
        """Another client of the same server (tritonclient's clients are not shared across threads)."""
        from ..client import EmbeddingClient

        return EmbeddingClient(self.url, self.client.protocol if self.client.front_door is None else "http")

    def embed(self, texts: Sequence[str], instruction: str, batch_size: int | None = None) -> np.ndarray:
        if len(texts) == 0:
            raise InputError("no texts to embed (got an empty list)")
        kind = next((k for k, v in INPUT_TYPES.items() if v == instruction), None)
        size = batch_size or self.batch_size
        size = min(size, self.max_rows) if self.max_rows else size     # within nv_embed's rows per request
        return self.client.embed(list(texts), input_type=kind, instruction=None if kind else instruction,
                                 truncate=self.truncate, batch_size=size)

    def close(self) -> None:
        pass
