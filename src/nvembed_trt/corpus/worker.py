"""The worker actor: one encoder per actor. Each call gets a window of rows (one future shard): it tokenises them
once (truncating END or START, or rejecting over-long rows under NONE), rejects what cannot be embedded, packs
length-sorted token-budget batches that the encoder's shapes cover (nvembed_trt.packing, as the serving path does),
embeds, puts the rows back in input order and writes the shard, then its rejects. It returns one summary row for
the driver's progress and sidecar."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ..encoding import INPUT_NAMES, Row, pack
from ..packing import Packer
from ..serving.compact import OutputRanges, compact
from .encoders import make_encoder, served_shape
from .inputs import InputFile
from .scan import reject
from .settings import WorkerSpec
from .shards import REJECT_PARTS, write_jsonl, write_shard


def too_long(enc, max_length: int) -> str:
    length = f"{enc.tokens}" if enc.exact else f"at least {enc.tokens}"
    return f"Input length {length} exceeds maximum allowed token size {max_length} (truncate NONE)"


class CorpusWorker:
    def __init__(self, spec: dict):
        from ..source import resolve_model, tokenizer_for

        started = time.perf_counter()
        self.spec = WorkerSpec(**spec)
        self.tokenizer = tokenizer_for(resolve_model(self.spec.model, progress=False))
        self.encoder = make_encoder(self.spec)
        self.served = self.spec.runtime == "triton"   # a deployment takes the batch's texts, not its tokens
        limits = (served_shape(self.encoder, self.spec.batch_rows, self.spec.max_length) if self.served
                  else self.encoder.shape_limits)
        self.inputs = INPUT_NAMES if self.served else self.encoder.inputs
        self.packer = Packer(limits, self.spec.batch_tokens)
        self.masked = self.tokenizer.instruction_length(self.spec.instruction)
        self.output = Path(self.spec.output)
        self.files = [InputFile(i, path, fmt) for i, (path, fmt) in enumerate(self.spec.files)]
        self.ranges = OutputRanges.read(self.spec.output_ranges) if self.spec.output_ranges else None
        self.init_seconds = time.perf_counter() - started   # reported once, with the first summary

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        spec, started, wall_start = self.spec, time.perf_counter(), time.time()
        order = np.lexsort((batch["row"], batch["file"]))            # input order within the window
        files, rows = batch["file"][order], batch["row"][order]
        ids, texts, kinds, errors = (list(batch[k][order]) for k in ("id", "text", "kind", "error"))
        name = f"part-{spec.run}-{int(files[0]):05d}-{int(rows[0]):010d}"
        rejects = [(i, kinds[i], errors[i]) for i in range(len(ids)) if errors[i] is not None]
        ok = [i for i in range(len(ids)) if errors[i] is None]
        mode = "END" if spec.truncate == "NONE" else spec.truncate    # NONE: cut nothing, reject what is cut
        encoded = (self.tokenizer.encode([texts[i] for i in ok], spec.instruction, spec.max_length, mode)
                   if ok else [])
        if spec.truncate == "NONE":
            rejects += [(i, "too_long", too_long(enc, spec.max_length)) for i, enc in zip(ok, encoded)
                        if enc.truncated]
            keep = [k for k, enc in enumerate(encoded) if not enc.truncated]
            ok, encoded = [ok[k] for k in keep], [encoded[k] for k in keep]
        tokenized = time.perf_counter()
        vectors, padded = None, 0
        for batch in pack([Row(enc.ids, self.masked) for enc in encoded], self.packer, self.tokenizer.pad_id,
                          self.inputs):
            out = (self.encoder.embed([texts[ok[k]] for k in batch.index], spec.instruction, len(batch.index))
                   if self.served else self.encoder.encode(batch))
            if vectors is None:
                vectors = np.empty((len(ok), out.shape[1]), dtype=np.float32)
            vectors[batch.index] = out                                   # back to input order
            padded += batch.padded_tokens
        encoded_at = time.perf_counter()
        lengths = [len(enc.ids) for enc in encoded]
        if ok:
            vectors = compact(vectors, spec.embedding_type, self.ranges)    # the front door's types, as it serves
            write_shard(self.output, name, [ids[i] for i in ok], vectors, np.asarray(lengths, dtype=np.int32),
                        np.asarray([enc.truncated for enc in encoded], dtype=bool))
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
