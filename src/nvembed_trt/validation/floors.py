"""The physical floor beside each GPU figure: the runtime's weight bytes over the measured memory bandwidth, and its
FLOPs over the measured matmul rate of the dtype its GEMMs run in, both measured at the start of a run. None on a
machine without a GPU.

Weight bytes come from the files a runtime loads where it has them (an engine's plan, an ONNX graph with its
external data) and otherwise from the recipe's weight dtypes (`recipe_weight_bytes`): fp32 4 B per parameter,
fp16/bf16 2 B, int8/fp8 1 B plus a per-channel fp32 scale, int4 0.5 B plus one fp16 scale per block; what a
quantised recipe leaves unquantised (embedding table, norms, latents, biases) stays 16-bit. The compute floor splits
a token's FLOPs: the weight GEMMs at the rate of the recipe's GEMM dtype (fp8/int8 at the 8-bit rate, weight-only
recipes at fp16: they dequantise into fp16 GEMMs), attention's activation x activation products at the 16-bit
rate (they stay float in every recipe) or fp32/TF32 for fp32."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from ..config import NVEmbedConfig

BYTES = {"fp32": 4.0, "fp16": 2.0, "bf16": 2.0, "int8": 1.0, "fp8": 1.0, "int4": 0.5}
# rate keys: "fp32" (CUDA cores: PyTorch's default, TF32 off), "tf32" (TensorRT / ONNX Runtime fp32 GEMMs),
# "fp16", "bf16", "int8", "fp8"
RATE_KEYS = ("fp32", "tf32", "fp16", "bf16", "int8", "fp8")


@dataclass(frozen=True)
class Cost:
    """What one runtime moves and computes: its weight bytes and the dtypes its matmuls run in."""

    weight_bytes: int
    gemm_dtype: str          # a RATE_KEYS entry: the weight GEMMs
    attention_dtype: str     # a RATE_KEYS entry: attention's activation x activation matmuls
    weights_from: str        # where weight_bytes came from (files, or the recipe's dtypes)

    def describe(self) -> dict:
        return {"weight_bytes": self.weight_bytes, "gemm_dtype": self.gemm_dtype,
                "attention_dtype": self.attention_dtype, "weights_from": self.weights_from}


def _is_gemm_weight(name: str, shape: tuple[int, ...]) -> bool:
    """The 2-D weights that feed matmuls (linear layers); the embedding table and the latents are not GEMM weights."""
    return len(shape) == 2 and name.endswith(".weight") and "embed_tokens" not in name


_SPLITS: dict[str, tuple[int, int, int]] = {}


def parameter_split(cfg: NVEmbedConfig) -> tuple[int, int, int]:
    """(GEMM weight parameters, their output channels summed, other parameters) of the model."""
    from ..checkpoint.loader import expected_shapes, meta_model

    if repr(cfg) in _SPLITS:
        return _SPLITS[repr(cfg)]
    gemm = channels = other = 0
    for name, shape in expected_shapes(meta_model(cfg)).items():
        if _is_gemm_weight(name, shape):
            gemm += math.prod(shape)
            channels += shape[0]
        else:
            other += math.prod(shape)
    _SPLITS[repr(cfg)] = gemm, channels, other
    return gemm, channels, other


def recipe_dtypes(recipe: str) -> tuple[str, str, str]:
    """(weight format of the GEMM weights, GEMM rate key, dtype of everything else) for a recipe name, or for a
    PyTorch dtype name (float32, float16, bfloat16)."""
    from ..precision.recipes import RECIPES

    torch_names = {"float32": ("fp32", "fp32", "fp32"), "float16": ("fp16", "fp16", "fp16"),
                   "bfloat16": ("bf16", "bf16", "bf16")}
    if recipe in torch_names:
        return torch_names[recipe]
    r = RECIPES[recipe]
    if r.method == "copy":
        return "fp32", "tf32", "fp32"
    if r.method == "autocast":
        return r.low_precision, r.low_precision, r.low_precision
    if r.method == "weight-only":
        return r.weight_format, "fp16", "fp16"
    return r.quantize_mode, r.quantize_mode, "fp16"      # quantize / w8a8: 8-bit GEMMs


def recipe_weight_bytes(cfg: NVEmbedConfig, recipe: str) -> int:
    from ..precision.recipes import RECIPES

    weights, _, rest = recipe_dtypes(recipe)
    gemm, channels, other = parameter_split(cfg)
    total = gemm * BYTES[weights] + other * BYTES[rest]
    if weights in ("int8", "fp8"):
        total += channels * 4                                  # one fp32 scale per output channel
    elif weights == "int4":
        total += gemm / RECIPES[recipe].block_size * 2         # one fp16 scale per block of input channels
    return int(total)


def attention_dtype(recipe: str) -> str:
    _, gemm, rest = recipe_dtypes(recipe)
    return {"fp32": gemm}.get(rest, "bf16" if rest == "bf16" else "fp16")


def flops_per_token(cfg: NVEmbedConfig, sequence: int) -> tuple[float, float]:
    """(weight-GEMM FLOPs, attention FLOPs) per token at this sequence length: 2 per GEMM weight; q.k and p.v over
    the sequence in every body layer; the latent attention's q.k and p.v over the latents."""
    gemm, _, _ = parameter_split(cfg)
    b, la = cfg.body, cfg.latent
    attention = 4 * b.num_layers * b.num_heads * b.head_dim * sequence + 4 * la.num_latents * la.inner_dim
    return 2.0 * gemm, float(attention)


