"""The gate before a recipe's graph is called engine-ready: embed a held-out retrieval set (stdlib docstrings,
never the calibration corpus) with the candidate and with the fp32 graph, and compare per-row cosine (p1, min,
mean), max abs error, and top-10 retrieval agreement."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from ..calibration.corpus import stdlib_retrieval_set
from ..pooling import masked_mean_l2_numpy
from ..tokenizer import EmbeddingTokenizer, INPUT_TYPES
from .recipes import Recipe


@dataclass(frozen=True)
class HeldOut:
    queries: list[str]
    passages: list[str]
    provenance: dict


def heldout_set(max_pairs: int = 160) -> HeldOut:
    queries, passages, provenance = stdlib_retrieval_set(max_pairs)
    return HeldOut(queries, passages, provenance)


class GraphRunner:
    """Runs an embedding graph (either pooling mode) on a runtime; returns pooled float32 embeddings."""

    def __init__(self, path: Path, runtime: str):
        graph = onnx.load(str(path), load_external_data=False).graph
        self.inputs = [i.name for i in graph.input]
        self.pooled = graph.output[0].name == "embeddings"
        if runtime == "onnxruntime":
            import onnxruntime as ort

            options = ort.SessionOptions()
            options.log_severity_level = 3
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            self._run = lambda feeds: session.run(None, feeds)[0]
        else:
            from onnx.reference import ReferenceEvaluator

            evaluator = ReferenceEvaluator(str(path))
            self._run = lambda feeds: np.asarray(evaluator.run(None, feeds)[0], dtype=np.float32)

    def embed(self, tokenizer: EmbeddingTokenizer, texts: list[str], instruction: str, max_length: int = 512,
              batch_size: int = 16) -> np.ndarray:
        out = []
        for start in range(0, len(texts), batch_size):
            batch = tokenizer(texts[start:start + batch_size], instruction, max_length)
            result = self._run({name: getattr(batch, name).astype(np.int32) for name in self.inputs})
            out.append(result if self.pooled else masked_mean_l2_numpy(result, batch.pool_mask))
        return np.concatenate(out).astype(np.float32)


def _embed_set(runner: GraphRunner, tokenizer: EmbeddingTokenizer, heldout: HeldOut) -> tuple[np.ndarray, np.ndarray]:
    return (runner.embed(tokenizer, heldout.queries, INPUT_TYPES["query"]),
            runner.embed(tokenizer, heldout.passages, INPUT_TYPES["passage"]))


def top_k_agreement(ref_q: np.ndarray, ref_p: np.ndarray, got_q: np.ndarray, got_p: np.ndarray, k: int = 10) -> float:
    """Mean over queries of |top-k(reference) ∩ top-k(candidate)| / k."""
    ref_top = np.argsort(-(ref_q @ ref_p.T), axis=1)[:, :k]
    got_top = np.argsort(-(got_q @ got_p.T), axis=1)[:, :k]
    return float(np.mean([len(set(a) & set(b)) / k for a, b in zip(ref_top, got_top)]))


def verify_recipe(recipe: Recipe, candidate: Path, reference: Path, tokenizer: EmbeddingTokenizer,
                  heldout: HeldOut) -> tuple[dict, list[str]]:
    ref_q, ref_p = _embed_set(GraphRunner(reference, "onnxruntime"), tokenizer, heldout)
    got_q, got_p = _embed_set(GraphRunner(candidate, recipe.verify_runtime), tokenizer, heldout)
    ref, got = np.concatenate([ref_q, ref_p]), np.concatenate([got_q, got_p])
    cos = (ref * got).sum(1) / (np.linalg.norm(ref, axis=1) * np.linalg.norm(got, axis=1))
    report = {"heldout": heldout.provenance, "rows": int(len(cos)), "runtime": recipe.verify_runtime,
              "cosine_p1": float(np.percentile(cos, 1)), "cosine_min": float(cos.min()),
              "cosine_mean": float(cos.mean()), "max_abs": float(np.abs(ref - got).max()),
              "top10_agreement": top_k_agreement(ref_q, ref_p, got_q, got_p, 10),
              "all_finite": bool(np.isfinite(got).all()),
              "thresholds": {"min_cosine": recipe.min_cosine, "min_top10": recipe.min_top10}}
    problems = []
    if not report["all_finite"]:
        problems.append("embeddings contain NaN or inf")
    if not report["cosine_min"] >= recipe.min_cosine:
        problems.append(f"min cosine {report['cosine_min']:.6f} < {recipe.min_cosine}")
    if recipe.min_top10 is not None and report["top10_agreement"] < recipe.min_top10:
        problems.append(f"top-10 agreement {report['top10_agreement']:.3f} < {recipe.min_top10}")
    report["passed"] = not problems
    return report, problems
