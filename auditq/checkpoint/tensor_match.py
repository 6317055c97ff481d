"""Checkpoints that must hold the same tensors: BASE against UNLEARNED, RETRAIN and --reference, compared from
their safetensors headers alone (no torch, no transformers), so a missing, extra or reshaped tensor in one of
them is refused in the light validation stage, naming the tensors and the files, in well under 2 s.

An unlearned model is its base fine-tuned: same tensor names, same shapes; the dtypes may differ (a bf16 base,
an fp32 unlearned copy) but not their kind (float vs integer vs bool: an integer tensor where the base has a
float one is a quantized or corrupted file, not an unlearned model). Two differences are tolerated because
transformers itself tolerates them, and the meta-device check (auditq.checkpoint.integrity) still judges each
checkpoint against its architecture right after: `lm_head.weight` present in one checkpoint only when the
config ties it to the embeddings, and the buffers that older transformers versions saved
(`rotary_emb.inv_freq`, GPT-2's `attn.bias` / `attn.masked_bias`). When every checkpoint lacks the same
tensor, they agree here and the meta-device check refuses them (architecture conformity).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from auditq.checkpoint.safetensors_header import TensorEntry, read_header, weight_files
from auditq.errors import InputError

#: buffers older transformers versions wrote into checkpoints and current ones ignore on load
LEGACY_BUFFERS = (".rotary_emb.inv_freq", ".attn.bias", ".attn.masked_bias")
SHOWN = 3


def dtype_kind(dtype: str) -> str:
    """safetensors dtype -> float | int | bool | complex (BF16, F16, F32, F8_* are all float)."""
    if dtype == "BOOL":
        return "bool"
    if dtype.startswith(("F", "BF")):
        return "float"
    if dtype.startswith("C"):
        return "complex"
    return "int"


def tensors_with_files(directory: Path) -> dict[str, tuple[TensorEntry, Path]]:
    """name -> (header entry, shard file) for every tensor of a checkpoint dir (headers only)."""
    found: dict[str, tuple[TensorEntry, Path]] = {}
    for file in weight_files(directory):
        for name, entry in read_header(file).items():
            found.setdefault(name, (entry, file))
    return found


def _shown(items: list[str]) -> str:
    text = ", ".join(items[:SHOWN])
    return text + (f" (+{len(items) - SHOWN} more)" if len(items) > SHOWN else "")


def _files(names: list[str], tensors: dict[str, tuple[TensorEntry, Path]]) -> str:
    files = sorted({tensors[n][1].name for n in names})
    return ", ".join(files[:SHOWN]) + (f" (+{len(files) - SHOWN} more)" if len(files) > SHOWN else "")


def _tolerated(name: str, tied: bool) -> bool:
    return name.endswith(LEGACY_BUFFERS) or (tied and name == "lm_head.weight")


def compare_tensors(base: Path, other: Path, role: str, config: dict[str, Any] | None = None) -> None:
    """InputError (one line) unless `other` holds BASE's tensors: same names, shapes and dtype kinds.

    `config`: BASE's config.json (whether lm_head is tied to the embeddings; HF's default is tied).
    """
    base, other = Path(base), Path(other)
    mine, theirs = tensors_with_files(base), tensors_with_files(other)
    tied = bool((config or {}).get("tie_word_embeddings", True))
    missing = sorted(n for n in mine.keys() - theirs.keys() if not _tolerated(n, tied))
    extra = sorted(n for n in theirs.keys() - mine.keys() if not _tolerated(n, tied))
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"lacks {len(missing)} tensor(s) of base ({_shown(missing)}; in base's {_files(missing, mine)})")
        if extra:
            parts.append(f"has {len(extra)} tensor(s) base does not ({_shown(extra)}; in {_files(extra, theirs)})")
        raise InputError(f"{role} checkpoint {other} {' and '.join(parts)}; base checkpoint {base}: "
                         f"the {role} model must hold exactly the base model's tensors")
    common = sorted(mine.keys() & theirs.keys())
    shapes = [f"{n} {list(theirs[n][0].shape)} vs base {list(mine[n][0].shape)}" for n in common
              if theirs[n][0].shape != mine[n][0].shape]
    if shapes:
        names = [s.split(" ", 1)[0] for s in shapes]
        raise InputError(f"{role} checkpoint {other} ({_files(names, theirs)}) and base checkpoint {base} differ in "
                         f"the shape of {len(shapes)} tensor(s): {_shown(shapes)}")
    kinds = [f"{n} {theirs[n][0].dtype} vs base {mine[n][0].dtype}" for n in common
             if dtype_kind(theirs[n][0].dtype) != dtype_kind(mine[n][0].dtype)]
    if kinds:
        names = [s.split(" ", 1)[0] for s in kinds]
        raise InputError(f"{role} checkpoint {other} ({_files(names, theirs)}) and base checkpoint {base} differ in "
                         f"the kind of dtype of {len(kinds)} tensor(s) (float vs integer): {_shown(kinds)}")
