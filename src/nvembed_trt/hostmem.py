"""A process's resident memory from Linux /proc/<pid>/status, in GiB: total and peak (VmRSS, VmHWM) and its
anonymous and file-backed parts (RssAnon, RssFile). Empty where /proc is not there or the process is gone."""

from __future__ import annotations

from pathlib import Path

FIELDS = ("VmRSS", "VmHWM", "RssAnon", "RssFile")


def process_memory_gib(pid: int | str = "self") -> dict[str, float]:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return {}
    fields = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key in FIELDS:
            fields[key] = int(value.split()[0]) / 2**20
    return fields
