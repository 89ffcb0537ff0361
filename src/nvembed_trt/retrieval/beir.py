"""Retrieval data sets in BEIR's layout, read strictly and written atomically.

    DATASET/corpus.jsonl       {"_id": str, "title": str (optional), "text": str} per line
    DATASET/queries.jsonl      {"_id": str, "text": str} per line
    DATASET/qrels/<split>.tsv  query-id <TAB> corpus-id <TAB> score (an integer), after a header line

Every problem is an InputError naming the file and the line: a line that is not a JSON object with string fields,
a duplicate id, an empty file, a qrels row naming a query or document that does not exist, a repeated qrels pair.
Nothing is embedded before the whole set has been read. A document's text is `title + " " + text` stripped, as
BEIR and mteb build it; queries in queries.jsonl without judgements in the split are not evaluated (BEIR, mteb)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError
from ..provenance import sha256_file, sidecar, write_json
from ..staging import staged_directory

CORPUS, QUERIES, QRELS = "corpus.jsonl", "queries.jsonl", "qrels"
QRELS_HEADER = ("query-id", "corpus-id", "score")
DATASET_JSON = "dataset.json"     # how a set written here was made (not part of BEIR's layout; never read)


@dataclass(frozen=True)
class RetrievalSet:
    """A labelled retrieval set: documents, the judged queries of one split, graded judgements."""

    name: str
    split: str
    doc_ids: list[str]
    doc_texts: list[str]
    query_ids: list[str]
    query_texts: list[str]
    qrels: dict[str, dict[str, int]]            # query id -> {document id: grade}
    provenance: dict = field(default_factory=dict)

    def corpus_sha256(self) -> str:
        """Of the documents as embedded (ids and texts, in order): the key of cached corpus embeddings."""
        return _digest(zip(self.doc_ids, self.doc_texts))

    def queries_sha256(self) -> str:
        return _digest(zip(self.query_ids, self.query_texts))

    def describe(self) -> dict:
        return {"name": self.name, "split": self.split, "documents": len(self.doc_ids),
                "queries": len(self.query_ids), "judgements": sum(len(v) for v in self.qrels.values()),
                "corpus_sha256": self.corpus_sha256(), "queries_sha256": self.queries_sha256(), **self.provenance}


def _digest(pairs) -> str:
    digest = hashlib.sha256()
    for key, text in pairs:
        digest.update(f"{key}\x00{text}\x01".encode())
    return digest.hexdigest()


def _lines(path: Path):
    """(line number, stripped line) of the non-blank lines of a UTF-8 file; errors name file and line."""
    if not path.is_file():
        raise InputError(f"{path}: not found (a BEIR data set holds {CORPUS}, {QUERIES} and {QRELS}/<split>.tsv)")
    with path.open("rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise InputError(f"{path}:{lineno}: not valid UTF-8 at byte {exc.start} of the line") from exc
            line = line.removeprefix("\ufeff") if lineno == 1 else line
            if line.strip():
                yield lineno, line.rstrip("\r\n")


def _string_id(value, path: Path, lineno: int) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)) or str(value).strip() == "":
        raise InputError(f"{path}:{lineno}: \"_id\" must be a non-empty string, got {value!r}")
    return str(value)


def _records(path: Path, fields: tuple[str, ...]) -> tuple[list[str], list[dict], dict[str, int]]:
    """Ids, records and the line of each id from a JSON Lines file with unique "_id"s."""
    ids, records, lines = [], [], {}
    for lineno, line in _lines(path):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}:{lineno}: not valid JSON ({exc.msg} at column {exc.colno})") from exc
        if not isinstance(record, dict) or "_id" not in record:
            raise InputError(f"{path}:{lineno}: each line must be a JSON object with \"_id\" and \"text\"")
        key = _string_id(record["_id"], path, lineno)
        for name in fields:
            value = record.get(name) if name == "text" else (record.get(name) or "")   # a null title is none
            if not isinstance(value, str):
                raise InputError(f"{path}:{lineno}: \"{name}\" must be a string, got {record.get(name)!r}")
        if key in lines:
            raise InputError(f"{path}:{lineno}: duplicate id {key!r} (first on line {lines[key]})")
        lines[key] = lineno
        ids.append(key)
        records.append(record)
    if not ids:
        raise InputError(f"{path}: holds no records (empty file or only blank lines)")
    return ids, records, lines


def _document_text(record: dict) -> str:
    return f"{record.get('title') or ''} {record['text']}".strip()


def read_qrels(path: Path, queries: dict[str, int], documents: dict[str, int]) -> dict[str, dict[str, int]]:
    """Judgements from a BEIR qrels TSV; every id must exist in the queries and the corpus."""
    qrels: dict[str, dict[str, int]] = {}
    for lineno, line in _lines(path):
        cells = line.split("\t")
        if len(cells) != 3:
            raise InputError(f"{path}:{lineno}: expected 3 tab-separated fields (query-id, corpus-id, score), "
                             f"got {len(cells)}: {line[:80]!r}")
        if lineno == 1 and tuple(c.strip().lower() for c in cells) == QRELS_HEADER:
            continue
        qid, did, score = (c.strip() for c in cells)
        try:
            grade = int(score)
        except ValueError:
            raise InputError(f"{path}:{lineno}: score must be an integer, got {score!r}") from None
        if qid not in queries:
            raise InputError(f"{path}:{lineno}: query {qid!r} is not in {QUERIES}")
        if did not in documents:
            raise InputError(f"{path}:{lineno}: document {did!r} is not in {CORPUS}")
        if did in qrels.setdefault(qid, {}):
            raise InputError(f"{path}:{lineno}: judgement ({qid!r}, {did!r}) given twice")
        qrels[qid][did] = grade
    if not any(g > 0 for judged in qrels.values() for g in judged.values()):
        raise InputError(f"{path}: holds no positive judgement (score > 0): nothing to evaluate")
    return qrels


def splits(folder: Path) -> list[str]:
    return sorted(p.stem for p in (Path(folder) / QRELS).glob("*.tsv"))


def read_beir(folder: Path | str, split: str = "test", name: str | None = None) -> RetrievalSet:
    """The data set in `folder` (BEIR layout), judged queries of `split` only, in qrels order."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"data set folder not found: {folder}")
    qrels_path = folder / QRELS / f"{split}.tsv"
    if not qrels_path.is_file():
        raise InputError(f"{qrels_path}: not found; splits here: {', '.join(splits(folder)) or 'none'}")
    doc_ids, docs, doc_lines = _records(folder / CORPUS, ("title", "text"))
    texts = [_document_text(d) for d in docs]
    empty = next((i for i, t in enumerate(texts) if not t), None)
    if empty is not None:
        raise InputError(f"{folder / CORPUS}:{doc_lines[doc_ids[empty]]}: document {doc_ids[empty]!r} has neither "
                         f"title nor text")
    query_ids, queries, query_lines = _records(folder / QUERIES, ("text",))
    blank = next((q for q, r in zip(query_ids, queries) if not r["text"].strip()), None)
    if blank is not None:
        raise InputError(f"{folder / QUERIES}:{query_lines[blank]}: query {blank!r} has an empty text")
    qrels = read_qrels(qrels_path, query_lines, doc_lines)
    by_id = dict(zip(query_ids, queries))
    judged = list(qrels)
    provenance = {"folder": str(folder.resolve()), "files": {
        str(p.relative_to(folder)): sha256_file(p) for p in (folder / CORPUS, folder / QUERIES, qrels_path)}}
    return RetrievalSet(name or folder.name, split, doc_ids, texts, judged, [by_id[q]["text"] for q in judged],
                        qrels, provenance)


