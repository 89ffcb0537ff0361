"""The sidecar every artifact carries (export.json, precision.json, engine.json, repo.json): one typed model per kind
(pydantic, extra="forbid"), versioned, with one reader and one writer.

`Kind.read(folder)` is the only way the project opens a sidecar: a missing file, unreadable JSON, a sidecar made by
an older or newer nvembed-trt and a field that does not fit the schema each give one error naming the file and the
command that makes it ("regenerate with ..."), never a KeyError three calls later. `Kind.find(folder)` is the same
but gives None when there is no file. `Kind.new(**fields)` fills the common header (what, when, which versions) and
`meta.write(folder)` writes it atomically (temporary name, then rename)."""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError

from ..errors import InputError
from ..provenance import versions, write_json


class SidecarError(InputError):
    """A sidecar is missing, unreadable, from another nvembed-trt format, or does not fit its schema."""


class Sidecar(BaseModel):
    """The common header. Subclasses set FILE (the file name), ARTIFACT (the `artifact` value), MADE_BY (the command
    that makes it, with {folder} for the artifact's folder, for the error messages) and FORMAT (bumped whenever a
    field changes meaning or is renamed)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    FILE: ClassVar[str]
    ARTIFACT: ClassVar[str]
    MADE_BY: ClassVar[str]
    FORMAT: ClassVar[int] = 1

    artifact: str
    format_version: int
    created_utc: str
    versions: dict[str, str]

    @classmethod
    def new(cls, **fields: Any):
        """A sidecar made now, by this nvembed-trt (the header filled in)."""
        now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        return cls(artifact=cls.ARTIFACT, format_version=cls.FORMAT, created_utc=now, versions=versions(), **fields)

    @classmethod
    def find(cls, folder: Path | str):
        """The folder's sidecar, or None when it has no such file (a present but bad file is an error)."""
        return cls.read(folder) if (Path(folder) / cls.FILE).is_file() else None

    @classmethod
    def read(cls, folder: Path | str):
        path = Path(folder) / cls.FILE
        if not path.is_file():
            raise SidecarError(f"{folder}: no {cls.FILE}; make it with `{cls.made_by(folder)}`")
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise SidecarError(f"{path}: unreadable ({exc}); regenerate it with `{cls.made_by(folder)} "
                               f"--overwrite`") from None
        return cls.parse(raw, path)

    @classmethod
    def made_by(cls, folder: Path | str) -> str:
        return cls.MADE_BY.format(folder=folder)

    @classmethod
    def parse(cls, raw: Any, where: Path | str):
        """Check a sidecar's contents (as read from `where`) against this format."""
        if not isinstance(raw, dict) or raw.get("artifact") != cls.ARTIFACT:
            what = raw.get("artifact") if isinstance(raw, dict) else type(raw).__name__
            raise SidecarError(f"{where}: not a {cls.ARTIFACT} sidecar (artifact {what!r}); regenerate it with "
                               f"`{cls.made_by(Path(where).parent)} --overwrite`")
        found = raw.get("format_version")
        if found != cls.FORMAT:
            age = ("an older nvembed-trt" if not isinstance(found, int) or found < cls.FORMAT
                   else "a newer nvembed-trt (upgrade this one, or)")
            raise SidecarError(f"{where}: made by {age} (format {found or 'unversioned'}, this nvembed-trt reads "
                               f"format {cls.FORMAT}); regenerate it with `{cls.made_by(Path(where).parent)} "
                               f"--overwrite`")
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            details = "; ".join(f"{'.'.join(str(x) for x in e['loc']) or 'sidecar'}: {e['msg']}"
                                for e in exc.errors()[:5])
            raise SidecarError(f"{where}: does not fit the {cls.FILE} format {cls.FORMAT} ({details}); regenerate "
                               f"it with `{cls.made_by(Path(where).parent)} --overwrite`") from None

    def updated(self, **fields: Any):
        """A copy with `fields` replaced, checked again against the schema."""
        return type(self).model_validate(self.model_dump() | fields)

    def write(self, folder: Path | str) -> Path:
        path = Path(folder) / self.FILE
        write_json(path, self.model_dump(mode="json"))
        return path

    def digest(self) -> str:
        """A sha256 of the sidecar's contents (what identifies the artifact in caches)."""
        from ..provenance import sha256_bytes

        return sha256_bytes(json.dumps(self.model_dump(mode="json"), sort_keys=True).encode())
