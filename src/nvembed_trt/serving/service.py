"""EmbeddingService: an embeddings request -> admission -> checked inputs -> bounded tokenisation off the event loop
-> the batcher (admitted only if it can finish before its deadline) -> vectors, with every limit named in its error;
plus what /v1/models and /v1/metadata say, read from the repository's sidecars.

What one request may cost: its body (max_request_bytes) and, while it is read, parsed and tokenised, its share of
max_pending_bytes; at most max_tokenize_chars characters tokenised, in chunks off the event loop (the loop itself
tokenises only requests under inline_tokenize_chars); its instruction (max_instruction_bytes) tokenised once; then
its tokens in the queue (max_queued_tokens, max_queued_inputs) and its vectors."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from .. import __version__
from ..encoding import Row, encode_rows
from ..errors import InputError, NVEmbedError
from ..packing import Packer
from ..provenance import versions
from ..tokenizer import INPUT_TYPES, TRUNCATE_MODES, EmbeddingTokenizer, OverBudget, TokenBudget, TooLongError
from ..triton.meta import RepoMeta
from ..triton.spec import ENCODER, ENSEMBLE, TOKENIZER_DIR, RepoSpec
from .backend import EncoderFailure, TritonEncoder
from .duty import DutyCycle, encoder_devices, poll
from .batching import SAFETY, Batcher, QueueFull, Throughput, TooBig
from .compact import (EMBEDDING_TYPES, OUTPUT_RANGES_FILE, OUTPUT_RANGES_MISSING, UNCALIBRATED_TYPES, OutputRanges,
                      compact)
from .metrics import Metrics
from .schemas import APIError, EmbeddingRequest, parse_json
from .settings import ServeSettings

API_VERSION = "v1"   # the API's own version (the /v1 prefix), not the model's
WEIGHTS_LICENSE = {"name": "CC-BY-NC-4.0", "title": "Creative Commons Attribution-NonCommercial 4.0 International",
                   "url": "https://creativecommons.org/licenses/by-nc/4.0/",
                   "terms": "NVIDIA's NV-Embed-v2 weights (nvidia/NV-Embed-v2) may be used for non-commercial purposes "
                            "only; a deployment serving them inherits that restriction"}
TRUNCATE_HINT = "truncate is NONE: send truncate END or START to embed it truncated"
TOKENIZE_WORKERS = 2  # threads of the tokenizer pool
TOKENIZE_CHUNK = 64   # inputs tokenised per call in the tokenizer pool
CHARS_PER_TOKEN = 4   # admission's estimate before tokenising (English text: ~4-5)


def utf8_size(text: str, limit: int) -> int:
    """UTF-8 bytes of text (lone surrogates counted as 3), computed only when it could pass `limit`."""
    return len(text) if len(text) * 4 <= limit else len(text.encode("utf-8", "surrogatepass"))


@dataclass
class Health:
    ready: bool = False
    message: str = "starting"
    draining: bool = False


@dataclass
class Prepared:
    """A checked request: what tokenisation needs (texts dropped once tokenised) and how to answer."""

    texts: list[str] | list[list[int]] | None   # texts, or rows of token ids when `token_input`
    instruction: str
    truncate: str
    encoding: str
    embedding_type: str = "float"
    token_input: bool = False
    states: bool = False   # per-token states (TEI's /embed_all), not pooled vectors


MODEL_SUFFIXES = {"-query": "query", "-passage": "passage"}   # NIM: `<model>-query` chooses input_type query


@dataclass(frozen=True)
class Embedded:
    vectors: np.ndarray | list[np.ndarray]   # float32 (N, D) in input order, or its compact form (serving.compact);
    tokens: int                              # token states: one float32 (tokens_i, D) per input
    encoding: str

    @property
    def floats(self) -> int:
        return sum(v.size for v in self.vectors) if isinstance(self.vectors, list) else self.vectors.size


class Ticket:
    """One embeddings request in progress: counted in the service's `active` until closed, its body's bytes in
    `pending_bytes` (429 past max_pending_bytes) and its estimated tokens in the queue's backlog until its texts are
    tokenised."""

    def __init__(self, service: EmbeddingService):
        self.service, self.bytes, self.reserved, self.closed = service, 0, 0, False

    def hold(self, size: int) -> None:
        service, extra = self.service, size - self.bytes
        if extra <= 0:
            return
        limit = service.settings.max_pending_bytes
        if service.pending_bytes + extra > limit:
            raise service.refuse("pending_bytes", f"the server holds {service.pending_bytes} bytes of request bodies "
                                                  f"not yet tokenised and this request adds {size}; the limit is "
                                                  f"{limit} (--max-pending-bytes)")
        service.pending_bytes += extra
        self.bytes = size

    def release(self) -> None:
        """Its texts are tokenised: its body's bytes no longer count."""
        self.service.pending_bytes -= self.bytes
        self.bytes = 0

    def close(self) -> None:
        if not self.closed:
            self.release()
            if self.reserved:   # it never reached the queue (refused, failed, cancelled while tokenised)
                self.service.batcher.release(self.reserved)
                self.reserved = 0
            self.service.active -= 1
            self.closed = True


