"""Calibration corpus and tensors: real text, tokenised exactly as serving, bucketed, with provenance."""

from __future__ import annotations

import json

import numpy as np
import pytest

from nvembed_trt.calibration import (BUCKETS, calibration_from_corpus, load_calibration, python_reference_corpus,
                                     read_user_corpus, stdlib_retrieval_set)
from nvembed_trt.calibration.corpus import Corpus, Sample
from nvembed_trt.cli.main import main
from nvembed_trt.errors import InputError
from nvembed_trt.tokenizer import INPUT_TYPES

NAMES = ("input_ids", "attention_mask", "pool_mask")


@pytest.fixture(scope="module")
def corpus():
    return python_reference_corpus()


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory, corpus, tiny):
    out = tmp_path_factory.mktemp("cal") / "tiny"
    return calibration_from_corpus(corpus, tiny.tokenizer, out, max_length=256)


def test_builtin_corpus_is_large_mixed_and_deterministic(corpus):
    queries = [s for s in corpus.samples if s.input_type == "query"]
    assert len(corpus.samples) >= 1000 and 300 <= len(queries) < len(corpus.samples) - 1000
    lengths = sorted(len(s.text) for s in corpus.samples)
    assert lengths[0] < 100 and lengths[-1] > 2000
    assert len(corpus.provenance["file_sha256"]) == 64 and corpus.provenance["source"] == "python-reference"
    assert python_reference_corpus().sha256() == corpus.sha256()


def test_heldout_is_disjoint_from_calibration(corpus):
    queries, passages, meta = stdlib_retrieval_set()
    assert len(queries) == len(passages) >= 50 and meta["source"] == "stdlib-docstrings"
    calibration_texts = {s.text for s in corpus.samples}
    assert not calibration_texts & (set(queries) | set(passages))


def test_buckets_hold_serving_tokenisation(calibrated, corpus, tiny):
    out = calibrated.directory
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["samples"] == len(corpus.samples) == sum(manifest["buckets"].values())
    assert manifest["length_stats"]["max"] <= 256 and manifest["corpus"]["source"] == "python-reference"
    previous = 0
    for width in sorted(int(w) for w in manifest["buckets"]):
        data = np.load(out / f"bucket-{width:05d}.npz")
        lengths = data["attention_mask"].sum(1)
        assert data["input_ids"].dtype == np.int32 and data["input_ids"].shape[1] == width
        assert previous < lengths.min() and lengths.max() <= width
        previous = width
    query = next(s.text for s in corpus.samples if s.input_type == "query")
    want = tiny.tokenizer([query], INPUT_TYPES["query"], 256)
    n = int(want.attention_mask.sum())
    found = False
    for path in out.glob("bucket-*.npz"):
        data = np.load(path)
        if data["input_ids"].shape[1] < n:
            continue
        rows = np.flatnonzero((data["attention_mask"].sum(1) == n)
                              & (data["input_ids"][:, :n] == want.input_ids[0, :n]).all(1))
        if rows.size:
            assert data["pool_mask"][rows[0], :n].tolist() == want.pool_mask[0, :n].tolist()
            found = True
    assert found, "the first query is not in any bucket as serving would tokenise it"


def test_load_calibration_fixed_shape(calibrated):
    arrays = load_calibration(calibrated.directory, 64, 100, NAMES)
    assert {k: v.shape for k, v in arrays.items()} == {k: (100, 64) for k in NAMES}
    lengths = arrays["attention_mask"].sum(1)
    assert lengths.max() <= 64 and (arrays["input_ids"][arrays["attention_mask"] == 0] == 2).all()
    with pytest.raises(InputError, match="no calibration samples of at most 8 tokens"):
        load_calibration(calibrated.directory, 8, 10, NAMES)


def test_user_corpora(tmp_path, tiny):
    import pyarrow as pa
    import pyarrow.parquet as pq

    texts = [f"clinical note {i}: patient reports mild symptoms" for i in range(20)]
    jsonl = tmp_path / "c.jsonl"
    jsonl.write_text("".join(json.dumps({"text": t, "input_type": "query" if i % 4 == 0 else "passage"}) + "\n"
                             for i, t in enumerate(texts)))
    txt = tmp_path / "c.txt"
    txt.write_text("\n".join(texts))
    parquet = tmp_path / "c.parquet"
    pq.write_table(pa.table({"text": texts}), parquet)
    got = {p.suffix: read_user_corpus(p) for p in (jsonl, txt, parquet)}
    assert sum(s.input_type == "query" for s in got[".jsonl"].samples) == 5
    assert [s.text for s in got[".txt"].samples] == [s.text for s in got[".parquet"].samples] == texts
    assert got[".parquet"].provenance["source"] == "user"


@pytest.mark.parametrize("content, message", [
    ('{"text": "a", "input_type": "doc"}\n', "c.jsonl:1: input_type must be 'query' or 'passage', got 'doc'"),
    ('{"txt": "a"}\n', "c.jsonl:1: each JSON line must be an object with a string field 'text'"),
])
def test_bad_user_corpus(tmp_path, content, message):
    path = tmp_path / "c.jsonl"
    path.write_text(content)
    with pytest.raises(InputError, match=message):
        read_user_corpus(path)


def test_too_small_corpus_and_existing_output(tmp_path, tiny):
    with pytest.raises(InputError, match="needs at least 16 samples, got 3"):
        calibration_from_corpus(Corpus([Sample("a")] * 3), tiny.tokenizer, tmp_path / "o")
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "x").write_text("x")
    with pytest.raises(InputError, match="already exists and is not empty"):
        calibration_from_corpus(python_reference_corpus(), tiny.tokenizer, tmp_path / "o")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o"]


def test_cli_calibrate_user_corpus(tmp_path, capsys):
    corpus = tmp_path / "notes.txt"
    corpus.write_text("\n".join(f"note {i} about blood pressure and dosage" for i in range(40)))
    out = tmp_path / "cal"
    assert main(["calibrate", "--model", "tiny", "--corpus", str(corpus), "--output", str(out),
                 "--max-length", "64"]) == 0
    assert "wrote 40 samples (0 queries)" in capsys.readouterr().out
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["corpus"]["file"] == str(corpus) and set(manifest["buckets"]) <= {str(b) for b in BUCKETS}
