"""EmbeddingService: an embeddings request -> checked inputs -> bounded tokenisation -> the batcher -> vectors, with
every limit named in its error; plus what /v1/models and /v1/metadata say, read from the repository's sidecars."""

from __future__ import annotations

import asyncio
import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..encoding import Row, encode_rows
from ..errors import InputError, NVEmbedError
from ..packing import Packer
from ..provenance import versions
from ..tokenizer import INPUT_TYPES, EmbeddingTokenizer, TooLongError
from ..triton.spec import ENCODER, ENSEMBLE, TOKENIZER_DIR, RepoSpec
from .backend import EncoderFailure, TritonEncoder
from .batching import Batcher, QueueFull
from .metrics import Metrics
from .schemas import APIError, EmbeddingRequest
from .settings import ServeSettings


@dataclass
class Health:
    ready: bool = False
    message: str = "starting"
    draining: bool = False


def read_repository(repo: Path) -> tuple[dict, RepoSpec]:
    meta_file = Path(repo) / "repo.json"
    if not meta_file.is_file():
        raise NVEmbedError(f"{repo}: not a model repository (no repo.json); make one with nvembed-trt triton-repo")
    meta = json.loads(meta_file.read_text())
    if "shape_limits" not in meta.get("spec", {}):
        raise NVEmbedError(f"{repo}: made by an older nvembed-trt (its repo.json has no shape limits); regenerate it "
                           f"with nvembed-trt triton-repo --overwrite")
    return meta, RepoSpec.from_json(meta["spec"])


