"""Triton python-backend model `nv_embed`, the KServe face: TEXT (+ optional INPUT_TYPE or INSTRUCTION, TRUNCATE)
-> EMBEDDINGS. Rows of every request in the dynamic batch are tokenised (bounded, one call per instruction group),
packed into batches one encoder shape covers (nvembed_trt.packing), sent to the `encoder` model through BLS, pooled
when the encoder emits token states, and returned per request. A bad request gets INVALID_ARG naming the row, the
limit and the value; the other requests of the batch are answered. Every setting comes from the model config.

The encoder's outputs are asked for in CPU memory: a tensorrt_plan encoder leaves them on the GPU, where
python_backend's `as_numpy()` raises ("Tensor is stored in GPU and cannot be converted to NumPy"). Any encoder failure (an error
response, a missing output, an exception from BLS) is answered as an error to the requests whose rows it held; the
model itself keeps serving, so the supervisor has nothing to reload."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from ...encoding import Row, embed_rows, encode_rows
from ...errors import InputError
from ...packing import Packer
from ...tokenizer import EmbeddingTokenizer
from ..spec import OUTPUT, REPO_SPEC, REQUEST_INPUTS, RepoSpec
from .common import error_response, settings_from_args, triton_utils
from .inputs import parse_rows


class EncoderError(Exception):
    """The encoder model answered a batch with an error."""


@dataclass
class Router:
    """Everything nv_embed does except talking to Triton: built from the model config's parameters."""

    tokenizer: EmbeddingTokenizer
    packer: Packer
    max_length: int
    encoder_inputs: tuple[str, ...]
    encoder_output: str
    output_dtype: str
    max_input_bytes: int
    dim: int

    @classmethod
    def from_spec(cls, spec: RepoSpec, tokenizer_dir) -> Router:
        tokenizer = EmbeddingTokenizer.from_dir(tokenizer_dir)
        tokenizer.check_max_length(spec.max_length)
        return cls(tokenizer, spec.packer(), spec.max_length, spec.encoder_inputs, spec.encoder_output,
                   spec.output_dtype, spec.max_input_bytes, spec.hidden_size)

    def rows(self, inputs: list) -> list[Row]:
        """Rows of one request from its (TEXT, INPUT_TYPE, INSTRUCTION, TRUNCATE) arrays; raises InputError."""
        texts, instructions, truncates = parse_rows(*inputs, self.max_input_bytes)
        return encode_rows(self.tokenizer, texts, instructions, truncates, self.max_length)

    def embed(self, rows: list[Row], run) -> np.ndarray:
        out = embed_rows(rows, self.packer, self.tokenizer.pad_id, self.encoder_inputs, self.dim, run)
        return out.astype(np.float16) if self.output_dtype == "float16" else out


def request_arrays(pb, request) -> list:
    """The four request inputs as 1-D arrays (None when absent); each must be shaped [rows, 1]."""
    arrays = []
    for name in REQUEST_INPUTS:
        tensor = pb.get_input_tensor_by_name(request, name)
        if tensor is None:
            arrays.append(None)
            continue
        values = tensor.as_numpy()
        if values.ndim != 2 or values.shape[1] != 1:
            raise InputError(f"{name} must have shape [rows, 1], got {list(values.shape)}")
        arrays.append(values.reshape(-1))
    return arrays


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        params, version_dir = settings_from_args(args)
        self.pb = triton_utils()
        spec = RepoSpec.from_json(json.loads(params[REPO_SPEC]))       # serialised once, by triton/config.py
        self.router = Router.from_spec(spec, version_dir / params["tokenizer_dir"])
        self.encoder = params["encoder_model"]

    def _run_encoder(self, arrays: dict[str, np.ndarray]) -> np.ndarray:
        pb = self.pb
        request = pb.InferenceRequest(model_name=self.encoder, requested_output_names=[self.router.encoder_output],
                                      inputs=[pb.Tensor(name, array) for name, array in arrays.items()],
                                      preferred_memory=pb.PreferredMemory(pb.TRITONSERVER_MEMORY_CPU, 0))
        response = request.exec()
        if response.has_error():
            raise EncoderError(f"encoder failed: {response.error().message()}")
        output = pb.get_output_tensor_by_name(response, self.router.encoder_output)
        if output is None:
            raise EncoderError(f"encoder answered without its output {self.router.encoder_output!r}")
        return output.as_numpy()

    def execute(self, requests):
        responses: list = [None] * len(requests)
        rows: list[Row] = []
        owners: list[tuple[int, int, int]] = []   # (request, first row, row count)
        for r, request in enumerate(requests):
            try:
                mine = self.router.rows(request_arrays(self.pb, request))
            except InputError as exc:
                responses[r] = error_response(self.pb, str(exc))
                continue
            owners.append((r, len(rows), len(mine)))
            rows += mine
        if rows:
            try:
                embeddings = self.router.embed(rows, self._run_encoder)
            except Exception as exc:  # noqa: BLE001 - any failure is answered per request; the model keeps serving
                message = str(exc) if isinstance(exc, (EncoderError, InputError)) else \
                    f"encoder failed: {type(exc).__name__}: {exc}"
                self.pb.Logger.log_error(f"nv_embed: {len(owners)} request(s) answered with an error: {message}")
                for r, _, _ in owners:
                    responses[r] = self.pb.InferenceResponse(error=self.pb.TritonError(message))
                return responses
            for r, first, count in owners:
                out = self.pb.Tensor(OUTPUT, embeddings[first:first + count])
                responses[r] = self.pb.InferenceResponse([out])
        return responses
