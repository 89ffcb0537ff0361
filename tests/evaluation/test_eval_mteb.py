"""The mteb adapter end to end on a local task (a BEIR folder built from the project's labelled set; nothing from the
hub): mteb drives our embedder with NV-Embed-v2's instruction for the task and computes the same nDCG@10, MRR@10 and
MAP as `nvembed-trt eval` on the same vectors."""

from __future__ import annotations

import pytest

mteb = pytest.importorskip("mteb", reason="mteb is not installed (the `mteb` extra: pip install 'nvembed-trt[mteb]')")

from nvembed_trt.retrieval.beir import RetrievalSet, read_beir, write_beir  # noqa: E402
from nvembed_trt.evaluation.embedders import EmbedderSpec, open_embedder  # noqa: E402
from nvembed_trt.evaluation.instructions import TASK_INSTRUCTIONS  # noqa: E402
from nvembed_trt.evaluation.mteb_adapter import beir_task, run_mteb  # noqa: E402
from nvembed_trt.evaluation.run import evaluate_embedder  # noqa: E402
from nvembed_trt.retrieval.stdlib_set import stdlib_retrieval_set  # noqa: E402
from nvembed_trt.tokenizer import instruction_for_task  # noqa: E402


def test_mteb_runs_a_local_task_with_our_instruction_and_agrees_with_eval(tmp_path, tiny):
    small = stdlib_retrieval_set(40)
    # named as SciFact: the adapter must send SciFact's published instruction with every query
    data = write_beir(RetrievalSet("SciFact", "test", small.doc_ids, small.doc_texts, small.query_ids,
                                   small.query_texts, small.qrels), tmp_path / "scifact-local")
    embedder = open_embedder(EmbedderSpec(runtime="torch", max_length=128))
    task = beir_task(data, name="SciFact")
    scores = run_mteb(embedder, [task], tmp_path / "mteb-results")
    instruction = instruction_for_task(TASK_INSTRUCTIONS["SciFact"])
    ours, _ = evaluate_embedder(read_beir(data), embedder, tiny.tokenizer, instruction, None, progress=False)
    got = scores["SciFact"]
    assert got["ndcg_at_10"] == pytest.approx(ours.means["ndcg@10"], abs=1e-5)     # mteb rounds to 5 decimals
    assert got["mrr_at_10"] == pytest.approx(ours.means["mrr@10"], abs=1e-5)
    assert got["map_at_1000"] == pytest.approx(ours.means["map"], abs=1e-5)
    assert 0 < got["ndcg_at_10"] < 1 and list((tmp_path / "mteb-results").rglob("SciFact.json"))
    # and the instruction shows in the figures: the same queries without it rank differently
    plain, _ = evaluate_embedder(read_beir(data), embedder, tiny.tokenizer, "", None, progress=False)
    assert plain.top() != ours.top()
