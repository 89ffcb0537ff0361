"""embed-corpus end to end on a local Ray (ray.init(num_cpus=2): the one-actor pool leaves a CPU for the read and
scan tasks): JSON Lines and Parquet through ONNX Runtime and through a real Triton server equal Embedder.encode,
ids preserved; a job killed half-way and rerun gives every id exactly once; rejects reported."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from nvembed_trt.calibration.corpus import python_reference_corpus
from test_corpus_units import start_reference
from nvembed_trt.corpus import CorpusSettings, embed_corpus
from nvembed_trt.export import onnx_from_model

ray = pytest.importorskip("ray", reason="embed-corpus needs the corpus extra (ray[data])")

MAX_LENGTH = 64
JSONL_ROWS, PARQUET_ROWS = 2000, 1000


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    return onnx_from_model("tiny", tmp_path_factory.mktemp("corpus") / "export", parity=False).directory


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """3,000 real passages (the Python language reference): 2,000 in JSON Lines with string ids, 1,000 in Parquet
    with integer ids, plus one bad row of each kind in the JSON Lines file."""
    folder = tmp_path_factory.mktemp("corpus") / "in"
    folder.mkdir()
    texts = [s.text for s in python_reference_corpus().samples[:JSONL_ROWS + PARQUET_ROWS]]
    good = {f"doc-{i}": t for i, t in enumerate(texts[:JSONL_ROWS])}
    lines = [json.dumps({"id": k, "text": t}).encode() for k, t in good.items()]
    lines[10:10] = [b'{"id": "empty", "text": ""}', b'{"text": "no id"}', b'{"id": "bad", "text": "\xff\xfe"}',
                    json.dumps({"id": "doc-3", "text": "a duplicate id"}).encode(), b""]
    (folder / "part-a.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    parquet = {str(100_000 + i): t for i, t in enumerate(texts[JSONL_ROWS:])}
    pq.write_table(pa.table({"id": pa.array([int(k) for k in parquet], pa.int64()), "text": list(parquet.values())}),
                   folder / "part-b.parquet", row_group_size=400)
    return folder, {**good, **parquet}


@pytest.fixture(scope="module")
def reference(corpus, tiny) -> dict[str, np.ndarray]:
    """Embedder.encode of every good row, and its untruncated token count."""
    _, texts = corpus
    ids = list(texts)
    vectors = tiny.encode([texts[i] for i in ids], max_length=MAX_LENGTH, batch_size=64)
    counts = [len(r) for r in tiny.tokenizer.encode_untruncated([texts[i] for i in ids], "")]
    return {i: (v, n) for i, v, n in zip(ids, vectors, counts)}


def settings(source: Path, out: Path, **over) -> CorpusSettings:
    fields = {"inputs": [str(source)], "output": str(out), "model": "tiny", "runtime": "onnx",
              "max_length": MAX_LENGTH, "batch_tokens": 2048, "shard_rows": 500, **over}
    return CorpusSettings(**fields)


def read_output(out: Path) -> pa.Table:
    return pq.read_table(out / "embeddings")      # the shard folder reads as one table


def check_against_reference(table: pa.Table, reference: dict, cosine, min_cosine: float = 0.99999) -> None:
    """Every id exactly once, each row's embedding equal to Embedder.encode of its text, token counts right."""
    ids = table.column("id").to_pylist()
    assert len(ids) == len(set(ids)) == len(reference) and set(ids) == set(reference)
    got = table.column("embedding").combine_chunks().flatten().to_numpy().reshape(len(ids), -1)
    want = np.stack([reference[i][0] for i in ids])
    assert cosine(got, want).min().item() >= min_cosine
    full = [reference[i][1] for i in ids]
    assert table.column("n_tokens").to_pylist() == [min(n, MAX_LENGTH) for n in full]
    assert table.column("truncated").to_pylist() == [n > MAX_LENGTH for n in full]
    assert 0 < sum(table.column("truncated").to_pylist()) < len(ids)   # both kinds of row are covered


def test_onnx_runtime_on_jsonl_and_parquet_equals_encode(cluster, export, corpus, reference, tmp_path, cosine):
    source, texts = corpus
    meta = embed_corpus(settings(source, tmp_path / "out", encoder=str(export)), progress=False)
    table = read_output(tmp_path / "out")
    check_against_reference(table, reference, cosine)
    assert table.schema.field("embedding").type == pa.list_(pa.float32(), 64)
    for path in (tmp_path / "out" / "embeddings").glob("part-*.parquet"):          # each shard keeps input order
        ids = pq.read_table(path, columns=["id"]).column("id").to_pylist()
        keys = [(0, int(i.split("-")[1])) if i.startswith("doc-") else (1, int(i)) for i in ids]
        assert keys == sorted(keys)
    rejects = [json.loads(line) for line in (tmp_path / "out" / "rejects.jsonl").read_text().splitlines()]
    assert {(r["id"], r["kind"], r.get("line")) for r in rejects} == {
        ("empty", "empty", 11), (None, "no_id", 12), (None, "not_utf8", 13), ("doc-3", "duplicate_id", 14)}
    assert meta["counts"] == {"input_rows": JSONL_ROWS + 5 + PARQUET_ROWS, "rows_with_id": len(texts) + 2,
                              "embedded": len(texts), "rejected": 4,
                              "rejected_by_kind": {"duplicate_id": 1, "empty": 1, "no_id": 1, "not_utf8": 1}}
    run = meta["runs"][-1]
    assert run["embedded"] == len(texts) and run["workers"] == 1 and run["padded_tokens"] >= run["tokens"]
    assert [i["format"] for i in meta["inputs"]] == ["jsonl", "parquet"] and meta["recipe"] == "fp32"

    again = embed_corpus(settings(source, tmp_path / "out", encoder=str(export)), progress=False)
    assert again["runs"][-1]["planned"] == 0 and again["runs"][-1]["skipped_done"] == len(texts) + 1
    assert again["counts"]["embedded"] == len(texts)


