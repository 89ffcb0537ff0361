"""Capacity planning: how many cards of a GPU profile serve N requests/s of a workload at a p99 latency target.

Each card's batch times come from the performance model (nvembed_trt.performance, the registry's figures for the
card and the recipe's dtypes); the rows a batch may hold at a width come from the profile's packer (the shapes the
served path sends). Latency under load is not guessed from a formula: `simulate_load` replays Poisson arrivals
through the front door's batching policy (whenever one of devices + 1 dispatch slots is free, the oldest waiting rows
are sent as one batch, as large as the packer allows; Triton gives each batch to the device that frees first) and
measures the requests' latencies. A card's capacity is the highest rate whose p99 meets the target (bisection on
that simulation); the cards needed are the requests/s over it. What the model leaves out: the front door's own
time and the network (measured by bench-serving, published per request), and rows of mixed lengths (every text
here has the workload's token count)."""

from __future__ import annotations

import heapq
import math
import random
from collections import deque
from dataclasses import asdict, dataclass

from ..config import NVEmbedConfig
from ..errors import InputError
from ..performance import BatchTime, recipe_batch_time
from .gpus import GPUProfile, get_gpu

DESIGN_P99_MS = 150.0


@dataclass(frozen=True)
class Load:
    """What `simulate_load` measured at one offered rate."""

    offered_per_s: float
    achieved_per_s: float
    p50_ms: float
    p99_ms: float
    duty_cycle: float            # the devices' busy time over the run's wall time
    mean_batch_rows: float
    overloaded: bool             # the queue grew without bound: the rate is beyond the devices


def simulate_load(timing: BatchTime, rows_per_batch: int, width: int, rate: float, devices: int = 1,
                  texts_per_request: int = 1, requests: int = 20000, seed: int = 0) -> Load:
    """Poisson arrivals of `requests` requests at `rate`/s, each `texts_per_request` rows of `width` tokens, through
    the front door's policy with `devices` devices and devices + 1 dispatch slots. The first 10% warm up."""
    rng = random.Random(seed)
    arrivals, t = [], 0.0
    for _ in range(requests):
        t += rng.expovariate(rate)
        arrivals.append(t)
    left = [texts_per_request] * requests
    done_at = [math.inf] * requests
    pending: deque[int] = deque()                  # one entry per waiting row: its request
    free = [0.0] * devices                          # when each device is next free
    running: list[tuple[float, int, list[int]]] = []  # (end, sequence, rows' requests)
    busy, batches, rows_sent, inflight, nxt, seq = 0.0, 0, 0, 0, 0, 0
    backlog = 50 * rows_per_batch * devices
    while nxt < requests or running:
        if nxt < requests and (not running or arrivals[nxt] <= running[0][0]):
            now = arrivals[nxt]
            pending.extend([nxt] * texts_per_request)
            nxt += 1
            if len(pending) > backlog:
                return Load(rate, 0.0, math.inf, math.inf, 1.0, rows_per_batch, True)
        else:
            now, _, members = heapq.heappop(running)
            inflight -= 1
            for r in members:
                left[r] -= 1
                if left[r] == 0:
                    done_at[r] = now
        while pending and inflight < devices + 1:
            members = [pending.popleft() for _ in range(min(rows_per_batch, len(pending)))]
            d = min(range(devices), key=free.__getitem__)
            start = max(now, free[d])
            free[d] = start + timing.seconds(len(members), width)
            busy += free[d] - start
            batches, rows_sent, inflight, seq = batches + 1, rows_sent + len(members), inflight + 1, seq + 1
            heapq.heappush(running, (free[d], seq, members))
    warm = requests // 10
    latencies = sorted(done_at[i] - arrivals[i] for i in range(warm, requests))
    wall = max(done_at) - arrivals[0]
    return Load(rate, (requests - warm) / (done_at[-1] - arrivals[warm]),
                1000 * latencies[len(latencies) // 2], 1000 * latencies[min(len(latencies) - 1,
                                                                         int(0.99 * len(latencies)))],
                busy / (devices * wall), rows_sent / batches, False)


