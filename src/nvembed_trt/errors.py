"""Typed errors. Every user-facing failure is an NVEmbedError whose message names the limit and the value."""


class NVEmbedError(Exception):
    """Base class for errors the CLI reports as a one-line 'error: ...' with exit status 2."""


class ConfigError(NVEmbedError):
    """config.json is missing, malformed, or describes a model this reference cannot run."""


class CheckpointError(NVEmbedError):
    """A checkpoint directory is missing, incomplete or not in the official layout."""


class CheckpointKeyError(CheckpointError):
    """Checkpoint tensors do not match the model: lists every missing, unexpected and mis-shaped key at once."""

    def __init__(self, missing: list[str], unexpected: list[str], mismatched: list[tuple[str, tuple, tuple]],
                 source: str):
        self.missing, self.unexpected, self.mismatched = missing, unexpected, mismatched
        lines = [f"checkpoint {source} does not match the model config:"]
        lines += [f"  missing key: {k}" for k in missing]
        lines += [f"  unexpected key: {k}" for k in unexpected]
        lines += [f"  shape mismatch: {k}: checkpoint {list(got)}, model expects {list(want)}"
                  for k, got, want in mismatched]
        lines.append(f"  ({len(missing)} missing, {len(unexpected)} unexpected, {len(mismatched)} mis-shaped)")
        super().__init__("\n".join(lines))


class TokenizerError(NVEmbedError):
    """Tokenizer files are missing or unusable."""


class InputError(NVEmbedError):
    """User input (texts, files, lengths, options) is invalid."""


class PresetError(NVEmbedError):
    """An unknown preset name or an invalid preset definition."""
