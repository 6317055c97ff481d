"""Integer codes of a quantized GGUF file, for auditq.audit.evidence (weight-space evidence).

llama.cpp's legacy types store blocks of 32 weights along the input dimension: a float16
scale d (and, for the _1 types, a float16 minimum m) then the codes, and dequantize as
d·q (Q4_0, Q5_0, Q8_0, with q centred) or d·q + m (Q4_1, Q5_1). The codes are read back as
round((value − m) / d) from gguf's own dequantizer and d is the step. K-quants (super-blocks
with 6-bit sub-scales) and other types are recorded as dequantized values ("values": equal
value ⇔ equal code and scale) without a step, so their mean |Δw| is not in step units.

Everything is mapped back to the HF tensor's element order: GGUF names to HF names with the
same name map and layouts the converter uses (architectures.py), the Llama q/k RoPE row
permutation undone, GPT-2's Conv1D transpose undone. F32/F16/BF16 tensors are not quantized and are not recorded.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from auditq.regular_file import require_regular

LEGACY = {"Q4_0": False, "Q5_0": False, "Q8_0": False, "Q4_1": True, "Q5_1": True}  # type -> has a minimum
FLOATS = ("F32", "F16", "BF16")
BLOCK = 32


def unpermute_rope(weights: np.ndarray, n_head: int) -> np.ndarray:
    """Inverse of convert.permute_rope: GGML interleaved row order back to HF rotate-half order."""
    return (weights.reshape(n_head, weights.shape[0] // n_head // 2, 2, *weights.shape[1:])
            .swapaxes(1, 2)
            .reshape(weights.shape))


_LAYOUTS: dict[str, dict[str, tuple[str, str, int]]] = {}


def hf_layout(checkpoint) -> dict[str, tuple[str, str, int]]:
    """GGUF tensor name -> (HF name, transform, n_head) for the checkpoint (as convert.py names them).

    Kept per checkpoint (by its file hashes): a later gguf format of the same checkpoint, run after
    the resident copy was freed (auditq.formats.resident), does not reload the weights for names.
    """
    from auditq.formats.gguf.convert import checkpoint_key

    key = checkpoint_key(checkpoint) if getattr(checkpoint, "file_hashes", None) else None
    if key is not None and key in _LAYOUTS:
        return _LAYOUTS[key]
    mapping = _hf_layout(checkpoint)
    if key is not None:
        _LAYOUTS[key] = mapping
    return mapping


def _hf_layout(checkpoint) -> dict[str, tuple[str, str, int]]:
    from auditq.formats.gguf.architectures import tensor_name_map, tensor_transform
    from auditq.formats.gguf.hparams import model_info

    info = model_info(checkpoint.model, checkpoint.config)
    names = tensor_name_map(info)
    mapping: dict[str, tuple[str, str, int]] = {}
    for hf_name in checkpoint.model.state_dict(keep_vars=True):
        if not hf_name.endswith(".weight"):
            continue
        if hf_name == "lm_head.weight" and info.tied:
            continue
        name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if name is None:
            continue
        mapping[name] = (hf_name, *tensor_transform(info, hf_name))
    return mapping


def _codes_and_step(tensor, type_name: str):
    """(codes or values (rows, cols), per-block step (rows, cols / 32) or None, kind)."""
    import gguf

    values = gguf.quants.dequantize(tensor.data, tensor.tensor_type)
    rows, cols = values.shape[0], int(np.prod(values.shape[1:]))
    values = values.reshape(rows, cols)
    if type_name not in LEGACY:
        return values.astype(np.float32), None, "values"
    raw = np.asarray(tensor.data).reshape(rows, -1).view(np.uint8)
    n_blocks = cols // BLOCK
    blocks = raw.reshape(rows, n_blocks, -1)
    d = blocks[..., 0:2].copy().view(np.float16).reshape(rows, n_blocks).astype(np.float32)
    m = blocks[..., 2:4].copy().view(np.float16).reshape(rows, n_blocks).astype(np.float32) \
        if LEGACY[type_name] else np.zeros_like(d)
    full_d, full_m = np.repeat(d, BLOCK, axis=1), np.repeat(m, BLOCK, axis=1)
    safe = np.where(full_d == 0, 1.0, full_d)
    codes = np.where(full_d == 0, 0, np.rint((values - full_m) / safe)).astype(np.int16)
    return codes, d, "codes"


def record_gguf_codes(path: Path, mapping: dict[str, tuple[str, str, int]], recorder) -> int:
    """Record every quantized tensor of `path`; returns how many were recorded."""
    if recorder is None:
        return 0
    import gguf

    count = 0
    for tensor in gguf.GGUFReader(str(require_regular(path))).tensors:
        type_name = tensor.tensor_type.name
        if type_name in FLOATS or len(tensor.shape) < 2 or tensor.name not in mapping:
            continue
        hf_name, transform, heads = mapping[tensor.name]
        codes, step, kind = _codes_and_step(tensor, type_name)
        group = None if step is None else np.arange(codes.shape[1]) // BLOCK
        if transform == "rope":
            codes = unpermute_rope(codes, heads)
            step = None if step is None else unpermute_rope(step, heads)
        elif transform == "transpose":
            step = None if step is None else np.repeat(step, BLOCK, axis=1).T.copy()
            codes, group = codes.T.copy(), None
        recorder.add(hf_name, codes, step, group, kind=kind)
        count += 1
    return count
