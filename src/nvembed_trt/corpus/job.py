"""embed_corpus: the whole job. On the driver: check settings, inputs, model and encoder before any work; scan the
inputs (a Ray task per file); plan what is missing from the output; then Ray Data streams planned chunks through
read tasks into an actor pool (one encoder per actor) that writes the shards. The driver shows progress from the
workers' summaries and finally merges the rejects, verifies the shards and writes the sidecar."""

from __future__ import annotations

import dataclasses
import datetime as _dt
import logging
import math
import os
import re
import secrets
import shutil
import time
from collections import Counter
from pathlib import Path

import pyarrow.compute as pc

from ..artifacts.engine import EngineMeta
from ..console import note, quiet_logger
from ..errors import InputError, NVEmbedError
from ..provenance import sidecar, write_json
from ..tokenizer import resolve_instruction
from ..tokenizer.embedding import check_max_length
from .encoders import encoder_facts
from .inputs import InputFile, resolve_inputs
from ..packing import Packer
from ..shapes import ShapeError
from .plan import make_plan
from .progress import CorpusProgress
from .scan import FileScan, scan_file
from .settings import DEFAULT_BATCH_TOKENS, DEFAULT_MAX_LENGTH, CorpusSettings, WorkerSpec
from .shards import (REJECT_PARTS, SCAN_REJECTS, SIDECAR, done_ids, merge_rejects, remove_temporaries,
                     shard_ids, shard_paths, write_jsonl)
from .worker import CorpusWorker

CHUNK_ROWS = 1024     # rows per read chunk (JSON Lines seek points); Parquet reads by row group
READ_CPUS = 1.0
IDENTITY_KEYS = ("model", "runtime", "recipe", "instruction", "max_length", "truncate", "text_column", "id_column",
                 "embedding_type", "output_ranges")
IDENTITY_DEFAULTS = {"embedding_type": "float", "output_ranges": None}   # outputs made before the keys existed


class CorpusError(NVEmbedError):
    """The job failed in a worker, or its output does not hold what it should."""


def ray_missing() -> InputError:
    return InputError("embed-corpus runs on Ray Data, which is not installed: pip install 'nvembed-trt[corpus]' "
                      "(or pip install 'ray[data]>=2.60,<2.61')")


# ------------------------------------------------------------------------------------------------- checking
@dataclasses.dataclass
class Resolved:
    settings: CorpusSettings
    files: list[InputFile]
    source: object
    instruction: str
    facts: dict
    max_length: int
    batch_tokens: int
    identity: dict


def _engine(facts: dict) -> EngineMeta:
    return EngineMeta.read(Path(facts["path"]).parent)


def _max_length(settings: CorpusSettings, facts: dict, source) -> int:
    positions = source.config.body.max_position_embeddings
    limit = None
    if settings.runtime == "engine":
        limit = _engine(facts).max_sequence
    elif settings.runtime == "triton":
        limit = facts.get("max_length")
        if limit and settings.max_length and settings.max_length != limit:
            raise InputError(f"--max-length {settings.max_length} differs from the server's {limit}: the server "
                             f"truncates at its own limit, so token counts would be wrong; leave --max-length out")
    if settings.max_length is not None:
        if limit and settings.max_length > limit:
            raise InputError(f"--max-length {settings.max_length} exceeds the encoder's longest sequence {limit} "
                             f"({facts.get('sidecar') or settings.url})")
        length = settings.max_length
    else:
        length = min(x for x in (DEFAULT_MAX_LENGTH, limit, positions) if x)
    check_max_length(length, positions)
    return length


def _batch_tokens(settings: CorpusSettings, facts: dict, max_length: int) -> int:
    """--batch-tokens, else the engine's smallest profile capacity (what it was sized for), else 16,384. An engine
    must take a single row of every length up to max_length in some profile."""
    if settings.runtime != "engine":
        return settings.batch_tokens or DEFAULT_BATCH_TOKENS
    try:
        limits = _engine(facts).shape_limits(settings.batch_rows)
    except ShapeError as exc:
        raise InputError(f"--encoder {settings.encoder} with --batch-rows {settings.batch_rows}: {exc}") from None
    packer = Packer(limits, settings.batch_tokens)
    uncovered = packer.uncovered_widths(max_length)
    if uncovered:
        raise InputError(f"--encoder {settings.encoder}: no optimisation profile takes a row of {uncovered[0]} "
                         f"tokens ({'; '.join(s.describe() for s in limits)}); lower --max-length or rebuild")
    return packer.max_batch_tokens


