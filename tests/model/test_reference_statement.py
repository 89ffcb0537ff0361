"""The PyTorch reference says which it is and how it compares with upstream (issue 11, defect 13).

Upstream runs fp32 on a CPU and, on a GPU, fp32 weights under torch.autocast("cuda") (fp16). The GPU statements are
checked on CPU with a stand-in model that reports a CUDA device; the autocast forward itself runs in the gpu test.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from nvembed_trt.embedder import Embedder
from nvembed_trt.errors import InputError
from texts import SENTENCES


def _stand_in(device: str, dtype: torch.dtype, autocast: bool = False) -> Embedder:
    model = SimpleNamespace(device=torch.device(device), dtype=dtype, attention_impl="sdpa")
    return Embedder(model, tokenizer=None, autocast=autocast)


@pytest.mark.parametrize("device, dtype, autocast, matches, matmul, opening", [
    ("cpu", torch.float32, False, True, "float32", "same as upstream on a CPU"),
    ("cpu", torch.float16, False, False, "float16", "not an upstream configuration"),
    ("cuda", torch.float32, True, True, "float16", "same as upstream on a GPU"),
    ("cuda", torch.float32, False, False, "float32", "stricter than upstream on a GPU"),
    ("cuda", torch.float16, False, False, "float16", "differs from upstream on a GPU"),
    ("cuda", torch.bfloat16, False, False, "bfloat16", "differs from upstream on a GPU"),
    ("cuda", torch.bfloat16, True, False, "float16", "differs from upstream on a GPU"),
])
def test_reference_states_how_it_compares_with_upstream(device, dtype, autocast, matches, matmul, opening):
    ref = _stand_in(device, dtype, autocast).describe()
    assert ref["device"] == device and ref["weights_dtype"] == str(dtype).removeprefix("torch.")
    assert ref["autocast"] == ("float16" if autocast else None) and ref["matmul_dtype"] == matmul
    assert ref["matches_upstream"] is matches and ref["vs_upstream"].startswith(opening)
    if device == "cuda" or matches:  # names upstream's GPU forward
        assert "torch.autocast('cuda')" in ref["vs_upstream"]
    assert ("bfloat16 keeps 8 significant bits" in ref["vs_upstream"]) == (dtype == torch.bfloat16 and device == "cuda")


def test_autocast_is_refused_off_cuda(tiny):
    with pytest.raises(InputError, match="autocast needs the model on CUDA \\(it is on cpu\\)"):
        Embedder(tiny.model, tiny.tokenizer, autocast=True)
    with pytest.raises(InputError, match="autocast needs --device cuda \\(got 'cpu'\\)"):
        Embedder.from_model("tiny", "cpu", autocast=True, progress=False)


@pytest.mark.gpu
@pytest.mark.cuda_torch
def test_autocast_reference_on_cuda_is_upstreams_gpu_forward(tiny):
    """fp32 weights under fp16 autocast (upstream's GPU forward) against the fp32 reference on the same GPU."""
    fp32 = Embedder(tiny.model.to("cuda"), tiny.tokenizer)
    autocast = Embedder(fp32.model, tiny.tokenizer, autocast=True)
    try:
        assert autocast.describe()["matches_upstream"] and not fp32.describe()["matches_upstream"]
        a, b = fp32.encode(SENTENCES), autocast.encode(SENTENCES)
        cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
        assert np.isfinite(b).all() and cos.min() >= 0.999 and np.abs(a - b).max() > 0  # autocast took effect
    finally:
        tiny.model.to("cpu")
