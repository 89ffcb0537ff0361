"""The gate before a recipe's graph is called engine-ready: embed the sliced held-out set (heldout.py: 1,120 rows
of queries, passages short and long, code, non-English and unicode text; never the calibration corpus) with the
candidate and with the fp32 reference, and compare per slice: per-row cosine (min, p1, mean), max abs error and
top-10 neighbour agreement. Then the ranking slice (evaluation/stdlib_set.py: 200 judged queries over 1,000
documents): the candidate's nDCG@10 may fall below the reference's by at most the recipe's max_ndcg10_drop. A
recipe passes only if every slice meets its thresholds; every failure is reported at once.

`heldout_set` / `top_k_agreement` (the small docstring retrieval set) remain for `nvembed-trt validate`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from ..calibration.corpus import stdlib_retrieval_set
from ..evaluation.beir import RetrievalSet
from ..evaluation.ranking import ranking_check, ranking_slice, slice_figures
from .heldout import SlicedHeldOut, sliced_heldout
from ..errors import InputError
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


class TorchRunner:
    """The fp32 PyTorch reference with GraphRunner's embed(): the gate's reference where no fp32 graph exists."""

    def __init__(self, source):
        import torch

        from ..source import load_source

        self.model, _ = load_source(source, torch.device("cpu"), torch.float32)

    def embed(self, tokenizer: EmbeddingTokenizer, texts: list[str], instruction: str, max_length: int = 512,
              batch_size: int = 16) -> np.ndarray:
        import torch

        out = []
        with torch.inference_mode():
            for start in range(0, len(texts), batch_size):
                batch = tokenizer(texts[start:start + batch_size], instruction, max_length)
                out.append(self.model(**batch.to_torch(self.model.device)).float().numpy())
        return np.concatenate(out).astype(np.float32)


def embed_heldout(runner, tokenizer: EmbeddingTokenizer, heldout: SlicedHeldOut, batch_size: int = 16) -> np.ndarray:
    """Every held-out row, in slice order. Rows are grouped by instruction and sorted by length so batches pad
    little; the order is restored."""
    rows = [(text, instr) for s in heldout.slices for text, instr in zip(s.texts, s.instructions)]
    results: dict[int, np.ndarray] = {}
    for instruction in dict.fromkeys(instr for _, instr in rows):
        index = sorted((i for i, (_, instr) in enumerate(rows) if instr == instruction), key=lambda i: len(rows[i][0]))
        emb = runner.embed(tokenizer, [rows[i][0] for i in index], instruction, heldout.max_length, batch_size)
        results.update(zip(index, emb))
    return np.stack([results[i] for i in range(len(rows))])


def neighbour_agreement(ref: np.ndarray, got: np.ndarray, rows: np.ndarray, k: int = 10) -> float:
    """Mean over `rows` of |top-k(reference) ∩ top-k(candidate)| / k, neighbours among every held-out row."""
    def top(emb: np.ndarray) -> np.ndarray:
        sims = emb[rows] @ emb.T
        sims[np.arange(len(rows)), rows] = -np.inf  # a row is not its own neighbour
        return np.argpartition(-sims, k, axis=1)[:, :k]
    ref_top, got_top = top(ref), top(got)
    return float(np.mean([len(set(a) & set(b)) / k for a, b in zip(ref_top, got_top)]))


def _figures(ref: np.ndarray, got: np.ndarray, rows: np.ndarray) -> dict:
    a, b = ref[rows], got[rows]
    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    return {"rows": int(len(rows)), "cosine_min": float(cos.min()), "cosine_p1": float(np.percentile(cos, 1)),
            "cosine_mean": float(cos.mean()), "max_abs": float(np.abs(a - b).max()),
            "top10_agreement": neighbour_agreement(ref, got, rows, 10)}


def gate_report(recipe: Recipe, ref: np.ndarray, got: np.ndarray, heldout: SlicedHeldOut,
                runtime: str) -> tuple[dict, list[str]]:
    """Figures overall and per slice; a recipe passes only if every slice meets its thresholds."""
    all_rows = np.arange(len(ref))
    report = {"heldout": heldout.provenance, "runtime": runtime, **_figures(ref, got, all_rows),
              "all_finite": bool(np.isfinite(got).all()),
              "thresholds": {"min_cosine": recipe.min_cosine, "min_top10": recipe.min_top10}, "slices": {}}
    problems = [] if report["all_finite"] else ["embeddings contain NaN or inf"]
    offset = 0
    for piece in heldout.slices:
        rows = np.arange(offset, offset + len(piece.texts))
        offset += len(piece.texts)
        figures = report["slices"][piece.name] = _figures(ref, got, rows)
        if not figures["cosine_min"] >= recipe.min_cosine:
            problems.append(f"slice {piece.name}: min cosine {figures['cosine_min']:.6f} < {recipe.min_cosine}")
        if recipe.min_top10 is not None and not figures["top10_agreement"] >= recipe.min_top10:
            problems.append(f"slice {piece.name}: top-10 agreement {figures['top10_agreement']:.3f} < "
                            f"{recipe.min_top10}")
    report["passed"] = not problems
    return report, problems


_REFERENCE_CACHE: dict[tuple, object] = {}


def _cached_reference(reference, what: tuple, compute):
    """`compute(runner)` for the fp32 reference, once per graph file and `what` (several recipes gate against it);
    a reference runner (not a path) is computed each time."""
    if not isinstance(reference, (str, Path)):
        return compute(reference)
    path = Path(reference)
    stat = path.stat()
    key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size, *what)
    if key not in _REFERENCE_CACHE:
        for stale in [k for k in _REFERENCE_CACHE if k[:3] != key[:3]]:
            del _REFERENCE_CACHE[stale]      # one reference graph at a time: a full-width one is large
        _REFERENCE_CACHE[key] = compute(GraphRunner(path, "onnxruntime"))
    return _REFERENCE_CACHE[key]


def _reference_embeddings(reference, tokenizer: EmbeddingTokenizer, heldout: SlicedHeldOut) -> np.ndarray:
    """The fp32 graph's held-out embeddings."""
    what = ("heldout", heldout.max_length, tuple(s["sha256"] for s in heldout.provenance["slices"].values()))
    return _cached_reference(reference, what, lambda runner: embed_heldout(runner, tokenizer, heldout))


