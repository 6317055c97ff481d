"""Read and check a safetensors file's header without loading a single weight (no torch import).

Format: 8 bytes little-endian header length N, N bytes of JSON ``{name: {dtype, shape, data_offsets}, ...}``
(plus an optional ``__metadata__`` table of strings), then the tensor bytes. Every problem a loader would
only hit later (truncated file, garbage or oversized header, offsets past the end, overlapping or
mis-sized tensors) is an InputError (exit 2) naming the file, the tensor and what was expected.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

from auditq.errors import InputError
from auditq.regular_file import open_regular, present, read_text, require_regular
from auditq.safe_parse import loads_json

#: bytes per element of every dtype safetensors defines
DTYPE_BYTES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "F8_E8M0": 1, "I16": 2, "U16": 2,
               "F16": 2, "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8, "C64": 8}
#: safetensors itself refuses headers above 100 MB
MAX_HEADER_BYTES = 100 * 1000 * 1000


@dataclass(frozen=True)
class TensorEntry:
    name: str
    dtype: str
    shape: tuple[int, ...]
    start: int
    end: int


def read_header(path: Path) -> dict[str, TensorEntry]:
    """name -> TensorEntry for one .safetensors file; InputError with one line if it is not a valid one."""
    path = Path(path)
    try:
        with open_regular(path) as handle:  # a FIFO named *.safetensors: refused, never a block
            size = os.fstat(handle.fileno()).st_size
            prefix = handle.read(8)
            if len(prefix) < 8:
                raise InputError(f"{path}: not a safetensors file ({size} bytes; expected an 8-byte header length "
                                 "followed by a JSON header and the tensor data)")
            length = int.from_bytes(prefix, "little")
            if length < 2 or length > MAX_HEADER_BYTES or 8 + length > size:
                raise InputError(f"{path}: safetensors header length {length} is impossible for a {size}-byte file "
                                 f"(expected 2..{min(MAX_HEADER_BYTES, max(0, size - 8))}): truncated or not safetensors")
            raw = handle.read(length)
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        header = loads_json(raw.decode("utf-8"), path)
    except (UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"{path}: safetensors header is not valid JSON ({type(exc).__name__})") from None
    if not isinstance(header, dict):
        raise InputError(f"{path}: safetensors header is a JSON {type(header).__name__}, expected an object")
    data_size = size - 8 - length
    entries: dict[str, TensorEntry] = {}
    for name, info in header.items():
        if name == "__metadata__":
            if not isinstance(info, dict) or not all(isinstance(v, str) for v in info.values()):
                raise InputError(f"{path}: safetensors __metadata__ must map strings to strings")
            continue
        entries[name] = _entry(path, name, info, data_size)
    check_coverage(path, entries, data_size)
    return entries


def check_coverage(path: Path, entries: dict[str, TensorEntry], data_size: int) -> None:
    """The tensors must tile the data region exactly, as the safetensors loader demands: no overlap, no
    gap between tensors, no byte after the last one. A 100 GiB sparse file with a valid header is refused
    here, from its size, before anything hashes or maps it."""
    position = 0
    for start, end, name in sorted((e.start, e.end, e.name) for e in entries.values()):
        if start < position:
            raise InputError(f"{path}: tensor {name!r} overlaps the previous tensor's bytes (offset {start} < {position})")
        if start > position:
            raise InputError(f"{path}: {start - position} unused data byte(s) before tensor {name!r} (offsets "
                             f"{position}..{start}); the safetensors loader refuses a gap between tensors")
        position = end
    if position != data_size:
        raise InputError(f"{path}: {data_size - position} data byte(s) after the last tensor ({data_size} data bytes, "
                         f"tensors cover {position}); truncated, padded or not written by safetensors")


def _entry(path: Path, name: str, info: object, data_size: int) -> TensorEntry:
    where = f"{path}: tensor {name!r}"
    if not isinstance(info, dict):
        raise InputError(f"{where}: header entry is not an object")
    dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
    if dtype not in DTYPE_BYTES:
        raise InputError(f"{where}: dtype {dtype!r} is not a safetensors dtype")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise InputError(f"{where}: shape {shape!r} is not a list of non-negative integers")
    if (not isinstance(offsets, list) or len(offsets) != 2
            or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)):
        raise InputError(f"{where}: data_offsets {offsets!r} is not [start, end]")
    start, end = offsets
    if not 0 <= start <= end <= data_size:
        raise InputError(f"{where}: data_offsets [{start}, {end}] lie outside the {data_size} data bytes "
                         "(truncated file?)")
    expected = math.prod(shape) * DTYPE_BYTES[dtype]
    if end - start != expected:
        raise InputError(f"{where}: {end - start} data bytes for shape {shape} {dtype} (expected {expected})")
    return TensorEntry(name, dtype, tuple(shape), start, end)


def weight_files(directory: Path) -> list[Path]:
    """The safetensors files of a checkpoint: those named by model.safetensors.index.json, else every one."""
    directory = Path(directory)
    index = directory / "model.safetensors.index.json"
    if present(index):
        try:
            data = loads_json(read_text(index), index)
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise InputError(f"{index}: not valid JSON ({type(exc).__name__})") from None
        weight_map = data.get("weight_map") if isinstance(data, dict) else None
        if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
            raise InputError(f"{index}: expected an object with a 'weight_map' of tensor name -> file name")
        files = []
        for name in sorted(set(weight_map.values())):
            target = (directory / name)
            if Path(name).name != name or not os.path.lexists(target):
                raise InputError(f"{index}: weight_map names {name!r}, which is not a file in {directory}")
            require_regular(target)  # a FIFO, a directory, a loop: named as what it is
            files.append(target)
        return files
    return sorted(directory.glob("*.safetensors"))


def read_checkpoint_headers(directory: Path) -> dict[str, TensorEntry]:
    """Every tensor of a checkpoint dir (all shards); InputError on a bad file or a tensor in two shards."""
    tensors: dict[str, TensorEntry] = {}
    owner: dict[str, Path] = {}
    for file in weight_files(directory):
        for name, entry in read_header(file).items():
            if name in tensors:
                raise InputError(f"{file}: tensor {name!r} is also in {owner[name]}")
            tensors[name], owner[name] = entry, file
    if not tensors:
        raise InputError(f"{directory}: the safetensors files hold no tensors")
    return tensors
