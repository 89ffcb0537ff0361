"""The front door's Prometheus metrics (prometheus-client), one registry per app. Names are a contract: the
Kubernetes autoscaler and ServiceMonitor read them (nvembed_trt.deploy).

With several front-door processes (`serve --workers N`) every process writes its values to files in
PROMETHEUS_MULTIPROC_DIR (prometheus-client's multiprocess mode, set before the workers start) and /v1/metrics
answers the sum over the live processes: counters and histograms add up, gauges say how (`livesum` for queues and
requests in flight, `livemin` for readiness, `max` for what every process reads alike from Triton)."""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
COUNT_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048)
QUEUE_METRIC = "nvembed_queue_duration_seconds"   # the autoscaling signal


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry()
        self.requests = Counter("nvembed_requests", "HTTP requests by route and status", ("route", "status"),
                                registry=registry)
        self.duration = Histogram("nvembed_request_duration_seconds", "request latency by route", ("route",),
                                  buckets=LATENCY_BUCKETS, registry=registry)
        self.queue = Histogram(QUEUE_METRIC, "per input: admission to dispatch to the encoder",
                               buckets=LATENCY_BUCKETS, registry=registry)
        self.input_tokens = Counter("nvembed_input_tokens", "tokens sent to the encoder (after truncation)",
                                    registry=registry)
        self.inputs_per_request = Histogram("nvembed_inputs_per_request", "inputs per embeddings request",
                                            buckets=COUNT_BUCKETS, registry=registry)
        self.in_flight = Gauge("nvembed_requests_in_flight", "requests being served", registry=registry,
                               multiprocess_mode="livesum")
        self.queue_rows = Gauge("nvembed_queue_rows", "inputs waiting for the encoder", registry=registry,
                                multiprocess_mode="livesum")
        self.queue_tokens = Gauge("nvembed_queue_tokens", "tokens waiting for or at the encoder (admission's "
                                  "backlog)", registry=registry, multiprocess_mode="livesum")
        self.encoder_rate = Gauge("nvembed_encoder_tokens_per_second", "the encoder's measured rate: real tokens "
                                  "per second of busy time (admission's estimate)", registry=registry,
                                  multiprocess_mode="livesum")
        self.refusals = Counter("nvembed_refusals", "requests refused before their work began, by reason",
                                ("reason",), registry=registry)
        self.ready = Gauge("nvembed_ready", "1 while a real embedding round trip works", registry=registry,
                           multiprocess_mode="livemin")
        self.encoder_tokens = Counter("nvembed_encoder_tokens", "tokens computed by the encoder: real ones and "
                                      "padding", ("kind",), registry=registry)
        self.batches = Counter("nvembed_encoder_batches", "batches sent to the encoder", registry=registry)
        self.restarts = Counter("nvembed_restarts", "healing actions by kind", ("what",), registry=registry)
        # the GPU duty cycle, from Triton's counters (serving/duty.py): alike in every front-door process
        self.encoder_busy = Gauge("nvembed_encoder_busy_seconds", "time inside the encoder's executions, all its "
                                  "instances (Triton's compute_infer), since Triton started", registry=registry,
                                  multiprocess_mode="max")
        self.encoder_devices = Gauge("nvembed_encoder_devices", "encoder instances running at once (GPUs, or "
                                     "simulated devices)", registry=registry, multiprocess_mode="max")
        self.duty_cycle = Gauge("nvembed_encoder_duty_cycle", "the encoder's busy time over devices x wall time, "
                                "over the last window", registry=registry, multiprocess_mode="max")
        self.device_duty_cycle = Gauge("nvembed_encoder_device_duty_cycle", "per device: a simulated device's busy "
                                       "share, or a GPU's utilisation (Triton's nv_gpu_utilization)", ("device",),
                                       registry=registry, multiprocess_mode="max")

    def render(self) -> bytes:
        directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        if directory:   # several front-door processes: the sum over the live ones
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry, path=directory)
            return generate_latest(registry)
        return generate_latest(self.registry)

    def set_duty(self, duty) -> None:
        """From a serving.duty.DutyCycle: the busy total, the window's duty cycle, each device's."""
        latest = duty.latest
        if latest is None:
            return
        self.encoder_busy.set(latest.busy_s)
        self.encoder_devices.set(duty.devices)
        overall = duty.overall()
        if overall is not None:
            self.duty_cycle.set(overall)
        for device, value in {**duty.per_device(), **latest.gpus}.items():
            self.device_duty_cycle.labels(device).set(value)

    def padding_efficiency(self) -> float | None:
        """Real tokens / tokens computed, from this process's own counters."""
        real = self.encoder_tokens.labels("real")._value.get()
        padded = real + self.encoder_tokens.labels("padded")._value.get()
        return real / padded if padded else None
