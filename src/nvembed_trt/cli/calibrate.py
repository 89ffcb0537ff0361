"""nvembed-trt calibrate: real text -> calibration tensors bucketed by length + manifest.json."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..calibration import calibration_from_corpus, python_reference_corpus, read_user_corpus
from ..source import resolve_model, tokenizer_for


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("calibrate", help="build a calibration set from real text",
                       description="Tokenise a corpus exactly as serving does (queries with the standard "
                                   "instruction) and write length-bucketed tensors plus manifest.json. Without "
                                   "--corpus, uses the Python language reference installed with Python.")
    p.add_argument("--model", required=True, help="preset name or checkpoint directory (for its tokenizer)")
    p.add_argument("--corpus", type=Path, help="JSON Lines ('text', optional 'input_type'), .txt or .parquet")
    p.add_argument("--output", required=True, type=Path, help="output folder, e.g. calibration/<name>/")
    p.add_argument("--max-length", type=int, default=512, help="the profile's maximum sequence length")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    corpus = read_user_corpus(args.corpus) if args.corpus else python_reference_corpus()
    source = resolve_model(args.model)
    result = calibration_from_corpus(corpus, tokenizer_for(source), args.output, args.max_length,
                                     model=source.describe(), overwrite=args.overwrite)
    m = result.manifest
    print(f"wrote {m['samples']} samples ({m['queries']} queries) in buckets {m['buckets']} to {args.output} "
          f"(manifest: {args.output / 'manifest.json'})")
    return 0
