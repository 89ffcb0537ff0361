"""The worker actor: one encoder per actor. Each call gets a window of rows (one future shard): it tokenises them
once, rejects what cannot be embedded, sorts by length and packs token-budget batches (each clipped to its
longest row), embeds, puts the rows back in input order and writes the shard, then its rejects. It returns one
summary row for the driver's progress and sidecar."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ..errors import InputError
from .encoders import EngineEncoder, OnnxEncoder, TorchEncoder, TritonEncoder
from .inputs import InputFile
from .packing import pack, padded_tokens
from .scan import reject
from .settings import WorkerSpec
from .shards import REJECT_PARTS, write_jsonl, write_shard


def start_unsupported(where: str) -> InputError:
    return InputError(f"truncate START (keep the end of the text) needs the tokenizer's START support, which "
                      f"{where} does not have yet; use --truncate END or NONE")


def tokenize(tokenizer, texts: list[str], instruction: str, max_length: int,
             truncate: str) -> tuple[list[list[int]], np.ndarray, np.ndarray]:
    """(ids per row as embedded, untruncated token count per row, truncated per row). Under NONE rows are not cut
    (the caller rejects those above max_length)."""
    if truncate == "START":
        raise start_unsupported("this package's EmbeddingTokenizer")
    full = tokenizer.encode_untruncated(texts, instruction)
    counts = np.fromiter((len(ids) for ids in full), dtype=np.int64, count=len(full))
    return [ids[:max_length] for ids in full], counts, counts > max_length


def make_encoder(spec: WorkerSpec):
    if spec.runtime == "onnx":
        return OnnxEncoder(spec.encoder_path, spec.threads)
    if spec.runtime == "torch":
        return TorchEncoder(spec.model, spec.device, spec.dtype, spec.threads)
    if spec.runtime == "engine":
        return EngineEncoder(str(Path(spec.encoder_path).parent))
    return TritonEncoder(spec.url, spec.protocol, None if spec.explicit_instruction else spec.input_type,
                         spec.instruction if spec.explicit_instruction else None, spec.truncate)


class CorpusWorker:
    def __init__(self, spec: dict):
        from ..source import resolve_model, tokenizer_for

        started = time.perf_counter()
        self.spec = WorkerSpec(**spec)
        self.tokenizer = tokenizer_for(resolve_model(self.spec.model, progress=False))
        self.encoder = make_encoder(self.spec)
        self.output = Path(self.spec.output)
        self.files = [InputFile(i, path, fmt) for i, (path, fmt) in enumerate(self.spec.files)]
        self.init_seconds = time.perf_counter() - started   # reported once, with the first summary

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        spec, started, wall_start = self.spec, time.perf_counter(), time.time()
        order = np.lexsort((batch["row"], batch["file"]))            # input order within the window
        files, rows = batch["file"][order], batch["row"][order]
        ids, texts, kinds, errors = (list(batch[k][order]) for k in ("id", "text", "kind", "error"))
        name = f"part-{spec.run}-{int(files[0]):05d}-{int(rows[0]):010d}"
        rejects = [(i, kinds[i], errors[i]) for i in range(len(ids)) if errors[i] is not None]
        ok = [i for i in range(len(ids)) if errors[i] is None]
        encoded, counts, cut = tokenize(self.tokenizer, [texts[i] for i in ok], spec.instruction, spec.max_length,
                                        spec.truncate)
        if spec.truncate == "NONE":
            rejects += [(i, "too_long", f"Input length {int(n)} exceeds maximum allowed token size {spec.max_length} (truncate "
                            f"NONE)") for i, n, c in zip(ok, counts, cut) if c]
            keep = [k for k in range(len(ok)) if not cut[k]]
            ok, encoded, cut = [ok[k] for k in keep], [encoded[k] for k in keep], cut[keep]
        tokenized = time.perf_counter()
        lengths = [len(e) for e in encoded]
        vectors, padded = None, 0
        if ok:
            batches = pack(lengths, spec.batch_tokens, spec.batch_rows, self.encoder.fits)
            padded = padded_tokens(lengths, batches)
            for members in batches:
                tokens = self.tokenizer.batch_from_ids([encoded[k] for k in members], spec.instruction,
                                                       max_length=spec.max_length)
                out = self.encoder.embed(tokens, [texts[ok[k]] for k in members])
                if vectors is None:
                    vectors = np.empty((len(ok), out.shape[1]), dtype=np.float32)
                vectors[members] = out                                   # back to input order
        encoded_at = time.perf_counter()
        if ok:
            write_shard(self.output, name, [ids[i] for i in ok], vectors, np.asarray(lengths, dtype=np.int32),
                        cut.astype(bool))
        if rejects:  # after the shard: a rerun then redoes (and re-rejects) these rows rather than skipping any
            write_jsonl(self.output / REJECT_PARTS / f"{name}.jsonl",
                        [reject(self.files[int(files[i])], int(rows[i]), kind, reason, ids[i])
                         for i, kind, reason in rejects])
        done = time.perf_counter()
        summary = {"rows": len(ok), "rejected": len(rejects), "tokens": int(sum(lengths)), "padded_tokens": padded,
                   "seconds_init": self.init_seconds, "seconds_tokenize": tokenized - started,
                   "seconds_encode": encoded_at - tokenized, "seconds_write": done - encoded_at,
                   "call_start": wall_start, "call_end": time.time()}
        self.init_seconds = 0.0
        return {key: np.asarray([value]) for key, value in summary.items()}
