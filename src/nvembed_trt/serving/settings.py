"""Every limit and setting of the front door, with its stated default (each is a `serve` option; docs/reliability.md
says what a client gets past each one)."""

from __future__ import annotations

import os

from pydantic import BaseModel, ConfigDict, Field, model_validator

API_KEY_ENV = "NVEMBED_TRT_API_KEY"
KIB, MIB = 1 << 10, 1 << 20


class ServeSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    model_id: str | None = None                       # default: the repository's served id (repo.json)
    api_key: str | None = None
    # ---- one request (413 beyond)
    max_inputs: int = Field(2048, ge=1, description="inputs per request (413 beyond)")
    max_request_bytes: int = Field(64 * MIB, ge=1024, description="request body bytes (413 beyond)")
    max_input_bytes: int = Field(1 * MIB, ge=16, description="UTF-8 bytes per input (413 beyond)")
    max_instruction_bytes: int = Field(4 * KIB, ge=16, description="UTF-8 bytes of the instruction (413 beyond)")
    max_tokenize_chars: int = Field(16 * MIB, ge=1024, description="characters tokenised for one request; inputs "
                                    "without spaces or line breaks count whole (413 beyond)")
    max_embed_all_tokens: int = Field(1024, ge=1, description="tokens whose states one TEI /embed_all request "
                                      "returns, all its inputs together: each is one float per dimension (4,096 "
                                      "dims: 16 KiB, ~48 KiB as JSON; 1,024 tokens ~50 MB of JSON) (413 beyond)")
    # ---- the HTTP connection (431 / 408 beyond)
    max_header_bytes: int = Field(32 * KIB, ge=1024, description="bytes of the request line and headers (431 beyond)")
    max_headers: int = Field(100, ge=8, description="header fields per request (431 beyond)")
    header_timeout_s: float = Field(10.0, gt=0, description="seconds from a request's first byte (or from "
                                    "connecting) to its last header (408 beyond)")
    body_timeout_s: float = Field(30.0, gt=0, description="seconds from the last header to the last body byte "
                                  "(408 beyond)")
    keep_alive_timeout_s: float = Field(5.0, gt=0, description="seconds an idle keep-alive connection is kept")
    # ---- admission and the queue (429 + Retry-After beyond)
    max_concurrent_requests: int = Field(512, ge=1, description="embeddings requests in progress, body reading "
                                         "included (429 beyond)")
    max_pending_bytes: int = Field(256 * MIB, ge=1024, description="bytes of request bodies not yet tokenised, all "
                                   "requests together (429 beyond)")
    max_queued_inputs: int = Field(65536, ge=1, description="inputs waiting for or at the encoder (429 beyond)")
    max_queued_tokens: int = Field(4 * MIB, ge=64, description="tokens waiting for or at the encoder (429 beyond)")
    request_timeout_s: float = Field(60.0, gt=0, description="deadline in seconds once the body is read: 429 at "
                                     "once if the queue says it cannot be met, 504 if it passes")
    drain_timeout_s: float = Field(10.0, ge=0, description="seconds in-flight requests get after SIGTERM")
    max_batch_tokens: int | None = Field(None, ge=1, description="padded tokens per encoder batch (default: the "
                                         "repository's, from the engine's profiles)")
    max_inflight_batches: int | None = Field(None, ge=1, description="batches at the encoder at once (default: "
                                             "its instances + 1)")
    probe_interval_s: float = Field(5.0, gt=0, description="seconds between readiness round trips")
    workers: int | None = Field(None, ge=1, le=256, description="front-door processes on one socket feeding the "
                                "one Triton (default: one per core less one, at most 4 per encoder device)")
    inline_tokenize_chars: int = Field(2048, ge=0, description="requests that tokenise fewer characters are "
                                       "tokenised on the event loop (a thread hop costs more)")

    @model_validator(mode="after")
    def _consistent(self) -> ServeSettings:
        if self.max_pending_bytes < self.max_request_bytes:
            raise ValueError(f"max_pending_bytes ({self.max_pending_bytes}) must be at least max_request_bytes "
                             f"({self.max_request_bytes}), or no request of the largest size is ever admitted")
        return self

    @classmethod
    def limits(cls) -> dict[str, tuple[type, str]]:
        """{field: (type, description)} of every setting that is a `serve` option of its own (--field-name)."""
        own = ("host", "port", "model_id", "api_key")
        return {name: (float if field.annotation in (float, "float") else int, field.description or "")
                for name, field in cls.model_fields.items() if name not in own}

    @classmethod
    def with_env(cls, **values) -> ServeSettings:
        """Settings where an API key may also come from NVEMBED_TRT_API_KEY."""
        if not values.get("api_key") and os.environ.get(API_KEY_ENV):
            values["api_key"] = os.environ[API_KEY_ENV]
        return cls(**values)
