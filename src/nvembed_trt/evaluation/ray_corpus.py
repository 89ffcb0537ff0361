"""Large corpora through embed-corpus (Ray Data: several workers, one GPU each for engines) rather than a second
code path: the documents still missing from a cache folder are written as JSON Lines (id, text = title + text) and
embed_corpus() embeds them into the cache folder's embed-corpus/ (the same shard schema), resumably."""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import NVEmbedError
from ..provenance import atomic_path
from ..retrieval.beir import RetrievalSet
from .embedders import EvalEmbedder

RUNTIMES = {"torch": "torch", "onnx": "onnx", "engine": "engine", "url": "triton"}


def embed_with_ray(embedder: EvalEmbedder, dataset: RetrievalSet, missing: list[int], folder: Path,
                   output: Path) -> dict:
    """Embed documents `missing` (corpus positions) with embed_corpus(); returns its sidecar."""
    from ..corpus import CorpusSettings, embed_corpus

    spec = embedder.spec
    passages = folder / f"passages-{dataset.corpus_sha256()[:12]}.jsonl"
    with atomic_path(passages) as tmp, tmp.open("w", encoding="utf-8") as fh:
        for i in missing:
            fh.write(json.dumps({"id": dataset.doc_ids[i], "text": dataset.doc_texts[i]}, ensure_ascii=False) + "\n")
    settings = CorpusSettings(inputs=[str(passages)], output=str(output), model=spec.model,
                              runtime=RUNTIMES[spec.runtime], encoder=spec.encoder, url=spec.url,
                              protocol=spec.protocol, max_length=spec.max_length, truncate="END",
                              **({"device": spec.device, "dtype": spec.dtype} if spec.runtime == "torch" else {}))
    meta = embed_corpus(settings)
    passages.unlink()                  # the shards hold the rows now; a rerun writes what is still missing
    if meta["counts"]["rejected"]:
        raise NVEmbedError(f"embed-corpus rejected {meta['counts']['rejected']} document(s): see "
                           f"{output}/rejects.jsonl")
    return meta
