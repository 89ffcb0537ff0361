"""The manual's generated pages, each from its one source: docs/results.md from benchmarks/published/
(benchmarks/results_page.py) and docs/cli.md from the argparse parser (tools/cli_reference.py).

    python tools/docs_pages.py            # rewrite them
    python tools/docs_pages.py --check    # exit 1 naming each page that differs from its source

tests/test_docs.py runs the same comparison."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GENERATED = {"docs/results.md": ROOT / "benchmarks" / "results_page.py",
             "docs/cli.md": ROOT / "tools" / "cli_reference.py"}


def render(page: str) -> str:
    spec = importlib.util.spec_from_file_location(GENERATED[page].stem, GENERATED[page])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.render()


def main(check: bool) -> int:
    stale = []
    for page in GENERATED:
        text, path = render(page), ROOT / page
        if check:
            stale += [page] if path.read_text(encoding="utf-8") != text else []
        else:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {page}")
    for page in stale:
        print(f"{page} differs from {GENERATED[page].relative_to(ROOT)}: run python tools/docs_pages.py")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main("--check" in sys.argv))