def _output_ranges(settings: CorpusSettings, source) -> str | None:
    """int8 / uint8: the digest of the calibrated ranges they are scaled by (--output-ranges), checked here."""
    from ..serving.compact import OUTPUT_RANGES_FILE, UNCALIBRATED_TYPES, OutputRanges

    if settings.embedding_type in UNCALIBRATED_TYPES:
        if settings.output_ranges:
            raise InputError(f"--output-ranges is for --embedding-type int8 or uint8, not {settings.embedding_type}")
        return None
    if not settings.output_ranges:
        raise InputError(f"--embedding-type {settings.embedding_type} needs --output-ranges: a repository (or "
                         f"folder) with the {OUTPUT_RANGES_FILE} `nvembed-trt output-ranges` calibrated")
    ranges = OutputRanges.read(settings.output_ranges)
    dim = source.config.body.hidden_size
    if len(ranges.low) != dim:
        raise InputError(f"--output-ranges {settings.output_ranges}: {len(ranges.low)} dimensions, but --model "
                         f"{settings.model} gives {dim}")
    return ranges.digest()


def resolve(settings: CorpusSettings) -> Resolved:
    """Every check that needs no Ray: fails fast, before anything is written."""
    from ..source import resolve_model, tokenizer_for

    if settings.runtime == "triton" and not settings.url:
        raise InputError("--runtime triton needs --url (host:port of Triton's KServe endpoint, or "
                         "http://host:port/v1 of the front door)")
    if settings.runtime != "triton" and settings.url:
        raise InputError(f"--url is for --runtime triton, not {settings.runtime}")
    if settings.runtime in ("torch", "triton") and settings.encoder:
        raise InputError(f"--encoder is for --runtime onnx or engine; {settings.runtime} takes the model "
                         f"{'from --model' if settings.runtime == 'torch' else 'served at --url'}")
    if settings.runtime != "torch" and (settings.device != "cpu" or settings.dtype != "float32"):
        raise InputError("--device and --dtype are for --runtime torch (an ONNX graph or engine carries its own "
                         "precision: choose a recipe's --encoder)")
    files = resolve_inputs(settings.inputs, settings.text_column, settings.id_column)
    source = resolve_model(settings.model, progress=False)
    instruction = resolve_instruction(settings.input_type, settings.instruction)
    facts = encoder_facts(settings.runtime, Path(settings.encoder).resolve() if settings.encoder else None,
                          settings.dtype)
    fingerprint = source.config.fingerprint()
    if facts.get("config_fingerprint") and facts["config_fingerprint"] != fingerprint:
        raise InputError(f"--encoder {settings.encoder} was exported from another model configuration "
                         f"({facts['config_fingerprint'][:12]}) than --model {settings.model} ({fingerprint[:12]})")
    if settings.runtime == "triton":
        from ..encoders.served import ServedEmbedder

        try:
            served = ServedEmbedder(settings.url, settings.protocol)
            facts["max_rows"], facts["max_length"] = served.max_rows, served.max_length or None
        except Exception as exc:  # noqa: BLE001  (tritonclient raises its own exception types)
            raise InputError(f"--url {settings.url}: cannot read the repository's configuration over "
                             f"{settings.protocol} ({exc}); is the server running?") from exc
    max_length = _max_length(settings, facts, source)
    masked = tokenizer_for(source).instruction_length(instruction)
    if masked >= max_length:
        raise InputError(f"--max-length {max_length} leaves no token to pool after the instruction "
                         f"({masked} masked positions)")
    batch_tokens = _batch_tokens(settings, facts, max_length)
    identity = {"model": {k: v for k, v in source.describe().items() if k not in ("spec", "checkpoint")},
                "runtime": settings.runtime, "recipe": facts.get("recipe"), "instruction": instruction,
                "max_length": max_length, "truncate": settings.truncate, "text_column": settings.text_column,
                "id_column": settings.id_column, "embedding_type": settings.embedding_type,
                "output_ranges": _output_ranges(settings, source)}
    return Resolved(settings, files, source, instruction, facts, max_length, batch_tokens, identity)


