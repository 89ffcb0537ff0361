"""Triton python-backend model `encoder` that runs a TensorRT plan with the engines' runner (EngineRunner), for
servers without Triton's tensorrt backend: the tritonserver bundled with nvidia-pytriton has only the python backend,
so on a pip-only GPU host (no Docker, no NGC image) this is how an engine is served end to end.

The version folder holds model.plan and engine.json (as `nvembed-trt build` wrote them); each instance loads the plan
on the GPU Triton assigned it (model_instance_device_id). It needs, in the Python the stub runs: the flavor that built
the plan (tensorrt or tensorrt_rtx) and a CUDA build of torch (the runner's device buffers). Callers send packed
batches one of the engine's profiles covers (triton/spec.py); each request runs as its own batch, so a batch is never
grown past its profile. A failure answers that request with an error and the model keeps serving."""

from __future__ import annotations

import numpy as np

from .common import error_response, settings_from_args, triton_utils


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        from nvembed_trt.engines.runner import EngineRunner

        params, version_dir = settings_from_args(args)
        self.pb = triton_utils()
        self.runner = EngineRunner(version_dir, device=int(args.get("model_instance_device_id", 0) or 0))
        self.inputs = list(self.runner.meta.inputs)
        self.output = self.runner.meta.outputs[0]
        if params.get("plan_file", "model.plan") != "model.plan":
            raise RuntimeError(f"encoder_trt loads model.plan, the config names {params['plan_file']!r}")

    def execute(self, requests):
        responses = []
        for request in requests:
            try:
                feeds = {n: self.pb.get_input_tensor_by_name(request, n).as_numpy() for n in self.inputs}
                out = self.runner.run_arrays(feeds)
            except Exception as exc:  # noqa: BLE001 - TensorRT and torch raise their own types; report, keep serving
                responses.append(error_response(self.pb, f"encoder failed: {exc}"))
                continue
            responses.append(self.pb.InferenceResponse([self.pb.Tensor(self.output, out.astype(np.float32))]))
        return responses
