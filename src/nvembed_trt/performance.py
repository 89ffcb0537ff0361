"""The performance model of an encoder on a GPU, in one place: what a batch of `rows x width` tokens costs a card.

A batch streams the weights once (weight bytes over the card's bandwidth) and computes every token of the padded
batch (FLOPs over the rate of the dtype each matmul runs in); it takes the longer of the two. Weight bytes come from
the recipe's weight dtypes (`recipe_weight_bytes`): fp32 4 B per parameter, fp16/bf16 2 B, int8/fp8 1 B plus a
per-channel fp32 scale, int4 0.5 B plus one fp16 scale per block; what a quantised recipe leaves unquantised
(embedding table, norms, latents, biases) stays 16-bit. A token's FLOPs split into the weight GEMMs (2 per GEMM
weight, at the rate of the recipe's GEMM dtype: fp8/int8 at the 8-bit rate, weight-only recipes at fp16, as they
dequantise into fp16 GEMMs) and attention's activation x activation products (q.k and p.v over the sequence in every
body layer, over the latents in the latent attention) at the 16-bit rate, or TF32 for fp32.

Users: the physical floors beside measured figures (validation/floors.py), the GPU-timed stand-in encoder (a
simulated repository's `encoder` sleeps `BatchTime.seconds` per batch: triton/simulated.py), and the capacity
planner (engines/capacity.py). Stdlib only at import: the stand-in runs this inside Triton's python backend, where
torch is absent; the functions that count parameters import the model lazily."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

BYTES = {"fp32": 4.0, "fp16": 2.0, "bf16": 2.0, "int8": 1.0, "fp8": 1.0, "int4": 0.5}
# rate keys: "fp32" (CUDA cores: PyTorch's default, TF32 off), "tf32" (TensorRT / ONNX Runtime fp32 GEMMs),
# "fp16", "bf16", "int8", "fp8"
RATE_KEYS = ("fp32", "tf32", "fp16", "bf16", "int8", "fp8")


def _is_gemm_weight(name: str, shape: tuple[int, ...]) -> bool:
    """The 2-D weights that feed matmuls (linear layers); the embedding table and the latents are not GEMM weights."""
    return len(shape) == 2 and name.endswith(".weight") and "embed_tokens" not in name


_SPLITS: dict[str, tuple[int, int, int]] = {}


def parameter_split(cfg) -> tuple[int, int, int]:
    """(GEMM weight parameters, their output channels summed, other parameters) of the model (an NVEmbedConfig)."""
    from .checkpoint.loader import expected_shapes, meta_model

    if repr(cfg) in _SPLITS:
        return _SPLITS[repr(cfg)]
    gemm = channels = other = 0
    for name, shape in expected_shapes(meta_model(cfg)).items():
        if _is_gemm_weight(name, shape):
            gemm += math.prod(shape)
            channels += shape[0]
        else:
            other += math.prod(shape)
    _SPLITS[repr(cfg)] = gemm, channels, other
    return gemm, channels, other


def recipe_dtypes(recipe: str) -> tuple[str, str, str]:
    """(weight format of the GEMM weights, GEMM rate key, dtype of everything else) for a recipe name, or for a
    PyTorch dtype name (float32, float16, bfloat16)."""
    from .recipes import RECIPES

    torch_names = {"float32": ("fp32", "fp32", "fp32"), "float16": ("fp16", "fp16", "fp16"),
                   "bfloat16": ("bf16", "bf16", "bf16")}
    if recipe in torch_names:
        return torch_names[recipe]
    r = RECIPES[recipe]
    if r.method == "copy":
        return "fp32", "tf32", "fp32"
    if r.method == "autocast":
        return r.low_precision, r.low_precision, r.low_precision
    if r.method == "weight-only":
        return r.weight_format, "fp16", "fp16"
    return r.quantize_mode, r.quantize_mode, "fp16"      # quantize / w8a8: 8-bit GEMMs


def recipe_weight_bytes(cfg, recipe: str) -> int:
    from .recipes import RECIPES

    weights, _, rest = recipe_dtypes(recipe)
    gemm, channels, other = parameter_split(cfg)
    total = gemm * BYTES[weights] + other * BYTES[rest]
    if weights in ("int8", "fp8"):
        total += channels * 4                                  # one fp32 scale per output channel
    elif weights == "int4":
        total += gemm / RECIPES[recipe].block_size * 2         # one fp16 scale per block of input channels
    return int(total)


def attention_dtype(recipe: str) -> str:
    _, gemm, rest = recipe_dtypes(recipe)
    return {"fp32": gemm}.get(rest, "bf16" if rest == "bf16" else "fp16")


def flops_coefficients(cfg) -> tuple[float, float, float]:
    """(weight-GEMM FLOPs per token, attention FLOPs per token per position of the sequence, attention FLOPs per
    token independent of the sequence): 2 per GEMM weight; q.k and p.v over the sequence in every body layer; the
    latent attention's q.k and p.v over the latents."""
    gemm, _, _ = parameter_split(cfg)
    b, la = cfg.body, cfg.latent
    return 2.0 * gemm, float(4 * b.num_layers * b.num_heads * b.head_dim), float(4 * la.num_latents * la.inner_dim)


