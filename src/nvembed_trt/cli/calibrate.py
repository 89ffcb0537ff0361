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
    add_ranges_parser(sub)


def run(args: argparse.Namespace) -> int:
    corpus = read_user_corpus(args.corpus) if args.corpus else python_reference_corpus()
    source = resolve_model(args.model)
    result = calibration_from_corpus(corpus, tokenizer_for(source), args.output, args.max_length,
                                     model=source.describe(), overwrite=args.overwrite)
    m = result.manifest
    print(f"wrote {m['samples']} samples ({m['queries']} queries) in buckets {m['buckets']} to {args.output} "
          f"(manifest: {args.output / 'manifest.json'})")
    return 0


def add_ranges_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("activation-ranges", help="collect W8A8 activation ranges layer by layer",
                       description="Stream the model through memory one decoder layer at a time over a calibration "
                                   "set and write each GEMM input's per-channel amax (and the weights' per-channel "
                                   "amax, for SmoothQuant) to an .npz that `precision --ranges` takes.")
    p.add_argument("--model", required=True, help="preset name or checkpoint directory")
    p.add_argument("--calibration", required=True, type=Path, help="calibration set folder")
    p.add_argument("--output", required=True, type=Path, help="the .npz to write")
    p.add_argument("--samples", type=int, default=256)
    p.add_argument("--length", type=int, default=128, help="samples up to this many tokens, padded to it")
    p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    p.set_defaults(run=run_ranges)


def run_ranges(args: argparse.Namespace) -> int:
    import torch

    from ..calibration.dataset import load_calibration
    from ..calibration.streamed import streamed_ranges
    from ..errors import InputError
    from ..precision.streamed import source_loader
    from ..provenance import atomic_path, sidecar, write_json

    if args.output.suffix != ".npz":
        raise InputError(f"--output must end in .npz, got {args.output}")
    source = resolve_model(args.model)
    tokenizer = tokenizer_for(source)
    arrays = load_calibration(args.calibration, args.length, args.samples,
                              ("input_ids", "attention_mask", "pool_mask"), tokenizer.pad_id)
    load, _ = source_loader(source)
    ranges = streamed_ranges(source.config, load, arrays, getattr(torch, args.dtype))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(args.output) as tmp:
        ranges.save(tmp)
    write_json(args.output.with_suffix(".json"), sidecar("activation-ranges", model=source.describe(),
                                                         calibration=str(args.calibration), **ranges.meta))
    print(f"wrote ranges of {len(ranges.activation)} GEMMs ({ranges.meta['samples']} samples x "
          f"{ranges.meta['length']} tokens, {ranges.meta['seconds']:.0f} s) to {args.output}")
    return 0
