"""The embeddings API as clients speak it (NIM / OpenAI, KNOWLEDGE §7): the request schema, response bodies built
as plain dicts for orjson, and OpenAI's error object so the SDKs surface our messages."""

from __future__ import annotations

import base64
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from ..tokenizer import TRUNCATE_MODES


class APIError(Exception):
    """An error answered as {"error": {"message", "type", "param", "code"}} with an HTTP status."""

    TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
             405: "invalid_request_error", 413: "request_too_large", 422: "invalid_request_error",
             429: "rate_limit_error", 500: "internal_error", 503: "service_unavailable", 504: "timeout"}

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.headers = status, message, param, headers or {}
        self.code = code or self.TYPES.get(status, "error")

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.TYPES.get(self.status, "error"),
                          "param": self.param, "code": self.code}}


class EmbeddingRequest(BaseModel):
    """POST /v1/embeddings. NIM's fields; `instruction` is ours (any instruction, as the CLI's --instruction)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)

    input: str | list[str]
    model: str
    input_type: Literal["query", "passage"] = "passage"
    instruction: str | None = None
    truncate: str = "NONE"
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = None
    user: str | None = None
    embedding_type: Literal["float"] | None = None

    @field_validator("truncate")
    @classmethod
    def _truncate(cls, value: str) -> str:
        mode = value.upper()
        if mode not in TRUNCATE_MODES:
            raise ValueError(f"must be one of {', '.join(TRUNCATE_MODES)}, got {value!r}")
        return mode

    @property
    def texts(self) -> list[str]:
        return [self.input] if isinstance(self.input, str) else self.input


def validation_error(exc: ValidationError) -> APIError:
    """422 naming the first offending field (and how many problems there were)."""
    errors = exc.errors()
    first = errors[0]
    field = ".".join(str(p) for p in first["loc"]) or "body"
    message = first["msg"]
    if first["type"] == "extra_forbidden":
        message = "unknown field (the API takes input, model, input_type, instruction, truncate, encoding_format, " \
                  "dimensions, user)"
    elif first["type"] == "missing":
        message = "field required"
    elif field == "input" or field.startswith("input."):
        field, message = "input", "must be a string or a list of strings"
    more = f" ({len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
    return APIError(422, f"{field}: {message}{more}", param=field.split(".")[0], code="invalid_value")


def embedding_data(vectors: np.ndarray, encoding: str) -> list[dict]:
    """data[] in input order: float lists (orjson serialises the numpy rows) or base64 of little-endian float32."""
    if encoding == "base64":
        raw = np.ascontiguousarray(vectors, dtype="<f4")
        return [{"object": "embedding", "index": i, "embedding": base64.b64encode(row.tobytes()).decode("ascii")}
                for i, row in enumerate(raw)]
    return [{"object": "embedding", "index": i, "embedding": row} for i, row in enumerate(vectors)]


def embeddings_response(vectors: np.ndarray, encoding: str, model: str, prompt_tokens: int) -> dict:
    return {"object": "list", "data": embedding_data(vectors, encoding), "model": model,
            "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens}}


def health_body(ready: bool, message: str) -> dict:
    return {"object": "health.response", "message": message, "ready": ready}
