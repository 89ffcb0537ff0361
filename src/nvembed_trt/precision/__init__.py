"""Precision recipes (FP32, FP16, BF16, INT8, FP8, weight-only INT8/INT4), each gated on held-out text."""

from .pipeline import PrecisionGateError, PrecisionResult, onnx_with_recipe, recipe_from_model
from ..recipes import RECIPES, Recipe, get_recipe

__all__ = ["PrecisionGateError", "PrecisionResult", "RECIPES", "Recipe", "get_recipe", "onnx_with_recipe",
           "recipe_from_model"]
