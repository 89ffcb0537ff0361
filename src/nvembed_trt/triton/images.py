"""Which NVIDIA Triton image serves an engine, checked when a repository is made from an engine folder (the
release table itself is ngc_triton.py, a lower floor):

- a TensorRT-RTX plan is refused as a `tensorrt_plan` encoder (Triton's tensorrt backend links TensorRT's nvinfer,
  which cannot load TensorRT-RTX plans);
- a weight-stripped plan (`build --strip-weights`) is refused: Triton's tensorrt backend deserialises the plan as it
  is and never refits, so it would serve an engine without weights; `nvembed-trt refit` fills it first;
- a TensorRT plan gets the newest NGC release whose TensorRT equals the version that built it (all four parts: a
  plan only loads in the TensorRT that built it), or a clear refusal naming the versions the table knows.

`NVEMBED_TRT_TRITON_IMAGE` overrides the pick (an image you built or checked yourself); repo.json records which.

Light on purpose: it is imported when a repository is made and inside the serving image."""

from __future__ import annotations

import os
from pathlib import Path

from ..ngc_triton import ImageError, image_table, normalise_version

OVERRIDE_ENV = "NVEMBED_TRT_TRITON_IMAGE"


def check_triton_engine(meta: dict, where: Path | str = "engine.json") -> None:
    """Refuse engines Triton's tensorrt_plan backend cannot load (TensorRT-RTX plans)."""
    flavor = meta.get("flavor")
    if flavor == "tensorrt-rtx":
        raise ImageError(
            f"{where}: a TensorRT-RTX plan (tensorrt-rtx {meta.get('flavor_version', '?')}) cannot be a Triton "
            f"tensorrt_plan encoder: Triton's tensorrt backend links TensorRT (nvinfer), which does not load "
            f"TensorRT-RTX plans. Build the engine with `nvembed-trt build --flavor tensorrt` on the target GPU (or "
            f"let the deployment's init step build it there), or serve the ONNX graph instead: "
            f"`nvembed-trt triton-repo --encoder export/<name>/<recipe>` (ONNX Runtime encoder)")
    if flavor != "tensorrt":
        raise ImageError(f"{where}: flavor {flavor!r} is not one Triton serves; expected 'tensorrt'")
    if (meta.get("weights") or {}).get("stripped"):
        engine_dir = Path(where).parent
        raise ImageError(
            f"{where}: a weight-stripped plan ({int(meta.get('engine_bytes') or 0) / 1e6:.1f} MB, built with "
            f"--strip-weights) cannot be a Triton encoder: Triton's tensorrt backend loads the plan as it is and "
            f"never refits it. On a host with the target GPU run `nvembed-trt refit --engine {engine_dir}` (fills "
            f"the plan from the ONNX graph it was built from), then make the repository from it; or build without "
            f"--strip-weights")


def triton_image_for_engine(meta: dict, where: Path | str = "engine.json") -> dict:
    """{'image', 'release', 'tensorrt', 'how'} for a TensorRT engine's engine.json, or ImageError."""
    check_triton_engine(meta, where)
    built = normalise_version(meta.get("flavor_version", ""))
    override = os.environ.get(OVERRIDE_ENV)
    if override:
        return {"image": override, "release": None, "tensorrt": built,
                "how": f"{OVERRIDE_ENV} (not checked against the table: its TensorRT must be {built})"}
    table = image_table()
    matches = table.carrying(built)
    if not matches:
        known = ", ".join(f"{r.release}: {r.tensorrt}" for r in table.releases)
        newest = table.releases[-1]
        raise ImageError(
            f"{where}: engine built with TensorRT {built}; no NGC Triton release in the table carries that version "
            f"(a plan only loads in the TensorRT that built it). Known releases: {known}. Rebuild the engine with a "
            f"listed TensorRT, e.g. in nvcr.io/nvidia/tensorrt:{newest.release}-py3 (TensorRT {newest.tensorrt}), "
            f"or set {OVERRIDE_ENV} to an image whose TensorRT is {built}")
    pick = matches[-1]
    return {"image": table.tag(pick), "release": pick.release, "tensorrt": pick.tensorrt,
            "how": f"ngc_triton.yaml: newest release carrying TensorRT {built}"}
