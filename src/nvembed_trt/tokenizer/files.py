"""Tokenizer files in a checkpoint directory, and the bundled NV-Embed-v2 tokenizer.model.

Reading prefers tokenizer.json (what upstream's AutoTokenizer uses) and falls back to converting tokenizer.model.
Special tokens come from tokenizer_config.json / special_tokens_map.json when present.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer

from ..errors import TokenizerError

# sha256 of NV-Embed-v2's tokenizer.model; mistral-common ships the same bytes (KNOWLEDGE §1, checked).
NV_EMBED_V2_TOKENIZER_SHA256 = "dadfd56d766715c61d2ef780a525ab43b8e6da4de6865bda3d95fdef5e134055"


def bundled_sentencepiece_model() -> Path:
    """Mistral-7B's tokenizer.model from the installed mistral-common wheel, verified by hash."""
    try:
        import mistral_common
    except ImportError as exc:
        raise TokenizerError("the bundled tokenizer needs the 'mistral-common' package: pip install "
                             "mistral-common") from exc
    path = Path(mistral_common.__file__).parent / "data" / "tokenizer.model.v1"
    if not path.is_file():
        raise TokenizerError(f"mistral-common {getattr(mistral_common, '__version__', '?')} has no {path.name}")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != NV_EMBED_V2_TOKENIZER_SHA256:
        raise TokenizerError(f"{path}: sha256 {digest} is not NV-Embed-v2's tokenizer "
                             f"({NV_EMBED_V2_TOKENIZER_SHA256})")
    return path


@dataclass(frozen=True)
class SpecialTokens:
    bos: str = "<s>"
    eos: str = "</s>"
    pad: str = "</s>"  # upstream pads with EOS (id 2)
    add_bos: bool = True


def _token_text(value: Any) -> str | None:
    if isinstance(value, dict):  # serialised AddedToken
        return value.get("content")
    return value if isinstance(value, str) else None


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TokenizerError(f"{path}: not valid JSON ({exc})") from exc
    return data if isinstance(data, dict) else {}


def read_special_tokens(root: Path) -> SpecialTokens:
    merged = {**_read_json(root / "special_tokens_map.json"), **_read_json(root / "tokenizer_config.json")}
    default = SpecialTokens()
    eos = _token_text(merged.get("eos_token")) or default.eos
    return SpecialTokens(bos=_token_text(merged.get("bos_token")) or default.bos, eos=eos,
                         pad=_token_text(merged.get("pad_token")) or eos,
                         add_bos=bool(merged.get("add_bos_token", True)))


def read_fast_tokenizer(root: Path) -> Tokenizer:
    if (root / "tokenizer.json").is_file():
        try:
            return Tokenizer.from_file(str(root / "tokenizer.json"))
        except Exception as exc:  # tokenizers raises a bare Exception on malformed files
            raise TokenizerError(f"{root / 'tokenizer.json'}: cannot be read ({exc})") from exc
    if (root / "tokenizer.model").is_file():
        from .sentencepiece import fast_tokenizer_from_sentencepiece  # sentencepiece only where it is needed

        return fast_tokenizer_from_sentencepiece(root / "tokenizer.model")
    raise TokenizerError(f"{root}: no tokenizer.json and no tokenizer.model")


def write_tokenizer_files(dest: Path, sentencepiece_model: Path) -> None:
    """Write tokenizer.model, tokenizer.json, tokenizer_config.json and special_tokens_map.json (official set)."""
    from .sentencepiece import fast_tokenizer_from_sentencepiece

    shutil.copyfile(sentencepiece_model, dest / "tokenizer.model")
    fast_tokenizer_from_sentencepiece(sentencepiece_model).save(str(dest / "tokenizer.json"))
    special = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "</s>"}
    config = {**special, "add_bos_token": True, "add_eos_token": False, "legacy": True,
              "padding_side": "right", "tokenizer_class": "LlamaTokenizer", "model_max_length": 32768}
    (dest / "special_tokens_map.json").write_text(json.dumps(special, indent=2) + "\n")
    (dest / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
