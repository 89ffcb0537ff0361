"""Triton python-backend model `tokenizer`: TEXT (+ optional INPUT_TYPE or INSTRUCTION, TRUNCATE) -> input_ids,
attention_mask, pool_mask, tokenised exactly as encode() with the fast tokenizer, one call per instruction group.
Rows are padded to a power-of-two bucket (16, 32, ... up to max_length) so the encoder's dynamic batcher can merge
requests of similar length. Bad rows give INVALID_ARG naming the row, the limit and the value."""

from __future__ import annotations

import numpy as np

from ...errors import InputError
from ...tokenizer import INPUT_TYPES, EmbeddingTokenizer
from ..spec import REQUEST_INPUTS, TOKEN_OUTPUTS, TRUNCATE_MODES
from .common import error_response, optional_input, settings_from_args, triton_utils


def _text(values, name: str, row: int) -> str:
    value = values[row]
    if isinstance(value, str):
        return value
    try:
        return bytes(value).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{name}[{row}] is not valid UTF-8 (byte {exc.start})") from exc


def bucket_width(longest: int, max_length: int, first: int = 16) -> int:
    width = first
    while width < longest:
        width *= 2
    return min(width, max_length)


def _row_settings(row: int, input_types, instructions, truncates) -> tuple[str, str]:
    if instructions is not None:
        instruction = _text(instructions, "INSTRUCTION", row)
    elif input_types is not None:
        kind = _text(input_types, "INPUT_TYPE", row).lower()
        if kind not in INPUT_TYPES:
            raise InputError(f"INPUT_TYPE[{row}] is {kind!r}; choose one of {', '.join(INPUT_TYPES)}")
        instruction = INPUT_TYPES[kind]
    else:
        instruction = ""
    truncate = _text(truncates, "TRUNCATE", row).upper() if truncates is not None else "END"
    if truncate not in TRUNCATE_MODES:
        raise InputError(f"TRUNCATE[{row}] is {truncate!r}; choose one of {', '.join(TRUNCATE_MODES)}")
    return instruction, truncate


def tokenize_rows(tok: EmbeddingTokenizer, texts, input_types, instructions, truncates,
                  max_length: int) -> dict[str, np.ndarray]:
    """int32 arrays [rows, width] for one request; raises InputError naming the first bad row."""
    tok.check_max_length(max_length)
    if texts is None or len(texts) == 0:
        raise InputError("TEXT is required and holds no rows")
    groups: dict[str, list[tuple[int, str, str]]] = {}
    for row in range(len(texts)):
        text = _text(texts, "TEXT", row)
        if not text:
            raise InputError(f"TEXT[{row}] is empty")
        instruction, truncate = _row_settings(row, input_types, instructions, truncates)
        groups.setdefault(instruction, []).append((row, text, truncate))
    encoded: dict[str, list[list[int]]] = {}
    for instruction, members in groups.items():
        full = tok.encode_untruncated([text for _, text, _ in members], instruction)  # the only tokenizer call
        for (row, _, mode), ids in zip(members, full):
            if mode == "NONE" and len(ids) > max_length:
                raise InputError(f"TEXT[{row}] has {len(ids)} tokens, above the limit of {max_length} "
                                 f"(TRUNCATE=NONE); shorten it or send TRUNCATE=END")
        encoded[instruction] = [ids[:max_length] for ids in full]
    width = bucket_width(max(len(ids) for rows in encoded.values() for ids in rows), max_length)
    out = {name: np.zeros((len(texts), width), dtype=np.int32) for name in TOKEN_OUTPUTS}
    for instruction, members in groups.items():
        batch = tok.batch_from_ids(encoded[instruction], instruction, width, max_length)
        index = [row for row, _, _ in members]
        for name in TOKEN_OUTPUTS:
            out[name][index] = getattr(batch, name)
    return out


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        params, version_dir = settings_from_args(args)
        self.pb = triton_utils()
        self.max_length = int(params["max_length"])
        self.tokenizer = EmbeddingTokenizer.from_dir(version_dir / params["tokenizer_dir"])
        self.tokenizer.check_max_length(self.max_length)

    def execute(self, requests):
        responses = []
        for request in requests:
            inputs = [optional_input(self.pb, request, name) for name in REQUEST_INPUTS]
            try:
                arrays = tokenize_rows(self.tokenizer, *inputs, self.max_length)
            except InputError as exc:
                responses.append(error_response(self.pb, str(exc)))
                continue
            responses.append(self.pb.InferenceResponse([self.pb.Tensor(n, arrays[n]) for n in TOKEN_OUTPUTS]))
        return responses
