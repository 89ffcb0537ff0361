"""nvembed-trt embed: texts in, float32 [N, D] .npy out (plus a JSON sidecar)."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from ..embedder import DEFAULT_MAX_LENGTH, DEVICES, DTYPES, Embedder, torch_device
from ..source import resolve_model
from ..provenance import sha256_file, sidecar, write_json
from ..textio import check_output_path, read_texts, save_embeddings
from ..tokenizer import INPUT_TYPES, resolve_instruction
from ..tokenizer.embedding import check_max_length


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("embed", help="embed texts with the PyTorch reference",
                       description="Embed texts exactly as NV-Embed-v2's encode(); writes float32 [N, D] .npy "
                                   "in input order and OUTPUT.json describing how it was made.")
    p.add_argument("--model", required=True, help="preset name (see `nvembed-trt presets`) or checkpoint dir")
    p.add_argument("--input", required=True, help="JSON Lines with a 'text' field, or plain text with one "
                                                  "input per line; '-' reads standard input")
    p.add_argument("--output", required=True, type=Path, help="output .npy path")
    p.add_argument("--format", choices=("auto", "jsonl", "txt"), default="auto",
                   help="input format (auto: by extension, or by content for stdin)")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--instruction", help="instruction prefix, e.g. 'Instruct: ...\\nQuery: '")
    group.add_argument("--input-type", choices=tuple(INPUT_TYPES),
                       help="query: the standard retrieval instruction; passage: none")
    p.add_argument("--max-length", type=int, default=DEFAULT_MAX_LENGTH,
                   help=f"truncate tokens to this length (default {DEFAULT_MAX_LENGTH})")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--device", choices=DEVICES, default="cpu")
    p.add_argument("--dtype", choices=tuple(DTYPES), default="float32")
    p.add_argument("--attention", choices=("sdpa", "eager"), default="sdpa", help="attention implementation")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    check_output_path(args.output)
    inputs = read_texts(args.input, args.format)
    instruction = resolve_instruction(args.input_type, args.instruction)
    torch_device(args.device)
    source = resolve_model(args.model)
    check_max_length(args.max_length, source.config.body.max_position_embeddings)  # before loading weights
    embedder = Embedder.from_source(source, args.device, args.dtype, args.attention)
    vectors = embedder.encode(inputs.texts, instruction=instruction, max_length=args.max_length,
                              batch_size=args.batch_size, progress=True)
    save_embeddings(args.output, vectors)
    meta_path = args.output.with_name(args.output.name + ".json")
    write_json(meta_path, sidecar(
        "embeddings", model=embedder.source.describe() if embedder.source else None,
        input={"source": inputs.name, "sha256": inputs.sha256, "count": len(inputs.texts)},
        settings={"instruction": instruction, "input_type": args.input_type, "max_length": args.max_length,
                  "batch_size": args.batch_size, "device": args.device, "dtype": args.dtype,
                  "attention": args.attention},
        output={"path": str(args.output), "shape": list(vectors.shape), "dtype": "float32",
                "sha256": sha256_file(args.output), "all_finite": bool(np.isfinite(vectors).all())}))
    print(f"wrote {vectors.shape[0]} embeddings of dim {vectors.shape[1]} to {args.output} "
          f"(how it was made: {meta_path})")
    return 0
