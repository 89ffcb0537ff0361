"""validate: every available runtime and recipe against the PyTorch reference (fp32 by default) on a validation set
of real text (standard-library docstrings: summary-line queries and their passages; never the calibration corpus),
and on the ranking slice (the labelled stdlib set: nDCG@10 within the recipe's max_ndcg10_drop of the reference).
The report states which reference was used (device, weight dtype, autocast) and how it compares with upstream."""

from __future__ import annotations

import datetime as dt
import platform
from pathlib import Path

import numpy as np

from ..calibration.corpus import stdlib_shortfall
from ..pooling import cosine_rows
from ..encoders.local import TorchEncoder
from ..recipes import get_recipe
from ..retrieval.ranking import ranking_check, ranking_slice, slice_figures
from ..precision.verify import heldout_set, top_k_agreement
from ..provenance import sidecar, write_json
from ..tokenizer import INPUT_TYPES

BATCHED_VS_SINGLE_MIN_COSINE = 0.9999
RESULTS = Path("benchmarks") / "results"


def ranking_row(runtime, ranking, reference) -> dict:
    """The ranking slice for one runtime: nDCG@10 against the reference's, within the recipe's budget."""
    recipe = get_recipe(runtime.recipe)
    got = slice_figures(ranking, lambda texts, instruction: runtime.embed(texts, instruction))
    report, problems = ranking_check(ranking, reference, got, recipe.max_ndcg10_drop)
    return {"ndcg10": report["ndcg10"], "ndcg10_reference": report["ndcg10_reference"],
            "ndcg10_drop": report["ndcg10_drop"], "ndcg10_budget": recipe.max_ndcg10_drop,
            "ranking_top10_overlap": report["top10_overlap"], "worst_queries": report["worst_queries"],
            "ranking_problems": problems}


def evaluate(runtime, reference: tuple[np.ndarray, np.ndarray], queries: list[str], passages: list[str]) -> dict:
    query = INPUT_TYPES["query"]
    got_q, got_p = runtime.embed(queries, query), runtime.embed(passages, "")
    ref = np.concatenate(reference)
    got = np.concatenate([got_q, got_p])
    cos = cosine_rows(got, ref)
    sample = queries[:4] + passages[:4]
    batched = np.concatenate([runtime.embed(queries[:4], query, 8), runtime.embed(passages[:4], "", 8)])
    single = np.stack([runtime.embed([t], query if i < 4 else "", 1)[0] for i, t in enumerate(sample)])
    recipe = get_recipe(runtime.recipe)
    row = {"runtime": runtime.name, "recipe": runtime.recipe, "rows": int(len(cos)),
           "cosine_p1": float(np.percentile(cos, 1)), "cosine_min": float(cos.min()),
           "cosine_mean": float(cos.mean()), "max_abs": float(np.abs(got - ref).max()),
           "top10_agreement": top_k_agreement(reference[0], reference[1], got_q, got_p, 10),
           "batched_vs_single_min_cosine": float(cosine_rows(batched, single).min()),
           "thresholds": {"min_cosine": recipe.min_cosine, "min_top10": recipe.min_top10,
                          "batched_vs_single": BATCHED_VS_SINGLE_MIN_COSINE}}
    failures = recipe.gate(row)       # a NaN or inf row makes its cosine NaN, which fails
    if row["batched_vs_single_min_cosine"] < BATCHED_VS_SINGLE_MIN_COSINE:
        failures.append(f"batched vs single min cosine {row['batched_vs_single_min_cosine']:.6f} < "
                        f"{BATCHED_VS_SINGLE_MIN_COSINE}")
    row["failures"], row["passed"] = failures, not failures
    return row


def describe_reference(reference_runtime) -> dict:
    """The reference's own statement (Embedder.describe) or, for another runtime, its name and recipe."""
    encoder = getattr(reference_runtime, "encoder", None)
    if isinstance(encoder, TorchEncoder):
        return encoder.embedder.describe()
    return {"runtime": reference_runtime.name, "recipe": reference_runtime.recipe, "matches_upstream": None,
            "vs_upstream": "not the PyTorch reference: no statement about upstream"}


