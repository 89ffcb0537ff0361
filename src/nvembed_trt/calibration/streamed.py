"""Activation ranges for W8A8 recipes, collected by streaming the model through memory one block at a time.

The calibration set's hidden states pass layer by layer: the token embedding, then each decoder layer (its
weights read from the checkpoint shards, used for every calibration batch, then released), the final norm, and
the two latent-attention blocks. Forward pre-hooks on every nn.Linear record, per GEMM, the absolute maximum of
its input per input channel (over every calibration position, padding included, as ModelOpt's max calibration
does) and, from the weights while they are loaded, the absolute maximum of each input channel of the weight
(what SmoothQuant needs). Peak memory: one decoder layer (or one latent block) plus the hidden states.

`whole_model_ranges` collects the same statistics with the whole model in memory (hooks on the full forward):
the reference that proves the streamed pass exact.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..checkpoint.loader import meta_model
from ..config import NVEmbedConfig
from ..console import track
from ..errors import InputError
from ..model.body import DecoderLayer, RMSNorm, padding_bias, rotary_cos_sin
from ..model.latent import CrossAttentionBlock, FeedForwardBlock

Loader = Callable[[str], torch.Tensor]
BODY, LATENT = "embedding_model.", "latent_attention_model."


def gemm_keys(cfg: NVEmbedConfig) -> list[str]:
    """Checkpoint keys of every weight GEMM (the 2-D nn.Linear weights), in model order."""
    model = meta_model(cfg)
    return [f"{name}.weight" for name, module in model.named_modules() if isinstance(module, nn.Linear)]


@dataclass
class ActivationRanges:
    """Per weight GEMM (by checkpoint key): input amax per input channel, and the weight's amax per input channel."""

    activation: dict[str, np.ndarray] = field(default_factory=dict)
    weight: dict[str, np.ndarray] = field(default_factory=dict)
    meta: dict = field(default_factory=dict)

    def per_tensor(self, key: str) -> float:
        return float(self.activation[key].max())

    def save(self, path: Path) -> None:
        arrays = {f"act/{k}": v for k, v in self.activation.items()} | {f"w/{k}": v for k, v in self.weight.items()}
        with open(path, "wb") as fh:
            np.savez(fh, **arrays)

    @classmethod
    def load(cls, path: Path, meta: dict | None = None) -> ActivationRanges:
        if not Path(path).is_file():
            raise InputError(f"activation ranges file not found: {path}")
        data = np.load(path)
        sidecar = Path(path).with_suffix(".json")
        if meta is None and sidecar.is_file():
            import json

            meta = {k: v for k, v in json.loads(sidecar.read_text()).items() if k != "versions"}
        act = {k.removeprefix("act/"): data[k] for k in data.files if k.startswith("act/")}
        weight = {k.removeprefix("w/"): data[k] for k in data.files if k.startswith("w/")}
        return cls(act, weight, meta or {})

    def max_relative_difference(self, other: ActivationRanges) -> float:
        if set(self.activation) != set(other.activation):
            raise ValueError("the two range sets cover different GEMMs")
        return max(float(np.max(np.abs(self.activation[k] - other.activation[k]) /
                                np.maximum(np.abs(other.activation[k]), 1e-30))) for k in self.activation)


