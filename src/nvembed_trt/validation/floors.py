"""The physical floor beside each GPU figure: the runtime's weight bytes over the measured memory bandwidth, and its
FLOPs over the measured matmul rate of the dtype its GEMMs run in, both measured at the start of a run. None on a
machine without a GPU.

Weight bytes come from the files a runtime loads where it has them (an engine's plan, an ONNX graph with its
external data) and otherwise from the recipe's weight dtypes. The arithmetic (bytes per dtype, FLOPs per token,
which rate each matmul runs at) is the performance model's, nvembed_trt.performance; this module measures the
rates it is evaluated with."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..config import NVEmbedConfig
from ..performance import (BYTES, RATE_KEYS, DeviceRates, attention_dtype, batch_time, flops_per_token,  # noqa: F401
                           parameter_split, recipe_dtypes, recipe_weight_bytes)


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
        timing = batch_time(self.cfg, cost.weight_bytes, cost.gemm_dtype, cost.attention_dtype,
                            DeviceRates(self.bandwidth_bytes_s, self.rates), self.device)
        memory_ms, compute_ms = 1000 * timing.memory_s, 1000 * timing.compute_seconds(batch, sequence)
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
