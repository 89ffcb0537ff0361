"""mteb as a client of our embedders: `MTEBEncoder` wraps any embedder of embedders.open_embedder (the reference, an
ONNX graph, a TensorRT engine, a served URL) as an mteb encoder, with NV-Embed-v2's per-task query instructions
("Instruct: {task}\\nQuery: ", passages none), its own tokenizer and limit: not mteb's stock OpenAI wrapper, which
truncates with tiktoken at 8,191 tokens, sends no instruction and always sends `dimensions`.

`beir_task` turns a local BEIR folder into an mteb retrieval task (no hub); `run_mteb` evaluates. Needs the `mteb`
extra: pip install 'nvembed-trt[mteb]'."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..tokenizer import QUERY_TASK, instruction_for_task
from ..retrieval.beir import read_beir
from .embedders import EvalEmbedder
from .instructions import TASK_INSTRUCTIONS, task_name


def _mteb():
    try:
        import mteb
    except ImportError as exc:
        raise InputError("the mteb adapter needs mteb: pip install 'nvembed-trt[mteb]'") from exc
    return mteb


def task_instruction(name: str, prompt: Any = None) -> str:
    """The task sentence for a task: NV-Embed-v2's published one, else the task's own query prompt, else the
    general retrieval instruction."""
    known = task_name(name)
    if known is not None:
        return TASK_INSTRUCTIONS[known]
    if isinstance(prompt, dict) and prompt.get("query"):
        return str(prompt["query"])
    if isinstance(prompt, str) and prompt:
        return prompt
    return QUERY_TASK


def encoder_class():
    """MTEBEncoder, built on first use so that importing this module needs no mteb."""
    mteb = _mteb()
    from mteb.models.abs_encoder import AbsEncoder
    from mteb.models.model_meta import ModelMeta, ScoringFunction
    from mteb.types import PromptType

    class MTEBEncoder(AbsEncoder):
        def __init__(self, embedder: EvalEmbedder, dim: int | None = None):
            self.model = self.embedder = embedder
            self.instructions_used: dict[str, str] = {}
            self.mteb_model_meta = ModelMeta.create_empty({
                "name": f"nvembed-trt/{embedder.name}-{embedder.recipe}", "revision": mteb.__version__,
                "embed_dim": dim, "max_tokens": embedder.max_length, "similarity_fn_name": ScoringFunction.COSINE,
                "use_instructions": True, "framework": ["PyTorch"], "modalities": ["text"]})

        def encode(self, inputs, *, task_metadata, hf_split, hf_subset, prompt_type=None, **kwargs) -> np.ndarray:
            texts = [text for batch in inputs for text in batch["text"]]
            instruction = ""
            if prompt_type == PromptType.query:
                instruction = instruction_for_task(task_instruction(task_metadata.name, task_metadata.prompt))
                self.instructions_used[task_metadata.name] = instruction
            return self.embedder.embed(texts, instruction)

    return MTEBEncoder


def beir_task(folder: Path | str, split: str = "test", name: str | None = None, instruction: str | None = None):
    """A local BEIR folder as an mteb retrieval task (read strictly by beir.read_beir; nothing from the hub). Named
    as the MTEB task it copies (e.g. SciFact) it gets that task's published instruction; otherwise `instruction`
    (a task sentence), else the general retrieval instruction."""
    _mteb()
    from datasets import Dataset
    from mteb.abstasks.retrieval import AbsTaskRetrieval
    from mteb.abstasks.retrieval_dataset_loaders import RetrievalSplitData
    from mteb.abstasks.task_metadata import TaskMetadata

    dataset = read_beir(folder, split)
    task = name or dataset.name
    metadata = TaskMetadata(
        name=task, description=f"local BEIR data set {folder}", reference=None, type="Retrieval", category="t2t",
        modalities=["text"], eval_splits=[split], eval_langs=["eng-Latn"], main_score="ndcg_at_10",
        dataset={"path": str(Path(folder).resolve()), "revision": dataset.corpus_sha256()[:12]},
        date=None, domains=None, task_subtypes=None, license=None, annotations_creators=None, dialect=None,
        sample_creation=None, bibtex_citation="", prompt={"query": instruction or task_instruction(task)})

    class LocalBEIRTask(AbsTaskRetrieval):
        def load_data(self, num_proc: int | None = None, **kwargs: Any) -> None:
            split_data = RetrievalSplitData(
                queries=Dataset.from_dict({"id": dataset.query_ids, "text": dataset.query_texts}),
                corpus=Dataset.from_dict({"id": dataset.doc_ids, "text": dataset.doc_texts,
                                          "title": [""] * len(dataset.doc_ids)}),
                relevant_docs=dataset.qrels, top_ranked=None)
            self.dataset = {"default": {split: split_data}}
            self.data_loaded = True

    LocalBEIRTask.metadata = metadata
    return LocalBEIRTask()


def run_mteb(embedder: EvalEmbedder, tasks: list, output: Path | str | None = None) -> dict[str, dict]:
    """Evaluate `tasks` with `embedder` through mteb; {task: its test-split scores (ndcg_at_10, ...)}. Results go to
    `output` (mteb's result cache layout) when given, else nowhere."""
    mteb = _mteb()
    from mteb.cache import ResultCache

    model = encoder_class()(embedder)
    cache = ResultCache(str(output)) if output else None
    results = mteb.evaluate(model, tasks, cache=cache, show_progress_bar=False, overwrite_strategy="always")
    scores = {}
    for result in results.task_results:
        split = next(iter(result.scores))
        scores[result.task_name] = result.scores[split][0]
    return scores
