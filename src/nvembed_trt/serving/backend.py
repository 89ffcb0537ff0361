"""The front door's short path to the engine: int32 tensors straight to Triton's `encoder` model over one reused
gRPC channel (tritonclient's asyncio client). The KServe `nv_embed` model stays for KServe clients."""

from __future__ import annotations

import asyncio

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as grpc_aio

MAX_MESSAGE = 1 << 30   # a 2 x 8192 x 4096 fp32 token-state batch is 268 MB: beyond gRPC's 4 MB default


class EncoderFailure(Exception):
    """Triton answered a batch with an error, or could not be reached."""


class TritonEncoder:
    def __init__(self, url: str, model: str, inputs: tuple[str, ...], output: str):
        self.url, self.model, self.inputs, self.output = url, model, inputs, output
        self.client = grpc_aio.InferenceServerClient(url, channel_args=[
            ("grpc.max_send_message_length", MAX_MESSAGE), ("grpc.max_receive_message_length", MAX_MESSAGE)])
        self.requested = [grpcclient.InferRequestedOutput(output)]

    async def run(self, arrays: dict[str, np.ndarray], timeout_s: float | None = None) -> np.ndarray:
        tensors = []
        for name in self.inputs:
            array = arrays[name]
            tensor = grpcclient.InferInput(name, list(array.shape), "INT32")
            tensor.set_data_from_numpy(array)
            tensors.append(tensor)
        try:
            result = await self.client.infer(self.model, tensors, outputs=self.requested, client_timeout=timeout_s)
        except Exception as exc:  # InferenceServerException or a transport error: the message is Triton's
            raise EncoderFailure(f"encoder: {exc}") from exc
        return result.as_numpy(self.output)

    async def reload(self, models: list[str]) -> None:
        """Unload, then load, each model through Triton's model-control API (needs --model-control-mode=explicit):
        a load of an unchanged model is a no-op that would leave a dead python stub in place."""
        for name in models:
            await self.client.unload_model(name)
            for _ in range(100):
                if not await self.client.is_model_ready(name):
                    break
                await asyncio.sleep(0.05)
            await self.client.load_model(name)

    async def close(self) -> None:
        await self.client.close()
