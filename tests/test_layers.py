"""The floors of the house: every package (or top-level module) of nvembed_trt stands on one floor, and every import
in src/nvembed_trt, module level or inside a function, reads its own package or a lower floor. Packages on one floor
are separate rooms: they do not import each other. An arrow up (or sideways) fails naming the file, the line and the
import; a package without a floor fails too (give it one here). ~0.6 s: the source is parsed, nothing imported."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "nvembed_trt"

# bottom up; "" is the package's own __init__ (__version__)
FLOORS: list[tuple[str, set[str]]] = [
    ("root", {""}),
    ("ground: nothing of ours below", {"errors", "console", "provenance", "packing", "hostmem", "hostgpu"}),
    ("facts read everywhere", {"config", "tokenizer", "pooling", "textio", "units", "staging", "ngc_triton",
                               "recipes", "shapes"}),
    ("the model and its inputs, typed sidecars", {"model", "encoding", "artifacts"}),
    ("checkpoints", {"checkpoint"}),
    ("the performance model", {"performance"}),
    ("presets, calibration sets, TensorRT engines", {"presets", "calibration", "engines"}),
    ("model sources, labelled retrieval sets", {"source", "retrieval"}),
    ("the reference embedder, the Triton repository", {"embedder", "triton"}),
    ("ONNX export, clients, the light serving package, deployment, the host check",
     {"export", "client", "serving", "deploy", "doctor"}),
    ("the encoder seam", {"encoders"}),
    ("precision recipes", {"precision"}),
    ("corpus jobs, validation", {"corpus", "validation"}),
    ("retrieval evaluation", {"evaluation"}),
    ("the command line", {"cli"}),
    ("python -m nvembed_trt", {"__main__"}),
]
FLOOR = {unit: level for level, (_, units) in enumerate(FLOORS) for unit in units}


def unit_of(parts: tuple[str, ...]) -> str:
    """('triton', 'repository') -> 'triton'; ('doctor',) -> 'doctor'; () -> '' (the package itself)."""
    return parts[0] if parts else ""


def imported(path: Path, root: Path) -> list[tuple[int, str, tuple[str, ...]]]:
    """(line, as written, target module parts under nvembed_trt) for every import of ours in one file."""
    rel = path.relative_to(root).with_suffix("").parts
    package = rel[:-1]                       # the package the file is in (an __init__ is in its own)
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.ImportFrom):
            names = [a.name for a in node.names]
            if node.level:
                base = package[:len(package) - node.level + 1] if node.level > 1 else package
                written = "." * node.level + (node.module or "")
                if node.module:
                    found.append((node.lineno, written, (*base, *node.module.split("."))))
                else:   # from . import x: x is a module of `base`, or a name of its __init__
                    found += [(node.lineno, f"{written} import {n}", (*base, n) if base or n != "__version__"
                               else ()) for n in names]
            elif node.module and node.module.split(".")[0] == "nvembed_trt":
                found.append((node.lineno, node.module, tuple(node.module.split(".")[1:])))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name, tuple(a.name.split(".")[1:])) for a in node.names
                      if a.name.split(".")[0] == "nvembed_trt"]
    return found


def layer_problems(root: Path = SRC) -> list[str]:
    problems = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        home = unit_of(rel.with_suffix("").parts if rel.name != "__init__.py" else rel.parts[:-1])
        if home not in FLOOR:
            problems.append(f"{rel}: package {home!r} has no floor: add it to FLOORS in tests/test_layers.py")
            continue
        for line, written, target in imported(path, root):
            there = unit_of(target)
            if there == home:
                continue
            if there not in FLOOR:
                problems.append(f"{rel}:{line}: imports {written} ({there!r}, which has no floor)")
            elif FLOOR[there] >= FLOOR[home]:
                way = "up" if FLOOR[there] > FLOOR[home] else "sideways (same floor)"
                problems.append(f"{rel}:{line}: imports {written}: {home} (floor {FLOOR[home]}, "
                                f"{FLOORS[FLOOR[home]][0]}) -> {there} (floor {FLOOR[there]}, "
                                f"{FLOORS[FLOOR[there]][0]}) runs {way}")
    return problems


def test_every_import_reads_its_own_package_or_a_lower_floor():
    assert layer_problems() == []


def test_every_package_has_one_floor():
    units = [u for _, floor in FLOORS for u in floor]
    assert len(units) == len(set(units))
    on_disk = {unit_of(p.relative_to(SRC).with_suffix("").parts) for p in SRC.glob("*.py")} - {"__init__"}
    on_disk |= {p.name for p in SRC.iterdir() if (p / "__init__.py").is_file()}
    assert on_disk | {""} == set(FLOOR)


@pytest.mark.parametrize("source, expected", [
    ("from ..deploy.images import builder_image\n", "triton/repository.py:1: imports ..deploy.images: triton"),
    ("def f():\n    from nvembed_trt.serving import app\n", "triton/repository.py:2: imports nvembed_trt.serving"),
    ("import nvembed_trt.client\n", "imports nvembed_trt.client: triton (floor 8"),
    ("from ..embedder import Embedder\n", "runs sideways (same floor)"),
])
def test_an_arrow_up_names_the_file_and_the_import(tmp_path, source, expected):
    (tmp_path / "triton").mkdir()
    (tmp_path / "triton" / "repository.py").write_text(source)
    (tmp_path / "errors.py").write_text("")
    assert [p for p in layer_problems(tmp_path) if expected in p], layer_problems(tmp_path)
