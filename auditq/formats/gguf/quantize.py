"""Quantize a GGUF file with llama.cpp's own quantizer and describe what it actually produced.

`quantize_gguf` calls llama_cpp.llama_model_quantize with llama.cpp's default parameters
(no importance matrix, llama.cpp's own per-tensor type mix); only `ftype` is set.
`describe_gguf` reads the file back with gguf.GGUFReader: tensor types, bits per weight,
and an honest note when the requested type is not what most weights got (K-quants need a
tensor's input dimension to be a multiple of 256, otherwise llama.cpp falls back per tensor).
"""

from __future__ import annotations

import ctypes
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from auditq.backends.llamacpp_lm import _import_llama_cpp, capture_llama_log, last_problem
from auditq.errors import MeasurementError
from auditq.formats.gguf.dependency import require_gguf
from auditq.formats.gguf_types import QUANT_TYPES, QuantType  # noqa: F401 - re-exported
from auditq.regular_file import require_regular

K_BLOCK = 256  # super-block size of every K-quant: a tensor's input dimension must be a multiple


def require_llama_cpp():
    """Import llama_cpp (its log routed away from stderr) or raise BackendUnavailable with the install hint."""
    return _import_llama_cpp()


_BACKEND_READY = False


def _ensure_backend(llama_cpp) -> None:
    global _BACKEND_READY
    if not _BACKEND_READY:
        llama_cpp.llama_backend_init()
        _BACKEND_READY = True


def quantize_gguf(src: Path | str, dst: Path | str, quant: str, nthread: int = 0) -> Path:
    """llama.cpp quantization of `src` into `dst` with default parameters and the ftype of `quant`.

    Written to a temporary name and renamed, so an interrupted run leaves no partial file.
    """
    spec = QUANT_TYPES[quant]
    if spec.ftype_const is None:
        raise ValueError(f"{quant} is not produced by the quantizer")
    llama_cpp = require_llama_cpp()
    _ensure_backend(llama_cpp)
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(dst.name + f".tmp{os.getpid()}")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, spec.ftype_const)
    params.nthread = int(nthread)
    with capture_llama_log() as lines:
        rc = llama_cpp.llama_model_quantize(str(src).encode(), str(tmp).encode(), ctypes.byref(params))
    if rc != 0 or not tmp.is_file():
        tmp.unlink(missing_ok=True)
        why = last_problem([(lvl, text) for lvl, text in lines if "falling back" not in text])
        raise MeasurementError(f"llama.cpp failed to quantize {src} to {quant.upper()} (return code {rc})"
                               + (f": {why}" if why else ""))
    os.replace(tmp, dst)
    return dst


@dataclass(frozen=True)
class TensorInfo:
    name: str
    type: str
    shape: tuple[int, ...]  # GGML order: shape[0] is the input (row) dimension
    n_elements: int
    n_bytes: int


def read_tensors(path: Path | str) -> list[TensorInfo]:
    gguf = require_gguf()
    reader = gguf.GGUFReader(str(require_regular(path)))
    return [TensorInfo(t.name, t.tensor_type.name, tuple(int(d) for d in t.shape), int(t.n_elements), int(t.n_bytes))
            for t in reader.tensors]


def read_metadata(path: Path | str, keys: tuple[str, ...]) -> dict[str, Any]:
    gguf = require_gguf()
    reader = gguf.GGUFReader(str(require_regular(path)))
    out: dict[str, Any] = {}
    for key in keys:
        field = reader.fields.get(key)
        if field is not None:
            try:
                out[key] = field.contents()
            except Exception:  # noqa: BLE001 - unreadable metadata is just left out
                continue
    return out


def _weights(tensors: list[TensorInfo]) -> list[TensorInfo]:
    """Tensors llama.cpp's quantizer considers: 2-D and larger (norms, biases and rope factors stay F32)."""
    return [t for t in tensors if len(t.shape) >= 2]


def fallback_note(quant: str, tensors: list[TensorInfo]) -> str | None:
    """One sentence on weights that did not get the requested type, and why."""
    spec = QUANT_TYPES.get(quant)
    if spec is None:
        return None
    weights = _weights(tensors)
    off = [t for t in weights if t.type != spec.nominal]
    if not off:
        return None
    parts = []
    floats = {"F32", "F16", "BF16"}
    kept = [t for t in off if t.type in floats and spec.nominal not in floats]
    if kept:
        names = ", ".join(sorted({_role(t.name) for t in kept}))
        parts.append(f"{len(kept)} left unquantized by llama.cpp ({names})")
    off_q = [t for t in off if t not in kept]
    if spec.k_quant:
        misaligned = [t for t in off_q if t.shape[0] % K_BLOCK]
        if misaligned:
            got = ", ".join(f"{k} {v}" for k, v in sorted(Counter(t.type for t in misaligned).items()))
            verb = "has" if len(misaligned) == 1 else "have"
            parts.append(f"{len(misaligned)} {verb} an input dimension that is not a multiple of {K_BLOCK}, "
                         f"so llama.cpp fell back to non-K types ({got})")
        off_rest = [t for t in off_q if not t.shape[0] % K_BLOCK]
    else:
        off_rest = off_q
    if off_rest:
        got = ", ".join(f"{k} {v}" for k, v in sorted(Counter(t.type for t in off_rest).items()))
        names = ", ".join(sorted({_role(t.name) for t in off_rest}))
        verb = "was" if len(off_rest) == 1 else "were"
        parts.append(f"{len(off_rest)} {verb} given other types by llama.cpp's {quant.upper()} mix ({got}: {names})")
    return (f"requested {quant.upper()} but {len(off)} of {len(weights)} weight tensors are not {spec.nominal}: "
            + "; ".join(parts))


def _role(name: str) -> str:
    parts = name.split(".")
    return parts[2] if parts[0] == "blk" and len(parts) > 2 else parts[0]


def describe_gguf(path: Path | str, quant: str | None = None) -> dict[str, Any]:
    """Tensor types (all tensors), bits per weight of the 2-D weights, size, and the fallback note."""
    tensors = read_tensors(path)
    counts = Counter(t.type for t in tensors)
    weights = _weights(tensors)
    n_el = sum(t.n_elements for t in weights)
    info: dict[str, Any] = {
        "tensor_types": dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))),
        "weight_tensor_types": dict(sorted(Counter(t.type for t in weights).items(), key=lambda kv: (-kv[1], kv[0]))),
        "bits_per_weight": round(8 * sum(t.n_bytes for t in weights) / n_el, 3) if n_el else None,
        "file_bytes": Path(path).stat().st_size,
    }
    if quant is not None:
        note = fallback_note(quant, tensors)
        if note:
            info["note"] = note
    return info
