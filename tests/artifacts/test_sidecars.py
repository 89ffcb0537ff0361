"""One source of truth (issue 24): each sidecar (export.json, precision.json, engine.json, repo.json) is opened by its
typed model's module alone; a stale or broken one is one clear error naming the file and the command that makes it;
the recipe is named once, when the graph is made, for every recipe in the registry; the shapes an engine takes are
one rule, for every GPU profile in the registry; the gate check is one method. CPU only, no artifact is built: the
graphs are four-node ONNX files and the engines engine.json + a dummy plan (~3 s)."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from sidecars import MODEL, engine_meta
from nvembed_trt.artifacts import DTYPE_RECIPES, EngineMeta, ExportMeta, PrecisionMeta, SidecarError, graph_sidecars
from nvembed_trt.engines.gpus import gpu_registry
from nvembed_trt.recipes import RECIPES
from nvembed_trt.shapes import Serving, ShapeError
from nvembed_trt.triton.meta import RepoMeta

ROOT = Path(__file__).resolve().parents[2]
OWNERS = {"export.json": "src/nvembed_trt/artifacts/graph.py", "precision.json": "src/nvembed_trt/artifacts/graph.py",
          "engine.json": "src/nvembed_trt/artifacts/engine.py", "repo.json": "src/nvembed_trt/triton/meta.py"}
KINDS = (ExportMeta, PrecisionMeta, EngineMeta, RepoMeta)
READER = "src/nvembed_trt/artifacts/sidecar.py"     # the one json.loads of a sidecar


def _sources():
    for path in sorted([*(ROOT / "src").rglob("*.py"), *(ROOT / "benchmarks").rglob("*.py")]):
        yield path.relative_to(ROOT).as_posix(), ast.parse(path.read_text(encoding="utf-8"))


def _mentions_sidecar(node: ast.AST) -> bool:
    return any((isinstance(n, ast.Constant) and n.value in OWNERS) or (isinstance(n, ast.Attribute) and n.attr == "FILE")
               for n in ast.walk(node))


def _labels(tree: ast.AST) -> set[int]:
    """Constants that are a parameter's default value: a label for a message (`where="engine.json"`), not a path."""
    return {id(d) for n in ast.walk(tree) if isinstance(n, ast.arguments) for d in [*n.defaults, *n.kw_defaults]}


def test_each_sidecar_is_opened_in_one_module():
    """A sidecar's file name is spelt in its model's module only (elsewhere: `Kind.FILE`), and nothing but the
    reader parses JSON read from a path that names a sidecar."""
    named, parsed = [], []
    for rel, tree in _sources():
        labels = _labels(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and node.value in OWNERS and OWNERS[node.value] != rel \
                    and id(node) not in labels:
                named.append(f"{rel}:{node.lineno} spells {node.value}")
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and rel != READER:
                if node.func.attr in ("loads", "load", "read_text", "read_bytes", "open") and \
                        any(_mentions_sidecar(arg) for arg in [node.func.value, *node.args]):
                    parsed.append(f"{rel}:{node.lineno} reads a sidecar ({node.func.attr})")
    assert named == [] and parsed == []


def test_no_two_classes_share_a_name():
    """Two unrelated classes of one name (two TritonEncoders, two Embedders) made every reading ask which one;
    Triton's python-backend models must all be called TritonPythonModel."""
    seen: dict[str, str] = {}
    clashes = []
    for rel, tree in _sources():
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef) and rel.startswith("src/") and node.name != "TritonPythonModel":
                if node.name in seen:
                    clashes.append(f"{node.name}: {seen[node.name]} and {rel}")
                seen.setdefault(node.name, rel)
    assert clashes == []


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.FILE)
def test_stale_or_broken_sidecars_say_what_to_run(kind, tmp_path):
    command = kind.MADE_BY.split(" --")[0]          # e.g. "nvembed-trt build"
    with pytest.raises(SidecarError, match=rf"{tmp_path}: no {kind.FILE}; make it with `{command}"):
        kind.read(tmp_path)
    assert kind.find(tmp_path) is None
    path = tmp_path / kind.FILE
    cases = {"older": {"artifact": kind.ARTIFACT, "created_utc": "2026-11-01T00:00:00+00:00", "recipe": "float16"},
             "newer": {"artifact": kind.ARTIFACT, "format_version": kind.FORMAT + 1},
             "not ours": {"artifact": "something-else", "format_version": kind.FORMAT},
             "bad field": {"artifact": kind.ARTIFACT, "format_version": kind.FORMAT, "created_utc": "x",
                           "versions": {}}}
    want = {"older": r"made by an older nvembed-trt \(format unversioned", "newer": "made by a newer nvembed-trt",
            "not ours": "not a .* sidecar", "bad field": rf"does not fit the {kind.FILE} format 1 \(.*Field required"}
    for case, raw in cases.items():
        path.write_text(json.dumps(raw))
        with pytest.raises(SidecarError, match=want[case]) as info:
            kind.read(tmp_path)
        assert f"{path}:" in str(info.value) and f"regenerate it with `{command}" in str(info.value), case
    path.write_text("{")
    with pytest.raises(SidecarError, match=rf"{path}: unreadable"):
        kind.read(tmp_path)


