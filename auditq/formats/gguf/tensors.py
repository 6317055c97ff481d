"""The model's tensors as GGUF wants them: named by gguf's name map, laid out as architectures.tensor_transform
says (Llama q/k RoPE rows permuted, GPT-2 Conv1D transposed), all float32, plus llama3 RoPE's rope_freqs.
"""

from __future__ import annotations

import math
from typing import Any, Iterator

import numpy as np
import torch

from auditq.formats.gguf.architectures import SKIPPED_SUFFIXES, tensor_name_map, tensor_transform
from auditq.formats.gguf.dependency import UnsupportedModel
from auditq.formats.gguf.hparams import ModelInfo


def permute_rope(weights: np.ndarray, n_head: int) -> np.ndarray:
    """HF rotate-half row order → GGML interleaved RoPE order (as convert_hf_to_gguf.py's permute)."""
    return (weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
            .swapaxes(1, 2)
            .reshape(weights.shape))


def llama3_rope_factors(theta: float, head_dim: int, scaling: dict[str, Any]) -> np.ndarray:
    """rope_freqs.weight for llama3 RoPE scaling (the same formula as convert_hf_to_gguf.py)."""
    factor = float(scaling.get("factor", 8.0))
    low = float(scaling.get("low_freq_factor", 1.0))
    high = float(scaling.get("high_freq_factor", 4.0))
    old_ctx = float(scaling.get("original_max_position_embeddings", 8192))
    freqs = 1.0 / (theta ** (np.arange(0, head_dim, 2, dtype=np.float32) / head_dim))
    low_wavelen, high_wavelen = old_ctx / low, old_ctx / high
    factors = []
    for freq in freqs:
        wavelen = 2 * math.pi / freq
        if wavelen < high_wavelen:
            factors.append(1.0)
        elif wavelen > low_wavelen:
            factors.append(factor)
        else:
            smooth = (old_ctx / wavelen - low) / (high - low)
            factors.append(1.0 / ((1 - smooth) / factor + smooth))
    return np.asarray(factors, dtype=np.float32)


def _as_f32(tensor: torch.Tensor) -> np.ndarray:
    # .numpy() shares memory with the model when it is already float32 on CPU; nothing writes to it
    return tensor.detach().to(device="cpu", dtype=torch.float32).numpy()


def _gguf_layout(info: ModelInfo, hf_name: str, data: np.ndarray) -> np.ndarray:
    transform, heads = tensor_transform(info, hf_name)
    if transform == "rope":
        return permute_rope(data, heads)
    if transform == "transpose" and data.ndim == 2:
        return np.ascontiguousarray(data.T)  # Conv1D stores (in, out)
    return data


def gguf_tensors(model: torch.nn.Module, info: ModelInfo, rope: dict[str, Any]) -> Iterator[tuple[str, np.ndarray]]:
    """(GGUF name, float32 array) for every tensor of the model, in state_dict order."""
    names = tensor_name_map(info)
    seen: set[str] = set()
    for hf_name, tensor in model.state_dict(keep_vars=False).items():
        if hf_name.endswith(SKIPPED_SUFFIXES):
            continue
        if hf_name == "lm_head.weight" and info.tied:
            continue  # llama.cpp reuses token_embd when output.weight is absent
        name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if name is None:
            raise UnsupportedModel(f"GGUF conversion: no GGUF name for tensor {hf_name!r} of {info.model_type}")
        data = _gguf_layout(info, hf_name, _as_f32(tensor))
        if name in seen:
            raise UnsupportedModel(f"GGUF conversion: tensor {name!r} produced twice")
        seen.add(name)
        yield name, data
    if info.arch == "llama" and rope.get("rope_type") == "llama3":
        yield "rope_freqs.weight", llama3_rope_factors(rope["theta"], info.head_dim, rope)