def test_killed_job_resumes_and_gives_every_id_once(cluster, export, corpus, reference, tmp_path, cosine):
    source, texts = corpus
    out = tmp_path / "out"
    command = [str(Path(sys.executable).parent / "nvembed-trt"), "embed-corpus", "--input", str(source),
               "--output", str(out), "--model", "tiny", "--runtime", "onnx", "--encoder", str(export),
               "--max-length", str(MAX_LENGTH), "--batch-tokens", "2048", "--shard-rows", "100",
               "--ray-address", cluster]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while not list(out.glob("embeddings/part-*.parquet")):
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "no shard written in 240 s"
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)                           # a crash: no cleanup, no final sidecar
        proc.wait()
    before = read_output(out).num_rows
    assert 0 < before < len(texts)
    assert json.loads((out / "corpus.json").read_text())["status"] == "running"

    meta = embed_corpus(settings(source, out, encoder=str(export), shard_rows=100), progress=False)
    check_against_reference(read_output(out), reference, cosine)   # every id exactly once, values right
    run = meta["runs"][-1]
    # The killed driver's actor may still finish the shard it was writing (the cluster outlives the driver), so the
    # rerun may find more done than `before`: it must embed exactly the rest (+1: the "empty" row is rejected)
    assert run["skipped_done"] >= before and 0 < run["embedded"] < len(texts)
    assert run["embedded"] + run["skipped_done"] in (len(texts), len(texts) + 1)
    assert len(meta["runs"]) == 1 and meta["status"] == "complete"
    assert not list(out.rglob(".*.tmp"))


def test_triton_runtime_through_kserve_and_the_front_door_equals_encode(cluster, export, corpus, reference, tiny,
                                                                        tmp_path, cosine):
    """One `nvembed-trt serve` (Triton + the front door): the JSON Lines rows through Triton's KServe endpoint, the
    Parquet rows through the front door's /v1 with truncate START, each against the reference."""
    from nvembed_trt.serving.process import ServeProcess
    from nvembed_trt.triton.repository import RepoSettings, repo_from_encoder
    from nvembed_trt.triton.server import pytriton_root

    try:
        pytriton_root()
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"nvidia-pytriton is not installed ({exc})")
    source, texts = corpus
    repo = repo_from_encoder("tiny", export, tmp_path / "repo", RepoSettings(max_length=MAX_LENGTH))
    jsonl = {k: v for k, v in reference.items() if k.startswith("doc-")}
    parquet_ids = [k for k in reference if not k.startswith("doc-")]
    with ServeProcess(repo.directory) as served:
        kserve = embed_corpus(settings(source / "part-a.jsonl", tmp_path / "kserve", runtime="triton",
                                       url=served.kserve["http"], max_length=None, cpus_per_worker=0.5),
                              progress=False)
        front = embed_corpus(settings(source / "part-b.parquet", tmp_path / "front", runtime="triton",
                                      url=served.api_url, max_length=None, truncate="START", cpus_per_worker=0.5),
                             progress=False)
    check_against_reference(read_output(tmp_path / "kserve"), jsonl, cosine)
    assert kserve["identity"]["max_length"] == MAX_LENGTH and kserve["counts"]["rejected"] == 4
    table = read_output(tmp_path / "front")
    ids = table.column("id").to_pylist()
    assert sorted(ids) == sorted(parquet_ids) and front["identity"]["truncate"] == "START"
    got = table.column("embedding").combine_chunks().flatten().to_numpy().reshape(len(ids), -1)
    want = start_reference(tiny, [texts[i] for i in ids], MAX_LENGTH)
    assert cosine(got, want).min().item() >= 0.99999
    assert table.column("truncated").to_pylist() == [reference[i][1] > MAX_LENGTH for i in ids]


@pytest.mark.gpu
@pytest.mark.cuda_torch
def test_engine_runtime_equals_encode(cluster, export, corpus, reference, tmp_path, cosine):
    """On a GPU host: an engine built for the present card (TensorRT where installed, else TensorRT-RTX), one GPU
    per actor, on the same rows. fp32 graph; TensorRT may use TF32 matmuls, hence 0.9999."""
    from nvembed_trt.engines.builder import BuildSettings, engine_from_onnx
    from nvembed_trt.engines.flavors import cuda_gpu
    from nvembed_trt.engines.gpus import gpu_registry

    name, cc = cuda_gpu()
    matching = [g.name for g in gpu_registry().values() if g.compute_capability == cc]
    if not matching:
        pytest.skip(f"no GPU profile for {name} (compute capability {cc})")
    engine = engine_from_onnx(export / "model.onnx", tmp_path / "engine", BuildSettings(gpu=matching[0])).directory
    source, _ = corpus
    meta = embed_corpus(settings(source, tmp_path / "out", runtime="engine", encoder=str(engine), workers=1),
                        progress=False)       # one GPU actor: the test cluster has 2 CPUs, one kept for reads
    check_against_reference(read_output(tmp_path / "out"), reference, cosine, min_cosine=0.9999)
    assert meta["runs"][-1]["workers"] == 1 and meta["encoder"]["path"].endswith("model.plan")
