"""The one place where prune / fp8 / relearn put the full-precision weights back.

Every in-memory transformation must leave `checkpoint.model` exactly as it found it, so all
rows derive from the same full-precision copy. Today that is a clone of the tensors the
transformation touches, kept on their own device, and copied back on exit (also on error).
Swapping this for "reload from the checkpoint's safetensors" changes only this module.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterable, Iterator

import torch


def _unique(params: Iterable[torch.nn.Parameter]) -> list[torch.nn.Parameter]:
    seen: set[int] = set()
    out = []
    for p in params:
        if id(p) not in seen:
            seen.add(id(p))
            out.append(p)
    return out


@contextmanager
def preserved(model: torch.nn.Module, params: Iterable[torch.nn.Parameter] | None = None,
              values: bool = True) -> Iterator[None]:
    """Snapshot `params` (default: every parameter and buffer of `model`) and restore them on exit.

    Restores values, dtype, device and requires_grad, so a fine-tune that casts the model to
    float32 and unfreezes it, or peft freezing it, leaves no trace. Gradients are dropped.
    `values=False` (LoRA: base weights never change) keeps no copy and restores only the flags.
    """
    chosen = _unique(model.parameters()) if params is None else _unique(params)
    snapshot = [(p, p.detach().clone() if values else None, p.dtype, p.device, p.requires_grad) for p in chosen]
    buffers = [(module, name, buf.detach().clone()) for module in model.modules()
               for name, buf in module.named_buffers(recurse=False)
               if buf is not None] if params is None and values else []
    training = model.training
    try:
        yield
    finally:
        with torch.no_grad():
            for param, saved, dtype, device, grad in snapshot:
                if saved is not None:
                    if param.dtype != dtype or param.device != device:
                        param.data = torch.empty_like(saved)
                    param.copy_(saved)
                param.grad = None
                param.requires_grad_(grad)
            for module, name, saved in buffers:
                current = getattr(module, name, None)
                if isinstance(current, torch.Tensor) and current.dtype == saved.dtype and current.shape == saved.shape:
                    current.copy_(saved)
                else:
                    module._buffers[name] = saved
        model.train(training)


def model_dtype(model: torch.nn.Module) -> torch.dtype:
    return next(model.parameters()).dtype


def model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device
