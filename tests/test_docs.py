"""The README (the front page) and docs/ (the manual, an MkDocs site) as a user meets them: every ```bash and
```python block of every page runs in a scratch directory holding the repository's examples/ (a block that appears
on two pages runs once); ```sh blocks (make targets, installs, GPU hosts, clusters) are shown, not run: CI runs make
itself. The site builds with `mkdocs build --strict`, the generated pages equal their generators' output, and the
facts the manual states from the registries match them."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, langchain_hf_env
from nvembed_trt.presets import PRESETS

README = REPO / "README.md"
DOCS = REPO / "docs"
PAGES = [README, *sorted(DOCS.rglob("*.md"))]
SERVED = "127.0.0.1:8080"   # blocks that call the API the manual's `make serve` starts
SHAPE_AND_COSINE = re.compile(r"^\((\d+), (\d+)\) (-?\d+\.\d+)$", flags=re.M)


def _blocks(language: str) -> dict[str, list[str]]:
    """Each distinct block of `language`, with where it stands ("docs/serving.md:12", ...)."""
    found: dict[str, list[str]] = {}
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for match in re.finditer(rf"^```{language}\n(.*?)^```", text, flags=re.S | re.M):
            line = text.count("\n", 0, match.start()) + 1
            found.setdefault(match.group(1), []).append(f"{page.relative_to(REPO)}:{line}")
    return found


BASH, PYTHON = _blocks("bash"), _blocks("python")


def _load(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def scratch(tmp_path) -> Path:
    shutil.copytree(REPO / "examples", tmp_path / "examples")
    return tmp_path


@pytest.fixture(scope="module")
def manual_server(tmp_path_factory):
    """`nvembed-trt serve` of a tiny repository on the manual's ports (API 8080, KServe 8000-8002), as `make serve`."""
    from nvembed_trt.export import onnx_from_model
    from nvembed_trt.serving.process import ServeProcess
    from nvembed_trt.triton import repo_from_encoder

    root = tmp_path_factory.mktemp("manual-serve")
    export = onnx_from_model("tiny", root / "export", parity=False)
    repo = repo_from_encoder("tiny", export.directory, root / "triton_repo" / "tiny")
    with ServeProcess(repo.directory, ports=(8080, 8000, 8001, 8002)) as served:
        yield served


@pytest.fixture
def server_if_needed(request):
    block = request.node.callspec.params.get("block", "")
    return request.getfixturevalue("manual_server") if SERVED in block else None


def _env(block: str = "") -> dict[str, str]:
    """The user's shell: the venv's commands first; LangChain's HuggingFaceEndpointEmbeddings importable for the
    block that shows it (it lives beside the venv: it needs huggingface-hub<2)."""
    env = langchain_hf_env() if "langchain_huggingface" in block else os.environ.copy()
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env["NO_MKDOCS_2_WARNING"] = "1"
    return env


def test_pages_have_runnable_examples():
    assert len(BASH) >= 10 and len(PYTHON) >= 3


@pytest.mark.parametrize("block", BASH, ids=[where[0] for where in BASH.values()])
def test_bash_block_runs(scratch, server_if_needed, block):
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", block], cwd=scratch, env=_env(),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"block at {BASH[block]} failed:\n{block}\n--- stderr ---\n{proc.stderr}"
    for out in re.findall(r"--output (\S+\.npy)", block):
        assert (scratch / out).is_file() and (scratch / (out + ".json")).is_file()


@pytest.mark.parametrize("block", PYTHON, ids=[where[0] for where in PYTHON.values()])
def test_python_block_runs(scratch, server_if_needed, block):
    """A block that prints a shape prints `(rows, dims) cosine`: tiny's 64 dimensions and a cosine in [-1, 1]."""
    proc = subprocess.run([sys.executable, "-c", block], cwd=scratch, env=_env(block), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, f"block at {PYTHON[block]} failed:\n{proc.stderr}"
    printed = SHAPE_AND_COSINE.findall(proc.stdout)
    assert printed or ".shape" not in block, proc.stdout
    for rows, dims, cosine in printed:
        assert (int(rows), int(dims)) == (1, 64) and -1.0 <= float(cosine) <= 1.0, proc.stdout


def test_readme_is_a_front_page():
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) < 250
    first = re.search(r"^```\w*\n(.*?)^```", text, flags=re.S | re.M).group(1)
    assert "make all" in first and "make test" in first
    targets = re.findall(r"\]\(((?!https?://)[^)#]+)(?:#[^)]*)?\)", text)
    assert len(targets) >= 10
    missing = [t for t in targets if not (REPO / t).exists()]
    assert not missing, f"README links to files that do not exist: {missing}"


def test_ci_calls_the_test_command():
    ci = (REPO / ".ci" / "run").read_text()
    assert re.search(r"^make test$", ci, flags=re.M)


