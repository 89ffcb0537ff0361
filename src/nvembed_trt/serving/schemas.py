"""The embeddings API as clients speak it (NIM / OpenAI, KNOWLEDGE §7): one pydantic model per request and response
body. Requests are validated with these models (strict: exact enum values, real integers, no unknown field) and the
OpenAPI document is generated from the same models, so a new field is one declaration. Response bodies are built
as plain dicts for orjson (speed); the models describe them, and the schema-based fuzz test checks every answer
against them. Errors are OpenAI's error object, so the SDKs surface our messages."""

from __future__ import annotations

import base64
import json
from typing import Annotated, Literal

import jiter
import numpy as np
import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..tokenizer import TRUNCATE_MODES
from .compact import EMBEDDING_TYPES

STRICT = ConfigDict(extra="forbid", strict=True)
Text = Annotated[str, Field(min_length=1)]
TokenIds = Annotated[list[Annotated[int, Field(ge=0)]], Field(min_length=1)]
NUMPY = orjson.OPT_SERIALIZE_NUMPY
FLOATS_PER_CHUNK = 1 << 16   # ~8 ms of orjson per chunk here


class APIError(Exception):
    """An error answered as {"error": {"message", "type", "param", "code"}} with an HTTP status."""

    TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
             405: "invalid_request_error", 408: "timeout", 413: "request_too_large", 422: "invalid_request_error",
             429: "rate_limit_error", 431: "request_too_large", 499: "client_closed_request",
             500: "internal_error", 503: "service_unavailable", 504: "timeout"}

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.headers = status, message, param, headers or {}
        self.code = code or self.TYPES.get(status, "error")

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.TYPES.get(self.status, "error"),
                          "param": self.param, "code": self.code}}


# ---- requests --------------------------------------------------------------------------------------------------

class EmbeddingRequest(BaseModel):
    """POST /v1/embeddings. NIM's fields; `instruction` is ours (any instruction, as the CLI's --instruction)."""

    model_config = STRICT

    input: Text | Annotated[list[Text], Field(min_length=1)] | TokenIds | Annotated[list[TokenIds], Field(
        min_length=1)] = Field(description="a text or a list of texts to embed (none of them empty); or, as the OpenAI "
                               "spec allows, the model's own token ids of one text (a list of integers) or of several "
                               "(a list of lists): the text's ids without BOS or EOS, which the server adds with the "
                               "instruction")
    model: str = Field(description="the served model's id (GET /v1/models); NIM's `-query` / `-passage` suffix on it "
                                   "chooses input_type for clients that cannot send input_type")
    input_type: Literal["query", "passage"] = Field(
        "passage", description="query: the model's retrieval instruction is prepended; passage: none")
    instruction: str | None = Field(None, description="any instruction, instead of input_type's")
    truncate: Literal[TRUNCATE_MODES] = Field(  # type: ignore[valid-type]
        "NONE", description="an over-long input: NONE refuses it, END keeps its start, START its end")
    encoding_format: Literal["float", "base64"] | None = Field(   # null: the default, as embedding_type takes it
        "float", description="base64: each row's little-endian bytes (float32, as the openai SDK sends by default and "
                             "decodes; float16 rows as halves, the integer types as their bytes)")
    dimensions: int | None = Field(None, ge=1, description="only the model's own dimension is served")
    user: str | None = Field(None, description="accepted and ignored (OpenAI's field)")
    embedding_type: Literal[EMBEDDING_TYPES] | None = Field(  # type: ignore[valid-type]
        "float", description="NIM's field: float; float16 (our extension: each value rounded to the nearest IEEE "
                             "half; base64 gives little-endian 2-byte halves); ubinary (sign bits, value > 0 is 1, "
                             "packed most-significant bit first: dimensions/8 bytes 0..255); binary (the same bytes "
                             "minus 128, as int8); int8 and uint8 need calibrated output ranges (400 where the "
                             "repository has none)")

    @property
    def token_ids(self) -> list[list[int]] | None:
        """The rows of token ids, when `input` is token ids (None for texts)."""
        if isinstance(self.input, str) or isinstance(self.input[0], str):
            return None
        return [self.input] if isinstance(self.input[0], int) else self.input

    @property
    def texts(self) -> list[str]:
        return [self.input] if isinstance(self.input, str) else self.input


