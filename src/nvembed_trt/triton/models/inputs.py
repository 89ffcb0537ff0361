"""KServe request tensors of nv_embed -> texts, instructions and truncation modes per row, with errors that name
the row, the limit and the value (INVALID_ARG)."""

from __future__ import annotations

from ...errors import InputError
from ...tokenizer import INPUT_TYPES, TRUNCATE_MODES

DEFAULT_TRUNCATE = "END"   # KServe's default since the first release; the OpenAI/NIM front door defaults to NONE


def _text(values, name: str, row: int, max_bytes: int) -> str:
    value = values[row]
    raw = value.encode("utf-8") if isinstance(value, str) else bytes(value)
    if len(raw) > max_bytes:
        raise InputError(f"{name}[{row}] is {len(raw)} bytes, above the limit of {max_bytes} bytes per input")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{name}[{row}] is not valid UTF-8 (byte {exc.start})") from exc


def _per_row(values, name: str, rows: int) -> None:
    if values is not None and len(values) != rows:
        raise InputError(f"{name} has {len(values)} rows but TEXT has {rows}; send one value per TEXT row")


def parse_rows(texts, input_types, instructions, truncates,
               max_input_bytes: int) -> tuple[list[str], list[str], list[str]]:
    """(texts, instructions, truncate modes); raises InputError naming the first bad row."""
    if texts is None:
        raise InputError("TEXT is required (a BYTES tensor of shape [rows, 1])")
    if len(texts) == 0:
        raise InputError("TEXT holds no rows")
    for name, values in (("INPUT_TYPE", input_types), ("INSTRUCTION", instructions), ("TRUNCATE", truncates)):
        _per_row(values, name, len(texts))
    out_texts, out_instructions, out_truncates = [], [], []
    for row in range(len(texts)):
        text = _text(texts, "TEXT", row, max_input_bytes)
        if not text:
            raise InputError(f"TEXT[{row}] is empty")
        if instructions is not None:
            instruction = _text(instructions, "INSTRUCTION", row, max_input_bytes)
        elif input_types is not None:
            kind = _text(input_types, "INPUT_TYPE", row, 64).lower()
            if kind not in INPUT_TYPES:
                raise InputError(f"INPUT_TYPE[{row}] is {kind!r}; choose one of {', '.join(INPUT_TYPES)}")
            instruction = INPUT_TYPES[kind]
        else:
            instruction = ""
        truncate = _text(truncates, "TRUNCATE", row, 64).upper() if truncates is not None else DEFAULT_TRUNCATE
        if truncate not in TRUNCATE_MODES:
            raise InputError(f"TRUNCATE[{row}] is {truncate!r}; choose one of {', '.join(TRUNCATE_MODES)}")
        out_texts.append(text)
        out_instructions.append(instruction)
        out_truncates.append(truncate)
    return out_texts, out_instructions, out_truncates