# --------------------------------------------------------------------------------------------------- output
def prepare_output(output: Path, identity: dict, overwrite: bool) -> dict | None:
    """An empty or new folder, or one of ours made with the same identity (resume). Returns its sidecar."""
    import json

    meta_path = output / SIDECAR
    if output.exists() and not output.is_dir():
        raise InputError(f"--output {output} exists and is not a folder")
    if output.is_dir() and any(output.iterdir()):
        if not meta_path.is_file():
            raise InputError(f"--output {output} is not empty and holds no {SIDECAR}: not an embed-corpus output; "
                             f"choose another folder")
        if overwrite:
            shutil.rmtree(output)
        else:
            previous = json.loads(meta_path.read_text())
            was = IDENTITY_DEFAULTS | previous.get("identity", {})
            differ = [k for k in IDENTITY_KEYS if was.get(k) != identity[k]]
            if differ:
                raise InputError(f"--output {output} was made with other settings ({', '.join(differ)} differ: "
                                 + "; ".join(f"{k} was {was.get(k)!r}, now {identity[k]!r}"
                                             for k in differ)
                                 + "); resuming would mix embeddings: choose another --output or pass --overwrite")
            return previous
    output.mkdir(parents=True, exist_ok=True)
    if not os.access(output, os.W_OK):
        raise InputError(f"--output {output} is not writable")
    return None


