"""The gate before a recipe's graph is called engine-ready: embed the sliced held-out set (heldout.py: 1,120 rows
of queries, passages short and long, code, non-English and unicode text; never the calibration corpus) with the
candidate and with the fp32 reference, and compare per slice: per-row cosine (min, p1, mean), max abs error and
top-10 neighbour agreement. Then the ranking slice (retrieval/stdlib_set.py: 200 judged queries over 1,000
documents): the candidate's nDCG@10 may fall below the reference's by at most the recipe's max_ndcg10_drop. A
recipe passes only if every slice meets its thresholds; every failure is reported at once.

The candidate and the reference are embedded through the encoder seam (nvembed_trt.encoders): an OnnxEncoder on the
recipe's verify runtime, the reference an fp32 graph or the PyTorch model (`torch_reference`).

`heldout_set` / `top_k_agreement` (the small docstring retrieval set) remain for `nvembed-trt validate`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..calibration.corpus import stdlib_retrieval_set
from ..retrieval.beir import RetrievalSet
from ..retrieval.ranking import ranking_check, ranking_slice, slice_figures
from .heldout import SlicedHeldOut, sliced_heldout
from ..errors import InputError
from ..encoders.base import LocalEmbedder, TextEmbedder
from ..pooling import cosine_rows
from ..encoders.local import OnnxEncoder, TorchEncoder
from ..tokenizer import EmbeddingTokenizer
from ..recipes import Recipe


@dataclass(frozen=True)
class HeldOut:
    queries: list[str]
    passages: list[str]
    provenance: dict


def heldout_set(max_pairs: int = 160) -> HeldOut:
    queries, passages, provenance = stdlib_retrieval_set(max_pairs)
    return HeldOut(queries, passages, provenance)


def graph_embedder(path: Path, recipe: str, runtime: str, tokenizer: EmbeddingTokenizer,
                   max_length: int) -> LocalEmbedder:
    """A graph's TextEmbedder on `runtime` (onnxruntime, or onnx-reference for bf16), batches of 16 in order."""
    return LocalEmbedder(OnnxEncoder(path, recipe, runtime), tokenizer, max_length)


def top_k_agreement(ref_q: np.ndarray, ref_p: np.ndarray, got_q: np.ndarray, got_p: np.ndarray, k: int = 10) -> float:
    """Mean over queries of |top-k(reference) ∩ top-k(candidate)| / k."""
    ref_top = np.argsort(-(ref_q @ ref_p.T), axis=1)[:, :k]
    got_top = np.argsort(-(got_q @ got_p.T), axis=1)[:, :k]
    return float(np.mean([len(set(a) & set(b)) / k for a, b in zip(ref_top, got_top)]))


def torch_reference(source) -> TorchEncoder:
    """The fp32 PyTorch reference of a resolved model: the gate's reference where no fp32 graph exists."""
    return TorchEncoder.from_source(source)


def embed_heldout(embedder: TextEmbedder, heldout: SlicedHeldOut, batch_size: int = 16) -> np.ndarray:
    """Every held-out row, in slice order (the embedder at heldout.max_length). Rows are grouped by instruction and
    sorted by length so batches pad little; the order is restored."""
    rows = [(text, instr) for s in heldout.slices for text, instr in zip(s.texts, s.instructions)]
    results: dict[int, np.ndarray] = {}
    for instruction in dict.fromkeys(instr for _, instr in rows):
        index = sorted((i for i, (_, instr) in enumerate(rows) if instr == instruction), key=lambda i: len(rows[i][0]))
        emb = embedder.embed([rows[i][0] for i in index], instruction, batch_size)
        results.update(zip(index, emb))
    return np.stack([results[i] for i in range(len(rows))]).astype(np.float32)


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
    cos = cosine_rows(a, b)
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
        problems += recipe.gate(figures, f"slice {piece.name}: ")
    report["passed"] = not problems
    return report, problems


_REFERENCE_CACHE: dict[tuple, object] = {}


def _cached_reference(reference, tokenizer: EmbeddingTokenizer, max_length: int, what: tuple, compute):
    """`compute(embedder)` for the fp32 reference, once per graph file and `what` (several recipes gate against it);
    a reference Encoder (not a path) is computed each time."""
    if not isinstance(reference, (str, Path)):
        return compute(LocalEmbedder(reference, tokenizer, max_length))
    path = Path(reference)
    stat = path.stat()
    key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size, max_length, *what)
    if key not in _REFERENCE_CACHE:
        for stale in [k for k in _REFERENCE_CACHE if k[:3] != key[:3]]:
            del _REFERENCE_CACHE[stale]      # one reference graph at a time: a full-width one is large
        _REFERENCE_CACHE[key] = compute(graph_embedder(path, "fp32", "onnxruntime", tokenizer, max_length))
    return _REFERENCE_CACHE[key]


def _reference_embeddings(reference, tokenizer: EmbeddingTokenizer, heldout: SlicedHeldOut) -> np.ndarray:
    """The fp32 reference's held-out embeddings."""
    what = ("heldout", tuple(s["sha256"] for s in heldout.provenance["slices"].values()))
    return _cached_reference(reference, tokenizer, heldout.max_length, what,
                             lambda embedder: embed_heldout(embedder, heldout))


def _reference_ranking(reference, tokenizer: EmbeddingTokenizer, ranking: RetrievalSet, max_length: int):
    what = ("ranking", ranking.corpus_sha256(), ranking.queries_sha256())
    return _cached_reference(reference, tokenizer, max_length, what,
                             lambda embedder: slice_figures(ranking, embedder.embed))


def verify_recipe(recipe: Recipe, candidate: Path, reference, tokenizer: EmbeddingTokenizer,
                  heldout: SlicedHeldOut | None = None,
                  reference_embeddings: np.ndarray | None = None,
                  ranking: RetrievalSet | None = None) -> tuple[dict, list[str]]:
    """Gate `candidate` against `reference` (an fp32 graph path or an Encoder, e.g. torch_reference) on the sliced
    held-out set (default: sliced_heldout(512)) and on the ranking slice (default: the whole labelled set): per-row
    figures per slice, and nDCG@10 within the recipe's budget (`report["ranking"]`)."""
    heldout = heldout or sliced_heldout()
    ranking = ranking or ranking_slice()
    if reference is None:
        raise InputError("the gate needs its fp32 reference (a graph path or an Encoder) for the ranking slice, even "
                         "with the held-out reference embeddings given")
    if reference_embeddings is None:
        reference_embeddings = _reference_embeddings(reference, tokenizer, heldout)
    embedder = graph_embedder(candidate, recipe.name, recipe.verify_runtime, tokenizer, heldout.max_length)
    got = embed_heldout(embedder, heldout)
    report, problems = gate_report(recipe, reference_embeddings, got, heldout, recipe.verify_runtime)
    ranked = slice_figures(ranking, embedder.embed)
    report["ranking"], ranking_problems = ranking_check(
        ranking, _reference_ranking(reference, tokenizer, ranking, heldout.max_length), ranked,
        recipe.max_ndcg10_drop)
    report["passed"] = report["passed"] and report["ranking"]["passed"]
    return report, problems + ranking_problems
