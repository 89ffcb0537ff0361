"""config.pbtxt files built from Triton's protobuf schema (tritonclient's model_config_pb2), never from strings,
and a consistency check across the ensemble."""

from __future__ import annotations

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from .spec import (ENCODER, ENSEMBLE, OUTPUT, POOLING, REQUEST_INPUTS, TOKEN_OUTPUTS, TOKENIZER, RepoSpec)

DTYPES = {"BYTES": mc.TYPE_STRING, "INT32": mc.TYPE_INT32, "FP32": mc.TYPE_FP32, "FP16": mc.TYPE_FP16}


def _tensor(container, name: str, dtype: str, dims: list[int], optional: bool = False) -> None:
    tensor = container.add()
    tensor.name, tensor.data_type = name, DTYPES[dtype]
    tensor.dims.extend(dims)
    if optional:
        tensor.optional = True


def _batched(name: str, spec: RepoSpec, backend: str | None = None, platform: str | None = None) -> mc.ModelConfig:
    config = mc.ModelConfig(name=name, max_batch_size=spec.max_batch_size)
    if backend:
        config.backend = backend
    if platform:
        config.platform = platform
    return config


def _dynamic_batching(config: mc.ModelConfig, spec: RepoSpec) -> None:
    sizes = [s for s in spec.preferred_batch_sizes if s <= spec.max_batch_size]
    config.dynamic_batching.preferred_batch_size.extend(sizes)
    config.dynamic_batching.max_queue_delay_microseconds = spec.max_queue_delay_us


def _instances(config: mc.ModelConfig, count: int, gpu: bool) -> None:
    group = config.instance_group.add()
    group.count = count
    group.kind = mc.ModelInstanceGroup.KIND_GPU if gpu else mc.ModelInstanceGroup.KIND_CPU


def tokenizer_config(spec: RepoSpec) -> mc.ModelConfig:
    config = _batched(TOKENIZER, spec, backend="python")
    for name in REQUEST_INPUTS:
        _tensor(config.input, name, "BYTES", [1], optional=name != "TEXT")
    for name in TOKEN_OUTPUTS:
        _tensor(config.output, name, "INT32", [-1])
    _dynamic_batching(config, spec)
    _instances(config, spec.tokenizer_instances, gpu=False)
    config.parameters["max_length"].string_value = str(spec.max_length)
    config.parameters["tokenizer_dir"].string_value = "tokenizer"
    return config


def encoder_config(spec: RepoSpec) -> mc.ModelConfig:
    if spec.encoder_kind == "tensorrt_plan":
        config = _batched(ENCODER, spec, platform="tensorrt_plan")
    else:
        config = _batched(ENCODER, spec, backend="python")
        config.parameters["onnx_file"].string_value = "model.onnx"
        config.parameters["providers"].string_value = ",".join(spec.onnx_providers)
    for name in spec.encoder_inputs:
        _tensor(config.input, name, "INT32", [-1])
    _tensor(config.output, spec.encoder_output, "FP32", spec.encoder_output_dims)
    _dynamic_batching(config, spec)
    _instances(config, spec.encoder_instances, gpu=spec.on_gpu)
    if spec.engine_profiles:
        config.instance_group[0].profile.extend(spec.engine_profiles)
    return config


def pooling_config(spec: RepoSpec) -> mc.ModelConfig:
    config = _batched(POOLING, spec, backend="python")
    _tensor(config.input, spec.encoder_output, "FP32", spec.encoder_output_dims)
    _tensor(config.input, "pool_mask", "INT32", [-1])
    _tensor(config.output, OUTPUT, "FP16" if spec.output_dtype == "float16" else "FP32", [spec.hidden_size])
    _dynamic_batching(config, spec)
    _instances(config, spec.pooling_instances, gpu=False)
    config.parameters["mode"].string_value = "pool" if spec.pooling == "ensemble" else "check"
    config.parameters["output_dtype"].string_value = spec.output_dtype
    return config