# ------------------------------------------------------------------------------------------------------ Ray
def connect(address: str | None) -> bool:
    """Join the Ray cluster (`address`, else $RAY_ADDRESS as under `ray job submit`), or start a private local
    instance. True when this call started Ray (the caller shuts it down)."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise ray_missing() from exc
    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS") or "local"
    kwargs = {"include_dashboard": False} if address == "local" else {}
    try:
        ray.init(address=address, logging_level=logging.WARNING, **kwargs)
    except ConnectionError as exc:
        raise InputError(f"cannot reach a Ray cluster at {address!r} ({exc})") from exc
    return True


def _workers(settings: CorpusSettings, gpus_per_worker: int) -> int:
    import ray

    resources = ray.cluster_resources()
    cpus, gpus = resources.get("CPU", 0), resources.get("GPU", 0)
    if gpus_per_worker:
        if gpus < 1:
            raise InputError(f"--runtime {settings.runtime} needs a GPU per worker; this Ray cluster has none")
        workers = settings.workers or int(gpus)
        if workers > gpus:
            raise InputError(f"--workers {workers} needs {workers} GPUs; this Ray cluster has {int(gpus)}")
    else:
        workers = settings.workers or max(1, math.floor((cpus - 1) / settings.cpus_per_worker))
    if workers * settings.cpus_per_worker > cpus - 1:
        raise InputError(f"--workers {workers} x --cpus-per-worker {settings.cpus_per_worker:g} takes "
                         f"{workers * settings.cpus_per_worker:g} of this Ray cluster's {cpus:g} CPUs; the read "
                         f"tasks need one free (the job would hang): lower --workers or --cpus-per-worker")
    return workers


def _scan(files: list[InputFile], id_column: str) -> list[FileScan]:
    import ray

    task = ray.remote(num_cpus=1)(scan_file)
    return ray.get([task.remote(f, id_column, CHUNK_ROWS) for f in files])


def _dataset(plan, spec: WorkerSpec, settings: CorpusSettings, workers: int, gpus_per_worker: int):
    import ray
    import ray.data

    from .read import planned_datasource

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False          # the driver shows rows/s and ETA itself
    context.print_on_execution_start = False
    source = planned_datasource(plan.chunks, settings.text_column, settings.id_column)
    return (ray.data.read_datasource(source, override_num_blocks=len(plan.chunks), num_cpus=READ_CPUS)
            .map_batches(CorpusWorker, batch_size=settings.shard_rows, batch_format="numpy",
                         compute=ray.data.ActorPoolStrategy(size=workers),
                         fn_constructor_kwargs={"spec": spec.model_dump()},
                         num_cpus=settings.cpus_per_worker, num_gpus=gpus_per_worker))


def _model_spec(model: str) -> str:
    """A checkpoint folder as an absolute path (workers do not share the driver's working directory)."""
    path = Path(model).expanduser()
    return str(path.resolve()) if path.is_dir() else model


def _worker_error(exc: Exception) -> Exception:
    """The user-facing error inside a Ray failure: our own errors keep their type and message; anything else is
    named by the last exception line of the worker's traceback."""
    cause = exc
    while cause is not None:
        if isinstance(cause, NVEmbedError):
            return type(cause)(str(cause))
        cause = getattr(cause, "cause", None) or cause.__cause__
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", line) for line in str(exc).splitlines()]
    root = next((line for line in reversed(lines) if re.match(r"^[\w.]+(Error|Exception|Protobuf)\b.*:", line)
                 and not line.startswith("ray.exceptions.")), lines[0] if lines else type(exc).__name__)
    return CorpusError(f"the job failed in a worker: {root.strip()}; what was written so far is kept: fix the cause "
                       f"and rerun the same command to resume")


# ------------------------------------------------------------------------------------------------------ run
@dataclasses.dataclass
class RunRecord:
    """What one run did, for the sidecar's `runs` list. Times: the job's (scan, plan, embed), the workers' busy
    time (tokenise, encode, write), and the span from the first worker call's start to the last one's end, which
    splits the job's overhead into startup (before the first call), pipeline gaps (workers idle inside the span)
    and the tail (after the last call)."""

    run: str
    started_utc: str
    started: float = dataclasses.field(default_factory=time.time)
    scan_seconds: float = 0.0
    seconds: float = 0.0
    workers: int = 0
    totals: Counter = dataclasses.field(default_factory=Counter)
    first_call: float | None = None
    last_call: float | None = None

    def add(self, summary: dict) -> None:
        start, end = float(summary.pop("call_start")), float(summary.pop("call_end"))
        self.first_call = start if self.first_call is None else min(self.first_call, start)
        self.last_call = end if self.last_call is None else max(self.last_call, end)
        self.totals.update(summary)

    def as_dict(self, plan) -> dict:
        embedded, t = int(self.totals["rows"]), self.totals
        busy = {k: round(float(t[f"seconds_{k}"]), 3) for k in ("init", "tokenize", "encode", "write")}
        timing = {}
        if self.first_call is not None:
            span = self.last_call - self.first_call
            working = busy["tokenize"] + busy["encode"] + busy["write"]
            timing = {"startup_s": round(self.first_call - self.started, 3), "span_s": round(span, 3),
                      "tail_s": round(self.started + self.seconds - self.last_call, 3),
                      "span_rows_per_s": round(embedded / span, 2) if span > 0 else None,
                      "idle_in_span_ms_per_row": round(1000 * max(0.0, span * self.workers - working)
                                                       / max(embedded, 1), 3)}
        return {"run": self.run, "started_utc": self.started_utc, "seconds": round(self.seconds, 3),
                "scan_seconds": round(self.scan_seconds, 3), "planned": plan.todo, "skipped_done": plan.done,
                "embedded": embedded, "rejected_by_workers": int(t["rejected"]), "workers": self.workers,
                "rows_per_s": round(embedded / self.seconds, 2) if self.seconds > 0 else None,
                "tokens": int(t["tokens"]), "padded_tokens": int(t["padded_tokens"]), "worker_seconds": busy,
                **timing}


def _worker_spec(settings: CorpusSettings, resolved: Resolved, output: Path, run: str) -> WorkerSpec:
    return WorkerSpec(model=_model_spec(settings.model), runtime=settings.runtime,
                      encoder_path=resolved.facts.get("path"), recipe=resolved.facts.get("recipe"), url=settings.url,
                      protocol=settings.protocol, instruction=resolved.instruction, truncate=settings.truncate,
                      max_length=resolved.max_length, batch_tokens=resolved.batch_tokens,
                      batch_rows=min(settings.batch_rows, resolved.facts.get("max_rows") or settings.batch_rows),
                      threads=max(1, int(settings.cpus_per_worker)), device=settings.device, dtype=settings.dtype,
                      output=str(output), run=run, files=[(f.path, f.format) for f in resolved.files],
                      embedding_type=settings.embedding_type,
                      output_ranges=str(Path(settings.output_ranges).resolve()) if settings.output_ranges else None)


def _execute(plan, spec: WorkerSpec, settings: CorpusSettings, record: RunRecord, progress: bool) -> None:
    """Stream the plan through the read tasks and the actor pool; progress from each shard's summary."""
    import ray

    gpus = 1 if settings.runtime == "engine" or settings.device == "cuda" else 0
    record.workers = _workers(settings, gpus)
    bar = CorpusProgress(plan.todo, live=None if progress else False)
    try:
        with quiet_logger("ray.data", logging.WARNING):
            for summary in _dataset(plan, spec, settings, record.workers, gpus).iter_rows():
                record.add(dict(summary))
                if progress:
                    bar.update(int(summary["rows"]), int(summary["rejected"]))
    except (ray.exceptions.RayError, NVEmbedError) as exc:
        raise _worker_error(exc) from exc
    finally:
        bar.stop()
    if progress:
        bar.close()


def embed_corpus(settings: CorpusSettings, progress: bool = True) -> dict:
    """Run (or resume) the job; returns the sidecar it wrote."""
    resolved = resolve(settings)
    output = Path(settings.output).resolve()     # workers may run elsewhere: every path they get is absolute
    previous = prepare_output(output, resolved.identity, settings.overwrite)
    stale = remove_temporaries(output)
    now = _dt.datetime.now(_dt.timezone.utc)
    record = RunRecord(now.strftime("%Y%m%dT%H%M%S") + secrets.token_hex(2), now.isoformat(timespec="seconds"))
    runs = (previous or {}).get("runs", [])
    base = {"identity": resolved.identity, "model": resolved.source.describe(), "runtime": settings.runtime,
            "recipe": resolved.facts.get("recipe"), "encoder": resolved.facts, "url": settings.url,
            "settings": settings.model_dump(exclude={"overwrite"})}
    write_json(output / SIDECAR, sidecar("corpus-embeddings", status="running", **base, runs=runs))
    started = connect(settings.ray_address)
    try:
        record.started = time.time()
        scans = _scan(resolved.files, settings.id_column)
        plan = make_plan(scans, done_ids(output))
        write_jsonl(output / REJECT_PARTS / SCAN_REJECTS, [r for s in scans for r in s.rejects] + plan.duplicates)
        record.scan_seconds = time.time() - record.started
        if progress:
            note(f"{len(resolved.files)} input file(s), {plan.input_rows:,} rows with an id: {plan.done:,} already "
                 f"done, {plan.todo:,} to embed" + (f" ({stale} temporary file(s) of an interrupted run removed)"
                                                    if stale else ""))
        if plan.todo:
            _execute(plan, _worker_spec(settings, resolved, output, record.run), settings, record, progress)
        record.seconds = time.time() - record.started
    finally:
        if started:
            import ray

            ray.shutdown()
    return finish(output, base, runs, record, scans, plan)


def finish(output: Path, base: dict, runs: list, record: RunRecord, scans: list[FileScan], plan) -> dict:
    """Merge the rejects, check every id is in one row only, and write the complete sidecar."""
    rejects = merge_rejects(output)
    ids = shard_ids(output)
    unique = pc.count_distinct(ids).as_py() if len(ids) else 0
    if unique != len(ids):
        raise CorpusError(f"{output}: {len(ids) - unique} id(s) appear in more than one row; this should never "
                          f"happen: report it with the folder's {SIDECAR}")
    meta = sidecar("corpus-embeddings", status="complete", **base,
                   inputs=[{"path": s.file.path, "format": s.file.format, "sha256": s.sha256, "bytes": s.bytes,
                            "rows": s.rows} for s in scans],
                   counts={"input_rows": sum(s.rows for s in scans), "rows_with_id": plan.input_rows,
                           "embedded": len(ids), "rejected": len(rejects),
                           "rejected_by_kind": dict(sorted(Counter(r["kind"] for r in rejects).items()))},
                   output={"shards": len(shard_paths(output)), "rows": len(ids), "unique_ids": True,
                           "dim": _dim(output), "embedding_type": base["identity"]["embedding_type"],
                           "rejects": str(output / "rejects.jsonl")},
                   runs=[*runs, record.as_dict(plan)])
    write_json(output / SIDECAR, meta)
    return meta


def _dim(output: Path) -> int | None:
    """Values per row of the embedding column (the model's dimensions; for binary / ubinary, bytes: dimensions / 8)."""
    import pyarrow.parquet as pq

    paths = shard_paths(output)
    return pq.read_schema(paths[0]).field("embedding").type.list_size if paths else None
