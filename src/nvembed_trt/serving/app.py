"""The HTTP face: NIM/OpenAI-compatible routes over an EmbeddingService (FastAPI). Importable and testable without a
Triton server: the service's backend is the only part that talks to Triton.

Every route is one `Endpoint` declaration: its path, method, request and response models and the errors it may
answer. The routes, the API-key rule, the metric labels and the OpenAPI document (/openapi.json, /docs) all come
from these declarations and from the pydantic models in schemas.py, so a new route or field is one declaration.

Every answer that is not a success is OpenAI's error object with a status a client can act on: 400 bad value,
malformed JSON, a repeated key or two Authorization headers; 401 missing or wrong API key; 404 unknown model or
route; 405 wrong method; 408 body too slow; 413 body, input, instruction or tokenisation over a limit; 422 schema
error naming the field; 429 busy or the deadline cannot be met (Retry-After); 431 headers too large; 500
unexpected; 503 not ready or shutting down; 504 past the deadline. A client that goes away is counted as 499."""

from __future__ import annotations

import asyncio
import functools
import hmac
import logging
import time
from collections.abc import Coroutine
from dataclasses import dataclass

import orjson
from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from .. import __version__
from .metrics import Metrics
from .protocol import REFUSAL
from .schemas import (FLOATS_PER_CHUNK, APIError, EmbeddingRequest, EmbeddingResponse, ErrorResponse, HealthResponse,
                      License, Manifest, Metadata, ModelList, Version, embeddings_json, health_body)
from .service import EmbeddingService, Ticket
from . import tei
from .tei import (TEIDecodeRequest, TEIEmbedAllRequest, TEIEmbeddings, TEIEmbedRequest, TEIError, TEIInfo, TEITexts,
                  TEITokenizeRequest, TEITokens, TEITokenStates)

log = logging.getLogger("nvembed_trt.serving")


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    summary: str
    response: type[BaseModel] | None = None       # the 200 body (None: text/plain)
    request: type[BaseModel] | None = None        # the JSON body, validated with this model
    errors: tuple[tuple[int, type[BaseModel]], ...] = ()
    open: bool = False                            # answered without the API key


def failures(*statuses: int) -> tuple[tuple[int, type[BaseModel]], ...]:
    return tuple((status, ErrorResponse) for status in statuses)


EMBEDDINGS = Endpoint("POST", "/v1/embeddings", "Embed one text or a list of texts", EmbeddingResponse,
                      EmbeddingRequest, failures(400, 404, 408, 413, 422, 429, 503, 504))
MODELS = Endpoint("GET", "/v1/models", "The served model", ModelList)
LIVE = Endpoint("GET", "/v1/health/live", "Liveness: the front door answers", HealthResponse, open=True)
READY = Endpoint("GET", "/v1/health/ready", "Readiness: a real embedding round trip works", HealthResponse,
                 errors=((503, HealthResponse),), open=True)
METRICS = Endpoint("GET", "/v1/metrics", "Prometheus metrics (text exposition format)")
METADATA = Endpoint("GET", "/v1/metadata", "The model, engine, limits and versions (names and hashes, no paths)",
                    Metadata)
MANIFEST = Endpoint("GET", "/v1/manifest", "What this deployment serves and accepts (NIM's manifest)", Manifest)
LICENSE = Endpoint("GET", "/v1/license", "The served weights' licence (NV-Embed-v2: CC-BY-NC-4.0) and the software's",
                   License, open=True)
VERSION = Endpoint("GET", "/v1/version", "nvembed-trt's release and the API version", Version, open=True)
# TEI's routes (serving/tei.py): its paths, its bodies, its error shape
TEI_ERRORS = tuple((status, TEIError) for status in (413, 422, 429, 503, 504))
EMBED = Endpoint("POST", "/embed", "TEI: embed texts (one float row per input)", TEIEmbeddings, TEIEmbedRequest,
                 TEI_ERRORS)