def _graph_embed(runner, tokenizer: EmbeddingTokenizer, max_length: int):
    return lambda texts, instruction: runner.embed(tokenizer, texts, instruction, max_length, 16)


def _reference_ranking(reference, tokenizer: EmbeddingTokenizer, ranking: RetrievalSet, max_length: int):
    what = ("ranking", max_length, ranking.corpus_sha256(), ranking.queries_sha256())
    return _cached_reference(reference, what, lambda runner: slice_figures(
        ranking, _graph_embed(runner, tokenizer, max_length)))


def verify_recipe(recipe: Recipe, candidate: Path, reference, tokenizer: EmbeddingTokenizer,
                  heldout: SlicedHeldOut | None = None,
                  reference_embeddings: np.ndarray | None = None,
                  ranking: RetrievalSet | None = None) -> tuple[dict, list[str]]:
    """Gate `candidate` against `reference` (an fp32 graph path or a runner with embed()) on the sliced held-out
    set (default: sliced_heldout(512)) and on the ranking slice (default: the whole labelled set): per-row figures
    per slice, and nDCG@10 within the recipe's budget (`report["ranking"]`)."""
    heldout = heldout or sliced_heldout()
    ranking = ranking or ranking_slice()
    if reference is None:
        raise InputError("the gate needs its fp32 reference (a graph path or a runner) for the ranking slice, even "
                         "with the held-out reference embeddings given")
    if reference_embeddings is None:
        reference_embeddings = _reference_embeddings(reference, tokenizer, heldout)
    runner = GraphRunner(candidate, recipe.verify_runtime)
    got = embed_heldout(runner, tokenizer, heldout)
    report, problems = gate_report(recipe, reference_embeddings, got, heldout, recipe.verify_runtime)
    ranked = slice_figures(ranking, _graph_embed(runner, tokenizer, heldout.max_length))
    report["ranking"], ranking_problems = ranking_check(
        ranking, _reference_ranking(reference, tokenizer, ranking, heldout.max_length), ranked,
        recipe.max_ndcg10_drop)
    report["passed"] = report["passed"] and report["ranking"]["passed"]
    return report, problems + ranking_problems
