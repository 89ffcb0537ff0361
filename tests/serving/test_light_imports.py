"""The serving path runs in NVIDIA's Triton image with only the `serving` extra: the front door, the python-backend
models and the tokenizer import without torch, onnx, ONNX Runtime, ModelOpt, sentencepiece or transformers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BLOCKED = ("torch", "onnx", "onnxruntime", "modelopt", "sentencepiece", "transformers", "onnxscript", "onnx_ir",
           "tensorrt_rtx", "mistral_common", "safetensors", "matplotlib")
# every module of the light serving package (dev harnesses live elsewhere: the smoke check in validation/, the fuzzer
# in tests/), plus what the image runs beside it
SERVING = sorted(f"nvembed_trt.serving.{p.stem}" for p in (Path(__file__).resolve().parents[2] / "src" / "nvembed_trt"
                                                            / "serving").glob("*.py") if p.stem != "__init__")
MODULES = ("nvembed_trt.serving", *SERVING, "nvembed_trt.triton.models.embed", "nvembed_trt.triton.models.encoder_onnx",
           "nvembed_trt.tokenizer", "nvembed_trt.client", "nvembed_trt.cli.triton", "nvembed_trt.cli.main")

PROGRAM = f"""
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {BLOCKED!r}:
            raise ImportError(f"blocked heavy import: {{name}}")
sys.meta_path.insert(0, Block())
for module in {MODULES!r}:
    importlib.import_module(module)
print("ok")
"""


def test_serving_modules_import_without_heavy_dependencies():
    proc = subprocess.run([sys.executable, "-c", PROGRAM], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]


def test_the_light_package_is_all_of_serving():
    assert {"nvembed_trt.serving.app", "nvembed_trt.serving.service", "nvembed_trt.serving.run"} <= set(SERVING)
