"""Put a model's weights back after a format changed them in place, from the checkpoint's own files.

Formats that rewrite weights in place (RTN, pruning, fp8, a relearning step) used to clone every
tensor first: a second copy of the model. Here the original values are re-read from the
checkpoint's safetensors files (one tensor at a time, plain reads) and copied into the
parameters, cast to their dtype exactly as `from_pretrained` cast them at load time. A tensor
the files do not hold under its parameter name (renamed on load, or a model not built from a
directory) is cloned before the change instead, so restoring is always exact.

    with modified_weights(checkpoint, {"model.layers.0.mlp.up_proj.weight": param, ...}):
        ...change those params in place...
    # every listed param holds its loaded value again
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Mapping

import torch

from auditq.regular_file import present, read_text


def tensor_files(checkpoint_dir: Path | None) -> dict[str, Path]:
    """tensor name -> the .safetensors file holding it (index json when sharded, else every file's header)."""
    if checkpoint_dir is None or not Path(checkpoint_dir).is_dir():
        return {}
    directory = Path(checkpoint_dir)
    index = directory / "model.safetensors.index.json"
    if present(index):
        try:
            weight_map = json.loads(read_text(index)).get("weight_map", {})
            return {name: directory / file for name, file in weight_map.items()}
        except (OSError, ValueError):
            pass
    from auditq.checkpoint.placement import safetensors_header

    found: dict[str, Path] = {}
    for file in sorted(directory.glob("*.safetensors")):
        found.update({name: file for name in safetensors_header(file) if name != "__metadata__"})
    return found


def restore_from_files(params: Mapping[str, torch.nn.Parameter], files: Mapping[str, Path]) -> None:
    """Copy each named tensor from its safetensors file into the parameter, one at a time.

    Read with plain file reads (auditq.checkpoint.safetensors_read), not a memory map, so the restore never
    adds the file's pages to the process's memory.
    """
    from auditq.checkpoint.safetensors_read import TensorReader

    by_file: dict[Path, list[str]] = {}
    for name in params:
        by_file.setdefault(files[name], []).append(name)
    with torch.no_grad():
        for file, names in by_file.items():
            with TensorReader(file) as reader:
                for name in names:  # cast on the CPU as loading did, a chunk at a time into the parameter
                    if params[name].device.type == "cpu":
                        reader.read_into(name, params[name].data)
                    else:
                        stored = torch.empty(params[name].shape, dtype=params[name].dtype)
                        reader.read_into(name, stored)
                        params[name].copy_(stored)
                        del stored


@contextmanager
def modified_weights(checkpoint, params: Mapping[str, torch.nn.Parameter]) -> Iterator[dict[str, str]]:
    """Restore `params` (name -> parameter of `checkpoint.model`) on exit, from the files where possible.

    Yields {"restore": "safetensors" | "clone" | "safetensors+clone"} for the format's details.
    The file is the truth only if the model was loaded from it unchanged: checkpoints whose model
    was replaced in memory (`checkpoint.weights_from_files` False) are cloned.
    """
    use_files = bool(getattr(checkpoint, "weights_from_files", False))
    files = tensor_files(getattr(checkpoint, "path", None)) if use_files else {}
    from_file = {n: p for n, p in params.items() if n in files and _shape_of(files[n], n, p)}
    clones = {n: p.detach().clone() for n, p in params.items() if n not in from_file}
    how = "+".join(k for k, v in (("safetensors", from_file), ("clone", clones)) if v) or "nothing"
    try:
        yield {"restore": how}
    finally:
        restore_from_files(from_file, files)
        with torch.no_grad():
            for name, original in clones.items():
                params[name].copy_(original)
        clones.clear()


def named_unique_parameters(model: torch.nn.Module) -> dict[str, torch.nn.Parameter]:
    """name -> parameter, a tied parameter once (by its first name, as named_parameters lists it)."""
    return dict(model.named_parameters())


@contextmanager
def restored_model(checkpoint, model: torch.nn.Module, values: bool = True) -> Iterator[dict[str, str]]:
    """Leave `model` (the checkpoint's, or a stacked part's) exactly as found: a fine-tune may change it all.

    Values come back through `modified_weights` (from the safetensors files where they are the
    truth, else a clone); dtype, device, requires_grad, gradients, buffers and the train/eval flag
    are put back too, so a fine-tune that casts the model to float32 and unfreezes it leaves no
    trace. `values=False` (LoRA: the base weights never change) restores only the flags.
    """
    params = named_unique_parameters(model)
    flags = [(p, p.dtype, p.device, p.requires_grad) for p in params.values()]
    buffers = [(module, name, buf.detach().clone()) for module in model.modules()
               for name, buf in module.named_buffers(recurse=False) if buf is not None] if values else []
    training = model.training
    with modified_weights(checkpoint, params if values else {}) as how:
        try:
            yield how
        finally:  # runs before modified_weights copies the values back: the dtype must be right by then
            with torch.no_grad():
                for param, dtype, device, grad in flags:
                    if param.dtype != dtype or param.device != device:
                        param.data = torch.empty(param.shape, dtype=dtype, device=device)
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


_HEADERS: dict[Path, dict] = {}


def _shape_of(file: Path, name: str, param: torch.Tensor) -> bool:
    """Whether the file's tensor has the parameter's shape (a renamed or fused tensor would not)."""
    from auditq.checkpoint.placement import safetensors_header

    if file not in _HEADERS:
        _HEADERS.clear()
        _HEADERS[file] = safetensors_header(file)
    meta = _HEADERS[file].get(name)
    return meta is not None and tuple(meta["shape"]) == tuple(param.shape)
