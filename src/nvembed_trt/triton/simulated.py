"""`triton-repo --simulate [Nx]GPU:RECIPE`: a repository whose `encoder` is the GPU-timed stand-in
(models/encoder_sim.py) for the engine the recipe would give on that GPU profile, so the real front door, Triton and
batcher can be measured at a GPU's rate on a machine without one.

The stand-in has what the engine would have: its I/O (pooling in the graph: embeddings out), the profile's
optimisation profiles and serving limits, the memory check for the recipe's weights, and per batch the time the
performance model gives (nvembed_trt.performance, with the card's datasheet figures and efficiency from the GPU
registry), computed here once and written into its model config as plain numbers. `8xh100:fp8` stands for a node of
eight: one encoder instance per simulated device. The repository says "simulated" wherever it describes itself
(repo.json `simulated`, encoder kind `simulated`)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from ..artifacts.engine import EngineMeta
from ..artifacts.graph import ModelFacts
from ..config import NVEmbedConfig
from ..engines.gpus import GPUProfile, get_gpu, gpu_registry
from ..errors import InputError
from ..packing import ShapeLimit
from ..performance import BatchTime, recipe_batch_time, recipe_weight_bytes
from .spec import TOKEN_INPUTS

FORMAT = "[Nx]GPU:RECIPE, e.g. h100:fp8 or 8xh100:fp8"
MAX_DEVICES = 64
SIMULATION_FILE = "simulation.json"   # encoder/1/: what is simulated, and how (its hash is the encoder's)


@dataclass(frozen=True)
class Simulation:
    gpu: GPUProfile
    recipe: str
    devices: int
    timing: BatchTime
    weight_bytes: int

    @property
    def name(self) -> str:
        return f"{self.devices}x{self.gpu.name}:{self.recipe}" if self.devices > 1 else f"{self.gpu.name}:{self.recipe}"

    def describe(self) -> dict:
        perf = self.gpu.performance
        rates = perf.device_rates()
        return {"simulated": True, "name": self.name, "gpu_profile": self.gpu.name, "recipe": self.recipe,
                "devices": self.devices, "encoder_instances": self.devices, "weight_bytes": self.weight_bytes,
                "figures": {"memory_bandwidth_gb_s": perf.memory_bandwidth_gb_s, "tflops": dict(perf.tflops),
                            "efficiency": perf.efficiency.model_dump(), "source": perf.source,
                            "effective_bandwidth_gb_s": rates.bandwidth_bytes_s / 1e9},
                "timing": {k.removeprefix("sim_"): float(v) for k, v in self.timing.to_params().items()},
                "one_query_ms": {f"{t} tokens": round(1000 * self.timing.seconds(1, t), 3) for t in (32, 512)},
                "how": "per batch, the encoder sleeps max(weight bytes / bandwidth, padded tokens x FLOPs per token / "
                       "rate) and returns deterministic unit vectors (no model runs)"}


def parse_simulation(text: str, cfg: NVEmbedConfig) -> Simulation:
    """'h100:fp8' or '8xh100:fp8' -> the simulation; InputError naming what is wrong and the choices."""
    from ..recipes import RECIPES

    match = re.fullmatch(r"(?:(\d+)x)?([A-Za-z0-9._-]+):([A-Za-z0-9._-]+)", text.strip())
    if not match:
        raise InputError(f"--simulate {text!r}: expected {FORMAT}")
    devices, gpu_name, recipe = int(match.group(1) or 1), match.group(2).lower(), match.group(3).lower()
    if not 1 <= devices <= MAX_DEVICES:
        raise InputError(f"--simulate {text!r}: {devices} devices; choose 1..{MAX_DEVICES}")
    gpu = get_gpu(gpu_name)
    if recipe not in RECIPES:
        raise InputError(f"--simulate {text!r}: unknown recipe {recipe!r}; recipes: {', '.join(RECIPES)}")
    if gpu.performance is None:
        timed = [g.name for g in gpu_registry().values() if g.performance is not None]
        raise InputError(f"--simulate {text!r}: the GPU profile {gpu.name} has no performance figures to time the "
                         f"stand-in with; profiles that have: {', '.join(timed)}")
    try:
        timing = recipe_batch_time(cfg, recipe, gpu.performance.device_rates(), gpu.name)
    except KeyError as exc:
        raise InputError(f"--simulate {text!r}: recipe {recipe} cannot run on {gpu.name}: {exc.args[0]}") from None
    return Simulation(gpu, recipe, devices, timing, recipe_weight_bytes(cfg, recipe))


SIMULATED_PLAN = "simulated: no plan (the stand-in sleeps by the performance model)"


def simulated_engine(sim: Simulation, model: ModelFacts) -> EngineMeta:
    """engine.json as a build for this profile and recipe would write it, as far as the repository's checks read
    it (profiles, serving limits, builder workspace, I/O, the weights' bytes for the memory check)."""
    gpu = sim.gpu
    return EngineMeta.new(flavor="tensorrt", flavor_version="simulated",
                          gpu={"profile": gpu.name, "description": gpu.description,
                               "compute_capability": gpu.compute_capability},
                          profiles=gpu.profiles, serving=gpu.serving, builder=gpu.builder.model_dump(),
                          weights={"stripped": False}, engine_bytes=sim.weight_bytes, recipe=sim.recipe,
                          model=model, onnx="", inputs=list(TOKEN_INPUTS), outputs=["embeddings"],
                          plan=SIMULATED_PLAN)


def encoder_parameters(sim: Simulation, limits: tuple[ShapeLimit, ...]) -> dict[str, str]:
    """The stand-in's model config parameters: its timing numbers and the shapes it accepts."""
    return {**sim.timing.to_params(), "sim_shape_limits": json.dumps([s.__dict__ for s in limits]),
            "sim_name": sim.name, "sim_seed": "0"}


def write_encoder(sim: Simulation, version_dir: Path, shim: str) -> Path:
    """encoder/1/: the model's shim and simulation.json; returns the file whose hash names the encoder."""
    (version_dir / "model.py").write_text(shim.format(module="encoder_sim"))
    path = version_dir / SIMULATION_FILE
    path.write_bytes(simulation_bytes(sim))
    return path


def simulation_bytes(sim: Simulation) -> bytes:
    """simulation.json's contents (their hash names the encoder in repo.json)."""
    return (json.dumps(sim.describe(), indent=2, sort_keys=True) + "\n").encode()
