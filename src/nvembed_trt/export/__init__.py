"""ONNX export: meta-device tracing, lazily streamed weights, checks and parity."""

from .exporter import EXPORT_DTYPES, ExportResult, onnx_from_model
from .signature import OPSETS, POOLING_MODES, GraphSignature

__all__ = ["EXPORT_DTYPES", "ExportResult", "GraphSignature", "OPSETS", "POOLING_MODES", "onnx_from_model"]
