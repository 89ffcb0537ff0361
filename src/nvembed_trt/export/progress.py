"""A byte-counting progress bar for ONNX IR's streaming writer."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn

from ..console import console


@contextlib.contextmanager
def streaming_callback(description: str, total_bytes: int) -> Iterator:
    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task(description, total=total_bytes)

        def callback(tensor, info) -> None:
            progress.advance(task, tensor.nbytes)
        yield callback
