"""What the generated deployment relies on from the serving front door (`nvembed-trt serve`, module
nvembed_trt.serving) and from Triton: ports, probe routes, metric names, options. One place, so the manifests, the
consistency checks and the live test all read the same names."""

from __future__ import annotations

# container ports (names are the Service/ServiceMonitor port names; at most 15 characters each)
API_PORT = ("http", 8080)               # the front door (OpenAI/NIM /v1/...)
TRITON_PORTS = (("triton-http", 8000), ("triton-grpc", 8001), ("triton-metrics", 8002))

# front door routes the probes and the scrape use
HEALTH_READY = "/v1/health/ready"
HEALTH_LIVE = "/v1/health/live"
METRICS_PATH = "/v1/metrics"
TRITON_METRICS_PATH = "/metrics"
FRONT_DOOR_ROUTES = (HEALTH_READY, HEALTH_LIVE, METRICS_PATH, "/v1/embeddings", "/v1/models", "/v1/metadata")

# Prometheus metric families the front door exports (histograms add _bucket/_sum/_count)
FRONT_DOOR_METRICS = ("nvembed_requests_total", "nvembed_request_duration_seconds", "nvembed_queue_duration_seconds",
                      "nvembed_input_tokens_total", "nvembed_inputs_per_request", "nvembed_requests_in_flight",
                      "nvembed_queue_rows", "nvembed_ready", "nvembed_encoder_tokens_total", "nvembed_restarts_total")
TRITON_METRICS = ("nv_inference_queue_duration_us", "nv_inference_request_success", "nv_inference_count")

# the autoscaling signal: mean time a row waits between admission and batch dispatch, per pod
QUEUE_HISTOGRAM = "nvembed_queue_duration_seconds"
HPA_METRIC = "nvembed_queue_seconds"     # the name prometheus-adapter exposes it under (custom.metrics.k8s.io)

# `nvembed-trt serve` options the pod command uses
SERVE_OPTIONS = ("--repo", "--host", "--port", "--triton-host", "--http-port", "--grpc-port", "--metrics-port",
                 "--tritonserver", "--drain-timeout", "--triton-ready-timeout")
API_KEY_ENV = "NVEMBED_TRT_API_KEY"
TRITONSERVER_IN_NGC = "/opt/tritonserver/bin/tritonserver"
