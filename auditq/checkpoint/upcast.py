"""Load a bf16/fp16 checkpoint into float32 without holding it twice at the peak.

`from_pretrained(dtype=float32)` on a bf16 file reads the memory-mapped bf16 pages while it fills
the float32 parameters, so at the end of loading the process holds the float32 model plus every
page of the file (measured on the 0.5B Qwen2 shape: peak RSS 3.17 GiB for a 2.28 GiB steady
state). Here the model is first loaded in the stored dtype, which transformers leaves backed by
the mapping without reading it, and each parameter is then replaced by a float32 tensor filled
from the file a chunk at a time (auditq.checkpoint.safetensors_read): the peak is the float32 model plus 16 MiB.

The result is exactly what `from_pretrained(dtype=float32)` gives: bf16 and fp16 widen to float32
exactly, and a model whose buffers were built in the narrower dtype (their values would differ)
is reported as not upcastable, so the caller loads it directly instead.
"""

from __future__ import annotations

from pathlib import Path

import torch

from auditq.checkpoint.safetensors_header import read_checkpoint_headers
from auditq.checkpoint.safetensors_read import TORCH_DTYPES, TensorReader

#: stored dtypes that widen exactly to float32
NARROW_FLOATS = (torch.bfloat16, torch.float16)


def streamed_load_dtype(path: Path, dtype: torch.dtype, device: str, device_map: str | None) -> torch.dtype | None:
    """The dtype to load in first, then upcast from the files; None to load in `dtype` directly.

    Only for float32 on the CPU from a checkpoint whose floating tensors are all one of bf16/fp16
    (a mixed checkpoint would have its wider tensors narrowed by the first load).
    """
    if dtype != torch.float32 or device != "cpu" or device_map:
        return None
    stored = {TORCH_DTYPES.get(entry.dtype) for entry in read_checkpoint_headers(path).values()}
    floats = {d for d in stored if d is not None and d.is_floating_point}
    if None in stored or len(floats) != 1:
        return None
    (only,) = floats
    return only if only in NARROW_FLOATS else None


def upcast_from_files(model: torch.nn.Module, path: Path, dtype: torch.dtype) -> bool:
    """Replace every floating parameter by its file tensor cast to `dtype`; False (nothing changed) if not exact.

    A parameter the files do not hold under its name (renamed on load) is cast in memory
    instead, which is as exact (widening) but reads its mapped pages.
    """
    from auditq.checkpoint.restore import named_unique_parameters, tensor_files

    if any(b.is_floating_point() and b.dtype != dtype for b in model.buffers()):
        return False
    files = tensor_files(path)
    readers: dict[Path, TensorReader] = {}
    try:
        with torch.no_grad():
            for name, param in named_unique_parameters(model).items():
                if not param.is_floating_point() or param.dtype == dtype:
                    continue
                file = files.get(name)
                if file is not None and file not in readers:
                    readers[file] = TensorReader(file)
                entry = readers[file].entries.get(name) if file is not None else None
                if entry is not None and tuple(entry.shape) == tuple(param.shape):
                    widened = torch.empty(param.shape, dtype=dtype)
                    readers[file].read_into(name, widened)
                    param.data = widened
                else:
                    param.data = param.data.to(dtype)
    finally:
        for reader in readers.values():
            reader.close()
    if getattr(model, "config", None) is not None:
        model.config.dtype = dtype
    return True
