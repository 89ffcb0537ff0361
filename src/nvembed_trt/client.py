"""EmbeddingClient: texts -> float32 [N, D] through the nv_embed ensemble, over HTTP or gRPC (tritonclient)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .errors import InputError, NVEmbedError
from .triton.spec import ENSEMBLE, OUTPUT


class ClientError(NVEmbedError):
    """The server refused a request or could not be reached; the message is the server's."""


class EmbeddingClient:
    def __init__(self, url: str = "127.0.0.1:8000", protocol: str = "http", model: str = ENSEMBLE,
                 timeout_s: float = 120.0):
        if protocol == "http":
            import tritonclient.http as module
            self.client = module.InferenceServerClient(url, connection_timeout=timeout_s, network_timeout=timeout_s)
        elif protocol == "grpc":
            import tritonclient.grpc as module
            self.client = module.InferenceServerClient(url)
        else:
            raise InputError(f"protocol must be http or grpc, got {protocol!r}")
        self.module, self.model, self.protocol = module, model, protocol

    def ready(self) -> bool:
        return bool(self.client.is_server_ready())

    def _bytes_input(self, name: str, values: Sequence) -> object:
        data = np.array([[v.encode("utf-8") if isinstance(v, str) else v] for v in values], dtype=object)
        tensor = self.module.InferInput(name, list(data.shape), "BYTES")
        tensor.set_data_from_numpy(data)
        return tensor

    def infer_raw(self, inputs: dict[str, np.ndarray | Sequence]) -> np.ndarray:
        """Send named inputs as given (no checks): for callers that test the server's own validation."""
        tensors = []
        for name, values in inputs.items():
            if isinstance(values, np.ndarray) and values.dtype != object:
                tensor = self.module.InferInput(name, list(values.shape), _triton_dtype(values.dtype))
                tensor.set_data_from_numpy(values)
                tensors.append(tensor)
            else:
                tensors.append(self._bytes_input(name, values))
        try:
            result = self.client.infer(self.model, tensors, outputs=[self.module.InferRequestedOutput(OUTPUT)])
        except Exception as exc:  # tritonclient's InferenceServerException, or a transport error
            raise ClientError(str(exc)) from exc
        return result.as_numpy(OUTPUT)

    def embed(self, texts: Sequence[str], input_type: str | None = None, instruction: str | None = None,
              truncate: str | None = None, batch_size: int = 8) -> np.ndarray:
        if len(texts) == 0:
            raise InputError("no texts to embed (got an empty list)")
        out = []
        for start in range(0, len(texts), batch_size):
            chunk = list(texts[start:start + batch_size])
            inputs: dict = {"TEXT": chunk}
            if instruction is not None:
                inputs["INSTRUCTION"] = [instruction] * len(chunk)
            elif input_type is not None:
                inputs["INPUT_TYPE"] = [input_type] * len(chunk)
            if truncate is not None:
                inputs["TRUNCATE"] = [truncate] * len(chunk)
            out.append(self.infer_raw(inputs).astype(np.float32))
        return np.concatenate(out)


def _triton_dtype(dtype: np.dtype) -> str:
    return {np.dtype(np.float32): "FP32", np.dtype(np.int32): "INT32", np.dtype(np.int64): "INT64",
            np.dtype(np.float16): "FP16"}[np.dtype(dtype)]
