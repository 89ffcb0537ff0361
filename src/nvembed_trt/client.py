"""EmbeddingClient: texts -> float32 [N, D] through a deployment: the front door's /v1/embeddings (a URL such as
http://host:8080/v1), or Triton's nv_embed model over KServe HTTP or gRPC (host:port, tritonclient)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .errors import InputError, NVEmbedError
from .triton.spec import ENSEMBLE, OUTPUT


class ClientError(NVEmbedError):
    """The server refused a request or could not be reached; the message is the server's."""


def is_front_door(url: str) -> bool:
    return url.startswith(("http://", "https://"))


class FrontDoorClient:
    """The OpenAI/NIM-style API of `nvembed-trt serve`: POST {url}/embeddings, base64 float32 rows."""

    def __init__(self, url: str, model: str | None = None, timeout_s: float = 120.0, api_key: str | None = None):
        import httpx

        self.url = url.rstrip("/")
        if not self.url.endswith("/v1"):
            self.url += "/v1"
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx.Client(timeout=timeout_s, headers=headers)
        self.model = model or self._first_model()

    def metadata(self) -> dict:
        """GET /v1/metadata: the model, the engine (its fingerprint), limits and versions."""
        body = self._call("GET", "/metadata")
        fingerprint = self._field(body, "fingerprint", dict, f"GET {self.url}/metadata")
        self._field(fingerprint, "header", str, f"GET {self.url}/metadata (its fingerprint)")
        return body

    def _call(self, method: str, path: str, **kw) -> dict:
        """The JSON object a 2xx answer holds; ClientError naming the URL for anything else (one line each)."""
        import httpx

        where = f"{method} {self.url}{path}"
        try:
            reply = self.http.request(method, self.url + path, **kw)
        except httpx.HTTPError as exc:
            raise ClientError(f"{where}: cannot reach it ({one_line(str(exc) or type(exc).__name__)})") from exc
        try:
            body = reply.json()
        except ValueError:
            body = None
        if not 200 <= reply.status_code < 300:
            error = body.get("error") if isinstance(body, dict) else None
            message = error.get("message") if isinstance(error, dict) else None
            text = one_line(message) if isinstance(message, str) else excerpt(reply.text)
            raise ClientError(f"{where}: [{reply.status_code}] {text}")
        if not isinstance(body, dict):
            raise self.not_front_door(where, reply.status_code, reply.text)
        return body

    def not_front_door(self, where: str, status: int, text: str, problem: str = "") -> ClientError:
        """The answer of a server that is not an nvembed-trt (OpenAI/NIM-style) front door."""
        return ClientError(f"{self.url} is not an nvembed-trt / OpenAI-style front door: {where} answered {status} "
                           f"{problem or 'without a JSON object'}: {excerpt(text)}")

    def _field(self, body: dict, name: str, kind: type, where: str) -> object:
        value = body.get(name)
        if not isinstance(value, kind) or isinstance(value, bool) or (kind is list and not value):
            shape = {list: "a non-empty list", dict: "an object", str: "a string"}[kind]
            raise self.not_front_door(where, 200, json_text(body), f"without `{name}` as {shape}")
        return value

    def models(self) -> list[dict]:
        """GET /v1/models: the served models (id, max_input_tokens, dimensions, ...)."""
        where = f"GET {self.url}/models"
        body = self._call("GET", "/models")
        data = self._field(body, "data", list, where)
        for card in data:
            if not isinstance(card, dict) or not isinstance(card.get("id"), str):
                raise self.not_front_door(where, 200, json_text(body), "with a model that has no string `id`")
        return data

    def _first_model(self) -> str:
        return self.models()[0]["id"]

    def ready(self) -> bool:
        try:
            return bool(self._call("GET", "/health/ready").get("ready"))
        except ClientError:
            return False

    def embed(self, texts: list[str], input_type: str | None, instruction: str | None, truncate: str | None,
              batch_size: int) -> np.ndarray:
        out = []
        for start in range(0, len(texts), batch_size):
            payload = {"model": self.model, "input": list(texts[start:start + batch_size]),
                       "encoding_format": "base64", "input_type": input_type or "passage"}
            if instruction is not None:
                payload["instruction"] = instruction
            if truncate is not None:
                payload["truncate"] = truncate
            out += self._rows(self._call("POST", "/embeddings", json=payload), len(payload["input"]))
        return np.stack(out).astype(np.float32)

    def _rows(self, body: dict, count: int) -> list[np.ndarray]:
        """The `count` base64 float32 rows of one /embeddings answer, in index order, all of one width."""
        import base64
        import binascii

        where = f"POST {self.url}/embeddings"
        data = self._field(body, "data", list, where)
        rows = {}
        for row in data:
            try:
                vector = np.frombuffer(base64.b64decode(row["embedding"], validate=True), dtype="<f4")
                rows[int(row["index"])] = vector
            except (TypeError, KeyError, ValueError, binascii.Error):
                raise self.not_front_door(where, 200, json_text(body), "with a row that is not {index, base64 "
                                          "float32 embedding}") from None
        widths = {len(v) for v in rows.values()}
        if sorted(rows) != list(range(count)) or len(widths) != 1 or 0 in widths:
            raise self.not_front_door(where, 200, json_text(body), f"with rows {sorted(rows)[:8]} of widths "
                                      f"{sorted(widths)} for {count} inputs")
        return [rows[i] for i in range(count)]


def one_line(text: str) -> str:
    return " ".join(text.split())


def excerpt(text: str, limit: int = 120) -> str:
    """A body as one short line: HTML reduced to its text, whitespace collapsed, cut at `limit` characters."""
    import html
    import re

    if "<" in text and ">" in text:
        text = re.sub(r"(?is)<(head|script|style)\b.*?</\1\s*>", " ", text)
        text = html.unescape(re.sub(r"(?s)<[^>]*>", " ", text))
    text = one_line(text)
    if not text:
        return "(an empty body)"
    return text if len(text) <= limit else text[:limit - 1] + "…"


def json_text(value: object) -> str:
    import json

    return json.dumps(value, default=str)


class EmbeddingClient:
    def __init__(self, url: str = "127.0.0.1:8000", protocol: str = "http", model: str | None = None,
                 timeout_s: float = 120.0, api_key: str | None = None):
        self.front_door = FrontDoorClient(url, model, timeout_s, api_key) if is_front_door(url) else None
        if self.front_door is not None:
            self.protocol, self.model = "front-door", self.front_door.model
            return
        model = model or ENSEMBLE
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
        if self.front_door is not None:
            return self.front_door.ready()
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
              truncate: str | None = None, batch_size: int | None = None) -> np.ndarray:
        """float32 (N, D) in input order; requests of `batch_size` texts (default 256 to the front door, 8 to
        KServe, whose nv_embed model also packs larger requests)."""
        if len(texts) == 0:
            raise InputError("no texts to embed (got an empty list)")
        if self.front_door is not None:
            return self.front_door.embed(list(texts), input_type, instruction, truncate, batch_size or 256)
        batch_size = batch_size or 8
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
