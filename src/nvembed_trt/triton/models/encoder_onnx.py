"""Triton python-backend model `encoder` for hosts without TensorRT: runs the ONNX export with ONNX Runtime
(providers from the model config). Requests of the same shape are run as one batch."""

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


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        import onnxruntime as ort

        params, version_dir = settings_from_args(args)
        self.pb = triton_utils()
        options = ort.SessionOptions()
        options.log_severity_level = 3
        providers = [p for p in params["providers"].split(",") if p in ort.get_available_providers()]
        self.session = ort.InferenceSession(str(version_dir / params["onnx_file"]), options,
                                            providers=providers or ["CPUExecutionProvider"])
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