EMBED_ROOT = Endpoint("POST", "/", "TEI: what an embedding model answers at its root (as /embed)", TEIEmbeddings,
                      TEIEmbedRequest, TEI_ERRORS)
EMBED_ALL = Endpoint("POST", "/embed_all", "TEI: the per-token states of each input (BOS, prompt, text, EOS; a "
                     "--pooling ensemble repository, else 424)", TEITokenStates, TEIEmbedAllRequest,
                     (*TEI_ERRORS, (424, TEIError)))
TOKENIZE = Endpoint("POST", "/tokenize", "TEI: the tokens of each input", TEITokens, TEITokenizeRequest, TEI_ERRORS)
DECODE = Endpoint("POST", "/decode", "TEI: the text of each row of token ids", TEITexts, TEIDecodeRequest, TEI_ERRORS)
INFO = Endpoint("GET", "/info", "TEI: the model, its prompts and the server's limits", TEIInfo)
TEI_HEALTH = Endpoint("GET", "/health", "TEI: 200 (empty) while ready, 503 otherwise", errors=((503, TEIError),),
                      open=True)
TEI_METRICS = Endpoint("GET", "/metrics", "TEI's path to the Prometheus metrics (as /v1/metrics)")
TEI_ENDPOINTS = (EMBED, EMBED_ROOT, EMBED_ALL, TOKENIZE, DECODE, INFO, TEI_HEALTH, TEI_METRICS)
ENDPOINTS = (EMBEDDINGS, MODELS, LIVE, READY, METRICS, METADATA, MANIFEST, LICENSE, VERSION, *TEI_ENDPOINTS)
DOCUMENTS = ("/openapi.json", "/docs")            # the OpenAPI document and its browsable page: open
ROUTES = tuple(e.path for e in ENDPOINTS) + DOCUMENTS
OPEN_ROUTES = tuple(e.path for e in ENDPOINTS if e.open) + DOCUMENTS
ENGINE_HEADER = b"x-nvembed-engine"               # the fleet fingerprint (EmbeddingService.fingerprint)
COMMON_ERRORS = failures(431, 500)                # every route: headers too large, unexpected
KEYED_ERRORS = failures(400, 401)                 # routes behind the key: two Authorization headers, wrong key


def engine_header(service: EmbeddingService) -> tuple[bytes, bytes]:
    """X-NVEmbed-Engine: the fleet fingerprint every answer carries (EmbeddingService.fingerprint)."""
    return ENGINE_HEADER, service.fingerprint["header"].encode()


class ClientGone(Exception):
    """The client closed the connection before its answer: counted as 499, one log line, no traceback."""


def json_response(body, status: int = 200, headers: dict | None = None) -> Response:
    return Response(orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY), status_code=status,
                    media_type="application/json", headers=headers)


def answering(describe):
    """A handler that answers describe()'s dict as JSON."""
    async def handler() -> Response:
        return json_response(describe())
    return handler


def posting(answer, work):
    """A handler that answers a request with answer(request, work)."""
    async def handler(request: Request) -> Response:
        return await answer(request, work)
    return handler


def error_response(exc: APIError) -> Response:
    return json_response(exc.body(), exc.status, exc.headers)


def declared_length(request: Request) -> int | None:
    declared = request.headers.get("content-length")
    return int(declared) if declared is not None and declared.isdigit() else None


