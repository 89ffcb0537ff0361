"""`eval --compare A B`: two evaluations of the same queries, query by query. Per-query deltas (B - A) of every
metric, a paired bootstrap confidence interval on the mean nDCG@10 delta (queries resampled with replacement, the
same resample for both sides), the queries whose top-10 changed most, and a verdict against a drop threshold.

A and B are `nvembed-trt eval` output folders (or their report.json); they must be of the same data set: the same
documents, queries and judgements (hashes in report.json), else the comparison is refused."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..retrieval.metrics import HEADLINE, MEASURES
from .run import PER_QUERY, REPORT

BOOTSTRAP_RESAMPLES = 10_000
CONFIDENCE = 0.95
WORST = 10


@dataclass(frozen=True)
class Side:
    folder: Path
    report: dict
    rows: dict[str, dict]            # query id -> metrics and top10


def load_side(path: Path | str) -> Side:
    folder = Path(path)
    folder = folder.parent if folder.name == REPORT else folder
    if not (folder / REPORT).is_file() or not (folder / PER_QUERY).is_file():
        raise InputError(f"{path}: not an eval output folder (no {REPORT} and {PER_QUERY}; run nvembed-trt eval "
                         f"--output {path})")
    rows = {}
    for lineno, line in enumerate((folder / PER_QUERY).read_text(encoding="utf-8").splitlines(), start=1):
        try:
            row = json.loads(line)
            rows[row["query_id"]] = row
        except (ValueError, KeyError, TypeError) as exc:
            raise InputError(f"{folder / PER_QUERY}:{lineno}: not a per-query record ({exc})") from exc
    return Side(folder, json.loads((folder / REPORT).read_text()), rows)


def _same_data(a: Side, b: Side) -> None:
    keys = ("name", "split", "corpus_sha256", "queries_sha256", "judgements")
    da, db = a.report["dataset"], b.report["dataset"]
    differ = [k for k in keys if da.get(k) != db.get(k)]
    qa, qb = (next((v for k, v in d.get("files", {}).items() if k.startswith("qrels")), None) for d in (da, db))
    if qa != qb:
        differ.append("qrels file sha256")
    if differ or set(a.rows) != set(b.rows):
        raise InputError(f"{a.folder} and {b.folder} evaluate different data ({', '.join(differ) or 'query sets'} "
                         f"differ): a per-query comparison needs the same documents, queries and judgements")


def paired_bootstrap(deltas: np.ndarray, resamples: int = BOOTSTRAP_RESAMPLES, confidence: float = CONFIDENCE,
                     seed: int = 0, chunk: int = 500) -> tuple[float, float]:
    """Percentile interval of the mean of `deltas` (per-query B - A) over resampled query sets."""
    rng = np.random.default_rng(seed)
    means = np.concatenate([deltas[rng.integers(0, len(deltas), (min(chunk, resamples - start), len(deltas)))]
                            .mean(axis=1) for start in range(0, resamples, chunk)])
    alpha = (1 - confidence) / 2
    low, high = np.quantile(means, [alpha, 1 - alpha])
    return float(low), float(high)


def compare(a_path: Path | str, b_path: Path | str, max_ndcg_drop: float | None = None,
            worst: int = WORST) -> dict:
    """The comparison record; `passed` is False when the mean nDCG@10 drops by more than `max_ndcg_drop`."""
    a, b = load_side(a_path), load_side(b_path)
    _same_data(a, b)
    queries = sorted(a.rows)
    deltas = {m: np.asarray([b.rows[q][m] - a.rows[q][m] for q in queries]) for m in MEASURES}
    overlap = np.asarray([len(set(a.rows[q]["top10"]) & set(b.rows[q]["top10"])) / 10 for q in queries])
    low, high = paired_bootstrap(deltas[HEADLINE])
    order = sorted(range(len(queries)), key=lambda i: (overlap[i], -abs(deltas[HEADLINE][i]), queries[i]))
    changed = [{"query_id": queries[i], "top10_overlap": float(overlap[i]),
                f"{HEADLINE}_a": a.rows[queries[i]][HEADLINE], f"{HEADLINE}_b": b.rows[queries[i]][HEADLINE],
                "delta": float(deltas[HEADLINE][i])}
               for i in order if overlap[i] < 1 or deltas[HEADLINE][i] != 0][:worst]
    mean_a = {m: float(np.mean([a.rows[q][m] for q in queries])) for m in MEASURES}
    mean_b = {m: float(np.mean([b.rows[q][m] for q in queries])) for m in MEASURES}
    drop = mean_a[HEADLINE] - mean_b[HEADLINE]
    record = {"a": {"folder": str(a.folder), "embedder": side_label(a.report), "metrics": mean_a},
              "b": {"folder": str(b.folder), "embedder": side_label(b.report), "metrics": mean_b},
              "dataset": {k: a.report["dataset"][k] for k in ("name", "split", "queries", "documents")},
              "mean_delta": {m: float(deltas[m].mean()) for m in MEASURES},
              "ndcg10_delta_ci": {"confidence": CONFIDENCE, "resamples": BOOTSTRAP_RESAMPLES, "low": low,
                                  "high": high},
              "queries_better": int((deltas[HEADLINE] > 0).sum()), "queries_worse": int((deltas[HEADLINE] < 0).sum()),
              "mean_top10_overlap": float(overlap.mean()), "top10_changed": int((overlap < 1).sum()),
              "most_changed": changed, "max_ndcg_drop": max_ndcg_drop, "ndcg10_drop": float(drop),
              "per_query": {q: {m: float(deltas[m][i]) for m in MEASURES} | {"top10_overlap": float(overlap[i])}
                            for i, q in enumerate(queries)}}
    record["passed"] = max_ndcg_drop is None or drop <= max_ndcg_drop
    return record


def side_label(report: dict) -> str:
    """The embedder's label, and the type it was scored in when not float ("torch:tiny as binary")."""
    kind = (report.get("scoring") or {}).get("type", "float")
    return report["embedder"]["label"] + ("" if kind == "float" else f" as {kind}")


