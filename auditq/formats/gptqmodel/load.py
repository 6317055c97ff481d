"""Loading a GPTQ/AWQ checkpoint dir back for scoring: through GPTQModel's kernels (as deployed) or dequantized exactly.

- ``load_quantized`` / ``dequantized_model``: load a GPTQ or AWQ checkpoint back through
  GPTQModel's own kernels (the deployed path), or rebuild a plain float32 model from exactly
  dequantized weights; ``quant_method`` reads which of the two a directory holds.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from auditq.errors import InputError, MeasurementError
from auditq.formats.gptqmodel.env import engine_env, require_gptqmodel
from auditq.regular_file import read_text, require_regular


@contextlib.contextmanager
def _allow_float32(kernel_classes) -> Iterator[None]:
    """GPTQModel's torch kernels declare fp16/bf16 only but compute in any float dtype: let fp32 in."""
    saved = []
    for cls in kernel_classes:
        dtypes = list(getattr(cls, "SUPPORTS_DTYPES", []) or [])
        saved.append((cls, getattr(cls, "SUPPORTS_DTYPES", None)))
        if torch.float32 not in dtypes:
            cls.SUPPORTS_DTYPES = dtypes + [torch.float32]
    try:
        yield
    finally:
        for cls, dtypes in saved:
            if dtypes is not None:
                cls.SUPPORTS_DTYPES = dtypes


def quant_method(path: Path) -> str:
    """"gptq" or "awq" from a checkpoint dir's config.json quantization_config (InputError otherwise)."""
    config_path = Path(path) / "config.json"
    try:
        config = json.loads(read_text(config_path))
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot read config.json: {exc}") from None
    qc = config.get("quantization_config") or {}
    method = str(qc.get("quant_method") or qc.get("method") or "").lower()
    if method not in ("gptq", "awq"):
        raise InputError(f"{path} is not a GPTQ or AWQ checkpoint (quantization_config.quant_method is "
                         f"{method or 'missing'!r})")
    return method


def load_quantized(path: Path, device: str, workdir: Path) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Load a GPTQ/AWQ checkpoint through GPTQModel's kernels, the way it is deployed.

    CPU: GPTQ through ``TorchLinear`` with float32 activations (dequantized weights are exact
    in fp32, so this equals the dequantized model up to matmul rounding); AWQ through
    ``AwqTorchLinear``, whose forward computes in fp16 whatever the activation dtype. The
    rest of the model runs in float32 on CPU. CUDA: GPTQModel's automatic kernel choice in
    float16, the usual deployment.
    """
    require_gptqmodel(workdir)
    method = quant_method(path)
    info: dict[str, Any] = {"loader": "GPTQModel.load"}
    with engine_env(workdir):
        from gptqmodel import BACKEND, GPTQModel

        from auditq.formats.engine_devices import gptqmodel_kernel

        choice = gptqmodel_kernel(method, device, {m.name for m in BACKEND})
        backend = getattr(BACKEND, choice.backend)
        info["kernel_choice"] = choice.note
        if not device.startswith("cuda"):
            if method == "gptq":
                from gptqmodel.nn_modules.qlinear.torch import TorchLinear as kernel
            else:
                from gptqmodel.nn_modules.qlinear.torch_awq import (
                    AwqTorchLinear as kernel,
                )
            with _allow_float32([kernel]):
                loaded = GPTQModel.load(str(path), device="cpu", backend=backend, dtype=torch.float32)
            dtype = torch.float32
        else:  # CUDA: GPTQModel picks its CUDA kernel (never run on a GPU in auditq's own tests)
            dtype = torch.float16
            loaded = GPTQModel.load(str(path), device=device, backend=backend, dtype=dtype)
    model = loaded.model
    model.eval()
    kernels = sorted({type(m).__name__ for m in model.modules() if hasattr(m, "qweight")})
    for module in model.modules():
        # TorchLinear.post_init wraps its dequantizer in torch.compile (inductor: a C++ build on
        # first use, caches under /tmp); the eager method computes the same values.
        if "dequantize_weight" in vars(module):
            del module.dequantize_weight
    info.update(kernel=", ".join(kernels) or "?", compute_dtype=str(dtype).replace("torch.", ""),
                quant_method=method)
    if method == "awq" and device == "cpu":
        info["compute_dtype"] = "float16 matmuls in AwqTorchLinear, float32 elsewhere"
        info["note"] = "AwqTorchLinear casts activations to float16 for its matmuls and back"
    return model, info


def _awq_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Dequantize an AWQ GEMM checkpoint with AWQ's own unpacking (column order reversed)."""
    from gptqmodel.quantization.awq.utils.packing_utils import dequantize_gemm
    from safetensors import safe_open

    config = json.loads(read_text(Path(path) / "config.json"))
    qc = config.get("quantization_config") or {}
    version = str(qc.get("version") or qc.get("format") or "gemm").lower()
    if version != "gemm":
        raise MeasurementError(f"{path}: AWQ {version!r} packing is not supported for dequantization (only gemm)")
    bits, group = int(qc.get("bits", 4)), int(qc.get("group_size", 128))
    raw: dict[str, torch.Tensor] = {}
    for file in sorted(Path(path).glob("*.safetensors")):
        with safe_open(str(require_regular(file)), framework="pt", device="cpu") as reader:
            for key in reader.keys():
                raw[key] = reader.get_tensor(key)
    state: dict[str, torch.Tensor] = {}
    for key, tensor in raw.items():
        if key.endswith((".qweight", ".qzeros", ".scales")):
            continue
        state[key] = tensor
    for key in [k for k in raw if k.endswith(".qweight")]:
        prefix = key[: -len(".qweight")]
        scales = raw[prefix + ".scales"]
        weight = dequantize_gemm(raw[key], raw[prefix + ".qzeros"], scales, bits, group)  # (in, out), scales' dtype
        state[prefix + ".weight"] = weight.t().contiguous()
    return state