def reference_line(ref: dict) -> str:
    if "weights_dtype" not in ref:
        return f"Reference: {ref['runtime']} ({ref['recipe']}): {ref['vs_upstream']}."
    autocast = f"under torch.autocast({ref['autocast']})" if ref["autocast"] else "no autocast"
    device = ref["device"] + (f" ({ref['device_name']})" if ref["device"] != "cpu" else "")
    return (f"Reference: torch on {device}, {ref['weights_dtype']} weights, {autocast}, {ref['attention']} "
            f"attention: {ref['vs_upstream']}.")


def _fp32_reference(ref: dict) -> bool:
    return ref.get("weights_dtype") == "float32" and not ref.get("autocast")


def run_validation(model: str, reference_runtime, runtimes: list, missing: list[str], pairs: int = 160,
                   results_dir: Path | None = None, ranking_queries: int = 200) -> tuple[dict, Path]:
    ref = describe_reference(reference_runtime)
    heldout = heldout_set(pairs)
    reference = (reference_runtime.embed(heldout.queries, INPUT_TYPES["query"]),
                 reference_runtime.embed(heldout.passages, ""))
    ranking = ranking_slice(ranking_queries)
    reference_ranking = slice_figures(ranking, lambda texts, instruction: reference_runtime.embed(texts, instruction))
    rows = []
    for runtime in runtimes:
        row = evaluate(runtime, reference, heldout.queries, heldout.passages) | ranking_row(runtime, ranking,
                                                                                          reference_ranking)
        row["failures"] += row.pop("ranking_problems")
        row["passed"] = not row["failures"]
        rows.append(row)
    report = sidecar("validation", model=model, host=platform.node(), dataset=heldout.provenance, reference=ref,
                     ranking_dataset=ranking.describe(), rows=rows, not_available=missing,
                     passed=all(r["passed"] for r in rows))
    out_dir = results_dir or RESULTS / platform.node()
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = out_dir / f"validate-{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}"
    write_json(stem.with_suffix(".json"), report)
    stem.with_suffix(".md").write_text(validation_markdown(report))
    return report, stem.with_suffix(".json")


def _ranking_cell(row: dict, ranked: bool) -> str:
    """The ranking slice's cell (reports made before the slice existed have no column)."""
    if not ranked:
        return ""
    return f"{row['ndcg10']:.4f} ({row['ndcg10_drop']:+.4f}, {row['ndcg10_budget']}) | "


def validation_markdown(report: dict) -> str:
    ranked, dataset = "ranking_dataset" in report, report["dataset"]
    short = stdlib_shortfall(dataset["asked"], dataset["pairs"], dataset["python"]) if "asked" in dataset else ""
    lines = [f"Validation of `{report['model']}` on {report['host']} ({report['rows'][0]['rows'] if report['rows'] else 0}"
             f" rows of {dataset['source']}{'; ' + short if short else ''}): "
             f"{'PASS' if report['passed'] else 'FAIL'}", "",
             "| runtime | recipe | min cosine | p1 cosine | mean cosine | max abs | top-10 | batched vs single | "
             + ("nDCG@10 (drop, budget) | " if ranked else "") + "result |", "|---" * (10 if ranked else 9) + "|"]
    ref = report.get("reference")
    if ref is not None:
        lines[1:1] = ["", reference_line(ref)] + ([] if _fp32_reference(ref) else [
            "Note: the recipes' thresholds were set against an fp32 reference without autocast; against this one "
            "an exact runtime can fail them by the reference's own rounding."])
    for r in report["rows"]:
        lines.append(f"| {r['runtime']} | {r['recipe']} | {r['cosine_min']:.6f} | {r['cosine_p1']:.6f} | "
                     f"{r['cosine_mean']:.6f} | {r['max_abs']:.2e} | {r['top10_agreement']:.3f} | "
                     f"{r['batched_vs_single_min_cosine']:.6f} | {_ranking_cell(r, ranked)}"
                     f"{'pass' if r['passed'] else 'FAIL: ' + '; '.join(r['failures'])} |")
    lines += [f"- not available here: {m}" for m in report["not_available"]]
    return "\n".join(lines) + "\n"
