"""Harness for the front-door tests (a module, not a conftest: two conftest modules clash by name): the service and
app in-process with a real ONNX Runtime encoder (the same graph Triton runs). The tiny repositories come from the
`tiny_repos` fixture in tests/conftest.py."""

from __future__ import annotations

import asyncio

import httpx
import onnxruntime as ort

from nvembed_trt.serving import EmbeddingService, Metrics, ServeSettings, create_app

from conftest import SERVING_MAX_LENGTH as MAX_LENGTH  # noqa: F401 (re-exported)


class OnnxEncoder:
    """The repository's own ONNX graph in ONNX Runtime, in-process: the app without Triton. `delay_s` slows each
    batch (for deadline and back-pressure tests)."""

    def __init__(self, repo, delay_s: float = 0.0):
        self.session = ort.InferenceSession(str(repo / "encoder" / "1" / "model.onnx"))
        self.delay_s, self.batches = delay_s, []

    async def run(self, arrays, timeout_s=None):
        self.batches.append(arrays["input_ids"].shape)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        return self.session.run(None, arrays)[0]

    async def reload(self, models):
        pass

    async def close(self):
        pass


def build(repo, delay_s: float = 0.0, **settings):
    service = EmbeddingService(repo, ServeSettings(**settings), "127.0.0.1:1", Metrics())
    service.backend = OnnxEncoder(repo, delay_s)
    return service, create_app(service)


def call(service, app, requests):
    """Run `requests(client)` against the app in one event loop, with the service started and ready."""
    async def main():
        service.start()
        service.set_health(True, "ready")
        transport = httpx.ASGITransport(app=app)
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://front.door") as client:
                return await requests(client)
        finally:
            await service.close()
    return asyncio.run(main())
