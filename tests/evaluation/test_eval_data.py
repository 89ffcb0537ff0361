"""The parts of `nvembed-trt eval` that need no model: the strict BEIR reader (every bad input a clear error with file
and line, nothing written), the instruction table, exact blocked search, the metrics, the paired bootstrap, the
labelled set's build, and --compare's refusal of different data."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from nvembed_trt.cli.main import main
from nvembed_trt.errors import InputError
from nvembed_trt.retrieval.beir import read_beir
from nvembed_trt.evaluation.compare import compare, paired_bootstrap
from nvembed_trt.evaluation.instructions import TASK_INSTRUCTIONS, query_instruction
from nvembed_trt.retrieval.metrics import per_query_metrics
from nvembed_trt.retrieval.search import exact_search

CORPUS = [{"_id": "d1", "title": "Cats", "text": "Cats purr."}, {"_id": "d2", "text": "Dogs bark."},
          {"_id": "d3", "title": None, "text": "Fish swim."}]
QUERIES = [{"_id": "q1", "text": "what purrs"}, {"_id": "q2", "text": "what barks"}]
QRELS = "query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\t2\n"


def beir(folder, corpus=None, queries=None, qrels=QRELS, raw_corpus=None):
    (folder / "qrels").mkdir(parents=True)
    (folder / "corpus.jsonl").write_text(raw_corpus if raw_corpus is not None else
                                         "".join(json.dumps(r) + "\n" for r in (corpus or CORPUS)))
    (folder / "queries.jsonl").write_text("".join(json.dumps(r) + "\n" for r in (queries or QUERIES)))
    (folder / "qrels" / "test.tsv").write_text(qrels)
    return folder


def test_reader_builds_documents_as_beir_does(tmp_path):
    data = read_beir(beir(tmp_path / "scifact"))
    assert data.doc_ids == ["d1", "d2", "d3"] and data.doc_texts == ["Cats Cats purr.", "Dogs bark.", "Fish swim."]
    assert data.query_ids == ["q1", "q2"] and data.qrels == {"q1": {"d1": 1}, "q2": {"d2": 2}}
    assert len(data.corpus_sha256()) == 64 and set(data.provenance["files"]) == {
        "corpus.jsonl", "queries.jsonl", "qrels/test.tsv"}


@pytest.mark.parametrize("case, message", [
    ({"qrels": QRELS + "q1\td9\t1\n"}, r"qrels/test.tsv:4: document 'd9' is not in corpus.jsonl"),
    ({"qrels": QRELS + "q7\td1\t1\n"}, r"qrels/test.tsv:4: query 'q7' is not in queries.jsonl"),
    ({"qrels": QRELS + "q1\td1\n"}, r"qrels/test.tsv:4: expected 3 tab-separated fields"),
    ({"qrels": QRELS + "q1\td3\tvery\n"}, r"qrels/test.tsv:4: score must be an integer, got 'very'"),
    ({"qrels": QRELS + "q1\td1\t0\n"}, r"qrels/test.tsv:4: judgement \('q1', 'd1'\) given twice"),
    ({"corpus": CORPUS + [{"_id": "d2", "text": "again"}]}, r"corpus.jsonl:4: duplicate id 'd2' \(first on line 2\)"),
    ({"queries": QUERIES + [{"_id": "q1", "text": "again"}]}, r"queries.jsonl:3: duplicate id 'q1'"),
    ({"raw_corpus": ""}, r"corpus.jsonl: holds no records"),
    ({"raw_corpus": '{"_id": "d1", "text": "ok"}\n{"_id": "d2", "text": \n'}, r"corpus.jsonl:2: not valid JSON"),
    ({"raw_corpus": '{"_id": "d1", "text": 7}\n'}, r"corpus.jsonl:1: \"text\" must be a string, got 7"),
    ({"raw_corpus": '{"_id": "d1", "title": "", "text": " "}\n'}, r"corpus.jsonl:1: document 'd1' has neither"),
    ({"raw_corpus": '["d1", "text"]\n'}, r"corpus.jsonl:1: each line must be a JSON object"),
])
def test_reader_refuses_bad_input_naming_file_and_line(tmp_path, case, message):
    with pytest.raises(InputError, match=message):
        read_beir(beir(tmp_path / "set", **case))


def test_cli_bad_data_exits_2_and_writes_nothing(tmp_path, capsys):
    data = beir(tmp_path / "set", qrels=QRELS + "q1\tmissing\t1\n")
    output = tmp_path / "out"
    assert main(["eval", "--data", str(data), "--runtime", "torch", "--output", str(output), "--no-cache"]) == 2
    assert "qrels/test.tsv:4: document 'missing' is not in corpus.jsonl" in capsys.readouterr().err
    assert not output.exists() and not list(tmp_path.glob(".out*"))
    assert main(["eval", "--data", str(data), "--split", "dev", "--runtime", "torch", "--output", str(output)]) == 2
    assert "qrels/dev.tsv: not found; splits here: test" in capsys.readouterr().err


def test_instruction_table():
    assert len(TASK_INSTRUCTIONS) == 15
    prefix, source = query_instruction("scifact")
    assert prefix == ("Instruct: Given a scientific claim, retrieve documents that support or refute the claim\n"
                      "Query: ") and source.startswith("task SciFact")
    assert query_instruction("x", task="nf-corpus")[0].startswith("Instruct: Given a question, retrieve relevant")
    assert query_instruction("cqadupstack-android")[1].startswith("task CQADupstackRetrieval")
    assert query_instruction("mine", instruction="Find the bug")[0] == "Instruct: Find the bug\nQuery: "
    assert query_instruction("mine", instruction="Instruct: X\nQuery: ")[0] == "Instruct: X\nQuery: "
    assert query_instruction("mine", instruction="") == ("", "--instruction '' (no instruction)")
    assert query_instruction("mine")[1].startswith("the general retrieval instruction")
    with pytest.raises(InputError, match="unknown task 'SciFacts'"):
        query_instruction("x", task="SciFacts")


def test_exact_search_in_blocks_equals_a_full_sort():
    rng = np.random.default_rng(1)
    queries, docs = rng.standard_normal((11, 8)).astype(np.float32), rng.standard_normal((50, 8)).astype(np.float32)
    docs[7] = docs[3]                                           # a tie: corpus order decides
    ranking = exact_search(queries, docs, 10, exclude=[None] * 10 + [3], query_block=4, doc_block=7)
    scores = queries @ docs.T
    for q in range(10):
        want = sorted(range(50), key=lambda d: (-scores[q, d], d))[:10]
        assert ranking.indices[q].tolist() == want
        assert np.allclose(ranking.scores[q], scores[q, want])
    assert 3 not in ranking.indices[10].tolist() and ranking.indices.shape == (11, 10)
    small = exact_search(queries, docs, 3, query_block=4, doc_block=7)     # each block cut to its own best 3 first
    assert small.indices.tolist() == [sorted(range(50), key=lambda d: (-scores[q, d], d))[:3] for q in range(11)]


def test_metrics_follow_trec_eval():
    qrels = {"q1": {"a": 1}, "q2": {"b": 2, "c": 1}}
    got = per_query_metrics(qrels, ["q1", "q2"], [["x", "a", "y"], ["c", "b"]])
    assert got["q1"]["ndcg@10"] == pytest.approx(1 / math.log2(3)) and got["q1"]["mrr@10"] == 0.5
    # trec_eval's nDCG takes the grade itself as the gain: (1/log2 2 + 2/log2 3) / (2/log2 2 + 1/log2 3)
    assert got["q2"]["ndcg@10"] == pytest.approx((1 + 2 / math.log2(3)) / (2 + 1 / math.log2(3)), rel=1e-6)
    assert got["q2"]["recall@100"] == 1.0 and got["q2"]["map"] == 1.0


def test_paired_bootstrap_interval():
    deltas = np.r_[np.full(90, -0.01), np.full(10, 0.02)]
    low, high = paired_bootstrap(deltas)
    assert low < deltas.mean() < high < 0 and paired_bootstrap(deltas) == (low, high)   # seeded
    assert paired_bootstrap(np.zeros(30)) == (0.0, 0.0)


def test_labelled_set_is_built_disjoint_from_calibration(tmp_path, capsys):
    from nvembed_trt.calibration.corpus import python_reference_corpus
    from nvembed_trt.retrieval.stdlib_set import stdlib_retrieval_set

    assert main(["eval-data", "--output", str(tmp_path / "set")]) == 0
    written = json.loads(capsys.readouterr().out)
    data = read_beir(tmp_path / "set")
    assert (written["documents"], written["queries"]) == (1000, 200) == (len(data.doc_ids), len(data.query_ids))
    built = stdlib_retrieval_set()
    assert data.corpus_sha256() == built.corpus_sha256() and data.qrels == built.qrels
    calibration = {s.text for s in python_reference_corpus().samples}
    assert not calibration & (set(data.doc_texts) | set(data.query_texts))
    assert all(len(j) == 1 and q == f"q:{next(iter(j))}" for q, j in data.qrels.items())
    sidecar = json.loads((tmp_path / "set" / "dataset.json").read_text())
    assert sidecar["provenance"]["sha256"]["corpus"] == built.corpus_sha256()
    assert main(["eval-data", "--output", str(tmp_path / "set")]) == 2          # exists: refused, not merged


def test_compare_refuses_different_data(tmp_path):
    for name, corpus_hash in (("a", "1" * 64), ("b", "2" * 64)):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "report.json").write_text(json.dumps({
            "dataset": {"name": "s", "split": "test", "corpus_sha256": corpus_hash, "queries_sha256": "q",
                        "judgements": 1, "files": {}}, "embedder": {"label": name}}))
        (folder / "per_query.jsonl").write_text(json.dumps({"query_id": "q1", "ndcg@10": 1, "recall@100": 1,
                                                            "mrr@10": 1, "map": 1, "top10": ["d"]}) + "\n")
    with pytest.raises(InputError, match="evaluate different data \\(corpus_sha256 differ\\)"):
        compare(tmp_path / "a", tmp_path / "b")
    with pytest.raises(InputError, match="not an eval output folder"):
        compare(tmp_path / "a", tmp_path / "missing")
