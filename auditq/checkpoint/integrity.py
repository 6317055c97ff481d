"""Weights the audit can trust: every tensor the architecture expects, nothing else, all finite.

transformers random-initialises a weight that a checkpoint lacks (and its warning is silenced here), so
an audit of such a checkpoint measures a model nobody trained. `check_tensor_names` compares the
safetensors headers with the state dict of the model built from config.json on the meta device (no
memory, no weights read) before any weights load; `check_loading_info` repeats that with what
transformers reports while loading, and `check_finite` refuses NaN/Inf weights tensor by tensor.
"""

from __future__ import annotations

import re
from pathlib import Path

from auditq.checkpoint.safetensors_header import read_checkpoint_headers
from auditq.errors import InputError


def _names(names, limit: int = 5) -> str:
    names = sorted(names)
    shown = ", ".join(names[:limit])
    return shown + (f" (+{len(names) - limit} more)" if len(names) > limit else "")


def _ignored(model_cls, attr: str) -> list[re.Pattern]:
    return [re.compile(p) for p in (getattr(model_cls, attr, None) or [])]


def expected_tensors(config) -> tuple[dict[str, tuple[int, ...]], list[set[str]], type]:
    """(name -> shape of every persistent tensor, groups of tied names, model class) from a config."""
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    state = model.state_dict(keep_vars=True)
    by_tensor: dict[int, set[str]] = {}
    for name, tensor in state.items():
        by_tensor.setdefault(id(tensor), set()).add(name)
    shapes = {name: tuple(tensor.shape) for name, tensor in state.items()}
    return shapes, [names for names in by_tensor.values() if len(names) > 1], type(model)


def check_tensor_names(path: Path, role: str, trust_remote_code: bool = False) -> None:
    """InputError naming the tensors when the checkpoint's files lack expected ones, carry unexpected
    ones, or disagree in shape with what config.json's architecture builds."""
    from transformers import AutoConfig

    path = Path(path)
    headers = read_checkpoint_headers(path)
    try:
        config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code, local_files_only=True)
        shapes, tied, model_cls = expected_tensors(config)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        if "trust_remote_code" in str(exc) and not trust_remote_code:
            first = "it needs custom model code from the checkpoint dir; pass --trust-remote-code only if you trust it"
        raise InputError(f"{role} checkpoint {path}/config.json: cannot build its architecture: {first}") from None
    present = set(headers)
    missing = {n for n in shapes if n not in present}
    for group in tied:  # a tied weight is stored once, under any of its names
        if group & present:
            missing -= group
    missing = {n for n in missing if not any(p.search(n) for p in _ignored(model_cls, "_keys_to_ignore_on_load_missing"))}
    unexpected = {n for n in present - set(shapes)
                  if not any(p.search(n) for p in _ignored(model_cls, "_keys_to_ignore_on_load_unexpected"))}
    if missing:
        raise InputError(f"{role} checkpoint {path} lacks {len(missing)} tensor(s) its architecture needs: "
                         f"{_names(missing)} (transformers would random-initialise them)")
    if unexpected:
        raise InputError(f"{role} checkpoint {path} has {len(unexpected)} tensor(s) its architecture "
                         f"({model_cls.__name__}) does not use: {_names(unexpected)}")
    wrong = [f"{n} {list(headers[n].shape)} (expected {list(shapes[n])})" for n in sorted(present & set(shapes))
             if tuple(headers[n].shape) != shapes[n]]
    if wrong:
        raise InputError(f"{role} checkpoint {path}: tensor shapes do not match config.json: {_names(wrong, 3)}")


def check_loading_info(info: dict, path: Path, role: str) -> None:
    """The same refusal from transformers' own loading report (output_loading_info=True)."""
    for key, what in (("missing_keys", "lacks tensor(s) its architecture needs"),
                      ("mismatched_keys", "has tensor(s) of the wrong shape"),
                      ("unexpected_keys", "has tensor(s) its architecture does not use")):
        names = [n if isinstance(n, str) else str(n[0]) for n in (info or {}).get(key) or ()]
        if names:
            raise InputError(f"{role} checkpoint {path} {what}: {_names(names)}")


def check_finite(model, path: Path, role: str) -> None:
    """Refuse NaN or Inf in any parameter or buffer, naming the tensors (one reduction per tensor)."""
    import torch

    bad = []
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if tensor.is_floating_point() and not _all_finite(tensor):
                bad.append(name)
    if bad:
        raise InputError(f"{role} checkpoint {path} has NaN or Inf values in {len(bad)} tensor(s): {_names(bad)}")


#: elements checked per step: isfinite's temporaries (a float copy and two masks) stay this small
FINITE_CHUNK = 1 << 22


def _all_finite(tensor) -> bool:
    """Whether every element is finite, a chunk at a time (whole-tensor isfinite on a 136M-element
    embedding briefly took 0.9 GiB)."""
    import torch

    flat = tensor.reshape(-1)
    return all(bool(torch.isfinite(flat[start:start + FINITE_CHUNK]).all())
               for start in range(0, flat.numel(), FINITE_CHUNK))