def parse_json(body: bytes, model: type[BaseModel]):
    """A JSON object body validated by `model`: 400 for JSON that is malformed, not an object or repeats a key; 422
    naming the first offending field."""
    try:
        data = jiter.from_json(body, catch_duplicate_keys=True, allow_inf_nan=False, cache_mode="keys")
    except ValueError as exc:
        code = "duplicate_key" if "duplicate key" in str(exc) else "invalid_json"
        raise APIError(400, f"request body is not valid JSON: {exc}", code=code) from None
    if not isinstance(data, dict):
        raise APIError(400, f"request body must be a JSON object, got {type(data).__name__}", code="invalid_json")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc, model) from None


def validation_error(exc: ValidationError, model: type[BaseModel]) -> APIError:
    """422 naming the first offending field (and how many problems there were). Where the field is a union (a text
    or a list of texts), the problem found deepest in it is named: `inputs[0]` rather than the text branch's
    complaint that a list is not a string."""
    errors = exc.errors()
    first = errors[0]
    first = max((e for e in errors if e["loc"][:1] == first["loc"][:1]), key=lambda e: len(e["loc"]))
    field = field_path(first["loc"])
    message = first["msg"]
    if first["type"] == "extra_forbidden":
        message = f"unknown field (the API takes {', '.join(model.model_fields)})"
    elif first["type"] == "missing":
        message = "field required"
    elif first["loc"][:1] == ("input",):                  # one problem, whichever branch of the union it is in
        return APIError(422, f"input{input_problem(errors)}", param="input", code="invalid_value")
    else:
        message += given(first)
    more = f" ({len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
    return APIError(422, f"{field}: {message}{more}", param=str(first["loc"][0]) if first["loc"] else "body",
                    code="invalid_value")


def field_path(loc: tuple) -> str:
    """Where a problem lies, as a client spells it: the field, then `[i]` per list index (our request bodies are
    flat; pydantic's union-branch tags such as 'constrained-str' or 'list[int]' are left out)."""
    if not loc:
        return "body"
    return str(loc[0]) + "".join(f"[{p}]" for p in loc[1:] if isinstance(p, int))


def given(error: dict, limit: int = 60) -> str:
    """", got <the value as JSON>" (cut at `limit` characters), and a hint where only case or spaces are wrong."""
    value = error.get("input")
    try:
        shown = orjson.dumps(value, default=str).decode()
    except orjson.JSONEncodeError:     # an integer past 64 bits (JSON has no limit, the parser keeps it exact)
        shown = json.dumps(value, default=str, separators=(",", ":"))
    shown = shown if len(shown) <= limit else shown[:limit] + "..."
    expected = str((error.get("ctx") or {}).get("expected", ""))
    near = ([v for v in (value.strip().lower(), value.strip().upper()) if v != value and f"'{v}'" in expected]
            if isinstance(value, str) else [])
    return f", got {shown}" + (f" (did you mean '{near[0]}'? the values are case-sensitive)" if near else "")


def input_problem(errors: list[dict]) -> str:
    """What is wrong with `input` (a string or a list of strings, none empty), from its union's errors."""
    for error in errors:
        if error["loc"][:1] == ("input",) and error["type"] == "too_short":
            return " is an empty list; send at least one string"
        if error["loc"][:1] == ("input",) and error["type"] == "greater_than_equal":
            return f"[{']['.join(str(p) for p in error['loc'][2:] if isinstance(p, int))}] is a negative token id"
        if error["loc"][:1] == ("input",) and error["type"] == "string_too_short":
            index = next((p for p in error["loc"][2:] if isinstance(p, int)), None)
            return " is an empty string" if index is None else f"[{index}] is an empty string"
    return (": must be a string, a list of strings, a list of token ids (integers) or a list of lists of token ids, "
            "none of them empty")


# ---- responses (documentation and the fuzz test's check; built as dicts) -----------------------------------------

class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None
    code: str | None


class ErrorResponse(BaseModel):
    error: ErrorDetail


class Embedding(BaseModel):
    object: Literal["embedding"]
    index: int
    embedding: list[float] | list[int] | str = Field(
        description="floats (float, float16), or integers (binary, ubinary: packed bytes; int8, uint8: codes); "
                    "base64 of little-endian float32 (float), float16 (float16) or of the bytes")


class Usage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingResponse(BaseModel):
    object: Literal["list"]
    data: list[Embedding]
    model: str
    usage: Usage


class ModelCard(BaseModel):
    id: str
    object: Literal["model"]
    created: int
    owned_by: str
    root: str
    max_input_tokens: int
    dimensions: int
    simulated: str | None = Field(None, description="GPU:RECIPE a simulated repository's GPU-timed stand-in "
                                  "encoder stands for (no model runs); absent for a real encoder")


