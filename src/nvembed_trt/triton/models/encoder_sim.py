"""Triton python-backend model `encoder` of a simulated repository (`triton-repo --simulate GPU:RECIPE`): the
GPU-timed stand-in for an engine. It has the engine's I/O (input_ids, attention_mask, pool_mask -> embeddings) and
accepts only the shapes the engine's optimisation profiles cover; per batch it waits, asleep, for the time the
simulated card would take (nvembed_trt.performance.BatchTime, whose numbers the generator wrote into the model
config), then answers deterministic unit vectors: a row's vector depends only on its real tokens and pool mask, so
the same row gives the same vector whatever batch, padding or instance it comes in. Each instance stands for one
device. No torch, no model: what it costs the host is the python backend's hop and a few gathers per row."""

from __future__ import annotations

import json
import time

import numpy as np

from ...packing import ShapeLimit
from ...performance import BatchTime
from .common import error_response, settings_from_args, triton_utils

INPUTS, OUTPUT = ("input_ids", "attention_mask", "pool_mask"), "embeddings"
BUSY_METRIC = "nvembed_simulated_device_busy_seconds"    # Triton's metrics endpoint, {device="0".."N-1"}
TABLE_ROWS, INDEX_BITS = 512, 9           # a unit row times two sign patterns: 512^3 distinct vectors
_GOLDEN, _MIX1, _MIX2 = (np.uint64(0x9E3779B97F4A7C15), np.uint64(0xBF58476D1CE4E5B9),
                         np.uint64(0x94D049BB133111EB))


def _splitmix(x: np.ndarray) -> np.ndarray:
    """splitmix64, elementwise on uint64 (wrapping arithmetic): a well-mixed hash of each value."""
    with np.errstate(over="ignore"):
        z = x + _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * _MIX1
        z = (z ^ (z >> np.uint64(27))) * _MIX2
        return z ^ (z >> np.uint64(31))


class StandIn:
    """The simulated card: `run` answers a packed batch with deterministic unit embeddings after the time the card
    would take (also the serving benchmark's bare encoder for a simulated repository)."""

    def __init__(self, dim: int, timing: BatchTime, seed: int = 0):
        self.timing = timing
        rng = np.random.default_rng(seed)
        table = rng.standard_normal((TABLE_ROWS, dim), dtype=np.float32)
        self.table = table / np.linalg.norm(table, axis=1, keepdims=True)           # unit rows...
        self.signs = np.where(rng.random((2, TABLE_ROWS, dim)) < 0.5, -1, 1).astype(np.float32)  # ...kept unit by +-1
        self.positions = _splitmix(np.arange(1, 4097, dtype=np.uint64))

    def _coefficients(self, width: int) -> np.ndarray:
        if width > len(self.positions):
            self.positions = _splitmix(np.arange(1, 2 * width + 1, dtype=np.uint64))
        return self.positions[:width]

    def row_hashes(self, arrays: dict[str, np.ndarray]) -> np.ndarray:
        """One uint64 per row from its real tokens and pool mask (padding contributes nothing)."""
        ids = arrays["input_ids"].astype(np.uint64)
        real = arrays["attention_mask"].astype(np.uint64)
        keyed = ((ids + np.uint64(1)) * np.uint64(2) + arrays["pool_mask"].astype(np.uint64)) * real
        with np.errstate(over="ignore"):
            return _splitmix((keyed * self._coefficients(ids.shape[1])).sum(axis=1, dtype=np.uint64))

    def embed(self, arrays: dict[str, np.ndarray]) -> np.ndarray:
        h = self.row_hashes(arrays)
        mask = np.uint64(TABLE_ROWS - 1)
        picks = [(h >> np.uint64(INDEX_BITS * k)) & mask for k in range(3)]
        out = self.table[picks[0]]
        out *= self.signs[0][picks[1]]
        out *= self.signs[1][picks[2]]
        return out

    def run(self, arrays: dict[str, np.ndarray]) -> np.ndarray:
        start = time.perf_counter()
        out = self.embed(arrays)
        remaining = start + self.timing.seconds(*arrays["input_ids"].shape) - time.perf_counter()
        if remaining > 0:
            time.sleep(remaining)     # the card is busy; the host CPU is not
        return out


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        params, _ = settings_from_args(args)
        self.pb = triton_utils()
        config = json.loads(args["model_config"])
        self.limits = [ShapeLimit(**s) for s in json.loads(params["sim_shape_limits"])]
        self.stand_in = StandIn(int(config["output"][0]["dims"][0]), BatchTime.from_params(params),
                                int(params.get("sim_seed", "0")))
        # each instance is one simulated device: its busy time is a Triton custom metric, labelled by device
        self.device = args.get("model_instance_name", "encoder_0").rsplit("_", 1)[-1]
        self.family = self.pb.MetricFamily(name=BUSY_METRIC, kind=self.pb.MetricFamily.COUNTER,
                                           description="seconds each simulated device spent on batches")
        self.busy = self.family.Metric(labels={"device": self.device})

    def _covered(self, rows: int, width: int) -> str | None:
        if any(limit.covers(rows, width) for limit in self.limits):
            return None
        return (f"batch {rows} x {width} is outside every optimisation profile of the simulated engine "
                f"({'; '.join(limit.describe() for limit in self.limits)})")

    def execute(self, requests):
        responses = []
        for request in requests:   # one device: batches run one after another
            try:
                arrays = {n: self.pb.get_input_tensor_by_name(request, n).as_numpy() for n in INPUTS}
                rows, width = arrays["input_ids"].shape
                problem = self._covered(rows, width)
                if problem:
                    responses.append(error_response(self.pb, problem))
                    continue
                start = time.perf_counter()
                out = self.stand_in.run(arrays)
                self.busy.increment(time.perf_counter() - start)
            except Exception as exc:  # noqa: BLE001 - a malformed request is answered; the model keeps serving
                responses.append(error_response(self.pb, f"simulated encoder: {type(exc).__name__}: {exc}"))
                continue
            responses.append(self.pb.InferenceResponse([self.pb.Tensor(OUTPUT, out.astype(np.float32))]))
        return responses
