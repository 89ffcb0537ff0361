"""The physical floor beside each GPU figure: weight bytes over measured memory bandwidth, and FLOPs over the
measured matmul rate, both measured at the start of a run. None on a machine without a GPU."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Floors:
    device: str
    bandwidth_bytes_s: float
    matmul_flops_s: float
    weight_bytes: int
    flops_per_token: float

    def annotate(self, tokens: int, measured_ms: float) -> dict:
        memory_ms = 1000 * self.weight_bytes / self.bandwidth_bytes_s
        compute_ms = 1000 * self.flops_per_token * tokens / self.matmul_flops_s
        floor = max(memory_ms, compute_ms)
        return {"floor_ms": floor, "floor_fraction": floor / measured_ms,
                "floor_kind": "memory" if memory_ms >= compute_ms else "compute"}

    def describe(self) -> dict:
        return {"device": self.device, "bandwidth_GB_s": self.bandwidth_bytes_s / 1e9,
                "matmul_TFLOP_s": self.matmul_flops_s / 1e12, "weight_bytes": self.weight_bytes,
                "flops_per_token": self.flops_per_token}


def measure_floors(weight_bytes: int, flops_per_token: float) -> Floors | None:
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    src = torch.empty(1 << 30, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):
        dst.copy_(src)
        a @ a
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(10):
        dst.copy_(src)
    end.record()
    torch.cuda.synchronize()
    bandwidth = 2 * src.numel() * 10 / (start.elapsed_time(end) / 1000)  # read + write
    start.record()
    for _ in range(10):
        a @ a
    end.record()
    torch.cuda.synchronize()
    flops = 2 * 8192**3 * 10 / (start.elapsed_time(end) / 1000)
    del src, dst, a
    return Floors(torch.cuda.get_device_name(0), bandwidth, flops, weight_bytes, flops_per_token)
