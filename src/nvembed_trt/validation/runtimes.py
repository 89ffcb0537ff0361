"""The runtimes validate and bench compare, each a TextEmbedder of the encoder seam (nvembed_trt.encoders) with a
name and a recipe: the PyTorch reference, ONNX Runtime on an export or recipe graph, a TensorRT engine (GPU), and
Triton end to end. `discover` finds what exists for a model on this host; every recipe comes from the artifact's
own sidecar, never from a folder name.

Engines: `select_engines` (a pure function of the engine.json files, the TensorRT versions installed and the GPU
present) keeps only the engines this host can run, with a note for each one left out; an engine is loaded when first
used and unloads any other engine first, so one engine at a time holds the GPU; its batches stay within the
engine's served shapes (engine.json's profiles and serving limits: the A10's maximum batch is 8)."""

from __future__ import annotations

from pathlib import Path

from ..artifacts.engine import EngineMeta
from ..artifacts.graph import graph_sidecars
from ..artifacts.sidecar import SidecarError
from ..embedder import Embedder
from ..encoders.base import LocalEmbedder
from ..encoders.local import OnnxEncoder, TorchEncoder
from ..encoders.tensorrt import TensorRTEncoder
from ..engines.flavors import cuda_gpu
from ..hostgpu import gpu_run_problem
from ..recipes import get_recipe
from ..tokenizer import EmbeddingTokenizer

MAX_LENGTH = 512


def torch_runtime(embedder: Embedder) -> LocalEmbedder:
    """The PyTorch reference, batched from length-sorted texts as Embedder.encode does."""
    return LocalEmbedder(TorchEncoder(embedder), embedder.tokenizer, MAX_LENGTH, sort=True)


def onnx_runtime(path: Path, tokenizer: EmbeddingTokenizer) -> LocalEmbedder:
    """An export or recipe graph on its recipe's verify runtime (ONNX Runtime; ONNX's reference evaluator for
    bf16), its recipe from the sidecars beside it."""
    recipe = get_recipe(graph_sidecars(Path(path).parent).recipe)
    return LocalEmbedder(OnnxEncoder(path, recipe.name, recipe.verify_runtime), tokenizer, MAX_LENGTH)


def engine_runtime(folder: Path, tokenizer: EmbeddingTokenizer, meta: EngineMeta | None = None) -> LocalEmbedder:
    """A TensorRT engine folder (loaded on first use), at most MAX_LENGTH tokens within its served shapes."""
    encoder = TensorRTEncoder(folder, meta)
    return LocalEmbedder(encoder, tokenizer, min(MAX_LENGTH, encoder.meta.max_sequence))


def installed_versions() -> dict[str, str | None]:
    """The version of each builder flavor importable here (None: not installed)."""
    import importlib

    from ..engines.flavors import FLAVORS, installed

    versions: dict[str, str | None] = {}
    for name, flavor in FLAVORS.items():
        versions[name] = importlib.import_module(flavor.module).__version__ if installed(flavor) else None
    return versions


def select_engines(folders: list[Path], present: tuple[str, str] | None, versions: dict[str, str | None],
                   recipes: set[str] | None = None) -> tuple[list[tuple[Path, EngineMeta]], list[str]]:
    """The engine folders (engine.json + model.plan) this host can run, in order, each with its engine.json, and a
    note for every one left out: not a wanted recipe (silently), another card, another TensorRT, no GPU."""
    from ..engines.runner import engine_compatibility

    chosen, notes = [], []
    for folder in folders:
        try:
            meta = EngineMeta.read(folder)
        except SidecarError as exc:
            notes.append(f"engine {folder}: {exc}")
            continue
        if recipes is not None and meta.recipe not in recipes:
            continue
        problem = engine_compatibility(meta, versions.get(meta.flavor), present[1] if present else None,
                                       present[0] if present else "this GPU")
        if problem:
            notes.append(f"engine {folder}: {problem}")
        else:
            chosen.append((folder, meta))
    return chosen, notes


class TritonRuntime:
    """Starts the real server on free loopback ports for the repository and embeds through its KServe model
    (nv_embed, HTTP). The recipe comes from the repository's repo.json, the rows per request from the server;
    `binary` is another tritonserver (NVIDIA's image, for a TensorRT plan), default the one bundled with
    nvidia-pytriton."""

    name = "triton"

    def __init__(self, repo: Path, binary: Path | str | None = None):
        from ..encoders.served import ServedEmbedder
        from ..serving.process import free_ports
        from ..triton import TritonServer
        from ..triton.meta import RepoMeta

        meta = RepoMeta.read(repo)
        self.recipe, self.max_length = get_recipe(meta.recipe).name, meta.spec.max_length
        self.server = TritonServer(repo, *free_ports(3), binary=binary).start()
        try:
            self.embedder = ServedEmbedder(self.server.endpoints["http"], recipe=self.recipe)
        except BaseException:
            self.server.stop()
            raise

    def new_client(self):
        return self.embedder.new_client()

    def embed(self, texts, instruction, batch_size=16):
        return self.embedder.embed(texts, instruction, batch_size)

    def close(self) -> None:
        self.server.stop()


def _onnx_runtimes(export: Path, tokenizer: EmbeddingTokenizer, wanted: set[str] | None) -> tuple[list, list[str]]:
    found, notes = [], []
    for path in [export / "model.onnx", *sorted(export.glob("*/model.onnx"))]:
        if not path.is_file():
            continue
        try:
            recipe = graph_sidecars(path.parent).recipe
        except SidecarError as exc:
            notes.append(f"onnx {path}: {exc}")
            continue
        if wanted is None or recipe in wanted:
            found.append(onnx_runtime(path, tokenizer))
    if not found and not notes:
        notes.append(f"onnx: no graphs under {export}/ (run nvembed-trt export / precision)")
    return found, notes


def discover(name: str, embedder: Embedder, runtimes: list[str], recipes: list[str] | None,
             root: Path = Path("."), tritonserver: Path | str | None = None) -> tuple[list, list[str]]:
    """The runtimes available for `name` on this host, and a note for each one requested but absent (a TensorRT
    repository without `tritonserver`: the bundled server cannot load it)."""
    found, missing = [], []
    wanted = set(recipes) if recipes else None
    if "torch" in runtimes:
        found.append(torch_runtime(embedder))
    if "onnx" in runtimes:
        graphs, notes = _onnx_runtimes(root / "export" / name, embedder.tokenizer, wanted)
        found, missing = found + graphs, missing + notes
    if "engine" in runtimes:
        folders = [plan.parent for plan in sorted((root / "engines").glob(f"*/{name}/*/model.plan"))]
        present, problem = cuda_gpu(), gpu_run_problem(needs_torch=True)
        if problem:
            missing.append(f"engine: {len(folders)} engine(s) found, but running them (EngineRunner) {problem}")
        else:
            chosen, notes = select_engines(folders, present, installed_versions(), wanted)
            found += [engine_runtime(folder, embedder.tokenizer, meta) for folder, meta in chosen]
            missing += notes
    if "triton" in runtimes:
        from ..triton.meta import RepoMeta
        from ..triton.server import bundled_server_problem

        repo = root / "triton_repo" / name
        if not (repo / RepoMeta.FILE).is_file():
            missing.append(f"triton: no repository at {repo}/ (run nvembed-trt triton-repo)")
        elif (problem := None if tritonserver else bundled_server_problem(repo)):
            missing.append(f"triton: {problem}")
        else:
            found.append(TritonRuntime(repo, tritonserver))
    return found, missing
