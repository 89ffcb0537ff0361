"""embed-corpus pieces without Ray: packing, scanning, planning, inputs and settings checks (fast)."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from nvembed_trt.corpus import CorpusSettings
from nvembed_trt.corpus.inputs import resolve_inputs
from nvembed_trt.corpus.job import prepare_output, resolve
from nvembed_trt.corpus.plan import first_occurrences, make_plan
from nvembed_trt.corpus.read import read_chunk
from nvembed_trt.corpus.scan import scan_file
from nvembed_trt.errors import InputError


# ------------------------------------------------------------------------------------------- scan and plan
def _jsonl(path, lines):
    path.write_bytes(b"".join(line if isinstance(line, bytes) else (json.dumps(line) + "\n").encode()
                              for line in lines))
    return path


def test_scan_jsonl_finds_ids_chunks_and_rejects(tmp_path):
    path = _jsonl(tmp_path / "a.jsonl", [{"id": "a", "text": "x"}, b"\n", {"id": 7, "text": "y"},
                                          {"text": "no id"}, b'{"id": "u", "text": "\xff"}\n', b"not json\n",
                                          {"id": True, "text": "bool id"}, [1, 2], {"id": "", "text": "z"}])
    [file] = resolve_inputs([str(path)], "text", "id")
    scan = scan_file(file, "id", chunk_rows=4)
    assert scan.rows == 9 and scan.ids.to_pylist() == ["a", None, "7", None, None, None, None, None, None]
    assert [(c[0], c[1]) for c in scan.chunks] == [(0, 4), (4, 4), (8, 1)]
    kinds = {r["line"]: r["kind"] for r in scan.rejects}
    assert kinds == {4: "no_id", 5: "not_utf8", 6: "not_json", 7: "bad_id", 8: "not_object", 9: "bad_id"}
    with open(path, "rb") as fh:                                 # the seek points land on line starts
        fh.seek(scan.chunks[1][2])
        assert fh.readline() == b'{"id": "u", "text": "\xff"}\n'


def test_plan_skips_done_rows_and_rejects_later_duplicates(tmp_path):
    _jsonl(tmp_path / "a.jsonl", [{"id": f"r{i}", "text": "t"} for i in range(6)])
    pq.write_table(pa.table({"id": [5, 6, 7], "text": ["x", "", "z"]}), tmp_path / "b.parquet")
    tmp_path.joinpath("b2.jsonl").write_text(json.dumps({"id": "r1", "text": "again"}) + "\n")
    files = resolve_inputs([str(tmp_path)], "text", "id")
    assert [f.path.rsplit("/", 1)[1] for f in files] == ["a.jsonl", "b.parquet", "b2.jsonl"]
    scans = [scan_file(f, "id", chunk_rows=4) for f in files]
    plan = make_plan(scans, done=pa.array(["r0", "r4"]))
    assert plan.input_rows == 10 and plan.done == 2 and plan.todo == 7
    [dup] = plan.duplicates
    assert dup["id"] == "r1" and dup["kind"] == "duplicate_id" and dup["reason"].endswith("a.jsonl line 2")
    assert [(c.file, c.rows.tolist()) for c in plan.chunks] == [(0, [1, 2, 3]), (0, [5]), (1, [0, 1, 2])]
    rows = [block for chunk in plan.chunks for block in read_chunk(chunk, "text", "id")]
    ids = [i for block in rows for i in block.column("id").to_pylist()]
    assert ids == ["r1", "r2", "r3", "r5", "5", "6", "7"]
    assert [k for block in rows for k in block.column("kind").to_pylist()] == [None] * 5 + ["empty", None]


def test_first_occurrences():
    assert first_occurrences(pa.array(["a", None, "b", "a", "b", "c"])).tolist() == [True, False, True, False,
                                                                                      False, True]


# -------------------------------------------------------------------------------------- inputs and settings
def test_input_errors_name_the_problem(tmp_path):
    with pytest.raises(InputError, match="input not found: .*nope"):
        resolve_inputs([str(tmp_path / "nope")], "text", "id")
    with pytest.raises(InputError, match="matches no files"):
        resolve_inputs([str(tmp_path / "*.parquet")], "text", "id")
    (tmp_path / "x.csv").write_text("a,b\n")
    with pytest.raises(InputError, match="unknown format '.csv'"):
        resolve_inputs([str(tmp_path / "x.csv")], "text", "id")
    pq.write_table(pa.table({"doc": ["x"], "id": [1]}), tmp_path / "p.parquet")
    with pytest.raises(InputError, match=r"no text column 'text' \(columns: doc, id\); choose one with --text-column"):
        resolve_inputs([str(tmp_path / "p.parquet")], "text", "id")
    pq.write_table(pa.table({"text": ["x"], "id": [1.5]}), tmp_path / "f.parquet")
    with pytest.raises(InputError, match="id column 'id' has type double"):
        resolve_inputs([str(tmp_path / "f.parquet")], "text", "id")


def _settings(tmp_path, **over) -> CorpusSettings:
    source = _jsonl(tmp_path / "in.jsonl", [{"id": "a", "text": "x"}])
    fields = {"inputs": [str(source)], "output": str(tmp_path / "out"), "model": "tiny", "runtime": "torch",
              "max_length": 64, **over}
    return CorpusSettings(**fields)


@pytest.mark.parametrize("over, message", [
    ({"runtime": "triton"}, "--runtime triton needs --url"),
    ({"runtime": "onnx"}, "--runtime onnx needs --encoder DIR"),
    ({"max_length": 1}, "max_length must be an integer >= 2"),
    ({"input_type": "query", "max_length": 16}, "--max-length 16 leaves no token to pool after the instruction"),
    ({"url": "127.0.0.1:8000"}, "--url is for --runtime triton"),
])
def test_settings_errors_come_before_any_work(tmp_path, over, message):
    with pytest.raises(InputError, match=message):
        resolve(_settings(tmp_path, **over))
    assert not (tmp_path / "out").exists()


def test_cli_reports_bad_settings_in_one_line(tmp_path, capsys):
    from nvembed_trt.cli.main import main

    source = _jsonl(tmp_path / "in.jsonl", [{"id": "a", "text": "x"}])
    assert main(["embed-corpus", "--input", str(source), "--output", str(tmp_path / "out"), "--model", "tiny",
                 "--runtime", "torch", "--batch-tokens", "0"]) == 2
    assert capsys.readouterr().err.strip() == "error: --batch-tokens: Value error, batch_tokens must be >= 1, got 0"
    assert not (tmp_path / "out").exists()


def test_an_output_of_other_settings_is_refused(tmp_path):
    resolved = resolve(_settings(tmp_path))
    out = tmp_path / "out"
    out.mkdir()
    (out / "stray.txt").write_text("x")
    with pytest.raises(InputError, match="not empty and holds no corpus.json"):
        prepare_output(out, resolved.identity, overwrite=False)
    (out / "stray.txt").unlink()
    (out / "corpus.json").write_text(json.dumps({"identity": {**resolved.identity, "max_length": 32}}))
    with pytest.raises(InputError, match="max_length was 32, now 64.*choose another --output or pass --overwrite"):
        prepare_output(out, resolved.identity, overwrite=False)
    assert prepare_output(out, resolved.identity, overwrite=True) is None and not any(out.iterdir())


# ------------------------------------------------------------------------------------- one worker, no Ray
def run_worker(tmp_path, texts: list[str], truncate: str, max_length: int = 16, **over) -> dict:
    """One CorpusWorker (torch runtime) called as Ray Data would call it, on rows r0, r1, ... of one JSONL file."""
    from nvembed_trt.corpus.read import BLOCK_SCHEMA
    from nvembed_trt.corpus.settings import WorkerSpec
    from nvembed_trt.corpus.worker import CorpusWorker

    block = pa.Table.from_pylist([{"file": 0, "row": i, "id": f"r{i}", "text": t or None,
                                   "kind": None if t else "empty", "error": None if t else "empty text"}
                                  for i, t in enumerate(texts)], schema=BLOCK_SCHEMA)
    spec = WorkerSpec(model="tiny", runtime="torch", encoder_path=None, recipe="fp32", url=None, protocol="http",
                      instruction="", truncate=truncate, max_length=max_length,
                      batch_tokens=32, batch_rows=2, threads=1, device="cpu", dtype="float32", output=str(tmp_path),
                      run="t", files=[(str(tmp_path / "in.jsonl"), "jsonl")], **over)
    return CorpusWorker(spec.model_dump())({k: block.column(k).to_numpy(zero_copy_only=False)
                                           for k in block.column_names})


def start_reference(tiny, texts: list[str], max_length: int) -> np.ndarray:
    """The reference model on START-truncated ids (keep the end; BOS stays)."""
    from nvembed_trt.tokenizer import TokenizedBatch
    from nvembed_trt.tokenizer.embedding import pad_rows

    rows = [enc.ids for enc in tiny.tokenizer.encode(texts, "", max_length, "START")]
    ids, attention, pool = pad_rows(rows, [0] * len(rows), tiny.tokenizer.pad_id, dtype=np.int64)
    return tiny._forward(TokenizedBatch(ids, attention, pool))


def test_worker_rejects_over_long_rows_under_none_and_embeds_the_rest(tmp_path, tiny, cosine):
    texts = ["short one", "word " * 40, "another short text", "", "the last row"]
    summary = run_worker(tmp_path, texts, "NONE")
    assert summary["rows"][0] == 3 and summary["rejected"][0] == 2
    table = pq.read_table(tmp_path / "embeddings" / "part-t-00000-0000000000.parquet")
    assert table.column("id").to_pylist() == ["r0", "r2", "r4"] and not any(table.column("truncated").to_pylist())
    got = np.asarray(table.column("embedding").to_pylist(), dtype=np.float32)
    assert cosine(got, tiny.encode([texts[0], texts[2], texts[4]], max_length=16)).min().item() >= 0.99999
    rejects = [json.loads(line) for line in (tmp_path / "rejects" / "part-t-00000-0000000000.jsonl").open()]
    assert [(r["id"], r["kind"], r["line"]) for r in rejects] == [("r3", "empty", 4), ("r1", "too_long", 2)]
    tokens = len(tiny.tokenizer.encode_untruncated([texts[1]], "")[0])
    assert rejects[1]["reason"] == f"Input length {tokens} exceeds maximum allowed token size 16 (truncate NONE)"


@pytest.mark.parametrize("truncate", ["END", "START"])
def test_worker_truncates_end_or_start_like_the_reference(tmp_path, tiny, cosine, truncate):
    texts = ["alpha beta gamma " * 12, "short", "one two three four five six seven eight nine ten eleven twelve "
             "thirteen fourteen fifteen sixteen seventeen eighteen nineteen twenty"]
    assert run_worker(tmp_path, texts, truncate)["rows"][0] == 3
    table = pq.read_table(tmp_path / "embeddings")
    assert table.column("truncated").to_pylist() == [True, False, True]
    assert table.column("n_tokens").to_pylist()[::2] == [16, 16]
    got = np.asarray(table.column("embedding").to_pylist(), dtype=np.float32)
    want = (tiny.encode(texts, max_length=16) if truncate == "END" else start_reference(tiny, texts, 16))
    assert cosine(got, want).min().item() >= 0.99999
    other = tiny.encode(texts, max_length=16) if truncate == "START" else start_reference(tiny, texts, 16)
    assert cosine(got[[0, 2]], other[[0, 2]]).max().item() < 0.9999     # the two modes keep different tokens


# ------------------------------------------------------------------------------- --embedding-type
def test_worker_stores_the_front_doors_compact_types(tmp_path):
    """binary: the sign bits packed, dimensions / 8 int8 values a row; int8: the codes of the calibrated ranges
    (--output-ranges); float16: Parquet's half floats: each bit for bit what the front door's compact() makes of the
    same worker's float rows."""
    from nvembed_trt.serving.compact import OutputRanges, calibrated_ranges, compact

    texts = ["short one", "another short text", "the last row of three"]
    stored = {}
    for kind, over in (("float", {}), ("binary", {}), ("int8", {"output_ranges": str(tmp_path)}), ("float16", {})):
        out = tmp_path / kind
        out.mkdir()
        assert run_worker(out, texts, "END", embedding_type=kind, **over)["rows"][0] == 3
        stored[kind] = pq.read_table(out / "embeddings").column("embedding")
        if kind == "float":
            floats = np.asarray(stored[kind].to_pylist(), dtype=np.float32)
            low, high = calibrated_ranges(floats)
            ranges = OutputRanges.new(encoder_sha256="x", texts=3, corpus={}, method="test", low=low, high=high)
            ranges.write(tmp_path)
    assert stored["float"].type.value_type == pa.float32() and stored["float"].type.list_size == 64
    for kind, size in (("binary", 8), ("int8", 64)):
        assert stored[kind].type.value_type == pa.int8() and stored[kind].type.list_size == size
        got = np.asarray(stored[kind].to_pylist(), dtype=np.int8)
        assert np.array_equal(got, compact(floats, kind, ranges))
    assert len(np.unique(got)) > 10                                          # int8 codes spread, not all 0
    assert stored["float16"].type.value_type == pa.float16() and stored["float16"].type.list_size == 64
    halves = np.stack(pq.read_table(tmp_path / "float16" / "embeddings").to_pandas()["embedding"])  # as users read it
    assert halves.dtype == np.float16 and np.array_equal(halves, compact(floats, "float16"))
    assert 0 < np.abs(halves.astype(np.float32) - floats).max() <= 2.0 ** -11 * np.abs(floats).max()


@pytest.mark.parametrize("over, message", [
    ({"embedding_type": "int8"}, "--embedding-type int8 needs --output-ranges"),
    ({"embedding_type": "binary", "output_ranges": "x"}, "--output-ranges is for --embedding-type int8 or uint8"),
    ({"embedding_type": "uint8", "output_ranges": "absent"}, "output_ranges.json"),
])
def test_compact_settings_are_checked_before_any_work(tmp_path, over, message):
    with pytest.raises(InputError, match=message):
        resolve(_settings(tmp_path, **over))
    assert not (tmp_path / "out").exists()


def test_an_output_of_another_embedding_type_is_not_resumed(tmp_path):
    resolved = resolve(_settings(tmp_path, embedding_type="binary"))
    out = tmp_path / "out"
    out.mkdir()
    old = {k: v for k, v in resolved.identity.items() if k not in ("embedding_type", "output_ranges")}
    (out / "corpus.json").write_text(json.dumps({"identity": old}))      # made before the type existed: float
    with pytest.raises(InputError, match="embedding_type was 'float', now 'binary'"):
        prepare_output(out, resolved.identity, overwrite=False)
    assert prepare_output(out, {**resolved.identity, "embedding_type": "float"}, overwrite=False) is not None
