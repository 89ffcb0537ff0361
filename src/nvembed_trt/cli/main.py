"""`nvembed-trt`: a thin argparse front over the library; each subcommand lives in its own module."""

from __future__ import annotations

import argparse
import sys

from .. import __version__
from ..errors import NVEmbedError
from . import build, calibrate, checkpoint, embed, export, precision, presets, quantize_torch, triton, validate
from . import corpus

SUBCOMMANDS = (embed, export, calibrate, precision, quantize_torch, build, triton, validate, presets, checkpoint)
SUBCOMMANDS += (corpus,)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nvembed-trt",
        description="NV-Embed-v2 from its Hugging Face checkpoint to a fast, verified TensorRT + Triton deployment.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in SUBCOMMANDS:
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
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
