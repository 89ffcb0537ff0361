"""The capacity planner: its load simulation against queueing laws (utilisation = rate x service time; latency at a
trickle = one batch; no more than saturation gets through; two devices twice one), and the plan for the cards the
issue names (H100 fp8 and fp16 short queries: ~3,200 and ~1,600 per card at full batches)."""

from __future__ import annotations

import pytest

from nvembed_trt.cli.main import main
from nvembed_trt.engines.capacity import card_model, plan_capacity, simulate_load
from nvembed_trt.performance import BatchTime

TEN_MS = BatchTime(0.010, 0.0, 0.0, 0.0)       # every batch takes 10 ms, whatever it holds


def test_utilisation_law_and_a_trickle():
    load = simulate_load(TEN_MS, rows_per_batch=1, width=32, rate=50.0, requests=4000)
    assert load.duty_cycle == pytest.approx(50 * 0.010, rel=0.05) and load.mean_batch_rows == 1
    assert 10.0 <= load.p50_ms < 11.0 and not load.overloaded            # alone: one batch's time
    assert load.achieved_per_s == pytest.approx(50, rel=0.08)


def test_saturation_caps_what_gets_through_and_devices_add_up():
    one = simulate_load(TEN_MS, rows_per_batch=4, width=32, rate=380.0, requests=6000)
    assert one.achieved_per_s <= 400 * 1.01 and one.duty_cycle > 0.9 and one.mean_batch_rows > 3
    over = simulate_load(TEN_MS, rows_per_batch=4, width=32, rate=800.0, requests=20000)
    assert over.overloaded and over.p99_ms == float("inf")
    two = simulate_load(TEN_MS, rows_per_batch=4, width=32, rate=760.0, devices=2, requests=6000)
    assert not two.overloaded and two.achieved_per_s == pytest.approx(760, rel=0.08)


def test_h100_plan():
    card = card_model("h100", "fp8", 32)
    assert card.rows_per_batch == 64 and card.saturation_per_s() == pytest.approx(3198, rel=0.01)
    assert card_model("h100", "fp16", 32).saturation_per_s() == pytest.approx(1608, rel=0.01)
    plan = plan_capacity("h100", "fp8", 20000, p99_ms=150, cpu_us_per_request=300)
    per_card = plan["capacity_per_card"]["offered_per_s"]
    assert 0.9 * 3198 <= per_card <= 3198 and plan["capacity_per_card"]["p99_ms"] <= 150
    assert plan["cards"] == 7 and plan["at_target"]["p99_ms"] <= 150
    assert plan["front_door_cores"] == pytest.approx(6.0)


def test_cli_says_when_no_card_meets_the_target(capsys):
    assert main(["plan", "--gpu", "a10", "--recipe", "fp16", "--rate", "100", "--p99-ms", "20"]) == 1
    assert "one batch of one text takes 29.2 ms on a10; no load meets p99 <= 20 ms" in capsys.readouterr().out
    assert main(["plan", "--gpu", "a100", "--recipe", "fp8", "--rate", "100"]) == 2
    assert "recipe fp8 cannot run on a100: a100 has no fp8 matmul rate" in capsys.readouterr().err
