"""The front door's short path to the engine: int32 tensors straight to Triton's `encoder` model over one reused gRPC
channel. The KServe request is built directly from Triton's protobuf schema (tritonclient's service_pb2: raw
little-endian tensor bytes, no per-call wrapper objects) and answered tensors are read with np.frombuffer; the model
control calls (reload) use tritonclient's asyncio client on the same address. The KServe `nv_embed` model stays for
KServe clients."""

from __future__ import annotations

import asyncio

import grpc
import numpy as np
import tritonclient.grpc.aio as grpc_aio
from tritonclient.grpc import service_pb2, service_pb2_grpc

MAX_MESSAGE = 1 << 30   # a 2 x 8192 x 4096 fp32 token-state batch is 268 MB: beyond gRPC's 4 MB default
CHANNEL_OPTIONS = [("grpc.max_send_message_length", MAX_MESSAGE), ("grpc.max_receive_message_length", MAX_MESSAGE)]
DTYPES = {"FP32": np.float32, "FP16": np.float16, "INT32": np.int32}


class EncoderFailure(Exception):
    """Triton answered a batch with an error, or could not be reached."""


class TritonEncoder:
    def __init__(self, url: str, model: str, inputs: tuple[str, ...], output: str):
        self.url, self.model, self.inputs, self.output = url, model, inputs, output
        self.channel = grpc.aio.insecure_channel(url, options=CHANNEL_OPTIONS)
        self.infer = service_pb2_grpc.GRPCInferenceServiceStub(self.channel).ModelInfer
        self.control = grpc_aio.InferenceServerClient(url, channel_args=CHANNEL_OPTIONS)

    def request(self, arrays: dict[str, np.ndarray]) -> service_pb2.ModelInferRequest:
        request = service_pb2.ModelInferRequest(model_name=self.model)
        for name in self.inputs:
            array = np.ascontiguousarray(arrays[name], dtype="<i4")
            request.inputs.add(name=name, datatype="INT32", shape=array.shape)
            request.raw_input_contents.append(array.tobytes())
        request.outputs.add(name=self.output)
        return request

    @staticmethod
    def output_array(response: service_pb2.ModelInferResponse, name: str) -> np.ndarray:
        for i, tensor in enumerate(response.outputs):
            if tensor.name == name:
                dtype = np.dtype(DTYPES[tensor.datatype]).newbyteorder("<")
                return np.frombuffer(response.raw_output_contents[i], dtype=dtype).reshape(tuple(tensor.shape))
        raise EncoderFailure(f"encoder: the answer holds no output {name!r} "
                             f"(got {[t.name for t in response.outputs]})")

    async def run(self, arrays: dict[str, np.ndarray], timeout_s: float | None = None) -> np.ndarray:
        try:
            response = await self.infer(self.request(arrays), timeout=timeout_s)
        except grpc.aio.AioRpcError as exc:   # Triton's message, e.g. a dead python stub
            raise EncoderFailure(f"encoder: [{exc.code()}] {exc.details()}") from exc
        return self.output_array(response, self.output)

    async def reload(self, models: list[str]) -> None:
        """Unload, then load, each model through Triton's model-control API (needs --model-control-mode=explicit):
        a load of an unchanged model is a no-op that would leave a dead python stub in place."""
        for name in models:
            await self.control.unload_model(name)
            for _ in range(100):
                if not await self.control.is_model_ready(name):
                    break
                await asyncio.sleep(0.05)
            await self.control.load_model(name)

    async def close(self) -> None:
        await self.control.close()
        await self.channel.close()
