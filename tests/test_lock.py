"""The environment is installed from a lock: constraints.txt, a resolver's output (`make lock`), pins every dependency
the package and its test, corpus and serving extras pull in, except torch (installed apart at the Makefile's
TORCH_VERSION); `make install` (and so CI) installs through it, and this environment is what it pins."""

from __future__ import annotations

import importlib.metadata
import re
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
tomllib = pytest.importorskip("tomllib", reason="reading pyproject.toml needs Python 3.11+ (tomllib)")


def pins() -> dict[str, str]:
    found = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            requirement = Requirement(line)
            (spec,) = requirement.specifier
            assert spec.operator == "==", line
            found[canonicalize_name(requirement.name)] = spec.version
    return found


def direct_requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    return [Requirement(r) for r in [*project["dependencies"], *extras["test"], *extras["corpus"], *extras["serving"]]]


def test_lock_pins_every_direct_dependency_within_pyproject():
    locked = pins()
    assert len(locked) >= 100
    for requirement in direct_requirements():
        name = canonicalize_name(requirement.name)
        if name in ("torch", "nvembed-trt"):
            continue
        assert name in locked, f"{name} is not in constraints.txt: run make lock"
        assert requirement.specifier.contains(locked[name], prereleases=True), (name, locked[name])
    assert "torch" not in locked and locked["numpy"].startswith("1.")       # numpy<2: the Triton stub's ABI


def test_this_environment_is_the_locked_one():
    """What `make install` installed matches the lock (a drifted install, or a lock not refreshed after a pyproject
    change, fails here)."""
    drifted = {}
    for name, version in pins().items():
        try:
            installed = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue                     # a platform-specific pin this machine does not need
        if installed != version:
            drifted[name] = (installed, version)
    assert drifted == {}, f"installed vs locked: {drifted}; run make install (or make lock)"


def test_make_install_and_lock_use_the_lock():
    makefile = (ROOT / "Makefile").read_text()
    assert "-c $(LOCK) -e '.[test]'" in makefile and re.search(r"^\$\(STAMP\): pyproject.toml \$\(LOCK\)", makefile,
                                                                re.M)
    lock = makefile[makefile.index("\nlock:"):]
    assert "uv pip compile --quiet pyproject.toml" in lock and "--excludes <(echo torch)" in lock
    assert "$(MAKE) test" in lock
