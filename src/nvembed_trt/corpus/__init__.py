"""embed-corpus: whole corpora (JSON Lines / Parquet) embedded on Ray Data into resumable Parquet shards.
Ray is imported only when a job runs (the `corpus` extra)."""

from .job import CorpusError, embed_corpus
from .settings import CorpusSettings

__all__ = ["CorpusError", "CorpusSettings", "embed_corpus"]