def dequantized_model(path: Path, workdir: Path, device: str = "cpu") -> tuple[torch.nn.Module, dict[str, Any]]:
    """A plain float32 HF model holding the checkpoint's exactly dequantized weights.

    GPTQ: gptqmodel.utils.model_dequant.dequantize_model (exact for GPTQ v1/v2). AWQ: AWQ's
    dequantize_gemm (the generic dequantizer does not undo AWQ's interleaved packing order).
    """
    require_gptqmodel(workdir)
    method = quant_method(path)
    from transformers import AutoConfig, AutoModelForCausalLM

    with engine_env(workdir):
        if method == "gptq":
            from gptqmodel.utils.model_dequant import dequantize_model

            out = (Path(workdir) / "dequantized" / Path(path).name).resolve()
            if out.exists():
                shutil.rmtree(out)
            out.parent.mkdir(parents=True, exist_ok=True)
            dequantize_model(Path(path), out, target_dtype=torch.float32)
            model = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32, local_files_only=True)
            shutil.rmtree(out, ignore_errors=True)
        else:
            state = _awq_state_dict(Path(path))
            config = AutoConfig.from_pretrained(path, local_files_only=True)
            if hasattr(config, "quantization_config"):
                delattr(config, "quantization_config")
            model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
            missing, unexpected = model.load_state_dict({k: v.float() for k, v in state.items()}, strict=False)
            tied = {"lm_head.weight"} if getattr(config, "tie_word_embeddings", False) else set()
            if unexpected or set(missing) - tied:
                raise MeasurementError(f"{path}: dequantized AWQ weights do not fit the model "
                                       f"(missing {sorted(missing)[:3]}, unexpected {sorted(unexpected)[:3]})")
            if tied:
                model.tie_weights()
    model.to(device)
    model.eval()
    return model, {"loader": f"dequantized to float32 ({'model_dequant' if method == 'gptq' else 'AWQ dequantize_gemm'})",
                   "kernel": "torch nn.Linear", "compute_dtype": "float32", "quant_method": method}
