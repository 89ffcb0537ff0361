"""Triton python-backend model `pooling`: masked mean over pool_mask plus L2 norm when the encoder emits token
states (mode "pool"); a finiteness and unit-norm check when it emits embeddings (mode "check"). Output dtype
float32, or float16 on request."""

from __future__ import annotations

import numpy as np

from ...errors import InputError
from ...pooling import masked_mean_l2_numpy
from .common import error_response, settings_from_args, triton_utils

NORM_TOLERANCE = 1e-3


def pool_or_check(mode: str, values: np.ndarray, pool_mask: np.ndarray, output_dtype: str) -> np.ndarray:
    if mode == "pool":
        empty = np.flatnonzero(pool_mask.sum(axis=1) == 0)
        if empty.size:
            raise InputError(f"row {int(empty[0])} has no token to pool (its pool_mask is all zero)")
        embeddings = masked_mean_l2_numpy(values, pool_mask)
    else:
        embeddings = values.astype(np.float32)
    norms = np.linalg.norm(embeddings, axis=1)
    bad = np.flatnonzero(~np.isfinite(norms) | (np.abs(norms - 1.0) > NORM_TOLERANCE))
    if bad.size:
        raise InputError(f"encoder output row {int(bad[0])} is not a finite unit vector (norm {norms[bad[0]]:.4f}, "
                         f"allowed 1 ± {NORM_TOLERANCE})")
    return embeddings.astype(np.float16 if output_dtype == "float16" else np.float32)


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        params, _ = settings_from_args(args)
        self.pb = triton_utils()
        self.mode, self.output_dtype = params["mode"], params["output_dtype"]
        self.input = "token_states" if self.mode == "pool" else "embeddings"

    def execute(self, requests):
        responses = []
        for request in requests:
            values = self.pb.get_input_tensor_by_name(request, self.input).as_numpy()
            mask = self.pb.get_input_tensor_by_name(request, "pool_mask").as_numpy()
            try:
                out = pool_or_check(self.mode, values, mask, self.output_dtype)
            except InputError as exc:
                responses.append(error_response(self.pb, str(exc)))
                continue
            responses.append(self.pb.InferenceResponse([self.pb.Tensor("EMBEDDINGS", out)]))
        return responses
