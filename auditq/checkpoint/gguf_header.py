"""Walk a GGUF file's header (metadata and tensor table) in pure Python, bounds-checked, no engine needed.

A file with valid magic and a garbage body would otherwise reach llama.cpp mid-audit; here it is an
InputError (exit 2) naming the file and the first field that cannot be right.
"""

from __future__ import annotations

import mmap
import os
import struct
from pathlib import Path

from auditq.errors import InputError
from auditq.regular_file import open_regular

_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
STRING, ARRAY = 8, 9
#: ggml type -> (elements per block, bytes per block) for the types whose size is fixed
GGML_SIZES = {0: (1, 4), 1: (1, 2), 2: (32, 18), 3: (32, 20), 6: (32, 22), 7: (32, 24), 8: (32, 34), 9: (32, 36),
              10: (256, 84), 11: (256, 110), 12: (256, 144), 13: (256, 176), 14: (256, 210), 15: (256, 292),
              24: (1, 1), 25: (1, 2), 26: (1, 4), 27: (1, 8), 28: (1, 8), 30: (1, 2),
              # i-quants, ternary and fp4 types (gguf 0.19.0's GGML_QUANT_SIZES); 4, 5, 31-33, 36-38 were removed
              16: (256, 66), 17: (256, 74), 18: (256, 98), 19: (256, 50), 20: (32, 18), 21: (256, 110),
              22: (256, 82), 23: (256, 136), 29: (256, 56), 34: (256, 54), 35: (256, 66), 39: (32, 17),
              40: (64, 36), 41: (128, 18)}


class _Reader:
    def __init__(self, path: Path, data: bytes) -> None:
        self.path, self.data, self.pos = path, data, 0

    def fail(self, what: str) -> InputError:
        return InputError(f"{self.path}: not a readable GGUF file: {what} (at byte {self.pos} of {len(self.data)})")

    def take(self, n: int, what: str) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise self.fail(f"{what} runs past the end of the file")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def scalar(self, fmt: str, what: str):
        return struct.unpack(fmt, self.take(struct.calcsize(fmt), what))[0]

    def string(self, what: str) -> str:
        length = self.scalar("<Q", f"{what} length")
        try:
            return self.take(length, what).decode("utf-8")
        except UnicodeDecodeError:
            raise self.fail(f"{what} is not UTF-8") from None

    def value(self, kind: int, what: str, depth: int = 0):
        if kind in _SCALARS:
            return self.scalar(_SCALARS[kind], what)
        if kind == STRING:
            return self.string(what)
        if kind == ARRAY and depth < 2:
            item = self.scalar("<I", f"{what} item type")
            count = self.scalar("<Q", f"{what} count")
            if count > len(self.data) - self.pos:
                raise self.fail(f"{what} claims {count} items")
            return [self.value(item, what, depth + 1) for _ in range(count)]
        raise self.fail(f"{what} has unknown value type {kind}")


def read_gguf_header(path: Path) -> dict:
    """{'version', 'metadata': {key: value}, 'tensors': {name: (shape, ggml_type, offset)}}; InputError if bad."""
    path = Path(path)
    try:
        with open_regular(path) as handle:  # a FIFO or a device: refused, never a block
            size = os.fstat(handle.fileno()).st_size
            if size < 24:
                raise InputError(f"{path}: not a GGUF file ({size} bytes)")
            data = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)  # the header only is paged in
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        return _walk(path, data)
    finally:
        data.close()


def _walk(path: Path, data) -> dict:
    r = _Reader(path, data)
    if r.take(4, "magic") != b"GGUF":
        raise InputError(f"{path}: not a GGUF file (no GGUF magic)")
    version = r.scalar("<I", "version")
    if version not in (2, 3):
        raise r.fail(f"version {version} (expected 2 or 3)")
    n_tensors, n_kv = r.scalar("<Q", "tensor count"), r.scalar("<Q", "metadata count")
    if n_tensors > len(data) // 24 or n_kv > len(data) // 12:
        raise r.fail(f"{n_tensors} tensors / {n_kv} metadata entries cannot fit")
    metadata = {}
    for _ in range(n_kv):
        key = r.string("metadata key")
        metadata[key] = r.value(r.scalar("<I", f"type of {key}"), key)
    tensors = {}
    for _ in range(n_tensors):
        name = r.string("tensor name")
        n_dims = r.scalar("<I", f"{name} n_dims")
        if not 1 <= n_dims <= 4:
            raise r.fail(f"tensor {name!r} has {n_dims} dimensions")
        shape = tuple(r.scalar("<Q", f"{name} shape") for _ in range(n_dims))
        tensors[name] = (shape, r.scalar("<I", f"{name} type"), r.scalar("<Q", f"{name} offset"))
    alignment = metadata.get("general.alignment", 32)
    if not isinstance(alignment, int) or alignment < 1:
        raise r.fail(f"general.alignment {alignment!r}")
    start = (r.pos + alignment - 1) // alignment * alignment
    for name, (shape, kind, offset) in tensors.items():
        count = 1
        for dim in shape:
            count *= dim
        if kind not in GGML_SIZES:  # llama.cpp would refuse the file mid-audit, after BASE was measured
            raise InputError(f"{path}: not a readable GGUF file: tensor {name!r} has unknown ggml type {kind} "
                             f"(none of the {len(GGML_SIZES)} types gguf 0.19.0 defines)")
        per_block, block_bytes = GGML_SIZES[kind]
        if shape[0] % per_block:
            raise InputError(f"{path}: not a readable GGUF file: tensor {name!r} row of {shape[0]} elements is not "
                             f"a whole number of ggml type {kind}'s {per_block}-element blocks")
        size = count // per_block * block_bytes
        if start + offset + size > len(data):
            raise InputError(f"{path}: not a readable GGUF file: tensor {name!r} ({size} bytes at offset {offset}) "
                             f"lies past the end of the {len(data)}-byte file")
    if not tensors:
        raise InputError(f"{path}: GGUF file holds no tensors")
    return {"version": version, "metadata": metadata, "tensors": tensors}


def check_gguf_matches(header: dict, config: dict, path: Path, flag: str) -> None:
    """The GGUF file must be of BASE's model: hidden size, layer count and vocabulary from its metadata
    against BASE's config.json (the engine's own comparison, made from the header before any model loads)."""
    meta = header["metadata"]
    arch = meta.get("general.architecture")
    tokens = meta.get("tokenizer.ggml.tokens")
    got = {"hidden_size": meta.get(f"{arch}.embedding_length"), "num_hidden_layers": meta.get(f"{arch}.block_count"),
           "vocab": len(tokens) if isinstance(tokens, list) else meta.get(f"{arch}.vocab_size")}
    want = {"hidden_size": config.get("hidden_size", config.get("n_embd")),
            "num_hidden_layers": config.get("num_hidden_layers", config.get("n_layer")),
            "vocab": config.get("vocab_size")}
    for key, value in got.items():
        if isinstance(value, int) and isinstance(want[key], int) and value != want[key]:
            raise InputError(f"{flag} {path}: GGUF file of another model ({arch}): {key} {value} vs "
                             f"{want[key]} in BASE's config.json")