def test_unknown_fields_are_refused():
    raw = engine_meta().model_dump(mode="json") | {"surprise": 1}
    with pytest.raises(SidecarError, match=r"does not fit the engine.json format 1 \(surprise: Extra inputs"):
        EngineMeta.parse(raw, "engines/x/engine.json")


# ---------------------------------------------------------------------------------------------------- recipes
def _graph(folder: Path, pooled: bool = True) -> Path:
    """A small graph with the export's signature, valid for ONNX Runtime: each row's sum of ids, twice."""
    folder.mkdir(parents=True)
    names = ["input_ids", "attention_mask", "pool_mask"] if pooled else ["input_ids", "attention_mask"]
    inputs = [helper.make_tensor_value_info(n, TensorProto.INT32, ["batch", "sequence"]) for n in names]
    nodes = [helper.make_node("Cast", ["input_ids"], ["f"], to=TensorProto.FLOAT),
             helper.make_node("Constant", [], ["axes"], value=helper.make_tensor("a", TensorProto.INT64, [1], [1])),
             helper.make_node("ReduceSum", ["f", "axes"], ["s"], keepdims=1),
             helper.make_node("Concat", ["s", "s"], ["embeddings"], axis=1)]
    graph = helper.make_graph(nodes, "g", inputs, [helper.make_tensor_value_info("embeddings", TensorProto.FLOAT,
                                                                                 ["batch", 2])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), folder / "model.onnx")
    return folder


def _export_meta(dtype: str = "float32") -> ExportMeta:
    from nvembed_trt.presets import PRESETS

    signature = {"pooling": "engine", "index_dtype": "int32", "output_dtype": "float32",
                 "inputs": {n: ["batch", "sequence"] for n in ("input_ids", "attention_mask", "pool_mask")},
                 "outputs": {"embeddings": ["batch", 64]}}
    return ExportMeta.new(recipe=DTYPE_RECIPES[dtype], model=MODEL, config=PRESETS["tiny"].config.to_hf_dict(),
                          opset=18, dtype=dtype, signature=signature, external_data=False, weight_bytes=1,
                          pre_transposed_weights=0, fused_projections={}, graph={}, parity={}, slim={},
                          onnx_sha256="0" * 64, timings_s={})


@pytest.fixture(scope="module")
def recipe_graphs(tmp_path_factory) -> dict[str, Path]:
    """export/tiny (fp32, export.json) and export/tiny/<recipe>/ (precision.json) for every recipe: as made."""
    export = _graph(tmp_path_factory.mktemp("recipes") / "export" / "tiny")
    _export_meta().write(export)
    folders = {"fp32-export": export}
    for name, recipe in RECIPES.items():
        folder = _graph(export / name)
        PrecisionMeta.new(recipe=name, recipe_settings=recipe.model_dump(), model=MODEL, parity={}).write(folder)
        folders[name] = folder
    return folders


def test_export_dtypes_are_registry_recipes():
    from nvembed_trt.export.exporter import EXPORT_DTYPES

    assert set(EXPORT_DTYPES) <= set(DTYPE_RECIPES) and set(DTYPE_RECIPES.values()) <= set(RECIPES)


