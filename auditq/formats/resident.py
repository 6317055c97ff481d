"""Engines that build their own model (bnb, GPTQ/AWQ, GGUF) free the resident checkpoint first.

The executor keeps one checkpoint resident (auditq.audit.executor). A format such as bnb:nf4 or
gptq4 reads that copy only to write it out (or to learn its layer shapes), then builds a second
model of its own: with both alive the peak is two models. So such a format:

- declares ``needs_resident = False``: the executor does not load the checkpoint for it and runs
  it after the formats that compute on the resident copy (fewer reloads);
- reads names, shapes and dtype from `structure()` (the resident model if loaded, else a
  weightless meta-device model of the same config: no weights read);
- reads the weights themselves only through ``checkpoint.model`` when its saved copy is not
  written yet, and calls `free_resident()` before it builds its own model.

The next format that needs the checkpoint's weights reloads them from its files (the loader),
which is exact: they were never changed in memory (`weights_from_files`).
"""

from __future__ import annotations

import torch


def free_resident(checkpoint) -> bool:
    """Drop the checkpoint's in-memory weights if they can be read again exactly; True if freed.

    A model replaced in memory (no file holds it), or a checkpoint without a loader, stays.
    """
    if not getattr(checkpoint, "loaded", False) or not getattr(checkpoint, "weights_from_files", False):
        return False
    release = getattr(checkpoint, "release", None)
    return bool(release()) if release is not None else False


def structure(checkpoint) -> torch.nn.Module:
    """A model with the checkpoint's module names, shapes and dtype: the resident one, else a meta-device one.

    For layer widths, parameter names and the compute dtype an engine needs before it builds its
    own model; never for values.
    """
    if getattr(checkpoint, "loaded", True):
        return checkpoint.model
    from transformers import AutoModelForCausalLM

    dtype = getattr(checkpoint, "dtype", None) or torch.float32
    with torch.device("meta"):  # not kept: the caller reads what it needs and drops it
        return AutoModelForCausalLM.from_config(checkpoint.config, dtype=dtype).eval()


def compute_dtype(checkpoint) -> torch.dtype:
    """The dtype the checkpoint is (or will be) loaded in, without loading it."""
    dtype = getattr(checkpoint, "dtype", None)
    if dtype is not None and not getattr(checkpoint, "loaded", True):
        return dtype
    return next(structure(checkpoint).parameters()).dtype
