"""GPU duty cycle: the encoder's busy time over wall time, read from Triton's own counters, so it holds for real
engines and the simulated stand-in alike, and for any number of front-door processes feeding one Triton.

- All devices: Triton's `nv_inference_compute_infer_duration_us{model="encoder"}` (time inside the encoder's
  executions, summed over its instances), over devices x wall time.
- Per device: a simulated repository's stand-in counts each simulated device's busy seconds
  (`nvembed_simulated_device_busy_seconds{device}`, a Triton custom metric); on a GPU host Triton reports
  `nv_gpu_utilization{gpu_uuid}` (NVML: the share of time a kernel ran) per GPU.

`DutyCycle` keeps samples of these over a sliding window; `sample_from_text` parses one scrape."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

TRITON_BUSY = "nv_inference_compute_infer_duration_us"
SIMULATED_BUSY = "nvembed_simulated_device_busy_seconds"
GPU_UTILIZATION = "nv_gpu_utilization"


@dataclass(frozen=True)
class BusySample:
    at: float                                                   # time.monotonic() of the scrape
    busy_s: float                                               # the encoder model, all instances
    devices: dict[str, float] = field(default_factory=dict)     # simulated device -> busy seconds
    gpus: dict[str, float] = field(default_factory=dict)        # GPU uuid -> utilisation 0..1 (Triton's, now)


def sample_from_text(text: str, model: str = "encoder", at: float | None = None) -> BusySample:
    """One scrape of Triton's metrics endpoint -> the encoder's busy time and the per-device figures."""
    busy, devices, gpus = 0.0, {}, {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name in (TRITON_BUSY, TRITON_BUSY + "_total") and s.labels.get("model") == model:
                busy += s.value / 1e6
            elif s.name in (SIMULATED_BUSY, SIMULATED_BUSY + "_total"):
                devices[s.labels.get("device", "0")] = s.value
            elif s.name == GPU_UTILIZATION:
                gpus[s.labels.get("gpu_uuid", "0")] = s.value
    return BusySample(time.monotonic() if at is None else at, busy, devices, gpus)


class DutyCycle:
    """Busy time over `devices` x wall time, over the samples of the last `window_s` seconds."""

    def __init__(self, devices: int, window_s: float = 10.0):
        self.devices, self.window_s = max(1, devices), window_s
        self.samples: deque[BusySample] = deque()

    def add(self, sample: BusySample) -> None:
        self.samples.append(sample)
        while len(self.samples) > 2 and sample.at - self.samples[1].at >= self.window_s:
            self.samples.popleft()

    @property
    def latest(self) -> BusySample | None:
        return self.samples[-1] if self.samples else None

    def overall(self) -> float | None:
        """All devices together (0..1) over the window; None before two samples."""
        if len(self.samples) < 2 or self.samples[-1].at <= self.samples[0].at:
            return None
        first, last = self.samples[0], self.samples[-1]
        return min(1.0, (last.busy_s - first.busy_s) / (self.devices * (last.at - first.at)))

    def per_device(self) -> dict[str, float]:
        """Each simulated device's duty cycle over the window (the stand-in's own counters)."""
        if len(self.samples) < 2:
            return {}
        first, last = self.samples[0], self.samples[-1]
        span = last.at - first.at
        return {d: min(1.0, (v - first.devices.get(d, 0.0)) / span) for d, v in sorted(last.devices.items())
                if span > 0}


def encoder_devices(spec, meta) -> int:
    """Encoder instances that run at once: a simulated repository's devices; on a GPU, Triton's instances per GPU
    times the GPUs visible (a KIND_GPU instance group places its count on every GPU); on CPU, its instances."""
    simulated = meta.simulated      # repo.json (RepoMeta)
    if simulated:
        return int(simulated["devices"])
    if spec.on_gpu:
        from ..hostgpu import detect_gpus

        return spec.encoder_instances * max(1, len(detect_gpus().gpus))
    return spec.encoder_instances


async def poll(url: str, duty: DutyCycle, publish, interval_s: float = 2.0) -> None:
    """Scrape Triton's metrics endpoint every interval_s, add each sample and call publish(duty); a failed scrape
    is skipped (Triton may be restarting)."""
    import asyncio

    import httpx

    async with httpx.AsyncClient(timeout=5.0) as client:
        while True:
            try:
                duty.add(sample_from_text((await client.get(url)).text))
                publish(duty)
            except (httpx.HTTPError, ValueError):
                pass
            await asyncio.sleep(interval_s)


def between(before: BusySample, after: BusySample, devices: int) -> dict:
    """The duty cycle between two scrapes: overall and per device (for a benchmark's load level)."""
    span = after.at - before.at
    if span <= 0:
        return {"overall": None, "devices": {}}
    return {"overall": (after.busy_s - before.busy_s) / (max(1, devices) * span),
            "devices": {d: (v - before.devices.get(d, 0.0)) / span for d, v in sorted(after.devices.items())},
            "gpu_utilization": dict(after.gpus), "seconds": span}
