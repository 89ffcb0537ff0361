"""Precision recipes, one registry. Each recipe is a schema-checked object carrying how it is made and the
accuracy it must keep on held-out text; choices shown to users come from RECIPES.

`max_ndcg10_drop` is the ranking budget: on the labelled slice (retrieval/stdlib_set.py) the recipe's nDCG@10 may
fall below the fp32 reference's by at most this much (absolute). Budgets stay at or above 0.001, the spread two
servers of the same model show (vLLM #52630): tighter ones would measure noise."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, model_validator

from .errors import InputError

FP32_OPS = ("LayerNormalization", "Softmax", "ReduceMean", "ReduceSum", "ReduceL2", "Pow", "Sqrt", "Reciprocal",
            "Div", "Erf")  # norms, softmax, pooling and the L2 norm stay fp32 under AutoCast


class Recipe(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    description: str
    method: Literal["copy", "autocast", "quantize", "weight-only", "w8a8"]
    low_precision: Literal["fp16", "bf16"] | None = None         # autocast
    quantize_mode: Literal["int8", "fp8"] | None = None          # quantize (ModelOpt), w8a8 (our writer)
    calibration_method: Literal["max", "entropy"] | None = None  # quantize, w8a8 (max only)
    weight_format: Literal["int8", "int4", "fp8"] | None = None  # weight-only, w8a8 (= quantize_mode)
    block_size: int = 128                                         # int4: input channels per scale
    smoothquant_alpha: float | None = None                        # w8a8 int8: SmoothQuant migration strength
    streamed: bool = False   # made from the checkpoint tensor by tensor (any size) instead of from the fp32 graph
    tiny_limitation: str | None = None  # set when the recipe cannot pass its gate on tiny: says why
    op_types_to_quantize: tuple[str, ...] = ("MatMul", "Gemm")   # matmuls only: the mask Add must stay fp32
    weights_only_gemms: bool = True   # quantise weight GEMMs; attention's activation x activation MatMuls stay
    high_precision_dtype: Literal["fp16", "fp32"] = "fp16"  # quantize: unquantised ops, except fp32_op_types
    fp32_op_types: tuple[str, ...] = FP32_OPS
    calibration_length: int = 128
    calibration_samples: int = 256
    min_cosine: float
    min_top10: float | None = None
    max_ndcg10_drop: float                                        # ranking slice: nDCG@10 below fp32, at most
    verify_runtime: Literal["onnxruntime", "onnx-reference"] = "onnxruntime"

    @model_validator(mode="after")
    def _consistent(self) -> Recipe:
        if (self.method == "autocast") != (self.low_precision is not None):
            raise ValueError(f"recipe {self.name}: low_precision is set exactly for method 'autocast'")
        calibrated = self.method in ("quantize", "w8a8")
        if calibrated != (self.quantize_mode is not None and self.calibration_method is not None):
            raise ValueError(f"recipe {self.name}: quantize_mode and calibration_method go with methods "
                             f"'quantize' and 'w8a8'")
        if (self.method in ("weight-only", "w8a8")) != (self.weight_format is not None):
            raise ValueError(f"recipe {self.name}: weight_format goes with methods 'weight-only' and 'w8a8'")
        if self.method == "w8a8" and (self.weight_format != self.quantize_mode or self.calibration_method != "max"):
            raise ValueError(f"recipe {self.name}: w8a8 quantises weights and activations alike, max calibration")
        if self.smoothquant_alpha is not None and not (self.method == "w8a8" and 0 < self.smoothquant_alpha < 1):
            raise ValueError(f"recipe {self.name}: smoothquant_alpha (0..1) goes with method 'w8a8'")
        if not 0.001 <= self.max_ndcg10_drop < 1:
            raise ValueError(f"recipe {self.name}: max_ndcg10_drop must be in [0.001, 1) (two servers of one model "
                             f"differ by ~0.001), got {self.max_ndcg10_drop}")
        if self.streamed != (self.method in ("weight-only", "w8a8")):
            raise ValueError(f"recipe {self.name}: weight-only and w8a8 recipes are streamed, the others not")
        return self

    @property
    def needs_calibration(self) -> bool:
        return self.method not in ("copy", "weight-only")

    def gate(self, figures: dict, where: str = "") -> list[str]:
        """What in a report's figures (cosine_min, top10_agreement) misses this recipe's thresholds: the one check
        the precision gate (per held-out slice) and validate (per runtime) share. A NaN fails."""
        problems = []
        if not figures["cosine_min"] >= self.min_cosine:
            problems.append(f"{where}min cosine {figures['cosine_min']:.6f} < {self.min_cosine}")
        if self.min_top10 is not None and not figures["top10_agreement"] >= self.min_top10:
            problems.append(f"{where}top-10 agreement {figures['top10_agreement']:.3f} < {self.min_top10}")
        return problems


RECIPES: dict[str, Recipe] = {r.name: r for r in (
    Recipe(name="fp32", description="the fp32 export as is (reference)", method="copy", min_cosine=0.99999,
           max_ndcg10_drop=0.001),
    Recipe(name="fp16", description="ModelOpt AutoCast to fp16; norms, softmax, pooling, L2 norm in fp32",
           method="autocast", low_precision="fp16", min_cosine=0.999, max_ndcg10_drop=0.002),
    Recipe(name="bf16", description="ModelOpt AutoCast to bf16; norms, softmax, pooling, L2 norm in fp32 "
                                    "(verified with ONNX's reference evaluator: ORT's CPU lacks bf16 kernels)",
           method="autocast", low_precision="bf16", min_cosine=0.999, max_ndcg10_drop=0.003,
           verify_runtime="onnx-reference"),
    Recipe(name="int8", description="W8A8 Q/DQ on the weight GEMMs (per-channel int8 weights, per-tensor activations, "
                                    "attention BMMs stay fp16), ranges calibrated layer by layer, SmoothQuant alpha 0.5",
           method="w8a8", quantize_mode="int8", calibration_method="max", weight_format="int8",
           smoothquant_alpha=0.5, streamed=True, min_cosine=0.99, min_top10=0.9, max_ndcg10_drop=0.005),
    Recipe(name="int8-entropy", description="W8A8 Q/DQ on the weight GEMMs via ModelOpt (attention BMMs stay float), entropy calibration",
           method="quantize", quantize_mode="int8", calibration_method="entropy", min_cosine=0.99, min_top10=0.9,
           max_ndcg10_drop=0.005),
    Recipe(name="fp8", description="FP8 E4M3 W8A8 Q/DQ on the weight GEMMs (per-channel weights, per-tensor "
                                   "activations), ranges calibrated layer by layer (Ada, Hopper)",
           method="w8a8", quantize_mode="fp8", calibration_method="max", weight_format="fp8", streamed=True,
           min_cosine=0.99, min_top10=0.9, max_ndcg10_drop=0.005,
           tiny_limitation="E4M3's 3-bit mantissa on tiny's random weights keeps min cosine at 0.9955 but moves "
                           "top-10 neighbours: 0.893 and 0.898 on the two query slices (< 0.9); ModelOpt's fp8 "
                           "graph gives the same figures"),
    Recipe(name="int8-wo", description="weight-only int8 (per output channel) DequantizeLinear into fp16 GEMMs, "
                                       "quantised while streaming from the checkpoint; no calibration",
           method="weight-only", weight_format="int8", streamed=True, min_cosine=0.999, min_top10=0.95,
           max_ndcg10_drop=0.003),
    Recipe(name="int4-wo", description="weight-only int4 (blocks of 128 input channels, round to nearest) "
                                       "DequantizeLinear into fp16 GEMMs, streamed from the checkpoint",
           method="weight-only", weight_format="int4", block_size=128, streamed=True, min_cosine=0.99,
           min_top10=0.9, max_ndcg10_drop=0.01,
           tiny_limitation="4-bit round-to-nearest on tiny's narrow random-weight GEMMs (K = 64..256): min cosine "
                           "0.964, top-10 0.79 whatever the block size (blocks of 8: 0.979); judged on "
                           "full-width-2l instead"),
)}


def get_recipe(name: str) -> Recipe:
    if name not in RECIPES:
        raise InputError(f"unknown recipe {name!r}; recipes: {', '.join(RECIPES)}")
    return RECIPES[name]