@dataclass(frozen=True)
class CardModel:
    """One card of a profile running a recipe, for a workload of texts of `tokens` tokens."""

    gpu: GPUProfile
    recipe: str
    timing: BatchTime
    tokens: int
    texts_per_request: int
    rows_per_batch: int

    def saturation_per_s(self, devices: int = 1) -> float:
        """Requests/s with every batch full and every device always busy."""
        return devices * self.rows_per_batch / self.timing.seconds(self.rows_per_batch, self.tokens) \
            / self.texts_per_request

    def load(self, rate: float, devices: int = 1, requests: int = 20000) -> Load:
        return simulate_load(self.timing, self.rows_per_batch, self.tokens, rate, devices, self.texts_per_request,
                             requests)

    def capacity(self, p99_ms: float, devices: int = 1) -> Load | None:
        """The highest rate (within 1%) whose p99 is at most p99_ms, with its load; None if even a trickle misses
        it (one batch alone takes longer)."""
        high = self.saturation_per_s(devices)
        low_load = self.load(high * 0.01, devices, 2000)
        if low_load.p99_ms > p99_ms:
            return None
        best, low = low_load, high * 0.01
        while high - low > 0.01 * high:
            mid = (low + high) / 2
            result = self.load(mid, devices)
            if not result.overloaded and result.p99_ms <= p99_ms:
                best, low = result, mid
            else:
                high = mid
        return best


def card_model(gpu_name: str, recipe: str, tokens: int, texts_per_request: int = 1,
               cfg: NVEmbedConfig | None = None) -> CardModel:
    gpu = get_gpu(gpu_name)
    if gpu.performance is None:
        raise InputError(f"GPU profile {gpu.name} has no performance figures (the registry's `performance` block)")
    if tokens < 2 or texts_per_request < 1:
        raise InputError(f"need tokens >= 2 and texts per request >= 1, got {tokens} and {texts_per_request}")
    rows = gpu.packer().rows_at(tokens) if tokens <= gpu.serving.max_sequence_length else 0
    if rows == 0:
        raise InputError(f"{gpu.name}'s profiles serve rows of up to {gpu.serving.max_sequence_length} tokens, not "
                         f"{tokens}")
    try:
        timing = recipe_batch_time(cfg or NVEmbedConfig(), recipe, gpu.performance.device_rates(), gpu.name)
    except KeyError as exc:
        raise InputError(f"recipe {recipe} cannot run on {gpu.name}: {exc.args[0]}") from None
    return CardModel(gpu, recipe, timing, tokens, texts_per_request, rows)


def plan_capacity(gpu_name: str, recipe: str, requests_per_s: float, p99_ms: float = DESIGN_P99_MS,
                  tokens: int = 32, texts_per_request: int = 1, cpu_us_per_request: float | None = None,
                  cfg: NVEmbedConfig | None = None) -> dict:
    """How many cards serve `requests_per_s` at p99 <= p99_ms, with the figures behind the answer."""
    from ..recipes import RECIPES

    if recipe not in RECIPES:
        raise InputError(f"unknown recipe {recipe!r}; recipes: {', '.join(RECIPES)}")
    if not requests_per_s > 0 or not p99_ms > 0:
        raise InputError(f"need a rate and a p99 target above 0, got {requests_per_s} and {p99_ms}")
    card = card_model(gpu_name, recipe, tokens, texts_per_request, cfg)
    one = card.timing.seconds(1, tokens)
    full = card.timing.seconds(card.rows_per_batch, tokens)
    report = {"gpu": card.gpu.name, "recipe": recipe, "tokens_per_text": tokens,
              "texts_per_request": texts_per_request, "p99_target_ms": p99_ms, "requests_per_s": requests_per_s,
              "one_text_batch_ms": 1000 * one, "full_batch": {"rows": card.rows_per_batch, "ms": 1000 * full,
                                                              "requests_per_s": card.saturation_per_s()},
              "figures": card.gpu.performance.source}
    capacity = card.capacity(p99_ms)
    if capacity is None:
        report |= {"cards": None, "why": f"one batch of one text takes {1000 * one:.1f} ms on {card.gpu.name}; "
                                         f"no load meets p99 <= {p99_ms:g} ms"}
        return report
    cards = math.ceil(requests_per_s / capacity.offered_per_s)
    report |= {"capacity_per_card": asdict(capacity), "cards": cards,
               "at_target": asdict(card.load(requests_per_s / cards))}
    if cpu_us_per_request is not None:
        report["front_door_cores"] = requests_per_s * cpu_us_per_request / 1e6
    return report