def compare_markdown(record: dict) -> str:
    a, b, ci = record["a"], record["b"], record["ndcg10_delta_ci"]
    lines = [f"# {record['dataset']['name']} ({record['dataset']['split']}): {b['embedder']} vs {a['embedder']}", "",
             "| metric | A | B | B - A |", "|---|---|---|---|"]
    lines += [f"| {m} | {a['metrics'][m]:.5f} | {b['metrics'][m]:.5f} | {record['mean_delta'][m]:+.5f} |"
              for m in MEASURES]
    lines += ["", f"nDCG@10 delta {record['mean_delta'][HEADLINE]:+.5f}, {ci['confidence']:.0%} paired bootstrap CI "
                  f"[{ci['low']:+.5f}, {ci['high']:+.5f}] over {record['dataset']['queries']:,} queries "
                  f"({ci['resamples']:,} resamples); {record['queries_worse']} queries worse, "
                  f"{record['queries_better']} better; top-10 changed for {record['top10_changed']} "
                  f"(mean overlap {record['mean_top10_overlap']:.3f})", "",
              "Queries whose top-10 changed most:", "", "| query | top-10 overlap | nDCG@10 A | nDCG@10 B | delta |",
              "|---|---|---|---|---|"]
    lines += [f"| {c['query_id']} | {c['top10_overlap']:.1f} | {c[HEADLINE + '_a']:.4f} | {c[HEADLINE + '_b']:.4f} | "
              f"{c['delta']:+.4f} |" for c in record["most_changed"]]
    if record["max_ndcg_drop"] is not None:
        verdict = "PASS" if record["passed"] else "FAIL"
        lines += ["", f"{verdict}: nDCG@10 drop {record['ndcg10_drop']:+.5f} against --max-ndcg-drop "
                      f"{record['max_ndcg_drop']}"]
    return "\n".join(lines) + "\n"
