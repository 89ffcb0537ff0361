"""Progress of a corpus job on stderr: rows done of the planned total, rows/s and ETA. A live bar on a terminal;
elsewhere (CI, `ray job logs`) one plain line every `every_s` seconds and a final line."""

from __future__ import annotations

import time

from ..console import console


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


class CorpusProgress:
    def __init__(self, total: int, every_s: float = 10.0, live: bool | None = None):
        self.total, self.every_s = total, every_s
        self.rows = self.rejected = 0
        self.started = self.last = time.perf_counter()
        self.live = console.is_terminal if live is None else live
        self._progress = None
        if self.live:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

            self._progress = Progress(TextColumn("embedding"), BarColumn(), MofNCompleteColumn(),
                                      TextColumn("{task.fields[status]}"), console=console)
            self._task = self._progress.add_task("embedding", total=total, status="")
            self._progress.start()

    def rate(self) -> float:
        elapsed = time.perf_counter() - self.started
        return self.rows / elapsed if elapsed > 0 else 0.0

    def status(self) -> str:
        rate = self.rate()
        eta = (self.total - self.rows - self.rejected) / rate if rate > 0 else None
        return (f"{rate:,.1f} rows/s, ETA {_duration(eta) if eta is not None else '?'}"
                + (f", {self.rejected} rejected" if self.rejected else ""))

    def update(self, rows: int, rejected: int) -> None:
        self.rows += rows
        self.rejected += rejected
        now = time.perf_counter()
        if self._progress is not None:
            self._progress.update(self._task, completed=self.rows + self.rejected, status=self.status())
        elif now - self.last >= self.every_s:
            self.last = now
            done = self.rows + self.rejected
            console.print(f"embedded {done:,}/{self.total:,} rows ({100 * done / max(self.total, 1):.1f}%), "
                          f"{self.status()}", markup=False)

    def stop(self) -> None:
        """End the live bar (also on failure)."""
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def close(self) -> None:
        self.stop()
        console.print(f"embedded {self.rows:,} rows in {_duration(time.perf_counter() - self.started)} "
                      f"({self.rate():,.1f} rows/s), {self.rejected} rejected by workers", markup=False)
