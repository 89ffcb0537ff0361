"""The serving front door: an OpenAI/NIM-compatible /v1/embeddings API over Triton (app, schemas, batching,
supervision, one module each). Imports no torch/onnx: it runs in NVIDIA's Triton image with the `serving` extra."""

from .app import create_app
from .metrics import Metrics
from .schemas import APIError, EmbeddingRequest
from .service import EmbeddingService
from .settings import API_KEY_ENV, ServeSettings

__all__ = ["API_KEY_ENV", "APIError", "EmbeddingRequest", "EmbeddingService", "Metrics", "ServeSettings",
           "create_app"]
