"""`nvembed-trt eval --embedding-type`: retrieval scored in the front door's compact types. Constructed vectors (no
model) for the search itself: binary rescoring recovers a document Hamming distance buries, int8 codes keep an
unambiguous graded ranking exactly; the CLI refuses bad values naming the flag before embedding anything; one run
of the tiny reference on a cut of the labelled set writes the report saying the type and how it was scored."""

from __future__ import annotations

import json

import numpy as np
import pytest

from nvembed_trt.cli.main import main
from nvembed_trt.evaluation.compact import CompactSettings, hamming, score_compact
from nvembed_trt.retrieval.beir import RetrievalSet
from nvembed_trt.serving.compact import compact

DIM = 64


def _dataset(n_docs: int, qrels: dict[str, dict[str, int]], n_queries: int) -> RetrievalSet:
    doc_ids = [f"d{i}" for i in range(n_docs)]
    query_ids = [f"q{i}" for i in range(n_queries)]
    return RetrievalSet("constructed", "test", doc_ids, doc_ids, query_ids, query_ids, qrels)


def _unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def _buried_case():
    """Per query: 4 heavy dimensions (1.0) and 60 light ones (0.05). The relevant document agrees in sign on the
    heavy ones and disagrees on 16 light ones (Hamming 16, float . +-1 = 4 + 2.2); 20 distractors agree on every
    light one and disagree on 2 heavy ones (Hamming 2, float . +-1 = 3.0). By Hamming it ranks 21st; rescored, 1st.
    The second query is the first negated and rolled (its documents too), so the queries do not see each other's."""
    queries, docs, qrels = [], [], {}
    for q in range(2):
        roll, sign = 17 * q, (-1) ** q
        query = np.full(DIM, 0.05)
        query[:4] = 1.0
        relevant = np.ones(DIM)
        relevant[4:20] = -1
        queries.append(sign * np.roll(query, roll))
        docs.append(sign * np.roll(relevant, roll))
        qrels[f"q{q}"] = {f"d{len(docs) - 1}": 1}
        for k in range(20):
            distractor = np.ones(DIM)
            distractor[[k % 4, (k + 1) % 4]] = -1
            docs.append(sign * np.roll(distractor, roll))
    return _dataset(len(docs), qrels, 2), _unit(np.stack(queries)), _unit(np.stack(docs))


def test_binary_rescoring_recovers_what_hamming_buries():
    dataset, queries, docs = _buried_case()
    assert hamming(compact(queries[:1], "ubinary"), compact(docs[:2], "ubinary")).tolist() == [[16, 2]]
    scored, how = score_compact(dataset, queries, docs, CompactSettings(embedding_type="binary"))
    assert how["rescored_candidates"] == 40 and how["bytes_per_vector"] == DIM // 8
    assert how["without_rescoring"]["ndcg@10"] == 0.0                    # rank 21 by Hamming for both queries
    assert scored.means["ndcg@10"] == 1.0 and scored.ranked[0][0] == "d0" and scored.ranked[1][0] == "d21"
    assert how["without_rescoring"]["recall@100"] == scored.means["recall@100"] == 1.0   # the tail kept
    narrow, how = score_compact(dataset, queries, docs, CompactSettings(embedding_type="binary",
                                                                        rescore_multiplier=1))
    assert how["rescored_candidates"] == 10 and narrow.means["ndcg@10"] == 0.0      # 21st is not among 10


def test_int8_keeps_an_unambiguous_graded_ranking():
    """Documents orthonormal; each query mixes three of them (weights 0.9, 0.6, 0.3, graded 1, 3, 2: nDCG@10 < 1),
    the others at cosine 0: int8 codes must give the same top 3, hence the same nDCG@10, as float."""
    rng = np.random.default_rng(7)
    docs = np.linalg.qr(rng.standard_normal((DIM, DIM)))[0][:60].astype(np.float32)   # 60 orthonormal rows
    queries, qrels = [], {}
    for q in range(5):
        query = docs[3 * q] * 0.9 + docs[3 * q + 1] * 0.6 + docs[3 * q + 2] * 0.3
        queries.append(query)
        qrels[f"q{q}"] = {f"d{3 * q}": 1, f"d{3 * q + 1}": 3, f"d{3 * q + 2}": 2}
    dataset, queries = _dataset(len(docs), qrels, 5), _unit(np.stack(queries))
    floats, how_float = score_compact(dataset, queries, docs, CompactSettings())
    codes, how = score_compact(dataset, queries, docs, CompactSettings(embedding_type="int8"), "key")
    assert 0.6 < floats.means["ndcg@10"] < 0.9
    assert codes.means["ndcg@10"] == pytest.approx(floats.means["ndcg@10"], abs=1e-12)
    assert [r[:3] for r in codes.ranked] == [r[:3] for r in floats.ranked]
    assert how["type"] == "int8" and how["ranges"]["texts"] == 60 and "corpus vectors" in how["ranges"]["method"]
    assert how_float["type"] == "float"