def write_beir(dataset: RetrievalSet, folder: Path | str, overwrite: bool = False,
               titles: list[str] | None = None) -> Path:
    """Write `dataset` in BEIR's layout (the whole folder or nothing: staged, then renamed)."""
    folder = Path(folder)
    titles = titles or [""] * len(dataset.doc_ids)
    with staged_directory(folder, overwrite) as staging:
        with (staging / CORPUS).open("w", encoding="utf-8") as fh:
            for key, title, text in zip(dataset.doc_ids, titles, dataset.doc_texts):
                fh.write(json.dumps({"_id": key, "title": title, "text": text}, ensure_ascii=False) + "\n")
        with (staging / QUERIES).open("w", encoding="utf-8") as fh:
            for key, text in zip(dataset.query_ids, dataset.query_texts):
                fh.write(json.dumps({"_id": key, "text": text}, ensure_ascii=False) + "\n")
        (staging / QRELS).mkdir()
        with (staging / QRELS / f"{dataset.split}.tsv").open("w", encoding="utf-8") as fh:
            fh.write("\t".join(QRELS_HEADER) + "\n")
            for qid, judged in dataset.qrels.items():
                fh.writelines(f"{qid}\t{did}\t{grade}\n" for did, grade in judged.items())
        write_json(staging / DATASET_JSON, sidecar("retrieval-dataset", name=dataset.name, split=dataset.split,
                                                   documents=len(dataset.doc_ids), queries=len(dataset.query_ids),
                                                   provenance=dataset.provenance))
    return folder
