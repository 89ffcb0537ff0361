"""How a streamed recipe is made (`recipe_from_model(model, settings)`): one settings object (pydantic,
extra="forbid", frozen), its defaults stated once here and read by the CLI, the benchmarks and the Python API alike.
The values are checked where they are used, with the errors the entry point always gave (InputError naming the
value): this model only fixes the names, the types and the defaults."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict


class StreamedRecipeSettings(BaseModel):
    """A streamed recipe written from a checkpoint or preset tensor by tensor."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    recipe: str                            # a streamed recipe of the registry (recipes.py)
    output: Path                           # the recipe's folder
    calibration: Path | None = None        # calibration set folder (W8A8 recipes), unless `ranges` is given
    overwrite: bool = False
    reference_onnx: Path | None = None     # an fp32 export to gate against; None: the fp32 PyTorch model
    gate: bool = True                      # False: written ungated (models too large to run here), and said so
    max_length: int = 512                  # the longest sequence the gate feeds
    gate_rows_per_slice: int | None = None   # cut every held-out slice and the ranking slice to N
    pooling: str = "engine"                # engine | ensemble
    opset: int = 18                        # raised to 19/21 where Q/DQ needs
    ranges: Path | None = None             # activation ranges collected before (W8A8), instead of calibrating
    calibration_samples: int | None = None   # None: the recipe's own count
    calibration_dtype: str = "float32"     # float32 | bfloat16: the dtype activation ranges are collected in
    progress: bool = True
    fuse_projections: bool = True          # q/k/v and gate/up as one DequantizeLinear + MatMul + Split each
