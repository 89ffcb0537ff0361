"""The sidecars of an ONNX graph: export.json (`nvembed-trt export`) and precision.json (`nvembed-trt precision`),
and `graph_sidecars(folder)`, what every later stage knows about a graph folder: its recipe, the model config it was
exported from, and which sidecar says so.

The recipe name is canonical from the moment a graph is made: an fp32 export says `recipe: fp32`, a float16 export
`fp16` (DTYPE_RECIPES, the one place a dtype becomes a recipe name: exports and the PyTorch reference's weights), a
recipe graph its registry name. Engines and
repositories copy it; nothing downstream derives it again."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from .sidecar import Sidecar, SidecarError

DTYPE_RECIPES = {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16"}   # a plain dtype -> its recipe name


class ModelFacts(BaseModel):
    """Which model an artifact was made from (ModelSource.describe())."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    spec: str
    preset: str | None
    checkpoint: str | None
    weights: str
    weights_fingerprint: str | None
    config_fingerprint: str

    @property
    def source(self) -> str:
        """What --model to pass to load it again: the checkpoint folder, else the preset's name."""
        return self.checkpoint or self.spec


class SignatureFacts(BaseModel):
    """The graph's inputs and outputs (export/signature.py GraphSignature.describe())."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    pooling: Literal["engine", "ensemble"]
    index_dtype: str
    inputs: dict[str, list[str]]
    outputs: dict[str, list[str | int]]
    output_dtype: str


class ExportMeta(Sidecar):
    FILE = "export.json"
    ARTIFACT = "onnx-export"
    MADE_BY = "nvembed-trt export --model <model> --output {folder}"

    recipe: str                      # canonical: fp32 or fp16 (DTYPE_RECIPES)
    model: ModelFacts
    config: dict[str, Any]           # the model's config.json as exported (NVEmbedConfig.to_hf_dict())
    opset: int
    dtype: Literal["float32", "float16"]
    signature: SignatureFacts
    external_data: bool
    weight_bytes: int
    pre_transposed_weights: int
    fused_projections: dict[str, Any]
    graph: dict[str, Any]
    parity: dict[str, Any]
    slim: dict[str, Any]
    onnx_sha256: str
    timings_s: dict[str, float]


class PrecisionMeta(Sidecar):
    """Written by three paths: a recipe applied to an fp32 export (onnx_with_recipe), a streamed recipe from the
    checkpoint (recipe_from_model), ModelOpt's PyTorch PTQ (onnx_from_torch_ptq); fields one path does not have are
    None."""

    FILE = "precision.json"
    ARTIFACT = "precision-graph"
    MADE_BY = "nvembed-trt precision --onnx <export>/model.onnx --recipe <recipe> --output {folder}"

    recipe: str                      # the registry's name (recipes.py)
    recipe_settings: dict[str, Any]  # the Recipe as it was applied
    model: ModelFacts
    parity: dict[str, Any]           # the gate's report (or why it was not gated)
    quantized_nodes: dict[str, int] | None = None
    op_precisions: dict[str, Any] | None = None
    model_bytes: int | None = None
    calibration: dict[str, Any] | None = None
    source_onnx: str | None = None
    source_onnx_sha256: str | None = None
    activation_ranges: dict[str, Any] | None = None
    quantization: dict[str, Any] | None = None          # streamed recipes
    fused_projections: dict[str, Any] | None = None
    initializer_bytes: int | None = None
    external_data: bool | None = None
    timings_s: dict[str, float] | None = None
    path: str | None = None                             # PyTorch PTQ
    modelopt_config: str | None = None
    device: str | None = None
    dtype: str | None = None
    reference_onnx: str | None = None
    reference_onnx_sha256: str | None = None


@dataclass(frozen=True)
class GraphSidecars:
    """What the sidecars beside a graph say: its own precision.json (a recipe graph) and the export.json beside it or
    in the folder above (a recipe folder inside its export)."""

    folder: Path
    export: ExportMeta | None
    precision: PrecisionMeta | None

    @property
    def recipe(self) -> str:
        return self.precision.recipe if self.precision is not None else self.export.recipe

    @property
    def model(self) -> ModelFacts:
        return self.precision.model if self.precision is not None else self.export.model

    @property
    def config(self) -> dict | None:
        """The exported model's config.json (None for a streamed recipe made without an export)."""
        return self.export.config if self.export is not None else None

    @property
    def sidecar_path(self) -> Path:
        """The file that states the recipe."""
        return self.folder / (PrecisionMeta.FILE if self.precision is not None else ExportMeta.FILE)

    def digest(self) -> str:
        """The digest of the sidecar that states the recipe (what identifies the graph in caches)."""
        return (self.precision or self.export).digest()


def graph_sidecars(folder: Path | str) -> GraphSidecars:
    """The sidecars of the graph folder (model.onnx's folder); an error naming both files when it has neither."""
    folder = Path(folder)
    precision = PrecisionMeta.find(folder)
    export = ExportMeta.find(folder)
    if export is None and precision is not None:
        export = ExportMeta.find(folder.parent)
    if export is None and precision is None:
        raise SidecarError(f"{folder}: no {PrecisionMeta.FILE} or {ExportMeta.FILE} beside the graph, so nothing says "
                           f"how it was made (its recipe, its model); make it with `nvembed-trt export` (and "
                           f"`nvembed-trt precision` for a recipe)")
    return GraphSidecars(folder, export, precision)
