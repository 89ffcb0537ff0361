"""Calibration sets: real text tokenised as serving does, bucketed by length."""

from .corpus import Corpus, Sample, python_reference_corpus, read_user_corpus, stdlib_retrieval_set
from .dataset import BUCKETS, CalibrationResult, calibration_from_corpus, load_calibration

__all__ = ["BUCKETS", "CalibrationResult", "Corpus", "Sample", "calibration_from_corpus", "load_calibration",
           "python_reference_corpus", "read_user_corpus", "stdlib_retrieval_set"]
