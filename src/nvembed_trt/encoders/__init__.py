"""The encoder seam (base.py): `Encoder` (a packed token batch in, float32 rows out, its shapes and recipe) with
TorchEncoder / OnnxEncoder (local.py) and TensorRTEncoder (tensorrt.py), and `TextEmbedder` (texts in): LocalEmbedder
over a tokenizer and an Encoder, ServedEmbedder (served.py) for Triton's KServe model and the front door. Import the
implementations from their modules: each pulls in only its own runtime."""

from .base import ANY_SHAPE, Encoder, LocalEmbedder, TextEmbedder, cosine_rows

__all__ = ["ANY_SHAPE", "Encoder", "LocalEmbedder", "TextEmbedder", "cosine_rows"]