@pytest.mark.parametrize("name", list(RECIPES))
def test_every_stage_reads_the_recipe_the_graph_was_made_with(recipe_graphs, tiny, name):
    """The graph's sidecars, the engine the node builds from it, the repository and corpus jobs all say `name`:
    before, an fp16 export's engine said "float16", a repository guessed from its folder, corpus jobs had their own
    map and a missing recipe fell back to fp32's threshold."""
    from nvembed_trt.corpus.encoders import encoder_facts
    from nvembed_trt.errors import InputError
    from nvembed_trt.triton.repository import RepoSettings, planned_engine, repo_from_encoder
    from nvembed_trt.validation.runtimes import _onnx_runtimes

    folder = recipe_graphs[name]
    sidecars = graph_sidecars(folder)
    assert sidecars.recipe == name and sidecars.config is not None       # the config from the export above it
    assert planned_engine(folder, "h100")[0].recipe == name
    checked = repo_from_encoder("tiny", folder, None, RepoSettings(gpu="h100"), check_only=True)
    assert checked.check["recipe"] == checked.check["engine"]["recipe"] == name
    if RECIPES[name].verify_runtime == "onnxruntime":
        assert encoder_facts("onnx", folder)["recipe"] == name
    else:
        with pytest.raises(InputError, match=f"recipe {name} has no ONNX Runtime CPU kernels"):
            encoder_facts("onnx", folder)
    found, notes = _onnx_runtimes(folder.parent, tiny.tokenizer, {name})     # validate's discovery: by sidecar
    assert {r.recipe for r in found} == {name} and notes == []
    assert found[-1].encoder.path == folder / "model.onnx" and len(found) == (2 if name == "fp32" else 1)


def test_a_plain_export_is_fp32_or_fp16(recipe_graphs, tmp_path):
    assert graph_sidecars(recipe_graphs["fp32-export"]).recipe == "fp32"
    half = _graph(tmp_path / "half")
    _export_meta("float16").write(half)
    assert graph_sidecars(half).recipe == "fp16" and planned_engine_recipe(half) == "fp16"
    with pytest.raises(SidecarError, match="no precision.json or export.json beside the graph"):
        graph_sidecars(_graph(tmp_path / "bare"))


def planned_engine_recipe(folder: Path) -> str:
    from nvembed_trt.triton.repository import planned_engine

    return planned_engine(folder, "l40s")[0].recipe


@pytest.mark.parametrize("name", list(RECIPES))
def test_recipe_gate_is_one_check(name):
    recipe = RECIPES[name]
    at = {"cosine_min": recipe.min_cosine, "top10_agreement": recipe.min_top10 or 0.0}
    assert recipe.gate(at) == []
    below = {"cosine_min": recipe.min_cosine - 1e-6, "top10_agreement": (recipe.min_top10 or 0.0) - 1e-3}
    problems = recipe.gate(below, "slice code: ")
    assert problems[0].startswith("slice code: min cosine") and len(problems) == (2 if recipe.min_top10 else 1)
    assert recipe.gate({"cosine_min": float("nan"), "top10_agreement": 1.0})       # a NaN fails


# ----------------------------------------------------------------------------------------------------- shapes
@pytest.mark.parametrize("gpu", sorted(gpu_registry()))
def test_one_shape_rule_for_every_gpu_profile(gpu):
    """engine.json, the GPU registry, the repository, corpus jobs and validate/bench take their shapes from one
    rule: every profile capped at the serving limits and at the caller's rows."""
    from nvembed_trt.encoders.tensorrt import TensorRTEncoder

    card = gpu_registry()[gpu]
    meta = engine_meta(gpu)
    assert meta.shape_limits() == card.served_limits()
    serving = card.serving.max_batch_size
    for rows in (1, 3, serving, 10 * serving):
        limits = meta.shape_limits(rows)
        assert [s.name for s in limits] == [p.name for p in card.profiles]
        assert all(s.max_batch == min(p.batch.max, rows, serving) for s, p in zip(limits, card.profiles))
        assert max(s.max_sequence for s in limits) == card.serving.max_sequence_length
    encoder = TensorRTEncoder(Path("/nowhere"), meta, max_batch=3)      # reads nothing until it runs
    assert encoder.shape_limits == meta.shape_limits(3) and encoder.recipe == meta.recipe
    for width in (1, 512, 513, card.serving.max_sequence_length):
        for rows in (1, 2, 3, serving):
            taken = any(s.covers(rows, width) for s in meta.shape_limits())
            assert taken == (meta.profile_index(rows, width) is not None and rows <= serving)


