"""nvembed-trt export: a preset or checkpoint directory -> a checked ONNX graph + export.json."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..embedder import DEVICES
from ..export import EXPORT_DTYPES, OPSETS, POOLING_MODES, onnx_from_model
from ..export.exporter import PROTOBUF_LIMIT
from ..units import parse_size


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export to ONNX (dynamic batch and sequence) and check parity",
                       description="Trace on the meta device, stream weights into model.onnx(.data) one tensor at "
                                   "a time, then check the graph and its parity with the PyTorch reference.")
    p.add_argument("--model", required=True, help="preset name or checkpoint directory")
    p.add_argument("--output", required=True, type=Path, help="output folder, e.g. export/<name>/")
    p.add_argument("--opset", type=int, default=OPSETS.start, help=f"{OPSETS.start}..{OPSETS.stop - 1}")
    p.add_argument("--pooling", choices=POOLING_MODES, default="engine",
                   help="engine: pooled embeddings in the graph; ensemble: token_states, pooled by Triton")
    p.add_argument("--dtype", choices=tuple(EXPORT_DTYPES), default="float32",
                   help="float16: fp16 weights and matmuls; norms, softmax and pooling stay fp32")
    p.add_argument("--device", choices=DEVICES, default="cpu", help="where the parity check runs")
    p.add_argument("--external-data-threshold", default=str(PROTOBUF_LIMIT),
                   help="weights above this size go to model.onnx.data (default 2 GiB, the protobuf limit)")
    p.add_argument("--no-parity", action="store_true", help="skip the ONNX Runtime parity check")
    p.add_argument("--slim", action="store_true",
                   help="simplify the graph with onnxslim; kept only if every check and parity still pass")
    p.add_argument("--fuse-projections", action=argparse.BooleanOptionalAction, default=None,
                   help="store q/k/v and gate/up as one MatMul + Split each (default: on for float16, whose "
                        "TensorRT build would otherwise hold a second copy of those weights; off for float32, "
                        "which the precision recipes quantise projection by projection)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    result = onnx_from_model(args.model, args.output, opset=args.opset, pooling=args.pooling, dtype=args.dtype,
                             device=args.device, external_data_threshold=parse_size(args.external_data_threshold),
                             parity=not args.no_parity, slim=args.slim, overwrite=args.overwrite,
                             fuse_projections=args.fuse_projections)
    graph = result.meta.graph
    print(f"wrote {result.onnx_path} (opset {graph['opset']}, {graph['nodes']} nodes, "
          f"{graph['parameters']:,} parameters, external data: {result.meta.external_data}, "
          f"fused projection groups: {result.meta.fused_projections['groups']}, "
          f"slimmed: {result.meta.slim['applied']}); "
          f"report: {result.directory / result.meta.FILE}")
    return 0
