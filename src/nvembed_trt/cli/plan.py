"""nvembed-trt plan: how many cards of a GPU profile serve N requests/s at a p99 target (engines/capacity.py)."""

from __future__ import annotations

import argparse
import json

from ..engines.capacity import DESIGN_P99_MS


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("plan", help="cards needed for a request rate at a p99 latency target, per GPU profile",
                       description="Capacity planning from the performance model (the GPU registry's datasheet "
                                   "figures and efficiency; the recipe's weight bytes and matmul dtypes): each card's "
                                   "batch times, then Poisson arrivals replayed through the front door's batching "
                                   "policy for the highest rate per card whose p99 meets the target. Excludes the "
                                   "front door's own time and the network; say --cpu-us-per-request (bench-serving "
                                   "measures it) for the CPU cores that feed the cards.")
    p.add_argument("--gpu", required=True, help="GPU profile (nvembed-trt gpus lists them)")
    p.add_argument("--recipe", required=True, help="precision recipe, e.g. fp16, fp8, int8")
    p.add_argument("--rate", type=float, required=True, help="requests per second to serve")
    p.add_argument("--p99-ms", type=float, default=DESIGN_P99_MS, help=f"p99 latency target (default "
                                                                         f"{DESIGN_P99_MS:g} ms)")
    p.add_argument("--tokens", type=int, default=32, help="tokens per text, instruction included (default 32: a "
                                                           "short instructed query)")
    p.add_argument("--texts-per-request", type=int, default=1)
    p.add_argument("--cpu-us-per-request", type=float, help="front-door CPU microseconds per request, to add the "
                                                             "cores that feed the cards")
    p.add_argument("--model", default="nv-embed-v2", help="preset or checkpoint directory whose architecture is "
                                                          "timed (default: the full-size nv-embed-v2)")
    p.add_argument("--json", action="store_true", help="print the whole plan as JSON")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..engines.capacity import plan_capacity
    from ..source import resolve_model

    plan = plan_capacity(args.gpu, args.recipe, args.rate, args.p99_ms, args.tokens, args.texts_per_request,
                         args.cpu_us_per_request, resolve_model(args.model, progress=False).config)
    if args.json:
        print(json.dumps(plan, indent=2))
        return 0
    full = plan["full_batch"]
    print(f"{plan['gpu']} {plan['recipe']}, {plan['texts_per_request']} text(s) of {plan['tokens_per_text']} tokens "
          f"per request: one text alone {plan['one_text_batch_ms']:.2f} ms; full batches of {full['rows']} rows "
          f"{full['ms']:.1f} ms, {full['requests_per_s']:,.0f} requests/s per card at saturation")
    if plan["cards"] is None:
        print(f"no card count meets the target: {plan['why']}")
        return 1
    cap, at = plan["capacity_per_card"], plan["at_target"]
    print(f"per card at p99 <= {plan['p99_target_ms']:g} ms: {cap['offered_per_s']:,.0f} requests/s (p50 "
          f"{cap['p50_ms']:.1f} ms, p99 {cap['p99_ms']:.1f} ms, mean batch {cap['mean_batch_rows']:.1f} rows)")
    print(f"{plan['requests_per_s']:,.0f} requests/s need {plan['cards']} card(s): each at "
          f"{at['offered_per_s']:,.0f}/s, p50 {at['p50_ms']:.1f} ms, p99 {at['p99_ms']:.1f} ms, duty cycle "
          f"{at['duty_cycle']:.2f}")
    if "front_door_cores" in plan:
        print(f"front door: {plan['front_door_cores']:.1f} CPU cores at {args.cpu_us_per_request:g} us per request")
    print(f"figures: {plan['figures']}")
    return 0