def read_repository(repo: Path) -> tuple[RepoMeta, RepoSpec]:
    """repo.json (RepoMeta: one error naming the file and the command for a missing or stale one) and its spec."""
    meta = RepoMeta.read(repo)
    return meta, meta.spec


class EmbeddingService:
    def __init__(self, repo: Path | str, settings: ServeSettings, encoder_url: str, metrics: Metrics,
                 triton_metrics_url: str | None = None):
        self.repo, self.settings, self.metrics = Path(repo), settings, metrics
        self.triton_metrics_url = triton_metrics_url   # where the GPU duty cycle is read (Triton's counters)
        self.duty_task: asyncio.Task | None = None
        self.meta, self.spec = read_repository(self.repo)
        self.tokenizer = EmbeddingTokenizer.from_dir(self.repo / ENSEMBLE / "1" / TOKENIZER_DIR)
        self.model_id = settings.model_id or self.meta.served_model_id
        self.created = int(Path(self.repo / RepoMeta.FILE).stat().st_mtime)
        self.packer = Packer(self.spec.shape_limits, settings.max_batch_tokens or self.spec.max_batch_tokens)
        self.encoder_url = encoder_url
        self.backend = None        # TritonEncoder, made in start() (its gRPC channel belongs to the running loop)
        self.batcher: Batcher | None = None
        self.health = Health()
        self.on_unready = None     # the supervisor's wake-up: live traffic saw the encoder fail
        self.repo_sha256 = self.meta.digest()     # what identifies the repository: its repo.json's contents
        self.active = 0            # embeddings requests in progress (tickets)
        self.pending_bytes = 0     # their bodies' bytes not yet tokenised
        self.tokenizing = 0        # estimated tokens of the requests in the tokenizer pool
        self.tokenizer_rate = Throughput()
        self.output_ranges = self.read_output_ranges()
        self.tokenize_pool = ThreadPoolExecutor(max_workers=TOKENIZE_WORKERS, thread_name_prefix="tokenize")

    def read_output_ranges(self) -> OutputRanges | None:
        """The repository's calibrated output ranges (int8 / uint8), checked against its encoder and dimension."""
        ranges = OutputRanges.find(self.repo)
        if ranges is None:
            return None
        if len(ranges.low) != self.dim or len(ranges.high) != self.dim:
            raise NVEmbedError(f"{self.repo / OUTPUT_RANGES_FILE}: {len(ranges.low)} ranges for a {self.dim}-"
                               f"dimensional model; rewrite it with nvembed-trt output-ranges")
        if ranges.encoder_sha256 != self.meta.encoder_sha256:
            raise NVEmbedError(f"{self.repo / OUTPUT_RANGES_FILE} was measured on another encoder (sha256 "
                               f"{str(ranges.encoder_sha256)[:16]}, this repository's is "
                               f"{self.meta.encoder_sha256[:16]}); rewrite it with nvembed-trt output-ranges")
        return ranges

    @property
    def embedding_types(self) -> tuple[str, ...]:
        """embedding_type values served: the sign types always, int8 and uint8 with calibrated output ranges."""
        return EMBEDDING_TYPES if self.output_ranges is not None else UNCALIBRATED_TYPES

    @cached_property
    def devices(self) -> int:
        """Encoder instances that run at once (serving.duty.encoder_devices)."""
        return encoder_devices(self.spec, self.meta)

    @property
    def max_inflight(self) -> int:
        """Batches at the encoder at once: one per device (simulated, or each GPU's instances) plus one queued
        behind them."""
        return self.settings.max_inflight_batches or self.devices + 1

    @property
    def dim(self) -> int:
        return self.spec.hidden_size

    @property
    def serves_token_states(self) -> bool:
        """Whether per-token states leave the encoder (TEI's /embed_all): only where the front door pools."""
        return self.spec.pooling == "ensemble"

    def start(self) -> None:
        if self.backend is None:
            self.backend = TritonEncoder(self.encoder_url, ENCODER, self.spec.encoder_inputs, self.spec.encoder_output)
        settings = self.settings
        self.batcher = Batcher(self.packer, self.tokenizer.pad_id, self.spec.encoder_inputs, self.dim,
                               self.backend.run, self.metrics, self.max_inflight, settings.max_queued_inputs,
                               settings.max_queued_tokens, settings.request_timeout_s)
        self.batcher.start()
        if self.triton_metrics_url and self.duty_task is None:
            self.duty_task = asyncio.get_running_loop().create_task(
                poll(self.triton_metrics_url, DutyCycle(self.devices), self.metrics.set_duty), name="duty-cycle")

    async def close(self) -> None:
        if self.duty_task is not None:
            self.duty_task.cancel()
        if self.batcher is not None:
            await self.batcher.stop()
        if self.backend is not None:
            await self.backend.close()
        self.tokenize_pool.shutdown(wait=False, cancel_futures=True)

    def set_health(self, ready: bool, message: str) -> None:
        self.health.ready, self.health.message = ready, message
        self.metrics.ready.set(1 if ready and not self.health.draining else 0)
        if not ready and self.on_unready is not None:
            self.on_unready()

    # ---- requests --------------------------------------------------------------------------------------------

    def admit(self, declared_bytes: int | None) -> Ticket:
        """A ticket for an embeddings request, before its body is read: 503 while not ready, 429 (Retry-After) when
        too many requests are in progress, their bodies hold too many bytes, or the work already queued could not
        be done before a new request's deadline."""
        settings = self.settings
        if self.health.draining:
            raise APIError(503, "the server is shutting down; retry on another replica", headers={"Retry-After": "1"})
        if not self.health.ready:
            raise APIError(503, f"not ready: {self.health.message}", headers={"Retry-After": "1"})
        if self.active >= settings.max_concurrent_requests:
            raise self.refuse("busy", f"the server is busy: {self.active} requests in progress, the limit is "
                                      f"{settings.max_concurrent_requests} (--max-concurrent-requests)")
        wait = self.batcher.wait_s() if self.batcher is not None else None
        if wait is not None and wait > SAFETY * settings.request_timeout_s:
            raise self.refuse("deadline", f"the encoder has ~{wait:.1f} s of work queued ({self.batcher.backlog_tokens} "
                                          f"tokens), more than a new request's {settings.request_timeout_s:g} s "
                                          f"deadline allows (--request-timeout)",
                              wait - SAFETY * settings.request_timeout_s)
        ticket = Ticket(self)
        if declared_bytes is not None and declared_bytes <= settings.max_request_bytes:
            ticket.hold(declared_bytes)
        self.active += 1
        return ticket

    def refuse(self, reason: str, message: str, retry_after_s: float = 1.0) -> APIError:
        """429 with Retry-After, counted by reason. The connection stays open: the rest of a body still arriving is
        read and dropped (bounded by the body timeout), so the client reads its 429 instead of a reset."""
        self.metrics.refusals.labels(reason).inc()
        after = str(max(1, math.ceil(retry_after_s)))
        return APIError(429, f"{message}; retry in {after} s", headers={"Retry-After": after})

    def prepare(self, request: EmbeddingRequest) -> Prepared:
        """The request's texts and settings, after the limits that need no tokenisation (404, 400, 413); the schema
        has refused empty ones (422)."""
        settings = self.settings
        input_type = self.input_type(request)
        embedding_type = request.embedding_type or "float"
        if embedding_type not in self.embedding_types:
            raise APIError(400, f"embedding_type {embedding_type!r} {OUTPUT_RANGES_MISSING}", param="embedding_type",
                           code="unsupported_embedding_type")
        if request.dimensions is not None and request.dimensions != self.dim:
            raise APIError(400, f"dimensions {request.dimensions} is not supported: {self.model_id} gives "
                                f"{self.dim}-dimensional embeddings (NV-Embed-v2 was not trained for shorter vectors)",
                           param="dimensions")
        ids = request.token_ids
        texts = request.texts if ids is None else ids
        if len(texts) > settings.max_inputs:
            raise APIError(413, f"input has {len(texts)} items, above the limit of {settings.max_inputs} per "
                                f"request (--max-inputs)", param="input")
        if ids is not None:
            self.check_token_ids(ids)
        for i, text in enumerate(texts if ids is None else ()):
            size = utf8_size(text, settings.max_input_bytes)
            if size > settings.max_input_bytes:
                raise APIError(413, f"input[{i}] is {size} bytes, above the limit of {settings.max_input_bytes} "
                                    f"bytes per input (--max-input-bytes)", param="input")
        instruction = request.instruction if request.instruction is not None else INPUT_TYPES[input_type]
        size = utf8_size(instruction, settings.max_instruction_bytes)
        if size > settings.max_instruction_bytes:
            raise APIError(413, f"instruction is {size} bytes, above the limit of {settings.max_instruction_bytes} "
                                f"bytes (--max-instruction-bytes)", param="instruction")
        return Prepared(texts, instruction, request.truncate, request.encoding_format or "float", embedding_type,
                        ids is not None)

    def check_token_ids(self, rows: list[list[int]]) -> None:
        """Token ids must be the model's own: 400 for an id outside its vocabulary (tiktoken's ids, as LangChain's
        OpenAIEmbeddings sends them by default, mostly are); 413 past max_tokenize_chars ids in all."""
        vocab, total = self.tokenizer.vocab_size, sum(map(len, rows))
        if total > self.settings.max_tokenize_chars:
            raise APIError(413, f"input holds {total} token ids, above the limit of {self.settings.max_tokenize_chars} "
                                f"per request (--max-tokenize-chars)", param="input")
        for i, row in enumerate(rows):
            top = max(row)
            if top >= vocab:
                raise APIError(400, f"input[{i}] holds token id {top}, outside {self.model_id}'s vocabulary of {vocab} "
                                    f"ids (0..{vocab - 1}): token ids must be the model's own. Ids this large are "
                                    f"typically tiktoken's (OpenAI's tokenizer), which LangChain's OpenAIEmbeddings "
                                    f"sends by default: construct it with check_embedding_ctx_length=False to send "
                                    f"the texts", param="input", code="invalid_token_id")

    def input_type(self, request: EmbeddingRequest) -> str:
        """The request's input_type: its own, or NIM's `-query` / `-passage` suffix on the model's id (404 for any
        other model; 400 when the suffix and an input_type sent with it disagree)."""
        if request.model == self.model_id:
            return request.input_type
        for suffix, chosen in MODEL_SUFFIXES.items():
            if request.model == self.model_id + suffix:
                if "input_type" in request.model_fields_set and request.input_type != chosen:
                    raise APIError(400, f"input_type {request.input_type!r} contradicts the model name "
                                        f"{request.model!r}, which chooses input_type {chosen!r}; send one of them",
                                   param="input_type")
                return chosen
        raise APIError(404, f"model {request.model!r} is not served here; served models: {self.model_id} (and "
                            f"{self.model_id}-query, {self.model_id}-passage to choose input_type)",
                       param="model", code="model_not_found")

    def tokenize(self, texts: list[str] | list[list[int]], instruction: str, truncate: str,
                 budget: TokenBudget | None = None, offset: int = 0, token_input: bool = False) -> list[Row]:
        """Rows for texts[offset:offset + len(texts)] of a request (errors name the request's own input index);
        `token_input`: `texts` are rows of the model's own token ids, given BOS, the instruction and EOS."""
        masked = self.tokenizer.instruction_length(instruction)
        if masked >= self.spec.max_length:
            raise APIError(400, f"instruction is {masked} tokens: the model's {self.spec.max_length}-token limit "
                                f"leaves no token of the input after it", param="instruction")
        n = len(texts)
        try:
            if token_input:
                return [Row(enc.ids, masked) for enc in self.tokenizer.encode_token_ids(
                    texts, instruction, self.spec.max_length, truncate)]
            return encode_rows(self.tokenizer, texts, [instruction] * n, [truncate] * n, self.spec.max_length,
                               budget)
        except TooLongError as exc:
            raise APIError(400, f"Input length {'' if exc.exact else 'at least '}{exc.tokens} exceeds maximum "
                                f"allowed token size {exc.max_length} (input[{offset + exc.index}]; {TRUNCATE_HINT})",
                           param="input",
                           code="input_too_long") from None
        except OverBudget as exc:
            raise APIError(413, f"this request needs more than {exc.limit} characters tokenised, the limit per "
                                f"request (--max-tokenize-chars): inputs without spaces or line breaks are "
                                f"tokenised whole; send fewer or shorter inputs", param="input") from None
        except InputError as exc:
            raise APIError(400, str(exc), param="input") from None

    def inline(self, job: Prepared) -> bool:
        """Whether the request is tokenised on the event loop: it reads fewer than inline_tokenize_chars (token ids
        are not tokenised: always)."""
        if job.token_input:
            return True
        cost = len(job.texts) * (len(job.instruction) + 4) + sum(map(len, job.texts))
        return cost <= self.settings.inline_tokenize_chars

    def tokenize_wait_s(self, estimate: int) -> float:
        """Seconds until a request of `estimate` tokens is tokenised, behind those being tokenised (FIFO), at the
        tokenizer pool's measured rate (0 while unknown)."""
        rate = self.tokenizer_rate.rate()
        return (self.tokenizing + estimate) / rate if rate else 0.0

    async def _rows(self, job: Prepared, estimate: int) -> list[Row]:
        """All tokenisation off the event loop (but for an `inline` request), in chunks of TOKENIZE_CHUNK inputs
        submitted at once: requests are tokenised first come, first served (taking turns would make every request
        of a burst late), and a cancelled or late request's chunks not yet started never run."""
        texts, budget = job.texts, TokenBudget(self.settings.max_tokenize_chars)
        if self.inline(job):
            return self.tokenize(texts, job.instruction, job.truncate, budget, token_input=job.token_input)
        loop, rows = asyncio.get_running_loop(), []
        chunks = [loop.run_in_executor(self.tokenize_pool, self.tokenize, texts[lo:lo + TOKENIZE_CHUNK],
                                       job.instruction, job.truncate, budget, lo)
                  for lo in range(0, len(texts), TOKENIZE_CHUNK)]
        if not self.tokenizing:
            self.tokenizer_rate.busy(time.monotonic())
        self.tokenizing += estimate
        try:
            for chunk in chunks:   # in order: an error names the first input that has one
                rows += await chunk
        finally:
            self.tokenizing -= estimate
            for chunk in chunks:
                if not chunk.cancel() and not chunk.cancelled():
                    chunk.exception()   # finished after an earlier chunk failed: its outcome is read, not logged
        self.tokenizer_rate.returned(time.monotonic(), sum(len(r.ids) for r in rows), True)
        return rows

    def parse(self, body: bytes) -> Prepared:
        """An OpenAI/NIM embeddings body, checked."""
        return self.prepare(parse_json(body, EmbeddingRequest))

    async def embed(self, body: bytes, ticket: Ticket, parse: Callable[[bytes], Prepared] | None = None) -> Embedded:
        """The request's vectors (float32 (N, D) in input order); its deadline starts now, with the body read.
        `parse`: the body's API (default: OpenAI/NIM's, `parse`; TEI's is serving.tei.parse_embed)."""
        start = time.monotonic()
        job = (parse or self.parse)(body)
        del body
        deadline = start + self.settings.request_timeout_s
        try:
            return await asyncio.wait_for(self._embed(job, ticket, deadline), deadline - time.monotonic())
        except asyncio.TimeoutError:
            raise APIError(504, f"the request took more than the {self.settings.request_timeout_s:g} s deadline "
                                f"(--request-timeout; {time.monotonic() - start:.1f} s so far)") from None

    def estimate_tokens(self, job: Prepared) -> int:
        """The request's tokens before tokenising: CHARS_PER_TOKEN characters a token, each input capped at the
        model's limit (what admission reserves; the exact count replaces it)."""
        cap, instruction = self.spec.max_length, len(job.instruction) // CHARS_PER_TOKEN + 2
        if job.token_input:
            return sum(min(cap, instruction + len(ids)) for ids in job.texts)
        return sum(min(cap, instruction + len(text) // CHARS_PER_TOKEN) for text in job.texts)

    @contextlib.contextmanager
    def queue_errors(self):
        """The batcher's refusals as answers: 413 (no deadline can hold it), 429 + Retry-After (not now)."""
        try:
            yield
        except TooBig as exc:
            raise APIError(413, str(exc), param="input") from None
        except QueueFull as exc:
            reason = "deadline" if "deadline" in str(exc) else "queue"
            raise self.refuse(reason, f"the server is busy: {exc}", exc.retry_after) from None

    async def _embed(self, job: Prepared, ticket: Ticket, deadline: float) -> Embedded:
        estimate = self.estimate_tokens(job)
        lead_s = 0.0 if self.inline(job) else self.tokenize_wait_s(estimate)
        with self.queue_errors():
            self.batcher.reserve(len(job.texts), estimate, deadline, lead_s)
        ticket.reserved = estimate
        rows = await self._rows(job, estimate)
        job.texts = None   # the texts and the body's bytes are no longer held
        ticket.release()
        tokens = sum(len(r.ids) for r in rows)
        limit = self.settings.max_embed_all_tokens
        if job.states and tokens > limit:   # its reservation is released with the ticket
            raise APIError(413, f"this request's token states are {tokens} tokens of {self.dim} floats each, above "
                                f"the limit of {limit} tokens per request (--max-embed-all-tokens); send fewer or "
                                f"shorter inputs", param="input")
        self.metrics.input_tokens.inc(tokens)
        self.metrics.inputs_per_request.observe(len(rows))
        reserved, ticket.reserved = ticket.reserved, 0   # the exact count replaces the estimate in the queue
        try:
            with self.queue_errors():
                vectors = await self.batcher.embed(rows, deadline=deadline, reserved=reserved, states=job.states)
        except EncoderFailure as exc:
            self.set_health(False, f"encoder failed: {exc}")
            raise APIError(503, f"the encoder failed; the server is healing itself: {exc}",
                           headers={"Retry-After": "2"}) from None
        except InputError as exc:  # the encoder's output for this batch is not a finite unit vector
            raise APIError(500, f"the encoder gave an invalid embedding: {exc}") from None
        if job.states:
            return Embedded(vectors, tokens, job.encoding)
        return Embedded(compact(vectors, job.embedding_type, self.output_ranges), tokens, job.encoding)

    # ---- descriptions ----------------------------------------------------------------------------------------

    @property
    def simulated(self) -> dict | None:
        """repo.json's `simulated` block for a simulated repository (triton-repo --simulate), else None."""
        return self.meta.simulated

    def models(self) -> dict:
        card = {"id": self.model_id, "object": "model", "created": self.created, "owned_by": "nvembed-trt",
                "root": self.model_id, "max_input_tokens": self.spec.max_length, "dimensions": self.dim}
        if self.simulated:
            card["simulated"] = self.simulated["name"]
        return {"object": "list", "data": [card]}

    @cached_property
    def fingerprint(self) -> dict:
        """Which engine answers, from repo.json's records (no file is hashed here): the encoder's sha256 (the plan,
        or the ONNX graph), its kind, the recipe, the GPU profile, the TensorRT flavour and version, the weights'
        fingerprint; `header` is the same facts as every response's X-NVEmbed-Engine header."""
        encoder = self.encoder_facts()    # repo.json's facts, as /v1/metadata states them
        facts = {"plan": (encoder["artifact"]["sha256"] or "")[:16] or None, "kind": encoder["kind"],
                 "recipe": self.meta.recipe, "gpu": encoder["gpu_profile"],
                 "trt": " ".join(filter(None, (encoder["flavor"], encoder["flavor_version"]))) or None,
                 "weights": (self.meta.model.weights_fingerprint or "")[:16] or None}
        header = "; ".join(f"{key}={value if value is not None else 'none'}" for key, value in facts.items())
        return {**facts, "header": header}

    def version(self) -> dict:
        return {"object": "version", "release": __version__, "api": API_VERSION}

    def license(self) -> dict:
        """The licence of the served weights (NV-Embed-v2's: CC-BY-NC-4.0, non-commercial) and of this software."""
        preset = self.meta.model.preset   # every preset's weights are random (seeded), none are NVIDIA's
        weights = ({"source": "random", "license": None, "note": f"random weights of the {preset} preset "
                    f"(NV-Embed-v2's architecture): no NVIDIA weights are served. NVIDIA's NV-Embed-v2 weights are "
                    f"{WEIGHTS_LICENSE['name']} (non-commercial)", "nv_embed_v2": WEIGHTS_LICENSE}
                   if preset is not None else
                   {"source": "checkpoint", "license": WEIGHTS_LICENSE["name"], "note": "an NV-Embed-v2 checkpoint: "
                    "NVIDIA's weights are licensed " + WEIGHTS_LICENSE["title"] + " (non-commercial use only) unless "
                    "the checkpoint's owner licensed it otherwise", "nv_embed_v2": WEIGHTS_LICENSE})
        return {"object": "license", "model": self.model_id, "weights": weights,
                "software": {"name": "nvembed-trt", "version": __version__, "license": "Apache-2.0"}}

    def manifest(self) -> dict:
        """What this deployment serves and accepts: the model ids, the API's choices, the engine profile."""
        meta = self.metadata()
        return {"object": "manifest", "model": self.model_id,
                "model_ids": [self.model_id, *(self.model_id + suffix for suffix in MODEL_SUFFIXES)],
                "input_types": list(INPUT_TYPES), "truncate": list(TRUNCATE_MODES),
                "token_states": self.serves_token_states,
                "encoding_formats": ["float", "base64"], "embedding_types": list(self.embedding_types),
                "embedding_types_refused": [t for t in EMBEDDING_TYPES if t not in self.embedding_types],
                "dimensions": self.dim, "max_input_tokens": self.spec.max_length,
                "profile": {"recipe": meta["recipe"], **{k: meta["encoder"][k] for k in (
                    "kind", "pooling", "shapes", "gpu_profile", "flavor", "flavor_version")}}}

    def encoder_facts(self) -> dict:
        """/v1/metadata's `encoder`: repo.json's facts about the encoder (and the engine behind it)."""
        engine = self.meta.engine
        return {"kind": self.spec.encoder_kind, "runtime": self.meta.encoder_runtime,
                "artifact": {"name": Path(self.meta.encoder_source).name, "sha256": self.meta.encoder_sha256},
                "pooling": self.spec.pooling, "shapes": [s.describe() for s in self.spec.shape_limits],
                "max_batch_tokens": self.packer.max_batch_tokens,
                "gpu_profile": engine.gpu.profile if engine else (self.simulated or {}).get("gpu_profile"),
                "flavor": engine.flavor if engine else None,
                "flavor_version": engine.flavor_version if engine else None}

    def metadata(self) -> dict:
        """What is served, by names and content hashes, from repo.json alone: no host path (the repository, the
        encoder and the model's checkpoint are named by their folder's name), and the engine's facts from the
        repository itself (a pod has no build host folders)."""
        model = self.meta.model
        source = model.preset or Path(model.checkpoint or model.spec).name or None
        return {"model": {"id": self.model_id, "source": source, "fingerprint": model.weights_fingerprint,
                          "dimensions": self.dim, "max_input_tokens": self.spec.max_length},
                "recipe": self.meta.recipe, "encoder": self.encoder_facts(),
                "repository": {"name": self.repo.name, "sha256": self.repo_sha256},
                "repository_created_utc": self.meta.created_utc,
                "limits": {k: v for k, v in self.settings.model_dump().items() if k not in ("api_key",)},
                "embedding_types": list(self.embedding_types),
                "output_ranges": self.output_ranges.model_dump() if self.output_ranges else None,
                "fingerprint": self.fingerprint, "versions": versions(),
                **({"simulated": self.simulated} if self.simulated else {})}
