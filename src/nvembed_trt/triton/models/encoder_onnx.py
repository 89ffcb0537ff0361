"""Triton python-backend model `encoder` for hosts without TensorRT: runs the ONNX export with ONNX Runtime.

Providers come from the model config. CUDA is honoured or refused, never silently replaced by the CPU: a repository
asking for CUDAExecutionProvider fails to load where ONNX Runtime has no CUDA (the package depends on the CPU
build; install the `cuda` extra, onnxruntime-gpu), and each instance runs on the GPU Triton assigned it
(model_instance_device_id). ONNX Runtime creates a session on the next provider, with only a warning, when the CUDA
provider is present but fails to load (cuDNN or a CUDA major the wheel was not built for missing): the session's
first provider is checked after creation and such a session is refused. Callers send packed batches (see
triton/spec.py); several requests in one call are run grouped by shape."""

from __future__ import annotations

import numpy as np

from .common import error_response, settings_from_args, triton_utils


def run_grouped(session, input_names: list[str], requests_inputs: list[dict[str, np.ndarray]]) -> list[np.ndarray]:
    """Run requests grouped by shape; returns one output array per request, in order."""
    results: list[np.ndarray | None] = [None] * len(requests_inputs)
    groups: dict[tuple, list[int]] = {}
    for index, arrays in enumerate(requests_inputs):
        groups.setdefault(arrays[input_names[0]].shape[1:], []).append(index)
    for members in groups.values():
        feeds = {name: np.concatenate([requests_inputs[i][name] for i in members]) for name in input_names}
        out = session.run(None, feeds)[0]
        start = 0
        for i in members:
            rows = len(requests_inputs[i][input_names[0]])
            results[i] = out[start:start + rows]
            start += rows
    return results


def session_providers(requested: list[str], available: list[str], device_id: int) -> list:
    """ONNX Runtime providers for one instance; raises RuntimeError when CUDA is asked for but absent."""
    if "CUDAExecutionProvider" in requested and "CUDAExecutionProvider" not in available:
        raise RuntimeError("this repository's encoder asks for CUDAExecutionProvider but this ONNX Runtime has none "
                           f"(available: {', '.join(available)}); install onnxruntime-gpu (pip install "
                           "'nvembed-trt[cuda]') or regenerate the repository with --providers cpu")
    return [("CUDAExecutionProvider", {"device_id": device_id}) if p == "CUDAExecutionProvider" else p
            for p in requested if p in available]


def check_session_providers(requested: list[str], active: list[str]) -> None:
    """Raise RuntimeError when the session does not run on the first provider asked for (a silent fallback)."""
    if requested and (not active or active[0] != requested[0]):
        raise RuntimeError(f"this repository's encoder asks for {requested[0]} first, but ONNX Runtime created the "
                           f"session on {active[0] if active else 'no provider'} (providers {', '.join(active)}): "
                           f"the provider failed to load; check that onnxruntime-gpu matches this image's CUDA and "
                           f"cuDNN (its log above names the missing library), or regenerate the repository with "
                           f"--providers cpu")


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        import onnxruntime as ort

        params, version_dir = settings_from_args(args)
        self.pb = triton_utils()
        options = ort.SessionOptions()
        options.log_severity_level = 3
        # no busy-waiting between batches: spinning threads would take the CPU the front door and Triton need
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        requested = params["providers"].split(",")
        providers = session_providers(requested, ort.get_available_providers(),
                                      int(args.get("model_instance_device_id", 0) or 0))
        self.session = ort.InferenceSession(str(version_dir / params["onnx_file"]), options, providers=providers)
        check_session_providers(requested, self.session.get_providers())
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.output = self.session.get_outputs()[0].name

    def execute(self, requests):
        arrays = [{n: self.pb.get_input_tensor_by_name(r, n).as_numpy().astype(np.int32) for n in self.inputs}
                  for r in requests]
        try:
            outputs = run_grouped(self.session, self.inputs, arrays)
        except Exception as exc:  # ONNX Runtime raises its own types; report, keep serving
            return [error_response(self.pb, f"encoder failed: {exc}") for _ in requests]
        return [self.pb.InferenceResponse([self.pb.Tensor(self.output, out.astype(np.float32))]) for out in outputs]