class ModelList(BaseModel):
    object: Literal["list"]
    data: list[ModelCard]


class HealthResponse(BaseModel):
    object: Literal["health.response"]
    message: str
    ready: bool


class Artifact(BaseModel):
    """A file or folder of the deployment, by name and content hash: no host path is shown."""

    name: str
    sha256: str | None = None


class MetadataModel(BaseModel):
    id: str
    source: str | None
    fingerprint: str | None
    dimensions: int
    max_input_tokens: int


class MetadataEncoder(BaseModel):
    kind: str
    artifact: Artifact
    pooling: str
    shapes: list[str]
    max_batch_tokens: int
    gpu_profile: str | None
    flavor: str | None
    flavor_version: str | None


class Metadata(BaseModel):
    model: MetadataModel
    recipe: str | None
    encoder: MetadataEncoder
    repository: Artifact
    repository_created_utc: str | None
    limits: dict[str, int | float | str | None]
    versions: dict[str, str]
    embedding_types: list[str] = Field(description="embedding_type values served")
    fingerprint: dict[str, str | None] = Field(description="the engine that answers: plan (the encoder's sha256, 16 "
                                               "hex), kind, recipe, gpu, trt, weights; `header`: every response's "
                                               "X-NVEmbed-Engine header")
    output_ranges: dict | None = Field(description="the calibrated per-dimension ranges int8 / uint8 use; null: "
                                       "none calibrated, int8 / uint8 are refused")
    simulated: dict | None = Field(None, description="a simulated repository: the card, recipe, devices, figures "
                                   "and timing its stand-in encoder uses (repo.json `simulated`); absent otherwise")


class Version(BaseModel):
    object: Literal["version"]
    release: str = Field(description="nvembed-trt's version")
    api: str = Field(description="the API's version (the /v1 prefix)")


class License(BaseModel):
    object: Literal["license"]
    model: str
    weights: dict = Field(description="the served weights' licence: NV-Embed-v2's weights are CC-BY-NC-4.0")
    software: dict


class ManifestProfile(BaseModel):
    recipe: str | None
    kind: str
    pooling: str
    shapes: list[str]
    gpu_profile: str | None
    flavor: str | None
    flavor_version: str | None


class Manifest(BaseModel):
    object: Literal["manifest"]
    model: str
    model_ids: list[str] = Field(description="the id, and the id with -query / -passage (choosing input_type)")
    input_types: list[str]
    truncate: list[str]
    token_states: bool = Field(description="TEI's POST /embed_all serves per-token states (a --pooling ensemble "
                                           "repository)")
    encoding_formats: list[str]
    embedding_types: list[str]
    embedding_types_refused: list[str] = Field(description="NIM's other values, answered 400 here (and why)")
    dimensions: int
    max_input_tokens: int
    profile: ManifestProfile


def embedding_data(vectors: np.ndarray, encoding: str, start: int = 0) -> list[dict]:
    """data[] in input order (indices from `start`): float or integer lists (orjson serialises the numpy rows), or
    base64 of little-endian float32 (float rows), float16 (float16 rows) or of the bytes (int8 / uint8 rows)."""
    if encoding == "base64":
        wire = "<f2" if vectors.dtype == np.float16 else "<f4" if vectors.dtype.kind == "f" else vectors.dtype
        raw = np.ascontiguousarray(vectors, dtype=wire)
        return [{"object": "embedding", "index": start + i,
                 "embedding": base64.b64encode(row.tobytes()).decode("ascii")} for i, row in enumerate(raw)]
    return [{"object": "embedding", "index": start + i, "embedding": row} for i, row in enumerate(vectors)]


def embeddings_json(vectors: np.ndarray, encoding: str, model: str, prompt_tokens: int) -> bytes:
    """The EmbeddingResponse body, serialised FLOATS_PER_CHUNK floats at a time: orjson holds the GIL while it runs
    (a 2,048 x 1,024 float body: ~250 ms), so run in a thread this lets the event loop in between chunks."""
    rows = max(1, FLOATS_PER_CHUNK // max(1, vectors.shape[1]))
    data = b",".join(orjson.dumps(embedding_data(vectors[lo:lo + rows], encoding, lo), option=NUMPY)[1:-1]
                     for lo in range(0, len(vectors), rows))
    tail = orjson.dumps({"model": model, "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens}})
    return b'{"object":"list","data":[' + data + b"]," + tail[1:]


def health_body(ready: bool, message: str) -> dict:
    return {"object": "health.response", "message": message, "ready": ready}
