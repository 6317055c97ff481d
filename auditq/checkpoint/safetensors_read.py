"""Read single tensors of a safetensors file with plain file reads, never a memory map.

Why: while a file is memory-mapped, every page of it that was touched counts in the process's
resident set. Loading a bf16 checkpoint into float32 through a mapping therefore held the model
twice at the peak (float32 copy + the mapped bf16 pages: a 0.5B model peaked at 3.2 GiB for a
2.2 GiB steady state), and restoring weights after an in-place format mapped the whole file
again. A tensor read into its own buffer leaves the file's pages in the page cache, which is not
the process's memory, so the peak is one model plus one tensor.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from auditq.checkpoint.safetensors_header import TensorEntry, read_header
from auditq.regular_file import open_regular

#: safetensors dtype -> torch dtype of the ones a checkpoint holds (others are read by safetensors itself)
TORCH_DTYPES = {"F64": torch.float64, "F32": torch.float32, "BF16": torch.bfloat16, "F16": torch.float16,
                "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
                "BOOL": torch.bool, "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2}


#: bytes read per step: the only buffer a read needs besides its destination
CHUNK_BYTES = 1 << 24


class TensorReader:
    """An open safetensors file whose tensors are copied, a chunk at a time, into tensors the caller owns."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.entries: dict[str, TensorEntry] = read_header(self.path)
        self._handle = open_regular(self.path)
        self._data_start = 8 + int.from_bytes(self._handle.read(8), "little")
        self._buffer: torch.Tensor | None = None

    def __enter__(self) -> "TensorReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._handle.close()
        self._buffer = None

    def read_into(self, name: str, dest: torch.Tensor) -> None:
        """Copy tensor `name` into `dest` (same shape, any dtype: cast as `Tensor.copy_` casts).

        Never holds more than `dest` and one chunk, so restoring or widening a 0.5 GiB embedding
        costs 16 MiB, not a second copy of it.
        """
        entry = self.entries[name]
        if tuple(entry.shape) != tuple(dest.shape):
            raise ValueError(f"{self.path}: tensor {name!r} has shape {list(entry.shape)}, not {list(dest.shape)}")
        dtype = TORCH_DTYPES.get(entry.dtype)
        if dtype is None or sys.byteorder != "little" or not dest.is_contiguous():
            from safetensors import safe_open  # rare dtypes, big-endian hosts, strided targets

            with safe_open(str(self.path), framework="pt", device="cpu") as reader:
                dest.copy_(reader.get_tensor(name))
            return
        size = torch.empty((), dtype=dtype).element_size()
        step = max(size, CHUNK_BYTES // size * size)
        if self._buffer is None or self._buffer.numel() < step:
            self._buffer = torch.empty(step, dtype=torch.uint8)
        flat = dest.view(-1)
        self._handle.seek(self._data_start + entry.start)
        for offset in range(0, entry.end - entry.start, step):
            length = min(step, entry.end - entry.start - offset)
            chunk = self._buffer[:length]
            self._fill(memoryview(chunk.numpy()).cast("B"), name)
            flat[offset // size:(offset + length) // size].copy_(chunk.view(dtype))

    def _fill(self, view: memoryview, name: str) -> None:
        done = 0
        while done < len(view):
            got = self._handle.readinto(view[done:])
            if not got:
                raise OSError(f"{self.path}: file ended inside tensor {name!r} (changed while reading?)")
            done += got