def test_site_builds_strictly(tmp_path):
    """A broken link or anchor, or a page missing from mkdocs.yml's nav, fails the build."""
    mkdocs = Path(sys.executable).parent / "mkdocs"
    proc = subprocess.run([str(mkdocs), "build", "--strict", "--site-dir", str(tmp_path / "site")], cwd=REPO,
                          env=_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    built = {p.relative_to(tmp_path / "site").parent.as_posix() for p in (tmp_path / "site").rglob("index.html")}
    assert {p.stem for p in PAGES[1:] if p.stem != "index"} <= built
    assert (tmp_path / "site" / "published" / "cpu-2core-24gib" / "latency.png").is_file()
    pages = (tmp_path / "site").rglob("index.html")
    assert [str(p) for p in pages if re.search(r"\|-{3,}\|", p.read_text())] == [], "a table came out as text"


@pytest.mark.parametrize("page", ["docs/results.md", "docs/cli.md"])
def test_generated_page_is_current(page):
    """Results from benchmarks/published/ only; the command line from the argparse parser."""
    pages = _load(REPO / "tools" / "docs_pages.py")
    assert page in pages.GENERATED
    assert pages.render(page) == (REPO / page).read_text(encoding="utf-8"), \
        f"{page} differs from its source: run python tools/docs_pages.py"


def test_every_published_section_has_a_date_and_a_machine():
    results = (DOCS / "results.md").read_text(encoding="utf-8")
    sections = re.split(r"^### ", results, flags=re.M)[1:]
    assert len(sections) >= 7
    for section in sections:
        title = section.splitlines()[0]
        assert re.search(r"^\*(measured|.*published) .*\d{4}-\d\d-\d\d.* on [\w-]+\*$", section, flags=re.M), title
    assert "ensemble overhead" not in results


def test_manual_names_every_preset():
    models = (DOCS / "models.md").read_text(encoding="utf-8")
    for name in PRESETS:
        assert f"**`{name}`**" in models


def test_results_recipe_table_covers_the_registry():
    from nvembed_trt.precision import RECIPES

    rows = re.findall(r"^\| ([\w-]+) \| \d\.\d{6} \|", (DOCS / "results.md").read_text(), flags=re.M)
    assert sorted(rows) == sorted(RECIPES)


def test_gpu_memory_table_is_the_registry_arithmetic():
    """The per-card table of engines.md against engines/memory.py for the full-size fp16 model."""
    from nvembed_trt.engines.gpus import full_size_fp16_bytes, gpu_registry
    from nvembed_trt.engines.memory import Shape, device_memory

    cfg, weights, gib = PRESETS["nv-embed-v2"].config, full_size_fp16_bytes(), 2 ** 30
    rows = re.findall(r"^\| ([\w, ()-]+?) \| ([\d.]+) GiB \| ([\d.]+) GiB \| ([\d.]+) GiB",
                      (DOCS / "engines.md").read_text(), flags=re.M)
    seen = set()
    for cards, usable, needed, static in rows:
        for card in re.findall(r"[\w-]+(?= \(|,|$)", cards):
            gpu = gpu_registry()[card]
            shapes = [Shape(p.name, p.batch.max, p.sequence.max) for p in gpu.profiles]
            worst = device_memory(cfg, weights, shapes, int(gpu.builder.workspace_gib * gib), "STATIC")
            assert (float(usable), float(needed), float(static)) == (
                round(gpu.memory_gib, 2), round(gpu.device_memory(cfg, weights).total / gib, 2),
                round(worst.total / gib, 2)), card
            seen.add(card)
    assert seen == set(gpu_registry())


def test_every_benchmark_script_is_indexed():
    index = (REPO / "benchmarks" / "README.md").read_text(encoding="utf-8")
    entries = [p.name for p in (REPO / "benchmarks").iterdir()
               if (p.suffix == ".py" or p.is_dir()) and not p.name.startswith(("_", ".")) and p.name != "results"]
    assert {"results_page.py", "published", "alloc_trace"} <= set(entries)
    assert [e for e in entries if f"`{e}" not in index] == []


def test_pages_space_their_tables_and_lists():
    """Python-Markdown folds a list or text that touches a table or paragraph into it; GitHub does not."""
    spaced = _load(REPO / "benchmarks" / "results_page.py").spaced
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        assert spaced(text) == text, f"{page.relative_to(REPO)} needs a blank line before a list or after a table"


def test_readme_api_table_lists_every_route_and_field():
    """The README's API table against the front door's own declarations (serving/app.py ENDPOINTS): every route in
    a row's route column (`/v1/health/*` covers its two), every field of a route's request body in that row, and a
    tested client named in every row."""
    import fnmatch

    from nvembed_trt.serving.app import ENDPOINTS

    text = README.read_text(encoding="utf-8")
    table = text[text.index("## The API and the clients tested against it"):text.index("## The manual")]
    rows = [[cell.strip() for cell in line.strip("|").split(" | ")] for line in table.splitlines()
            if line.startswith("| `")]
    assert rows and all(len(row) == 3 and row[2] for row in rows), rows
    missing = []
    for endpoint in ENDPOINTS:
        row = next((r for r in rows if any(fnmatch.fnmatchcase(endpoint.path, route)
                                           for route in re.findall(r"`(?:[A-Z]+ )?(/[^` ]*)`", r[0]))), None)
        if row is None:
            missing.append(f"{endpoint.method} {endpoint.path}: no row")
            continue
        fields = endpoint.request.model_fields if endpoint.request is not None else {}
        names = [field.alias or name for name, field in fields.items()]          # as the JSON body spells them
        missing += [f"{endpoint.path}: field {name}" for name in names if f"`{name}`" not in row[1]]
    assert missing == [], missing
