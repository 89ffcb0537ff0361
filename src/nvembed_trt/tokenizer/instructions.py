"""Instructions: queries get "Instruct: {task}\\nQuery: ", passages get none (NV-Embed-v2 model card)."""

from __future__ import annotations

from ..errors import InputError

QUERY_TASK = "Given a question, retrieve passages that answer the question"


def instruction_for_task(task: str) -> str:
    return f"Instruct: {task}\nQuery: "


INPUT_TYPES: dict[str, str] = {"query": instruction_for_task(QUERY_TASK), "passage": ""}


def resolve_instruction(input_type: str | None = None, instruction: str | None = None) -> str:
    """The instruction prefix to use: an explicit instruction wins over input_type; neither means none."""
    if instruction is not None:
        return instruction
    if input_type is None:
        return ""
    if input_type not in INPUT_TYPES:
        raise InputError(f"unknown input type {input_type!r}; choose one of {', '.join(INPUT_TYPES)}")
    return INPUT_TYPES[input_type]