def file_bytes(*paths: Path) -> int:
    return sum(p.stat().st_size for p in paths if p.is_file())


@dataclass
class Floors:
    device: str
    bandwidth_bytes_s: float
    rates: dict[str, float]          # FLOP/s per RATE_KEYS entry
    rate_sources: dict[str, str]     # measured, or how it was derived
    cfg: NVEmbedConfig

    def annotate(self, cost: Cost, batch: int, sequence: int, measured_ms: float) -> dict:
        gemm, attention = flops_per_token(self.cfg, sequence)
        tokens = batch * sequence
        memory_ms = 1000 * cost.weight_bytes / self.bandwidth_bytes_s
        compute_ms = 1000 * tokens * (gemm / self.rates[cost.gemm_dtype] + attention / self.rates[cost.attention_dtype])
        floor = max(memory_ms, compute_ms)
        return {"floor_ms": floor, "floor_fraction": floor / measured_ms,
                "floor_kind": "memory" if memory_ms >= compute_ms else "compute", **cost.describe()}

    def describe(self) -> dict:
        return {"device": self.device, "bandwidth_GB_s": self.bandwidth_bytes_s / 1e9,
                "matmul_TFLOP_s": {k: v / 1e12 for k, v in self.rates.items()}, "rate_sources": self.rate_sources}


def _rate(torch, key: str, n: int = 8192, iters: int = 10) -> float:
    """Dense matmul FLOP/s of one dtype on device 0 (n x n x n)."""
    dev = "cuda"
    if key in ("fp32", "tf32"):
        previous = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = key == "tf32"
        a = torch.randn(n, n, device=dev)
        run = lambda: a @ a  # noqa: E731
    elif key in ("fp16", "bf16"):
        a = torch.randn(n, n, device=dev, dtype=torch.float16 if key == "fp16" else torch.bfloat16)
        run = lambda: a @ a  # noqa: E731
    elif key == "int8":
        a = torch.randint(-64, 64, (n, n), device=dev, dtype=torch.int8)
        b = torch.randint(-64, 64, (n, n), device=dev, dtype=torch.int8).t().contiguous().t()
        run = lambda: torch._int_mm(a, b)  # noqa: E731
    else:  # fp8 E4M3 (Ada, Hopper): scaled matmul, second operand column-major
        a = torch.randn(n, n, device=dev).to(torch.float8_e4m3fn)
        b = torch.randn(n, n, device=dev).to(torch.float8_e4m3fn).t()
        one = torch.ones((), device=dev)
        run = lambda: torch._scaled_mm(a, b, scale_a=one, scale_b=one, out_dtype=torch.bfloat16)  # noqa: E731
    try:
        for _ in range(3):
            run()
        torch.cuda.synchronize()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(iters):
            run()
        end.record()
        torch.cuda.synchronize()
        return 2 * n**3 * iters / (start.elapsed_time(end) / 1000)
    finally:
        if key in ("fp32", "tf32"):
            torch.backends.cuda.matmul.allow_tf32 = previous


def measure_floors(cfg: NVEmbedConfig, keys: set[str] | None = None) -> Floors | None:
    """Bandwidth and the matmul rate of each dtype in `keys` (default all), measured on device 0. A dtype the GPU or
    PyTorch cannot multiply (fp8 before Ada) gets 2 x the measured 16-bit rate, and says so."""
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    src = torch.empty(1 << 30, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    for _ in range(3):
        dst.copy_(src)
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(10):
        dst.copy_(src)
    end.record()
    torch.cuda.synchronize()
    bandwidth = 2 * src.numel() * 10 / (start.elapsed_time(end) / 1000)  # read + write
    del src, dst
    rates, sources = {}, {}
    for key in [k for k in RATE_KEYS if keys is None or k in keys or k in ("fp16", "bf16")]:
        try:
            rates[key], sources[key] = _rate(torch, key), "measured"
        except (RuntimeError, AttributeError, TypeError) as exc:
            rates[key] = 2 * rates.get("bf16") if key in ("int8", "fp8") and "bf16" in rates else float("nan")
            sources[key] = f"not measurable here ({type(exc).__name__}): 2 x measured bf16"
    torch.cuda.empty_cache()
    return Floors(torch.cuda.get_device_name(0), bandwidth, rates, sources, cfg)
