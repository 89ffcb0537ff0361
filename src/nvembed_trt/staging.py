"""Write a whole output folder or nothing: a hidden staging folder beside it is renamed into place on success
and removed on any failure, so an interrupted or rejected stage leaves no partial artifact."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from .errors import InputError


def check_output_dir(output: Path, overwrite: bool) -> None:
    if output.exists() and (not output.is_dir() or (any(output.iterdir()) and not overwrite)):
        raise InputError(f"output {output} already exists and is not empty; remove it or choose another "
                         f"(commands that can replace it take --overwrite)")


def check_output_file(path: Path, flag: str) -> None:
    """A file a command writes at its end: not a folder, in a writable folder that exists. Checked before the work,
    so that a long run does not end in a traceback."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{flag} {path} is a directory; give a file path in it (e.g. {path / 'report.json'})")
    if not path.parent.is_dir():
        raise InputError(f"{flag} {path}: its folder {path.parent} does not exist or is not a directory; create it "
                         f"or choose another path")
    if not os.access(path.parent, os.W_OK | os.X_OK):
        raise InputError(f"{flag} {path}: its folder {path.parent} is not writable")


@contextlib.contextmanager
def staged_directory(output: Path, overwrite: bool = False) -> Iterator[Path]:
    output = Path(output)
    check_output_dir(output, overwrite)
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create output directory {output.parent}: {exc.strerror}") from exc
    if not os.access(output.parent, os.W_OK):
        raise InputError(f"output directory {output.parent} is not writable")
    staging = output.parent / f".{output.name}.tmp-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        yield staging
        if overwrite and output.exists():
            shutil.rmtree(output)
        os.replace(staging, output)  # onto a missing or empty folder; a folder filled meanwhile raises OSError
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
