"""Optional graph slimming with onnxslim, kept only when the slimmed graph passes every check again."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import onnx

from ..console import note


def slim_if_valid(onnx_path: Path, external: bool,
                  validate: Callable[[Path], tuple[dict, dict, list[str]]]) -> dict:
    """Slim onnx_path into a side folder, validate it, and move it over the original only if it passes.
    Loads the whole graph with its weights into memory (about the weights' size)."""
    import onnxslim

    side = onnx_path.parent / "slim-candidate"
    side.mkdir()
    try:
        slimmed = onnxslim.slim(str(onnx_path))
        candidate = side / onnx_path.name
        onnx.save_model(slimmed, str(candidate), save_as_external_data=external, all_tensors_to_one_file=True,
                        location=onnx_path.name + ".data", size_threshold=1024)
        del slimmed
        report, parity, problems = validate(candidate)
        before = len(onnx.load(str(onnx_path), load_external_data=False).graph.node)
        outcome = {"applied": not problems, "nodes_before": before, "nodes_after": report["nodes"]}
        if problems:
            outcome["rejected_because"] = problems
            note(f"onnxslim: rejected ({'; '.join(problems)}); keeping the unslimmed graph")
            return outcome
        for item in side.iterdir():
            shutil.move(str(item), onnx_path.parent / item.name)
        note(f"onnxslim: {before} -> {report['nodes']} nodes, checks and parity still pass")
        return {**outcome, "graph": report, "parity": parity}
    finally:
        shutil.rmtree(side, ignore_errors=True)