def flops_per_token(cfg, sequence: int) -> tuple[float, float]:
    """(weight-GEMM FLOPs, attention FLOPs) per token at this sequence length."""
    gemm, per_position, fixed = flops_coefficients(cfg)
    return gemm, per_position * sequence + fixed


@dataclass(frozen=True)
class DeviceRates:
    """What a card achieves: bytes/s it streams weights at, FLOP/s per RATE_KEYS entry it multiplies at."""

    bandwidth_bytes_s: float
    rates: dict[str, float]

    def rate(self, key: str, device: str = "this card") -> float:
        if key not in self.rates:
            raise KeyError(f"{device} has no {key} matmul rate (it has {', '.join(self.rates)})")
        return self.rates[key]


@dataclass(frozen=True)
class BatchTime:
    """Seconds a batch takes on one card: max(memory_s, rows x width x per-token compute at that width). Built once
    from the model, recipe and card (`batch_time`); carried as plain numbers (`to_params`) into a Triton model
    config, where the stand-in encoder evaluates it without the model or torch."""

    memory_s: float                       # the weights streamed once
    gemm_s_per_token: float               # weight GEMMs
    attention_s_per_token: float          # latent attention (no dependence on the width)
    attention_s_per_token_position: float  # body attention: per token, per position of the padded width

    def compute_seconds(self, rows: int, width: int) -> float:
        per_token = self.gemm_s_per_token + self.attention_s_per_token + self.attention_s_per_token_position * width
        return rows * width * per_token

    def seconds(self, rows: int, width: int) -> float:
        return max(self.memory_s, self.compute_seconds(rows, width))

    def memory_bound(self, rows: int, width: int) -> bool:
        return self.memory_s >= self.compute_seconds(rows, width)

    def to_params(self) -> dict[str, str]:
        return {f"sim_{k}": repr(v) for k, v in asdict(self).items()}

    @classmethod
    def from_params(cls, params: dict[str, str]) -> BatchTime:
        return cls(**{f.name: float(params[f"sim_{f.name}"]) for f in fields(cls)})


def batch_time(cfg, weight_bytes: int, gemm_dtype: str, attention_dtype: str, device: DeviceRates,
               name: str = "this card") -> BatchTime:
    """The model's cost on a card: weight bytes, GEMMs at `gemm_dtype`'s rate, attention at `attention_dtype`'s.
    Raises KeyError naming the rate the card lacks (fp8 before Ada)."""
    gemm, per_position, fixed = flops_coefficients(cfg)
    g, a = device.rate(gemm_dtype, name), device.rate(attention_dtype, name)
    return BatchTime(weight_bytes / device.bandwidth_bytes_s, gemm / g, fixed / a, per_position / a)


def recipe_batch_time(cfg, recipe: str, device: DeviceRates, name: str = "this card") -> BatchTime:
    """batch_time for a precision recipe's weights and matmul dtypes."""
    _, gemm_dtype, _ = recipe_dtypes(recipe)
    return batch_time(cfg, recipe_weight_bytes(cfg, recipe), gemm_dtype, attention_dtype(recipe), device, name)