def test_serving_limits_cap_the_profiles_for_corpus_jobs_too():
    """Corpus jobs capped the profiles at --batch-rows only: an engine served at most 4 rows got batches of 8, and
    --batch-rows below every profile's minimum fell back to the uncapped profiles."""
    meta = engine_meta("a10")
    tight = meta.updated(serving=Serving(max_batch_size=4, max_sequence_length=1024))
    assert [(s.max_batch, s.max_sequence) for s in tight.shape_limits(256)] == [(4, 512), (2, 1024)]
    wide = meta.updated(profiles=[p.model_copy(update={"batch": p.batch.model_copy(update={"min": 2, "opt": 2})})
                                  for p in meta.profiles])
    with pytest.raises(ShapeError, match="no optimisation profile takes a batch of at most 1 rows"):
        wide.shape_limits(1)


# ------------------------------------------------------------------------------ what a repository carries
@pytest.fixture(scope="module")
def planless(recipe_graphs, tmp_path_factory):
    """An H100 repository made from an export on this CPU (no plan), then moved to another folder."""
    import shutil

    from nvembed_trt.triton.repository import RepoSettings, repo_from_encoder

    root = tmp_path_factory.mktemp("carried")
    export = shutil.copytree(recipe_graphs["fp32-export"], root / "build-host" / "export",
                             ignore=shutil.ignore_patterns(*RECIPES))
    made = repo_from_encoder("tiny", export, root / "build-host" / "tiny", RepoSettings(gpu="h100")).directory
    moved = root / "pod" / "models" / "tiny"
    shutil.copytree(made, moved)
    shutil.rmtree(root / "build-host")
    return moved


def test_metadata_reads_the_engine_from_the_repository(planless):
    """/v1/metadata in a pod: the engine's facts came from the build host's engine folder (repo.json `encoder`),
    which a pod does not have, so they were null."""
    from nvembed_trt.serving import EmbeddingService, Metrics, ServeSettings

    service = EmbeddingService(planless, ServeSettings(), "127.0.0.1:1", Metrics())
    encoder = service.metadata()["encoder"]
    assert (encoder["gpu_profile"], encoder["flavor"]) == ("h100", "tensorrt")
    assert encoder["flavor_version"] == RepoMeta.read(planless).engine.flavor_version
    assert service.metadata()["recipe"] == "fp32"


def test_serving_bench_measures_the_repository_copy(planless, recipe_graphs, tmp_path):
    from nvembed_trt.errors import InputError
    from nvembed_trt.triton.repository import repo_from_encoder
    from nvembed_trt.validation.serving_bench import repository_encoder

    meta = RepoMeta.read(planless)
    with pytest.raises(InputError, match="no plan yet .*deploy ensure-engine"):
        repository_encoder(planless, meta)
    (planless / "encoder" / "1" / "model.plan").write_bytes(b"\0")          # as ensure-engine leaves it
    encoder, kind = repository_encoder(planless, meta)
    assert encoder.plan == planless / "encoder" / "1" / "model.plan" and encoder.meta == meta.engine
    assert kind == "TensorRT engine (tensorrt)"
    onnx_repo = repo_from_encoder("tiny", recipe_graphs["fp32-export"], tmp_path / "onnx").directory
    encoder, kind = repository_encoder(onnx_repo, RepoMeta.read(onnx_repo))
    assert encoder.path == onnx_repo / "encoder" / "1" / "model.onnx" and kind == "ONNX Runtime (CPUExecutionProvider)"
    arrays = {n: np.ones((2, 5), np.int32) for n in encoder.inputs}
    assert encoder.run(arrays).tolist() == [[5.0, 5.0], [5.0, 5.0]]        # the small graph: each row's sum of ids