async def read_body(request: Request, limit: int, timeout_s: float, ticket: Ticket) -> bytes:
    """The body: 413 as soon as it passes `limit` bytes (declared or streamed), 408 (and the connection closed)
    when it has not all arrived `timeout_s` after the headers; its bytes are held on `ticket` (429 past the
    server's pending-bytes limit); a client that leaves meanwhile raises ClientGone."""
    declared = declared_length(request)
    if declared is not None and declared > limit:
        raise APIError(413, f"request body is {declared} bytes, above the limit of {limit} bytes")
    chunks, size = [], 0

    async def stream() -> None:
        nonlocal size
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise APIError(413, f"request body exceeds the limit of {limit} bytes (read {size} so far)")
            ticket.hold(max(size, declared or 0))
            chunks.append(chunk)
    try:
        await asyncio.wait_for(stream(), timeout_s)
    except asyncio.TimeoutError:
        raise APIError(408, f"the request body did not arrive within {timeout_s:g} s of its headers (read {size} of "
                            f"{declared if declared is not None else 'an unknown number of'} bytes; the limit is "
                            f"--body-timeout)", code="body_timeout", headers={"Connection": "close"}) from None
    except ClientDisconnect:
        raise ClientGone("while sending its body") from None
    return b"".join(chunks)


async def until_disconnect(receive, work: Coroutine):
    """The result of `work`, or ClientGone when the client disconnects first: the work is then cancelled (its
    queued inputs leave the queue)."""
    async def disconnected() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
    task, watcher = asyncio.ensure_future(work), asyncio.ensure_future(disconnected())
    try:
        await asyncio.wait((task, watcher), return_when=asyncio.FIRST_COMPLETED)
    finally:
        for pending in (task, watcher):
            if not pending.done():
                pending.cancel()
    if task.done() and not task.cancelled():
        return task.result()
    await asyncio.gather(task, return_exceptions=True)
    raise ClientGone("while its embeddings were computed")


class Guard:
    """Pure ASGI middleware: what the connection layer refused (431), the API key, the in-flight gauge, per-route
    counters and latency, a Server-Timing header (the time spent in the app, so a client can tell its network from
    our work), and a last-resort 500."""

    def __init__(self, app, service: EmbeddingService, metrics: Metrics, direct: dict | None = None):
        self.app, self.service, self.metrics = app, service, metrics
        self.direct = direct or {}    # (method, path) -> ASGI app that skips FastAPI's routing and middleware
        self.engine = engine_header(service)   # on every answer: which engine
        key = service.settings.api_key
        self.key = key.encode() if key else None

    def refusal(self, scope) -> APIError | None:
        """Why this request is answered before the app sees it, if it is."""
        refused = scope.get("extensions", {}).get(REFUSAL)
        if refused is not None:
            return APIError(*refused, headers={"Connection": "close"})
        if self.key is None or scope["path"] in OPEN_ROUTES:
            return None
        given = [value for name, value in scope["headers"] if name == b"authorization"]
        if len(given) > 1:
            return APIError(400, f"the request has {len(given)} Authorization headers; send one",
                            code="invalid_authorization")
        scheme, _, token = (given[0] if given else b"").partition(b" ")
        if scheme.lower() == b"bearer" and hmac.compare_digest(token.lstrip(b" "), self.key):
            return None
        return APIError(401, "missing or wrong API key: send Authorization: Bearer <key>", code="invalid_api_key",
                        headers={"WWW-Authenticate": "Bearer"})

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
                message["headers"] = [*message.get("headers", []), (b"server-timing", took), self.engine]
            await send(message)
        self.metrics.in_flight.inc()
        try:
            refused = self.refusal(scope)
            if refused is not None:
                await error_response(refused)(scope, receive, send_status)
            else:
                app = self.direct.get((scope["method"], scope["path"]), self.app)
                await app(scope, receive, send_status)
        finally:
            self.metrics.in_flight.dec()
            self.metrics.requests.labels(route, str(status["code"])).inc()
            self.metrics.duration.labels(route).observe(time.perf_counter() - start)


def route(app: FastAPI, endpoint: Endpoint):
    """Register the decorated handler for `endpoint`, documented from its declaration."""
    errors = (*COMMON_ERRORS, *(() if endpoint.open else KEYED_ERRORS), *endpoint.errors)
    body = None
    if endpoint.request is not None:
        schema = {"$ref": f"#/components/schemas/{endpoint.request.__name__}"}
        body = {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}

    def register(handler):
        app.add_api_route(endpoint.path, handler, methods=[endpoint.method], summary=endpoint.summary,
                          response_model=endpoint.response, openapi_extra=body,
                          response_class=PlainTextResponse if endpoint.response is None else JSONResponse,
                          responses={status: {"model": model} for status, model in errors})
        return handler
    return register


