"""bench-serving on a short setting: the figures are not asserted (speed is measured in benchmarks, not tests), but
every ratio and overhead must be computed from the real runs it reports."""

from __future__ import annotations

import json

import pytest

from nvembed_trt.cli.main import main
from nvembed_trt.export import onnx_from_model
from nvembed_trt.tokenizer import EmbeddingTokenizer
from nvembed_trt.triton.repository import RepoSettings, repo_from_encoder
from nvembed_trt.triton.server import pytriton_root
from nvembed_trt.validation.serving_bench import mixed_workload

try:
    pytriton_root()
except Exception as exc:  # noqa: BLE001
    pytest.skip(f"nvidia-pytriton is not installed ({exc})", allow_module_level=True)


def test_workload_is_mixed_seeded_and_real_text(tiny_dir):
    tok = EmbeddingTokenizer.from_dir(tiny_dir)
    a, b = mixed_workload(tok, 256, texts=200, seed=3), mixed_workload(tok, 256, texts=200, seed=3)
    assert a.texts == b.texts and a.requests == b.requests
    assert sorted(i for r in a.requests for i in r) == list(range(200))
    assert all(1 <= len(r) <= 8 and len({a.kinds[i] for i in r}) == 1 for r in a.requests)
    queries = [t for t, k in zip(a.tokens, a.kinds) if k == "query"]
    passages = [t for t, k in zip(a.tokens, a.kinds) if k == "passage"]
    assert 60 <= len(queries) <= 140 and max(queries) <= 64 + 24 and min(passages) >= 40 and max(passages) <= 256
    assert sum(a.histogram().values()) == 200 and a.source["sha256"]


def test_short_run_reports_ratios_from_its_own_measurements(tmp_path, capsys):
    export = onnx_from_model("tiny", tmp_path / "export", parity=False)
    repo = repo_from_encoder("tiny", export.directory, tmp_path / "repo", RepoSettings(max_length=128))
    assert main(["bench-serving", "--repo", str(repo.directory), "--texts", "60", "--iters", "10",
                 "--concurrency", "1,4", "--kserve-concurrency", "2", "--output-dir", str(tmp_path / "out")]) == 0
    report = json.loads(next((tmp_path / "out").glob("serving-*.json")).read_text())
    ceiling = report["ceiling"]
    assert ceiling["texts_per_s"] == max(ceiling["before_texts_per_s"], ceiling["after_texts_per_s"]) > 0
    assert ceiling["texts_per_s"] == max(t["texts_per_s"] for t in ceiling["trials"])
    for row in report["served"] + report["kserve"]:
        assert row["texts"] == 60 and row["texts_per_s"] == pytest.approx(60 / row["wall_s"])
        assert row["ratio_to_ceiling"] == pytest.approx(row["texts_per_s"] / ceiling["texts_per_s"])
    for row in report["served"]:
        assert row["errors"] == 0 and 0 < row["padding_efficiency"] <= 1
    one, overhead = report["one_query"], report["overhead"]
    assert overhead["front_door"]["p50_ms"] == pytest.approx(one["front_door"]["p50_ms"] -
                                                             one["encoder_alone"]["p50_ms"])
    assert overhead["kserve"]["p99_ms"] == pytest.approx(one["kserve"]["p99_ms"] - one["encoder_alone"]["p99_ms"])
    parts = overhead["breakdown_p50_ms"]
    assert sum(parts.values()) == pytest.approx(one["front_door"]["p50_ms"])
    assert parts["triton_hop"] == pytest.approx(one["triton_encoder_grpc"]["p50_ms"] - one["encoder_alone"]["p50_ms"])
    assert sum(report["workload"]["histogram"].values()) == 60
    assert "served / ceiling" in capsys.readouterr().out
    assert list((tmp_path / "out").glob("serving-*-serving.png"))
