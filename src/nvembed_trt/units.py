"""Human byte sizes: '5GB', '500MB', '2GiB', '1024'."""

from __future__ import annotations

import re

from .errors import InputError

_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
          "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}


def parse_size(text: str) -> int:
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", str(text))
    if not match or match.group(2).upper() not in _UNITS:
        raise InputError(f"size must look like 5GB, 500MB, 2GiB or a byte count, got {text!r}")
    size = int(float(match.group(1)) * _UNITS[match.group(2).upper()])
    if size < 1:
        raise InputError(f"size must be at least 1 byte, got {text!r}")
    return size
