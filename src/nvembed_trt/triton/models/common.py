"""Shared helpers of the python-backend models: settings from the model config, and Triton's utilities (which
exist only inside the server, so they are imported when a model is initialised)."""

from __future__ import annotations

import json
from pathlib import Path


def settings_from_args(args: dict) -> tuple[dict[str, str], Path]:
    """(the model config's parameters as strings, this version's folder) from Triton's initialize() args."""
    config = json.loads(args["model_config"])
    params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
    return params, Path(args["model_repository"]) / str(args["model_version"])


def triton_utils():
    import triton_python_backend_utils as pb_utils  # provided by Triton's python backend

    return pb_utils


def error_response(pb_utils, message: str):
    return pb_utils.InferenceResponse(error=pb_utils.TritonError(message, pb_utils.TritonError.INVALID_ARG))


def optional_input(pb_utils, request, name: str):
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    return None if tensor is None else tensor.as_numpy().reshape(-1)