class _Recorder:
    """Forward pre-hooks on nn.Linear modules: running per-channel input amax, keyed by checkpoint weight key."""

    def __init__(self, ranges: ActivationRanges):
        self.ranges = ranges
        self.handles: list = []

    def attach(self, module: nn.Module, prefix: str) -> None:
        for name, sub in module.named_modules():
            if isinstance(sub, nn.Linear):
                key = f"{prefix}{name}.weight"
                weight_amax = sub.weight.detach().abs().amax(dim=0).float().numpy()
                self.ranges.weight[key] = weight_amax
                self.handles.append(sub.register_forward_pre_hook(self._hook(key)))

    def _hook(self, key: str):
        def hook(module, args):
            x = args[0].detach()
            amax = x.abs().reshape(-1, x.shape[-1]).amax(dim=0).float().numpy()
            seen = self.ranges.activation.get(key)
            self.ranges.activation[key] = amax if seen is None else np.maximum(seen, amax)
        return hook

    def detach(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles.clear()


def _batches(calibration: dict[str, np.ndarray], batch_size: int) -> list[dict[str, torch.Tensor]]:
    count = len(calibration["input_ids"])
    return [{k: torch.from_numpy(v[s:s + batch_size].astype(np.int64)) for k, v in calibration.items()}
            for s in range(0, count, batch_size)]


def _materialise(module: nn.Module, prefix: str, load: Loader, dtype: torch.dtype) -> nn.Module:
    """Replace a meta-device module's parameters with the checkpoint's tensors (read now, one at a time)."""
    for name, _ in list(module.named_parameters()):
        owner_name, _, attr = name.rpartition(".")
        owner = module.get_submodule(owner_name) if owner_name else module
        owner._parameters[attr] = nn.Parameter(load(prefix + name).to(dtype), requires_grad=False)
    return module.eval()


def streamed_ranges(cfg: NVEmbedConfig, load: Loader, calibration: dict[str, np.ndarray],
                    dtype: torch.dtype = torch.float32, batch_size: int = 16, progress: bool = True) -> ActivationRanges:
    """Collect ActivationRanges holding one decoder layer (or latent block) in memory at a time."""
    start = time.perf_counter()
    ranges = ActivationRanges()
    recorder = _Recorder(ranges)
    batches = _batches(calibration, batch_size)
    body = cfg.body
    with torch.inference_mode():
        embed = nn.Embedding.from_pretrained(load(f"{BODY}embed_tokens.weight").to(dtype), freeze=True)
        hidden = [embed(b["input_ids"]) for b in batches]
        del embed
        seq = hidden[0].shape[1]
        cos, sin = rotary_cos_sin(seq, body.head_dim, body.rope_theta, dtype, torch.device("cpu"))
        biases = [padding_bias(b["attention_mask"], dtype) for b in batches]
        steps: list[tuple[str, Callable[[], nn.Module], Callable]] = []
        for i in range(body.num_layers):
            steps.append((f"{BODY}layers.{i}.", lambda: DecoderLayer(body),
                          lambda m, h, j: m(h, cos, sin, biases[j], "eager")))
        steps.append((f"{BODY}norm.", lambda: RMSNorm(body.hidden_size, body.rms_norm_eps), lambda m, h, j: m(h)))
        blocks = f"{LATENT}cross_attend_blocks."
        latents_holder: dict[str, torch.Tensor] = {}
        steps.append((f"{blocks}0.", lambda: CrossAttentionBlock(body.hidden_size, cfg.latent),
                      lambda m, h, j: h + m(h, latents_holder["latents"], "eager")))
        steps.append((f"{blocks}1.", lambda: FeedForwardBlock(body.hidden_size, cfg.latent),
                      lambda m, h, j: h + m(h)))
        for prefix, make, run in (track(steps, "calibrating layer by layer", len(steps)) if progress else steps):
            with torch.device("meta"):
                module = make()
            module = _materialise(module, prefix, load, dtype)
            if prefix == f"{blocks}0.":
                latents_holder["latents"] = load(f"{LATENT}latents").to(dtype)
            recorder.attach(module, prefix)
            hidden = [run(module, h, j) for j, h in enumerate(hidden)]
            recorder.detach()
            del module
            latents_holder.clear()
            gc.collect()
    ranges.meta = {"method": "streamed", "dtype": str(dtype).removeprefix("torch."), "batch_size": batch_size,
                   "samples": int(len(calibration["input_ids"])), "length": int(calibration["input_ids"].shape[1]),
                   "seconds": round(time.perf_counter() - start, 2)}
    _check_complete(cfg, ranges)
    return ranges


def whole_model_ranges(model: nn.Module, calibration: dict[str, np.ndarray], batch_size: int = 16) -> ActivationRanges:
    """The same statistics from a whole NVEmbedModel in memory (hooks on its full forward)."""
    start = time.perf_counter()
    ranges = ActivationRanges()
    recorder = _Recorder(ranges)
    recorder.attach(model, "")
    try:
        with torch.inference_mode():
            for b in _batches(calibration, batch_size):
                model.token_states(b["input_ids"], b["attention_mask"])
    finally:
        recorder.detach()
    ranges.meta = {"method": "whole-model", "dtype": str(model.dtype).removeprefix("torch."),
                   "batch_size": batch_size, "samples": int(len(calibration["input_ids"])),
                   "length": int(calibration["input_ids"].shape[1]), "seconds": round(time.perf_counter() - start, 2)}
    _check_complete(model.cfg, ranges)
    return ranges


def _check_complete(cfg: NVEmbedConfig, ranges: ActivationRanges) -> None:
    missing = sorted(set(gemm_keys(cfg)) - set(ranges.activation))
    if missing:
        raise RuntimeError(f"calibration saw no input for {len(missing)} GEMMs, first: {missing[:3]}")
