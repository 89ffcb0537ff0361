"""Large corpora go through embed-corpus: `eval --ray` embeds the documents on a local Ray (embed_corpus into the
cache folder) and gives the same metrics as the in-process path; a second run reuses those shards."""

from __future__ import annotations

import pytest

pytest.importorskip("ray", reason="Ray is not installed (the `corpus` extra: pip install 'nvembed-trt[corpus]')")

from nvembed_trt.retrieval.beir import write_beir  # noqa: E402
from nvembed_trt.evaluation.embedders import EmbedderSpec  # noqa: E402
from nvembed_trt.evaluation.run import EvalSettings, run_eval  # noqa: E402
from nvembed_trt.retrieval.stdlib_set import QUERY_TASK, stdlib_retrieval_set  # noqa: E402
from nvembed_trt.export import onnx_from_model  # noqa: E402


def test_ray_path_matches_the_inline_path_and_fills_the_cache(tmp_path):
    data = write_beir(stdlib_retrieval_set(20), tmp_path / "stdlib")
    export = onnx_from_model("tiny", tmp_path / "export", parity=False).directory
    spec = EmbedderSpec(runtime="onnx", encoder=str(export), max_length=128)

    def run(name, cache, ray):
        settings = EvalSettings(dataset=str(data), instruction=QUERY_TASK, embedder=spec,
                                output=str(tmp_path / name), cache_dir=str(tmp_path / cache), ray=ray)
        return run_eval(settings, progress=False)[0]
    inline, ray = run("inline", "cache-inline", False), run("ray", "cache-ray", True)
    assert ray["cache"]["embedded"] == 100 and ray["metrics"] == pytest.approx(inline["metrics"], abs=1e-6)
    folder = tmp_path / "cache-ray"
    assert list(folder.rglob("embed-corpus/corpus.json")) and not list(folder.rglob("passages-*.jsonl"))
    again = run("again", "cache-ray", False)                 # the inline path reads embed-corpus's shards
    assert again["cache"]["reused"] == 100 and again["cache"]["embedded"] == 0
