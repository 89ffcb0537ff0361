"""nvembed-trt: NV-Embed-v2 from its Hugging Face checkpoint to a fast, verified TensorRT + Triton deployment."""

__version__ = "0.1.0"