def ensemble_config(spec: RepoSpec) -> mc.ModelConfig:
    config = _batched(ENSEMBLE, spec, platform="ensemble")
    for name in REQUEST_INPUTS:
        _tensor(config.input, name, "BYTES", [1], optional=name != "TEXT")
    _tensor(config.output, OUTPUT, "FP16" if spec.output_dtype == "float16" else "FP32", [spec.hidden_size])
    steps = config.ensemble_scheduling.step
    tok = steps.add(model_name=TOKENIZER, model_version=-1)
    tok.input_map.update({name: name for name in REQUEST_INPUTS})
    tok.output_map.update({name: f"_{name}" for name in TOKEN_OUTPUTS})
    enc = steps.add(model_name=ENCODER, model_version=-1)
    enc.input_map.update({name: f"_{name}" for name in spec.encoder_inputs})
    enc.output_map[spec.encoder_output] = f"_{spec.encoder_output}"
    pool = steps.add(model_name=POOLING, model_version=-1)
    pool.input_map.update({spec.encoder_output: f"_{spec.encoder_output}", "pool_mask": "_pool_mask"})
    pool.output_map[OUTPUT] = OUTPUT
    return config


def repository_configs(spec: RepoSpec) -> dict[str, mc.ModelConfig]:
    return {c.name: c for c in (tokenizer_config(spec), encoder_config(spec), pooling_config(spec),
                                ensemble_config(spec))}


def to_pbtxt(config: mc.ModelConfig) -> str:
    return text_format.MessageToString(config)


def from_pbtxt(text: str) -> mc.ModelConfig:
    return text_format.Parse(text, mc.ModelConfig())


def _io(config: mc.ModelConfig) -> tuple[dict, dict]:
    def table(tensors):
        return {t.name: (mc.DataType.Name(t.data_type), list(t.dims)) for t in tensors}
    return table(config.input), table(config.output)


def check_repository(configs: dict[str, mc.ModelConfig], engine_io: dict | None = None) -> list[str]:
    """Every ensemble edge joins tensors of the same dtype and dims; every model shares max_batch_size; the encoder
    matches the engine/ONNX I/O names. Returns every problem found."""
    problems = []
    sizes = {name: c.max_batch_size for name, c in configs.items()}
    if len(set(sizes.values())) != 1:
        problems.append(f"max_batch_size differs between models: {sizes}")
    ensemble = configs[ENSEMBLE]
    produced = {name: spec for name, spec in _io(ensemble)[0].items()}
    for step in ensemble.ensemble_scheduling.step:
        inputs, outputs = _io(configs[step.model_name])
        for model_input, tensor in step.input_map.items():
            if model_input not in inputs:
                problems.append(f"{step.model_name} has no input {model_input}")
            elif tensor not in produced:
                problems.append(f"{step.model_name}.{model_input} reads {tensor}, which no earlier step produces")
            elif produced[tensor] != inputs[model_input]:
                problems.append(f"{step.model_name}.{model_input} is {inputs[model_input]} but {tensor} is "
                                f"{produced[tensor]}")
        for model_output, tensor in step.output_map.items():
            if model_output not in outputs:
                problems.append(f"{step.model_name} has no output {model_output}")
            else:
                produced[tensor] = outputs[model_output]
    for name, spec in _io(ensemble)[1].items():
        if produced.get(name) != spec:
            problems.append(f"ensemble output {name} is {spec} but the last step gives {produced.get(name)}")
    if engine_io is not None:
        inputs, outputs = _io(configs[ENCODER])
        if list(inputs) != list(engine_io["inputs"]) or list(outputs) != list(engine_io["outputs"]):
            problems.append(f"encoder config I/O {list(inputs)} -> {list(outputs)} does not match the graph's "
                            f"{engine_io['inputs']} -> {engine_io['outputs']}")
    return problems
