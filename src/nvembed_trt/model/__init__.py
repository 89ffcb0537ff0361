"""Plain-PyTorch NV-Embed-v2 reference (no transformers modeling classes, no trust_remote_code)."""

from .body import BidirectionalMistral
from .latent import LatentAttention, masked_mean_l2
from .nvembed import NVEmbedModel

__all__ = ["BidirectionalMistral", "LatentAttention", "NVEmbedModel", "masked_mean_l2"]