class EmbeddingService:
    def __init__(self, repo: Path | str, settings: ServeSettings, encoder_url: str, metrics: Metrics):
        self.repo, self.settings, self.metrics = Path(repo), settings, metrics
        self.meta, self.spec = read_repository(self.repo)
        self.tokenizer = EmbeddingTokenizer.from_dir(self.repo / ENSEMBLE / "1" / TOKENIZER_DIR)
        self.model_id = settings.model_id or self.meta.get("served_model_id") or self.repo.name
        self.created = int(Path(self.repo / "repo.json").stat().st_mtime)
        self.packer = Packer(self.spec.shape_limits, settings.max_batch_tokens or self.spec.max_batch_tokens)
        self.encoder_url = encoder_url
        self.backend = None        # TritonEncoder, made in start() (its gRPC channel belongs to the running loop)
        self.batcher: Batcher | None = None
        self.health = Health()
        self.on_unready = None     # the supervisor's wake-up: live traffic saw the encoder fail
        self.active = 0
        self.tokenize_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="tokenize")

    @property
    def max_inflight(self) -> int:
        """Batches at the encoder at once: one per encoder instance plus one queued behind them (from the spec)."""
        return self.settings.max_inflight_batches or self.spec.encoder_instances + 1

    @property
    def dim(self) -> int:
        return self.spec.hidden_size

    def start(self) -> None:
        if self.backend is None:
            self.backend = TritonEncoder(self.encoder_url, ENCODER, self.spec.encoder_inputs, self.spec.encoder_output)
        self.batcher = Batcher(self.packer, self.tokenizer.pad_id, self.spec.encoder_inputs, self.dim,
                               self.backend.run, self.metrics, self.max_inflight, self.settings.max_queued_inputs)
        self.batcher.start()

    async def close(self) -> None:
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

    def check(self, request: EmbeddingRequest) -> list[str]:
        """The request's texts, after the limits that need no tokenisation."""
        if request.model != self.model_id:
            raise APIError(404, f"model {request.model!r} is not served here; served models: {self.model_id}",
                           param="model", code="model_not_found")
        if request.dimensions is not None and request.dimensions != self.dim:
            raise APIError(400, f"dimensions {request.dimensions} is not supported: {self.model_id} gives "
                                f"{self.dim}-dimensional embeddings (NV-Embed-v2 was not trained for shorter vectors)",
                           param="dimensions")
        texts = request.texts
        if not texts:
            raise APIError(400, "input is an empty list; send at least one string", param="input")
        if len(texts) > self.settings.max_inputs:
            raise APIError(413, f"input has {len(texts)} items, above the limit of {self.settings.max_inputs} per "
                                f"request", param="input")
        limit = self.settings.max_input_bytes
        for i, text in enumerate(texts):
            if not text:
                raise APIError(400, f"input[{i}] is an empty string", param="input")
            if len(text) * 4 > limit and len(text.encode("utf-8", "surrogatepass")) > limit:
                raise APIError(413, f"input[{i}] is {len(text.encode('utf-8', 'surrogatepass'))} bytes, above the "
                                    f"limit of {limit} bytes per input", param="input")
        return texts

    def tokenize(self, texts: list[str], instruction: str, truncate: str) -> list[Row]:
        n = len(texts)
        try:
            return encode_rows(self.tokenizer, texts, [instruction] * n, [truncate] * n, self.spec.max_length)
        except TooLongError as exc:
            raise APIError(400, f"Input length {'' if exc.exact else 'at least '}{exc.tokens} exceeds maximum "
                                f"allowed token size {exc.max_length} (input[{exc.index}]; truncate is NONE: send "
                                f"truncate END or START to embed it truncated)", param="input",
                           code="input_too_long") from None
        except InputError as exc:
            raise APIError(400, str(exc), param="input") from None

    async def embed(self, request: EmbeddingRequest) -> tuple[np.ndarray, int]:
        """(float32 (N, D) in input order, tokens encoded)."""
        texts = self.check(request)
        if not self.health.ready:
            raise APIError(503, f"not ready: {self.health.message}", headers={"Retry-After": "1"})
        if self.active >= self.settings.max_concurrent_requests:
            raise APIError(429, f"the server is busy: {self.active} requests in progress, the limit is "
                                f"{self.settings.max_concurrent_requests}; retry shortly", headers={"Retry-After": "1"})
        self.active += 1
        start = time.perf_counter()
        try:
            return await asyncio.wait_for(self._embed(request, texts), self.settings.request_timeout_s)
        except asyncio.TimeoutError:
            raise APIError(504, f"the request took more than the {self.settings.request_timeout_s:g} s deadline "
                                f"({time.perf_counter() - start:.1f} s so far)") from None
        finally:
            self.active -= 1

    async def _embed(self, request: EmbeddingRequest, texts: list[str]) -> tuple[np.ndarray, int]:
        instruction = request.instruction if request.instruction is not None else INPUT_TYPES[request.input_type]
        if sum(map(len, texts)) <= self.settings.inline_tokenize_chars:
            rows = self.tokenize(texts, instruction, request.truncate)
        else:
            rows = await asyncio.get_running_loop().run_in_executor(
                self.tokenize_pool, self.tokenize, texts, instruction, request.truncate)
        tokens = sum(len(r.ids) for r in rows)
        self.metrics.input_tokens.inc(tokens)
        self.metrics.inputs_per_request.observe(len(rows))
        try:
            vectors = await self.batcher.embed(rows)
        except QueueFull as exc:
            raise APIError(429, f"the server is busy: {exc}; retry shortly", headers={"Retry-After": "1"}) from None
        except EncoderFailure as exc:
            self.set_health(False, f"encoder failed: {exc}")
            raise APIError(503, f"the encoder failed; the server is healing itself: {exc}",
                           headers={"Retry-After": "2"}) from None
        except InputError as exc:  # the encoder's output for this batch is not a finite unit vector
            raise APIError(500, f"the encoder gave an invalid embedding: {exc}") from None
        return vectors, tokens

    # ---- descriptions ----------------------------------------------------------------------------------------

    def models(self) -> dict:
        return {"object": "list", "data": [{
            "id": self.model_id, "object": "model", "created": self.created, "owned_by": "nvembed-trt",
            "root": self.model_id, "max_input_tokens": self.spec.max_length, "dimensions": self.dim}]}

    def metadata(self) -> dict:
        encoder = Path(self.meta.get("encoder", ""))
        engine = _read_json(encoder / "engine.json") if self.spec.encoder_kind == "tensorrt_plan" else None
        return {"model": {"id": self.model_id, "source": self.meta.get("model"), "dimensions": self.dim,
                          "max_input_tokens": self.spec.max_length},
                "recipe": self.meta.get("recipe"),
                "encoder": {"kind": self.spec.encoder_kind, "path": str(encoder), "pooling": self.spec.pooling,
                            "shapes": [s.describe() for s in self.spec.shape_limits],
                            "max_batch_tokens": self.packer.max_batch_tokens,
                            "gpu_profile": (engine or {}).get("gpu", {}).get("profile"),
                            "flavor": (engine or {}).get("flavor"),
                            "flavor_version": (engine or {}).get("flavor_version")},
                "limits": {k: v for k, v in self.settings.model_dump().items() if k not in ("api_key",)},
                "repository": str(self.repo), "repository_created_utc": self.meta.get("created_utc"),
                "versions": versions()}


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None
