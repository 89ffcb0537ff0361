"""config.pbtxt files built from Triton's protobuf schema (tritonclient's model_config_pb2), never from strings,
and a consistency check across the repository."""

from __future__ import annotations

import json

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from .spec import ENCODER, ENSEMBLE, OUTPUT, REPO_SPEC, REQUEST_INPUTS, TOKENIZER_DIR, RepoSpec

DTYPES = {"BYTES": mc.TYPE_STRING, "INT32": mc.TYPE_INT32, "FP32": mc.TYPE_FP32, "FP16": mc.TYPE_FP16}


def _tensor(container, name: str, dtype: str, dims: list[int], optional: bool = False) -> None:
    tensor = container.add()
    tensor.name, tensor.data_type = name, DTYPES[dtype]
    tensor.dims.extend(dims)
    if optional:
        tensor.optional = True


def _instances(config: mc.ModelConfig, count: int, gpu: bool) -> None:
    group = config.instance_group.add()
    group.count = count
    group.kind = mc.ModelInstanceGroup.KIND_GPU if gpu else mc.ModelInstanceGroup.KIND_CPU


def _parameters(config: mc.ModelConfig, values: dict[str, str]) -> None:
    for key, value in values.items():
        config.parameters[key].string_value = value


def encoder_config(spec: RepoSpec) -> mc.ModelConfig:
    """The engine or ONNX graph. No dynamic batcher: callers send batches one shape covers (see spec.py)."""
    config = mc.ModelConfig(name=ENCODER, max_batch_size=spec.encoder_max_batch)
    if spec.encoder_kind == "tensorrt_plan":
        config.platform = "tensorrt_plan"
        _parameters(config, spec.encoder_parameters)
    elif spec.encoder_kind == "tensorrt_python":
        config.backend = "python"
        _parameters(config, {"plan_file": "model.plan"})
    elif spec.encoder_kind == "simulated":   # the GPU-timed stand-in: its timing numbers and shapes
        config.backend = "python"
        _parameters(config, spec.encoder_parameters)
    else:
        config.backend = "python"
        _parameters(config, {"onnx_file": "model.onnx", "providers": ",".join(spec.onnx_providers)})
    for name in spec.encoder_inputs:
        _tensor(config.input, name, "INT32", [-1])
    _tensor(config.output, spec.encoder_output, "FP32", spec.encoder_output_dims)
    _instances(config, spec.encoder_instances, gpu=spec.on_gpu)
    if spec.engine_profiles and spec.encoder_kind == "tensorrt_plan":   # instance profiles: the tensorrt backend's
        config.instance_group[0].profile.extend(spec.engine_profiles)
    return config


def nv_embed_config(spec: RepoSpec) -> mc.ModelConfig:
    """The KServe face: texts in, embeddings out; tokenises, packs, calls the encoder (BLS), pools."""
    config = mc.ModelConfig(name=ENSEMBLE, max_batch_size=spec.max_request_rows, backend="python")
    for name in REQUEST_INPUTS:
        _tensor(config.input, name, "BYTES", [1], optional=name != "TEXT")
    _tensor(config.output, OUTPUT, "FP16" if spec.output_dtype == "float16" else "FP32", [spec.hidden_size])
    config.dynamic_batching.max_queue_delay_microseconds = spec.max_queue_delay_us
    _instances(config, spec.nv_embed_instances, gpu=False)
    # the spec itself (RepoSpec.to_json, as in repo.json): nv_embed reads it back with RepoSpec.from_json;
    # max_length is also its own parameter, for clients that read the config (corpus jobs, eval)
    _parameters(config, {"tokenizer_dir": TOKENIZER_DIR, "max_length": str(spec.max_length), "encoder_model": ENCODER,
                         REPO_SPEC: json.dumps(spec.to_json(), sort_keys=True)})
    return config


def repository_configs(spec: RepoSpec) -> dict[str, mc.ModelConfig]:
    return {c.name: c for c in (encoder_config(spec), nv_embed_config(spec))}


def to_pbtxt(config: mc.ModelConfig) -> str:
    return text_format.MessageToString(config)


def from_pbtxt(text: str) -> mc.ModelConfig:
    return text_format.Parse(text, mc.ModelConfig())


def _io(config: mc.ModelConfig) -> tuple[dict, dict]:
    def table(tensors):
        return {t.name: (mc.DataType.Name(t.data_type), list(t.dims)) for t in tensors}
    return table(config.input), table(config.output)


def check_repository(configs: dict[str, mc.ModelConfig], spec: RepoSpec,
                     engine_io: dict | None = None) -> list[str]:
    """nv_embed's settings name the encoder's real inputs and output; every batch the packer can form fits the
    encoder's max_batch_size and is covered by one of its shapes up to max_length; the encoder matches the graph.
    Returns every problem found."""
    problems = []
    encoder, front = configs[ENCODER], configs[ENSEMBLE]
    inputs, outputs = _io(encoder)
    params = {k: v.string_value for k, v in front.parameters.items()}
    sent = RepoSpec.from_json(json.loads(params[REPO_SPEC]))      # what nv_embed will act on
    if sent != spec:
        problems.append("nv_embed's repo_spec parameter differs from the repository's spec")
    for name in sent.encoder_inputs:
        if inputs.get(name) != ("TYPE_INT32", [-1]):
            problems.append(f"nv_embed sends {name} as INT32 [-1] but the encoder declares {inputs.get(name)}")
    if sent.encoder_output not in outputs:
        problems.append(f"nv_embed reads {sent.encoder_output} but the encoder outputs {list(outputs)}")
    want_dim = [spec.hidden_size] if spec.pooling == "engine" else [-1, spec.hidden_size]
    if outputs.get(sent.encoder_output, (None, None))[1] != want_dim:
        problems.append(f"encoder output dims {outputs.get(sent.encoder_output)} are not {want_dim}")
    packer = spec.packer()
    largest = max(packer.rows_at(w) for w in range(1, spec.max_length + 1))
    if largest > encoder.max_batch_size:
        problems.append(f"packed batches reach {largest} rows but the encoder's max_batch_size is "
                        f"{encoder.max_batch_size}")
    uncovered = packer.uncovered_widths(spec.max_length)
    if uncovered:
        problems.append(f"max_length {spec.max_length}: rows of {uncovered[0]}..{uncovered[-1]} tokens fit no encoder "
                        f"shape ({'; '.join(s.describe() for s in spec.shape_limits)})")
    if int(params["max_length"]) != spec.max_length:
        problems.append(f"nv_embed max_length {params['max_length']} differs from the repository's {spec.max_length}")
    if engine_io is not None and (list(inputs) != list(engine_io["inputs"])
                                  or list(outputs) != list(engine_io["outputs"])):
        problems.append(f"encoder config I/O {list(inputs)} -> {list(outputs)} does not match the graph's "
                        f"{engine_io['inputs']} -> {engine_io['outputs']}")
    return problems
