"""Constants shared by the deployment tests (imported by name: the test folders are not packages)."""

from pathlib import Path

TRT_VERSION = "10.13.3.9"      # a version the NGC table lists (25.09 and 25.10)
GPU = "rtx-6000-ada"           # a card both flavors target (TensorRT-RTX builds for it on a CPU)
HERE = Path(__file__).resolve().parent
SCHEMAS = HERE / "data" / "schemas"
GOLDEN = HERE / "golden"
REPO = HERE.parents[1]
