"""Every limit and setting of the front door, with its stated default (each is a `serve` option)."""

from __future__ import annotations

import os

from pydantic import BaseModel, ConfigDict, Field

API_KEY_ENV = "NVEMBED_TRT_API_KEY"
MIB = 1 << 20


class ServeSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    model_id: str | None = None                       # default: the repository's served id (repo.json)
    api_key: str | None = None
    max_inputs: int = Field(2048, ge=1)                # inputs per request (OpenAI's limit)
    max_request_bytes: int = Field(64 * MIB, ge=1024)  # body size
    max_input_bytes: int = Field(1 * MIB, ge=16)       # one input's UTF-8 bytes
    max_concurrent_requests: int = Field(512, ge=1)    # embeddings requests admitted at once (429 beyond)
    max_queued_inputs: int = Field(65536, ge=1)        # inputs waiting for the encoder (429 beyond)
    request_timeout_s: float = Field(60.0, gt=0)       # 504 beyond
    drain_timeout_s: float = Field(10.0, ge=0)         # in-flight requests get this long after SIGTERM
    max_batch_tokens: int | None = Field(None, ge=1)   # default: the repository's (from the engine's profiles)
    max_inflight_batches: int | None = Field(None, ge=1)  # batches at the encoder at once (default: its instances + 1)
    probe_interval_s: float = Field(5.0, gt=0)         # readiness round trip
    inline_tokenize_chars: int = Field(16384, ge=0)    # smaller requests are tokenised on the event loop

    @classmethod
    def with_env(cls, **values) -> ServeSettings:
        """Settings where an API key may also come from NVEMBED_TRT_API_KEY."""
        if not values.get("api_key") and os.environ.get(API_KEY_ENV):
            values["api_key"] = os.environ[API_KEY_ENV]
        return cls(**values)