def test_float16_scores_the_halves():
    """Two documents 1e-5 apart in cosine with the query (below half precision near 0.5: spacing 2^-11): float puts
    the relevant one first, float16 rounds both to 0.5 and the tie goes to corpus order (the distractor, d0)."""
    docs = np.zeros((2, DIM), np.float32)
    for row, c in enumerate((0.5, 0.50001)):                       # d0: distractor, d1: relevant
        docs[row, 0], docs[row, 1 + row] = c, np.sqrt(1 - c * c)
    queries = np.eye(1, DIM, dtype=np.float32)
    dataset = _dataset(2, {"q0": {"d1": 1}}, 1)
    floats, _ = score_compact(dataset, queries, docs, CompactSettings())
    halves, how = score_compact(dataset, queries, docs, CompactSettings(embedding_type="float16"))
    assert floats.ranked[0] == ["d1", "d0"] and floats.means["ndcg@10"] == 1.0
    assert halves.ranked[0] == ["d0", "d1"] and halves.means["ndcg@10"] == pytest.approx(1 / np.log2(3))
    assert how["type"] == "float16" and how["bytes_per_vector"] == 2 * DIM


@pytest.mark.parametrize("flags, exit_code, message", [
    (["--embedding-type", "int4"], None, "--embedding-type: invalid choice: 'int4'"),
    (["--embedding-type", "binary", "--rescore-multiplier", "0"], 2,
     "--rescore-multiplier: Input should be greater than or equal to 1"),
    (["--embedding-type", "float16", "--rescore-multiplier", "4"], 2,
     "--rescore-multiplier: Value error, only with --embedding-type binary (it rescores Hamming candidates), not "
     "float16"),
    (["--rescore-multiplier", "4"], 2, "--rescore-multiplier: Value error, only with --embedding-type binary"),
])
def test_cli_refuses_bad_values_naming_the_flag(tmp_path, capsys, flags, exit_code, message):
    argv = ["eval", "--data", str(tmp_path / "absent"), "--runtime", "torch", "--output", str(tmp_path / "out"),
            "--no-cache", *flags]
    if exit_code is None:
        with pytest.raises(SystemExit):
            main(argv)
    else:
        assert main(argv) == exit_code
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_eval_binary_on_the_labelled_set_states_the_type(tmp_path, capsys):
    """Tiny reference, 20 judged queries (100 documents), max length 32: the float run fills the cache, the binary
    run reuses it (vectors as the embedder gives them) and reports both nDCG@10s and how it scored."""
    assert main(["eval-data", "--output", str(tmp_path / "set"), "--queries", "20"]) == 0
    common = ["eval", "--data", str(tmp_path / "set"), "--runtime", "torch", "--max-length", "32",
              "--cache-dir", str(tmp_path / "cache")]
    assert main([*common, "--output", str(tmp_path / "float")]) == 0
    assert main([*common, "--output", str(tmp_path / "binary"), "--embedding-type", "binary"]) == 0
    out = capsys.readouterr().out
    assert "scored as binary" in out and "binary without rescoring" in out
    report = json.loads((tmp_path / "binary" / "report.json").read_text())
    float_report = json.loads((tmp_path / "float" / "report.json").read_text())
    assert report["scoring"]["type"] == "binary" and report["scoring"]["rescored_candidates"] == 40
    assert report["cache"]["reused"] == 100 and report["timing"]["documents_embedded"] == 0
    assert float_report["scoring"]["type"] == "float"
    for metrics in (report["metrics"], report["scoring"]["without_rescoring"]):
        assert 0.0 < metrics["ndcg@10"] <= 1.0
    assert len((tmp_path / "binary" / "per_query.jsonl").read_text().splitlines()) == 20
    assert main(["eval", "--compare", str(tmp_path / "float"), str(tmp_path / "binary")]) == 0
    assert "torch:tiny as binary vs torch:tiny" in capsys.readouterr().out     # the comparison names the types
