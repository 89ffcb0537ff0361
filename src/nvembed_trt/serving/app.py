"""The HTTP face: NIM/OpenAI-compatible routes over an EmbeddingService (FastAPI). Importable and testable without a
Triton server: the service's backend is the only part that talks to Triton.

Every answer that is not a success is OpenAI's error object with a status a client can act on: 400 bad value or
malformed JSON, 401 missing or wrong API key, 404 unknown model or route, 405 wrong method, 413 body or input over a
limit, 422 schema error naming the field, 429 busy (Retry-After), 500 unexpected, 503 not ready or shutting down,
504 past the deadline."""

from __future__ import annotations

import asyncio
import functools
import hmac
import logging
import time

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from .metrics import Metrics
from .schemas import APIError, EmbeddingRequest, embeddings_response, health_body, validation_error
from .service import EmbeddingService

log = logging.getLogger("nvembed_trt.serving")
ROUTES = ("/v1/embeddings", "/v1/models", "/v1/health/live", "/v1/health/ready", "/v1/metrics", "/v1/metadata")
OPEN_ROUTES = ("/v1/health/live", "/v1/health/ready")
BIG_RESPONSE_ROWS = 256   # responses with more rows are serialised off the event loop


def json_response(body, status: int = 200, headers: dict | None = None) -> Response:
    return Response(orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY), status_code=status,
                    media_type="application/json", headers=headers)


def error_response(exc: APIError) -> Response:
    return json_response(exc.body(), exc.status, exc.headers)


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it passes `limit` bytes (declared or streamed)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise APIError(413, f"request body is {int(declared)} bytes, above the limit of {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise APIError(413, f"request body exceeds the limit of {limit} bytes (read {size} so far)")
        chunks.append(chunk)
    return b"".join(chunks)


def parse_request(body: bytes) -> EmbeddingRequest:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise APIError(400, f"request body is not valid JSON: {exc}", code="invalid_json") from None
    if not isinstance(data, dict):
        raise APIError(400, f"request body must be a JSON object, got {type(data).__name__}", code="invalid_json")
    try:
        return EmbeddingRequest.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc) from None


class Guard:
    """Pure ASGI middleware: API key, in-flight gauge, per-route counters and latency, a Server-Timing header (the
    time spent in the app, so a client can tell its network from our work), and a last-resort 500."""

    def __init__(self, app, service: EmbeddingService, metrics: Metrics):
        self.app, self.service, self.metrics = app, service, metrics
        key = service.settings.api_key
        self.expected = f"Bearer {key}".encode() if key else None

    def _authorised(self, scope) -> bool:
        if self.expected is None or scope["path"] in OPEN_ROUTES:
            return True
        given = dict(scope["headers"]).get(b"authorization", b"")
        return hmac.compare_digest(given, self.expected)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        route = scope["path"] if scope["path"] in ROUTES else "other"
        status = {"code": 500}
        start = time.perf_counter()

        async def send_status(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                took = f"app;dur={(time.perf_counter() - start) * 1000:.3f}".encode()
                message["headers"] = [*message.get("headers", []), (b"server-timing", took)]
            await send(message)
        self.metrics.in_flight.inc()
        try:
            if not self._authorised(scope):
                response = error_response(APIError(401, "missing or wrong API key: send Authorization: Bearer <key>",
                                                   code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"}))
                await response(scope, receive, send_status)
            else:
                await self.app(scope, receive, send_status)
        finally:
            self.metrics.in_flight.dec()
            self.metrics.requests.labels(route, str(status["code"])).inc()
            self.metrics.duration.labels(route).observe(time.perf_counter() - start)


def create_app(service: EmbeddingService) -> FastAPI:
    metrics, settings = service.metrics, service.settings
    app = FastAPI(title="nvembed-trt", docs_url=None, redoc_url=None, openapi_url=None)

    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError):
        return error_response(exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException):
        if exc.status_code == 404:
            return error_response(APIError(404, f"no route {request.url.path}; routes: {', '.join(ROUTES)}",
                                           code="route_not_found"))
        if exc.status_code == 405:
            return error_response(APIError(405, f"{request.method} is not allowed on {request.url.path}",
                                           code="method_not_allowed"))
        return error_response(APIError(exc.status_code, str(exc.detail)))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        log.exception("unexpected error on %s", request.url.path)
        return error_response(APIError(500, f"internal error: {type(exc).__name__}: {exc}"))

    @app.post("/v1/embeddings")
    async def embeddings(request: Request):
        if service.health.draining:
            raise APIError(503, "the server is shutting down; retry on another replica", headers={"Retry-After": "1"})
        embed_request = parse_request(await read_body(request, settings.max_request_bytes))
        vectors, tokens = await service.embed(embed_request)
        body = embeddings_response(vectors, embed_request.encoding_format, service.model_id, tokens)
        if len(vectors) > BIG_RESPONSE_ROWS:
            content = await asyncio.get_running_loop().run_in_executor(
                None, functools.partial(orjson.dumps, body, option=orjson.OPT_SERIALIZE_NUMPY))
            return Response(content, media_type="application/json")
        return json_response(body)

    @app.get("/v1/models")
    async def models():
        return json_response(service.models())

    @app.get("/v1/health/live")
    async def live():
        return json_response(health_body(True, "live"))

    @app.get("/v1/health/ready")
    async def ready():
        health = service.health
        if health.draining:
            return json_response(health_body(False, "shutting down"), 503)
        return json_response(health_body(health.ready, "ready" if health.ready else health.message),
                             200 if health.ready else 503)

    @app.get("/v1/metrics")
    async def prometheus():
        return Response(metrics.render(), media_type=metrics.content_type)

    @app.get("/v1/metadata")
    async def metadata():
        return json_response(service.metadata())

    return Guard(app, service, metrics)
