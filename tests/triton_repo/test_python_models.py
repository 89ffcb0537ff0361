"""The python-backend models' TritonPythonModel shells against a strict stand-in for Triton's python API
(tests/pb_standin.py), where the real one needs a GPU: nv_embed with an encoder whose outputs stay in GPU memory (every
tensorrt_plan encoder), encoder failures answered per request, and the ONNX encoder refusing a session that fell back
to the CPU. The same shells run on the real server in test_serving.py (CPU encoders)."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest
from google.protobuf import json_format

import pb_standin
from nvembed_trt.triton.config import from_pbtxt
from nvembed_trt.triton.models import embed, encoder_onnx
from texts import SENTENCES


@pytest.fixture(scope="module")
def repo(tiny_repos):
    return tiny_repos["engine"]       # shared with the end-to-end serving tests (session fixture)


def model_args(repo, name: str) -> dict:
    """initialize()'s args as Triton passes them: the model config as JSON, the repository folder, the version."""
    config = from_pbtxt((repo / name / "config.pbtxt").read_text())
    return {"model_config": json.dumps(json_format.MessageToDict(config, preserving_proto_field_name=True)),
            "model_repository": str(repo / name), "model_version": "1", "model_instance_device_id": "0"}


def text_request(pb, texts: list[str], input_type: str | None = None):
    inputs = [pb.Tensor("TEXT", np.array([[t.encode()] for t in texts], dtype=object))]
    if input_type:
        inputs.append(pb.Tensor("INPUT_TYPE", np.array([[input_type.encode()]] * len(texts), dtype=object)))
    return pb.InferenceRequest(inputs=inputs, requested_output_names=["EMBEDDINGS"], model_name="nv_embed")


def gpu_encoder(pb, repo, fail: Exception | None = None):
    """The encoder as a tensorrt_plan model behaves: real values (ONNX Runtime on the export), outputs on the GPU."""
    session = ort.InferenceSession(str(repo / "encoder" / "1" / "model.onnx"))

    def run(arrays):
        if fail is not None:
            raise fail
        return {"embeddings": session.run(None, arrays)[0]}
    return pb.serve_model("encoder", run, {n: np.int32 for n in ("input_ids", "attention_mask", "pool_mask")},
                          ("embeddings",), on_gpu=True)


def test_nv_embed_reads_gpu_resident_encoder_outputs(monkeypatch, repo, tiny, cosine):
    pb = pb_standin.install(monkeypatch)
    encoder = gpu_encoder(pb, repo)
    model = embed.TritonPythonModel()
    model.initialize(model_args(repo, "nv_embed"))
    requests = [text_request(pb, SENTENCES[:3], "query"), text_request(pb, SENTENCES[3:5])]
    responses = model.execute(requests)
    assert [r.has_error() for r in responses] == [False, False], [r.error().message() for r in responses if r.error()]
    got = [pb.get_output_tensor_by_name(r, "EMBEDDINGS").as_numpy() for r in responses]
    assert [g.shape for g in got] == [(3, 64), (2, 64)]
    want = [tiny.encode(SENTENCES[:3], input_type="query"), tiny.encode(SENTENCES[3:5], input_type="passage")]
    assert min(cosine(g, w).min() for g, w in zip(got, want)) >= 0.99999
    assert len(encoder.calls) >= 1


def test_encoder_failures_are_answered_per_request_and_the_model_keeps_serving(monkeypatch, repo):
    pb = pb_standin.install(monkeypatch)
    gpu_encoder(pb, repo, fail=RuntimeError("CUDA error: an illegal memory access was encountered"))
    model = embed.TritonPythonModel()
    model.initialize(model_args(repo, "nv_embed"))
    bad = text_request(pb, [""])
    responses = model.execute([text_request(pb, SENTENCES[:2]), bad, text_request(pb, SENTENCES[2:3])])
    messages = [r.error().message() if r.has_error() else None for r in responses]
    assert messages[1] == "TEXT[0] is empty" and responses[1].error().code() == pb.TritonError.INVALID_ARG
    for message in (messages[0], messages[2]):
        assert message == "encoder failed: RuntimeError: CUDA error: an illegal memory access was encountered"
    assert pb.Logger.lines[-1][0] == "error" and "2 request(s)" in pb.Logger.lines[-1][1]
    gpu_encoder(pb, repo)                                   # the encoder recovers: the same instance serves again
    again = model.execute([text_request(pb, SENTENCES[:2])])
    assert not again[0].has_error() and pb.get_output_tensor_by_name(again[0], "EMBEDDINGS").shape() == [2, 64]


def test_encoder_answering_without_its_output_is_an_error(monkeypatch, repo):
    pb = pb_standin.install(monkeypatch)
    encoder = gpu_encoder(pb, repo)
    model = embed.TritonPythonModel()
    model.initialize(model_args(repo, "nv_embed"))
    encoder.outputs = ("embeddings", "other")
    model.router.encoder_output = "other"                   # a repository whose settings name another output
    (response,) = model.execute([text_request(pb, SENTENCES[:1])])
    assert response.has_error() and "encoder answered without its output 'other'" in response.error().message()


def test_onnx_encoder_refuses_a_session_that_fell_back_to_cpu(monkeypatch, tmp_path, repo):
    """ONNX Runtime creates a session on the CPU, with only a warning, when the CUDA provider fails to load (missing
    cuDNN, a CUDA major the wheel was not built for). Here CUDA is announced available but cannot load."""
    pb_standin.install(monkeypatch)
    args = model_args(repo, "encoder")
    config = json.loads(args["model_config"])
    config["parameters"]["providers"]["string_value"] = "CUDAExecutionProvider,CPUExecutionProvider"
    args["model_config"] = json.dumps(config)
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    with pytest.raises(RuntimeError, match=r"asks for CUDAExecutionProvider first, but ONNX Runtime created the "
                                           r"session on CPUExecutionProvider"):
        encoder_onnx.TritonPythonModel().initialize(args)
    model = encoder_onnx.TritonPythonModel()                # CPU asked for, CPU given: loads
    model.initialize(model_args(repo, "encoder"))
    assert model.session.get_providers()[0] == "CPUExecutionProvider"
