"""NV-Embed-v2's query instructions for the MTEB retrieval tasks (passages take none), and which one a data set
gets. The task texts are the ones NV-Embed-v2 was evaluated with (the E5-Mistral instruction set, also the query
prompts of mteb's tasks); the query prefix is "Instruct: {task}\\nQuery: " (KNOWLEDGE §1, §11)."""

from __future__ import annotations

import re

from ..errors import InputError
from ..tokenizer import QUERY_TASK, instruction_for_task

CQADUPSTACK = ("Given a question, retrieve detailed question descriptions from Stackexchange that are duplicates "
               "to the given question")

# mteb task name -> task instruction: the 15 retrieval tasks of the MTEB (English, v1) average
TASK_INSTRUCTIONS: dict[str, str] = {
    "ArguAna": "Given a claim, find documents that refute the claim",
    "ClimateFEVER": "Given a claim about climate change, retrieve documents that support or refute the claim",
    "CQADupstackRetrieval": CQADUPSTACK,
    "DBPedia": "Given a query, retrieve relevant entity descriptions from DBPedia",
    "FEVER": "Given a claim, retrieve documents that support or refute the claim",
    "FiQA2018": "Given a financial question, retrieve user replies that best answer the question",
    "HotpotQA": "Given a multi-hop question, retrieve documents that can help answer the question",
    "MSMARCO": "Given a web search query, retrieve relevant passages that answer the query",
    "NFCorpus": "Given a question, retrieve relevant documents that best answer the question",
    "NQ": "Given a question, retrieve Wikipedia passages that answer the question",
    "QuoraRetrieval": "Given a question, retrieve questions that are semantically equivalent to the given question",
    "SCIDOCS": "Given a scientific paper title, retrieve paper abstracts that are cited by the given paper",
    "SciFact": "Given a scientific claim, retrieve documents that support or refute the claim",
    "Touche2020": "Given a question, retrieve detailed and persuasive arguments that answer the question",
    "TRECCOVID": "Given a query on COVID-19, retrieve documents that answer the query",
}

# BEIR's folder names (as downloaded) -> mteb task names
BEIR_NAMES: dict[str, str] = {
    "arguana": "ArguAna", "climate-fever": "ClimateFEVER", "cqadupstack": "CQADupstackRetrieval",
    "dbpedia-entity": "DBPedia", "fever": "FEVER", "fiqa": "FiQA2018", "hotpotqa": "HotpotQA", "msmarco": "MSMARCO",
    "nfcorpus": "NFCorpus", "nq": "NQ", "quora": "QuoraRetrieval", "scidocs": "SCIDOCS", "scifact": "SciFact",
    "webis-touche2020": "Touche2020", "trec-covid": "TRECCOVID",
}

# tasks whose queries are also documents: a document with the query's own id is not a hit (BEIR, mteb)
IGNORE_IDENTICAL_IDS = frozenset({"ArguAna", "QuoraRetrieval"})


def _key(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


_LOOKUP = {_key(k): k for k in TASK_INSTRUCTIONS} | {_key(k): v for k, v in BEIR_NAMES.items()}


def task_name(name: str) -> str | None:
    """The mteb task a data set or task name denotes (case and punctuation ignored; CQADupstack subsets map to
    CQADupstackRetrieval), or None."""
    key = _key(name)
    if key.startswith("cqadupstack"):
        return "CQADupstackRetrieval"
    return _LOOKUP.get(key)


def query_instruction(dataset: str, task: str | None = None, instruction: str | None = None) -> tuple[str, str]:
    """(query prefix, where it came from). An explicit `instruction` (a task sentence, or a whole prefix ending in
    "Query: ") wins; else the table's entry for `task` or the data set's name; else the general retrieval task."""
    if instruction is not None:
        if not instruction.strip():
            return "", "--instruction '' (no instruction)"
        prefix = instruction if instruction.startswith("Instruct:") else instruction_for_task(instruction)
        return prefix, "--instruction"
    if task is not None:
        known = task_name(task)
        if known is None:
            raise InputError(f"unknown task {task!r}; tasks with a published instruction: "
                             f"{', '.join(TASK_INSTRUCTIONS)} (or give --instruction)")
        return instruction_for_task(TASK_INSTRUCTIONS[known]), f"task {known}"
    known = task_name(dataset)
    if known is not None:
        return instruction_for_task(TASK_INSTRUCTIONS[known]), f"task {known} (from the data set's name)"
    return instruction_for_task(QUERY_TASK), "the general retrieval instruction (no task matched the data set name)"