def openapi_document(app: FastAPI, service: EmbeddingService) -> dict:
    """OpenAPI 3.1 from the endpoints' declarations and models, with what this server serves: its model id, its
    dimension, its input count limit, the API key if one is set."""
    if app.openapi_schema is None:
        doc = get_openapi(title="nvembed-trt", version=__version__, routes=app.routes,
                          description="OpenAI/NIM-compatible embeddings of NV-Embed-v2 over Triton. Limits and "
                                      "timeouts: docs/reliability.md; every error is OpenAI's error object.")
        requests = [(e.request, "validation") for e in ENDPOINTS if e.request is not None]
        _, defs = models_json_schema(requests, ref_template="#/components/schemas/{model}")
        schemas = doc.setdefault("components", {}).setdefault("schemas", {})
        schemas.update(defs.get("$defs", {}))
        fields = schemas["EmbeddingRequest"]["properties"]
        fields["model"]["enum"] = service.manifest()["model_ids"]
        fields["dimensions"]["anyOf"][0].update(minimum=service.dim, maximum=service.dim)
        for branch in (1, 3):   # a list of texts, a list of token-id rows
            fields["input"]["anyOf"][branch]["maxItems"] = service.settings.max_inputs
        vocab = service.tokenizer.vocab_size - 1
        fields["input"]["anyOf"][2]["items"]["maximum"] = vocab
        fields["input"]["anyOf"][3]["items"]["items"]["maximum"] = vocab
        if service.settings.api_key:
            doc["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
            for path, operations in doc["paths"].items():
                if path not in OPEN_ROUTES:
                    for operation in operations.values():
                        operation["security"] = [{"bearer": []}]
        app.openapi_schema = doc
    return app.openapi_schema


def create_app(service: EmbeddingService) -> Guard:
    metrics, settings = service.metrics, service.settings
    app = FastAPI(title="nvembed-trt", version=__version__, docs_url="/docs", redoc_url=None,
                  openapi_url="/openapi.json")
    app.openapi = functools.partial(openapi_document, app, service)

    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError):
        return error_response(exc)

    @app.exception_handler(ClientGone)
    async def _client_gone(request: Request, exc: ClientGone):
        log.info("client closed the connection %s (%s %s): counted as 499", exc, request.method, request.url.path)
        return error_response(APIError(499, f"client closed the connection {exc}"))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException):
        if exc.status_code == 404:
            return error_response(APIError(404, f"no route {request.url.path}; routes: {', '.join(ROUTES)}",
                                           code="route_not_found"))
        if exc.status_code == 405:
            return error_response(APIError(405, f"{request.method} is not allowed on {request.url.path}",
                                           code="method_not_allowed", headers=exc.headers))
        return error_response(APIError(exc.status_code, str(exc.detail), headers=exc.headers))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        log.exception("unexpected error on %s", request.url.path)
        return error_response(APIError(500, f"internal error: {type(exc).__name__}: {exc}"))

    async def embedded(request: Request, parse=None):
        """Admission, the body, the vectors (cancelled if the client leaves): one path for every embedding route."""
        ticket = service.admit(declared_length(request))
        try:
            # the body is bound to no name here: the service drops it once parsed, and the texts once tokenised
            work = service.embed(await read_body(request, settings.max_request_bytes, settings.body_timeout_s,
                                                 ticket), ticket, parse)
            return await until_disconnect(request.receive, work)
        finally:
            ticket.close()

    @route(app, EMBEDDINGS)
    async def embeddings(request: Request):
        result = await embedded(request)
        answer = functools.partial(embeddings_json, result.vectors, result.encoding, service.model_id, result.tokens)
        if result.vectors.size > FLOATS_PER_CHUNK:   # in a thread, chunk by chunk: the event loop gets turns
            return Response(await asyncio.get_running_loop().run_in_executor(None, answer),
                            media_type="application/json")
        return Response(answer(), media_type="application/json")

    handlers = {APIError: _api_error, ClientGone: _client_gone, StarletteHTTPException: _http_error}

    async def direct_embeddings(scope, receive, send):
        """POST /v1/embeddings without FastAPI's routing and middleware layers (17 % of the front door's CPU per
        one-text request, measured): the same handler, its errors answered by the same exception handlers."""
        request = Request(scope, receive)
        try:
            response = await embeddings(request)
        except Exception as exc:  # noqa: BLE001 - mapped exactly as FastAPI's exception handlers map it
            handler = next((h for kind, h in handlers.items() if isinstance(exc, kind)), _unexpected)
            response = await handler(request, exc)
        await response(scope, receive, send)

    @route(app, MODELS)
    async def models():
        return json_response(service.models())

    @route(app, LIVE)
    async def live():
        return json_response(health_body(True, "live"))

    @route(app, READY)
    async def ready():
        health = service.health
        if health.draining:
            return json_response(health_body(False, "shutting down"), 503)
        return json_response(health_body(health.ready, "ready" if health.ready else health.message),
                             200 if health.ready else 503)

    @route(app, METRICS)
    @route(app, TEI_METRICS)
    async def prometheus():
        return Response(metrics.render(), media_type=metrics.content_type)

    @route(app, METADATA)
    async def metadata():
        return json_response(service.metadata())

    for endpoint, describe in ((MANIFEST, service.manifest), (LICENSE, service.license), (VERSION, service.version),
                               (INFO, functools.partial(tei.info, service))):
        route(app, endpoint)(answering(describe))

    def tei_answer(exc: APIError) -> Response:
        status, body = tei.tei_error(exc)
        return json_response(body, status, exc.headers)

    async def tei_floats(request: Request, parse) -> Response:
        """/embed's rows or /embed_all's token states as TEI's nested float arrays, in input order."""
        try:
            result = await embedded(request, functools.partial(parse, service))
        except APIError as exc:
            return tei_answer(exc)
        answer = functools.partial(orjson.dumps, result.vectors, option=orjson.OPT_SERIALIZE_NUMPY)
        if result.floats > FLOATS_PER_CHUNK:   # in a thread: the event loop keeps its other clients
            return Response(await asyncio.get_running_loop().run_in_executor(None, answer),
                            media_type="application/json")
        return Response(answer(), media_type="application/json")

    async def tei_tokenizer(request: Request, work) -> Response:
        """/tokenize and /decode: the body read under the same admission and limits, the work in the tokenizer
        pool."""
        try:
            ticket = service.admit(declared_length(request))
            try:
                body = await read_body(request, settings.max_request_bytes, settings.body_timeout_s, ticket)
                result = await asyncio.get_running_loop().run_in_executor(service.tokenize_pool, work, service, body)
            finally:
                ticket.close()
        except APIError as exc:
            return tei_answer(exc)
        return json_response(result)

    for endpoint, answer, work in ((EMBED, tei_floats, tei.parse_embed), (EMBED_ROOT, tei_floats, tei.parse_embed),
                                   (EMBED_ALL, tei_floats, tei.parse_embed_all),
                                   (TOKENIZE, tei_tokenizer, tei.tokenize), (DECODE, tei_tokenizer, tei.decode)):
        route(app, endpoint)(posting(answer, work))

    @route(app, TEI_HEALTH)
    async def tei_health():
        health = service.health
        if health.ready and not health.draining:
            return Response(b"", media_type="text/plain")
        message = "shutting down" if health.draining else health.message
        return json_response({"error": f"unhealthy: {message}", "error_type": "Unhealthy"}, 503)

    return Guard(app, service, metrics, {("POST", EMBEDDINGS.path): direct_embeddings})
