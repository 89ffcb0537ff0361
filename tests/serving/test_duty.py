"""The duty cycle from Triton's counters (serving/duty.py): one scrape as Triton 2.51 writes it, parsed; the ratio
over a window and between two scrapes."""

from __future__ import annotations

import pytest

from nvembed_trt.serving.duty import BusySample, DutyCycle, between, sample_from_text

SCRAPE = """# HELP nv_inference_compute_infer_duration_us Cumulative compute inference duration in microseconds
# TYPE nv_inference_compute_infer_duration_us counter
nv_inference_compute_infer_duration_us{{model="nv_embed",version="1"}} 66477
nv_inference_compute_infer_duration_us{{model="encoder",version="1"}} {busy_us}
# HELP nvembed_simulated_device_busy_seconds seconds each simulated device spent on batches
# TYPE nvembed_simulated_device_busy_seconds counter
nvembed_simulated_device_busy_seconds{{device="1"}} {d1}
nvembed_simulated_device_busy_seconds{{device="0"}} {d0}
# HELP nv_gpu_utilization GPU utilization rate [0.0 - 1.0)
# TYPE nv_gpu_utilization gauge
nv_gpu_utilization{{gpu_uuid="GPU-1234"}} 0.93
"""


def test_a_scrape_gives_the_encoders_busy_time_and_each_device():
    sample = sample_from_text(SCRAPE.format(busy_us=3051953, d0=1.3112, d1=1.2936), at=5.0)
    assert sample.busy_s == pytest.approx(3.051953) and sample.at == 5.0
    assert sample.devices == {"0": pytest.approx(1.3112), "1": pytest.approx(1.2936)}
    assert sample.gpus == {"GPU-1234": pytest.approx(0.93)}


def test_duty_over_a_window_and_between_scrapes():
    duty = DutyCycle(devices=2, window_s=10.0)
    assert duty.overall() is None
    for t, busy in ((0.0, 0.0), (5.0, 9.0), (10.0, 18.0), (15.0, 20.0)):
        duty.add(BusySample(t, busy, {"0": busy / 2, "1": busy / 2}))
    assert [s.at for s in duty.samples] == [5.0, 10.0, 15.0]          # the window keeps 10 s
    assert duty.overall() == pytest.approx((20.0 - 9.0) / (2 * 10.0))
    assert duty.per_device() == {"0": pytest.approx(0.55), "1": pytest.approx(0.55)}
    before = sample_from_text(SCRAPE.format(busy_us=1_000_000, d0=0.5, d1=0.5), at=0.0)
    after = sample_from_text(SCRAPE.format(busy_us=2_900_000, d0=1.45, d1=1.4), at=1.0)
    figures = between(before, after, devices=2)
    assert figures["overall"] == pytest.approx(0.95) and figures["devices"] == {"0": pytest.approx(0.95),
                                                                                   "1": pytest.approx(0.9)}
