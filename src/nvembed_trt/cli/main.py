"""`nvembed-trt`: a thin argparse front over the library; each subcommand lives in its own module.

Modules are imported lazily: `nvembed-trt serve` (and `client`) must start in NVIDIA's Triton image, where the
export and build stages' dependencies (torch, onnx, ModelOpt) are not installed. COMMANDS maps every subcommand to
the module that adds it (tests/cli/test_main.py checks the map against what the modules register); a command line
imports only its own module, and `--help` or an unknown command imports them all."""

from __future__ import annotations

import argparse
import importlib
import sys

from .. import __version__
from ..errors import NVEmbedError

COMMANDS = {
    "embed": "embed", "export": "export", "calibrate": "calibrate", "precision": "precision", "recipes": "precision",
    "quantize-torch": "quantize_torch", "build": "build", "gpus": "build", "triton-repo": "triton", "serve": "triton",
    "smoke": "triton", "client": "triton", "validate": "validate", "bench": "validate",
    "bench-serving": "bench_serving", "presets": "presets", "checkpoint": "checkpoint", "deploy": "deploy",
    "activation-ranges": "calibrate", "embed-corpus": "corpus", "refit": "refit", "doctor": "doctor",
    "eval": "evaluate", "eval-data": "evaluate",
    "plan": "plan", "loadgen": "bench_serving", "output-ranges": "triton",
}


def _modules(names) -> list:
    return [importlib.import_module(f".{name}", __package__) for name in dict.fromkeys(names)]


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nvembed-trt",
        description="NV-Embed-v2 from its Hugging Face checkpoint to a fast, verified TensorRT + Triton deployment.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    wanted = [COMMANDS[command]] if command in COMMANDS else COMMANDS.values()
    for module in _modules(wanted):
        module.add_parser(sub)
    return parser


def _command(argv: list[str]) -> str | None:
    return next((a for a in argv if not a.startswith("-")), None)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(_command(argv)).parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except NVEmbedError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
