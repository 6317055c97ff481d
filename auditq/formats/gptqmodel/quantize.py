"""Quantizing with GPTQModel: the source checkpoint saved for the engine, quantize-and-save, then its model freed.

- ``saved_source``: the Checkpoint's in-memory model written once per checkpoint and workdir
  as safetensors (engines load from a directory); the in-memory model is only read.
- ``quantize_with_gptqmodel``: ``GPTQModel.load(source, QuantizeConfig(...)).quantize(texts)
  .save(out)`` inside ``engine_env``; ``drop_weights`` frees the quantize-time model.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from auditq.formats.gptqmodel.calibration import CALIBRATION_MIN_TOKENS
from auditq.formats.gptqmodel.env import drop_engine_tracebacks, engine_env, require_gptqmodel

# --------------------------------------------------------------------------- the source checkpoint


def checkpoint_key(checkpoint) -> str:
    """Stable key: the checkpoint's file fingerprints, else a hash of its weights."""
    digest = hashlib.sha256()
    hashes = getattr(checkpoint, "file_hashes", None)
    if hashes:
        digest.update(json.dumps(sorted(hashes.items())).encode())
    else:
        for name, tensor in checkpoint.model.state_dict().items():
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


_SOURCES: dict[tuple[str, str], Path] = {}


def saved_source(checkpoint, workdir: Path) -> Path:
    """Write the in-memory model and its tokenizer once per checkpoint and workdir (safetensors)."""
    key = checkpoint_key(checkpoint)
    path = (Path(workdir) / "hf-source" / key).resolve()
    hit = _SOURCES.get((str(path), key))
    if hit is not None and (hit / "config.json").is_file():
        return hit
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    checkpoint.model.save_pretrained(path, safe_serialization=True)
    if checkpoint.tokenizer is not None:
        checkpoint.tokenizer.save_pretrained(path)
    _SOURCES[(str(path), key)] = path
    return path


# --------------------------------------------------------------------------- quantize


@dataclass
class QuantizeRequest:
    method: str  # "gptq" | "awq"
    bits: int
    group_size: int
    desc_act: bool = False
    sym: bool = True
    device: str = "cpu"
    dtype: torch.dtype = torch.float32
    seed: int = 0
    extra_config: dict[str, Any] = field(default_factory=dict)


def quantize_with_gptqmodel(source: Path, out: Path, request: QuantizeRequest, texts: list[str], tokenizer,
                            workdir: Path) -> dict[str, Any]:
    """GPTQModel.load(source, QuantizeConfig(...)).quantize(texts).save(out); returns what it did."""
    require_gptqmodel(workdir)
    out = Path(out).resolve()
    if out.exists():
        shutil.rmtree(out)
    info: dict[str, Any] = {}
    with engine_env(workdir) as log_path:
        from gptqmodel import BACKEND, GPTQModel, QuantizeConfig

        kwargs: dict[str, Any] = dict(bits=request.bits, group_size=request.group_size, sym=request.sym,
                                      offload_to_disk_path=str(Path(workdir).resolve() / "offload"),
                                      **request.extra_config)
        if request.method == "awq":
            kwargs.update(method="awq", format="gemm")
        else:
            kwargs.update(desc_act=request.desc_act)
        config = QuantizeConfig(**kwargs)
        backend = BACKEND.AUTO
        if request.method == "awq" and request.device == "cpu":
            backend = BACKEND.AWQ_TORCH
        start = time.perf_counter()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(request.seed)
            model = GPTQModel.load(str(source), config, device=request.device, dtype=request.dtype)
            model.quantize(list(texts), tokenizer=tokenizer, backend=backend,
                           calibration_data_min_length=CALIBRATION_MIN_TOKENS)
        info["quantize_s"] = round(time.perf_counter() - start, 3)
        start = time.perf_counter()
        model.save(str(out))
        info["save_s"] = round(time.perf_counter() - start, 3)
        qc = model.quantize_config
        info["act_group_aware"] = bool(getattr(qc, "act_group_aware", False))
        info["engine_log"] = str(log_path)
        drop_weights(model)
        del model
    drop_engine_tracebacks()
    shutil.rmtree(Path(workdir).resolve() / "offload", ignore_errors=True)  # a full copy of the layers, on disk
    return info


def drop_weights(wrapper) -> None:
    """Free the quantize-time model's tensors now (moved to the meta device, no storage).

    GPTQModel 7.6's module looper stays reachable from a closure after quantize() returns, and with
    it the whole model it quantized: without this that copy lives until the next quantization.
    """
    inner = getattr(wrapper, "model", None)
    if isinstance(inner, torch.nn.Module):
        try:
            inner.to("meta")
        except Exception:  # noqa: BLE001 - best effort; the model is saved already
            pass
