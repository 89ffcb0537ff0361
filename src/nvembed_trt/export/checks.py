"""Checks after every export, reported together: names -> shapes (checker, inference) -> values (parity)."""

from __future__ import annotations

import gc
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from pydantic import BaseModel, ConfigDict

from ..errors import NVEmbedError
from ..model import NVEmbedModel
from ..pooling import cosine_rows, masked_mean_l2_numpy
from ..tokenizer import EmbeddingTokenizer, INPUT_TYPES
from .signature import INDEX_DTYPE, GraphSignature


class ExportValidationError(NVEmbedError):
    def __init__(self, path: Path, problems: list[str]):
        self.problems = problems
        super().__init__(f"export {path} failed {len(problems)} check(s):\n" + "\n".join(f"  - {p}" for p in problems))


class ParityThreshold(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    min_cosine: float
    max_abs: float | None = None


PARITY_THRESHOLDS: dict[str, ParityThreshold] = {
    "float32": ParityThreshold(min_cosine=0.99999, max_abs=1e-4),
    "float16": ParityThreshold(min_cosine=0.999),
}


def _dims(value_info: onnx.ValueInfoProto) -> list[str | int]:
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


def graph_report(path: Path, sig: GraphSignature) -> tuple[dict, list[str]]:
    """onnx.checker by path (external data included), shape inference, op histogram, I/O and sizes."""
    problems: list[str] = []
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except onnx.checker.ValidationError as exc:
        problems.append(f"onnx.checker: {str(exc).splitlines()[0]}")
    proto = onnx.load(str(path), load_external_data=False)
    inferred = onnx.shape_inference.infer_shapes(proto)
    inputs = {v.name: _dims(v) for v in inferred.graph.input}
    outputs = {v.name: _dims(v) for v in inferred.graph.output}
    for kind, got, want in (("inputs", inputs, sig.inputs), ("outputs", outputs, sig.outputs)):
        if list(got) != list(want):
            problems.append(f"{kind} are {list(got)}, expected {list(want)}")
        for name in set(got) & set(want):
            if [str(d) for d in got[name]] != [str(d) for d in want[name]]:
                problems.append(f"{name} has dims {got[name]}, expected {list(want[name])}")
    data = path.with_name(path.name + ".data")
    precisions = op_precisions(inferred)
    problems += fp32_island_problems(precisions)
    report = {
        "opset": max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")),
        "inputs": inputs, "outputs": outputs,
        "ops": dict(sorted(Counter(n.op_type for n in proto.graph.node).items(), key=lambda kv: -kv[1])),
        "precision": precisions,
        "nodes": len(proto.graph.node), "initializers": len(proto.graph.initializer),
        "parameters": int(sum(np.prod(t.dims) for t in proto.graph.initializer)),
        "model_bytes": path.stat().st_size, "external_data_bytes": data.stat().st_size if data.exists() else 0,
    }
    return report, problems


PRECISION_OPS = ("MatMul", "Gemm", "Gather", "Softmax", "LayerNormalization", "ReduceMean", "ReduceSum",
                 "ReduceL2", "Pow", "Sqrt", "Erf", "Sigmoid")
FP32_ONLY_OPS = ("Softmax", "LayerNormalization", "ReduceMean", "ReduceSum", "ReduceL2", "Pow", "Sqrt")


def _elem_types(model: onnx.ModelProto) -> dict[str, str]:
    g = model.graph
    types = {v.name: v.type.tensor_type.elem_type for v in (*g.input, *g.output, *g.value_info)}
    types.update({t.name: t.data_type for t in g.initializer})
    return {name: onnx.TensorProto.DataType.Name(t) for name, t in types.items()}


def op_precisions(model: onnx.ModelProto) -> dict[str, dict[str, int]]:
    """For the ops that decide accuracy, how many run in each dtype (by their first input)."""
    types, found = _elem_types(model), {}
    for node in model.graph.node:
        if node.op_type in PRECISION_OPS and node.input:
            dtype = types.get(node.input[0], "UNKNOWN")  # the data input (for Gather: the embedding table)
            found.setdefault(node.op_type, Counter())[dtype] += 1
    return {op: dict(counts) for op, counts in sorted(found.items())}


def fp32_island_problems(precisions: dict[str, dict[str, int]]) -> list[str]:
    """Norms, softmax and pooling reductions must stay fp32 whatever the weights' dtype (from op_precisions)."""
    return [f"{op} runs in {dtype} x{count}; it must stay FLOAT" for op in FP32_ONLY_OPS
            for dtype, count in precisions.get(op, {}).items() if dtype != "FLOAT"]


@dataclass(frozen=True)
class ParityCase:
    name: str
    texts: list[str]
    instruction: str


def parity_cases(tokenizer: EmbeddingTokenizer, seed: int = 0) -> list[ParityCase]:
    """Fresh texts of several shapes: random vocabulary words, padded batches, with and without instruction."""
    rng = np.random.default_rng(seed)

    def text(n_tokens: int) -> str:
        ids = rng.integers(259, tokenizer.tokenizer.get_vocab_size(), size=n_tokens)
        return tokenizer.tokenizer.decode(ids.tolist())
    query = INPUT_TYPES["query"]
    return [ParityCase("single query", [text(8)], query),
            ParityCase("padded passages", [text(n) for n in (5, 40, 90)], ""),
            ParityCase("padded queries", [text(n) for n in (3, 12, 30, 7)], query),
            ParityCase("long pair", [text(200), text(150)], "")]


def onnx_outputs(path: Path, sig: GraphSignature, tokenizer: EmbeddingTokenizer, cases: list[ParityCase],
                 max_length: int, providers: list[str]) -> list[np.ndarray]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: fp16 Gemm folding notes on CPU are expected
    session = ort.InferenceSession(str(path), options, providers=providers)
    results = []
    for case in cases:
        batch = tokenizer(case.texts, case.instruction, max_length)
        feeds = {name: getattr(batch, name).astype(INDEX_DTYPE) for name in sig.inputs}
        out = session.run(None, feeds)[0]
        results.append(out if sig.pooling == "engine" else masked_mean_l2_numpy(out, batch.pool_mask))
    del session
    gc.collect()
    return results


def parity_report(path: Path, sig: GraphSignature, tokenizer: EmbeddingTokenizer,
                  reference: Callable[[], NVEmbedModel], threshold: ParityThreshold, providers: list[str],
                  max_length: int = 512) -> tuple[dict, list[str]]:
    """ONNX Runtime first, then the PyTorch reference (one model in memory at a time)."""
    import torch

    cases = parity_cases(tokenizer)
    got = onnx_outputs(path, sig, tokenizer, cases, max_length, providers)
    model = reference()
    rows = []
    for case, out in zip(cases, got):
        batch = tokenizer(case.texts, case.instruction, max_length)
        with torch.inference_mode():
            want = model(**batch.to_torch(model.device)).float().cpu().numpy()
        cos = cosine_rows(out, want)
        rows.append({"case": case.name, "shape": list(batch.input_ids.shape),
                     "min_cosine": float(cos.min()), "max_abs": float(np.abs(out - want).max())})
    report = {"threshold": threshold.model_dump(), "cases": rows, "providers": providers,
              "min_cosine": min(r["min_cosine"] for r in rows), "max_abs": max(r["max_abs"] for r in rows)}
    problems = []
    if report["min_cosine"] < threshold.min_cosine:
        problems.append(f"parity: min cosine {report['min_cosine']:.6f} < {threshold.min_cosine}")
    if threshold.max_abs is not None and report["max_abs"] > threshold.max_abs:
        problems.append(f"parity: max abs error {report['max_abs']:.3g} > {threshold.max_abs}")
    report["passed"] = not problems
    return report, problems
