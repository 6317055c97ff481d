"""bitsandbytes through transformers' BitsAndBytesConfig: the paper's own evaluation path.

Format strings (family ``bnb``): ``bnb:nf4``, ``bnb:fp4``, ``bnb:int8``; ``:dq`` adds
double quantization of the 4-bit absmax constants (``bnb:nf4:dq``).

Zhang et al.'s "4-bit" is ``load_in_4bit`` FP4 (blocks of 64) and their "8-bit" is LLM.int8
(``load_in_8bit``, outlier threshold 6.0). ``apply()`` saves the Checkpoint's in-memory model
once per checkpoint (``ctx.workdir/hf-source/<key>``, shared with the gptq/awq formats; the
model is only read) and loads it back with ``AutoModelForCausalLM.from_pretrained(src,
quantization_config=BitsAndBytesConfig(...), dtype=<the checkpoint's dtype>)``, which
quantizes every nn.Linear except the output head on load; 4-bit layers compute in the
checkpoint's dtype (``bnb_4bit_compute_dtype``), LLM.int8 casts activations to float16.
On CPU the 4-bit layers are kept off bitsandbytes' AVX512-BF16 fused path, which would round
absmax and compute to bfloat16 on some CPUs only (see ``reference_cpu_kernel``).
Device: CUDA when available (``ctx.device`` overrides), else CPU.

bitsandbytes 0.50.2 (the ``bnb`` extra) runs all three on CPU with its torch backend. An
install that cannot (older CPU-less builds, a missing kernel) raises BackendUnavailable with
bitsandbytes' reason, so the row is UNKNOWN rather than a crash; so does a missing package
(install hint ``pip install 'auditq[bnb]'``).
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from auditq.errors import BackendUnavailable, MeasurementError
from auditq.formats.base import Format, FormatContext, FormatSpec
from auditq.formats.gptqmodel.engine_format import first_line
from auditq.formats.gptqmodel.env import BNB_INSTALL_HINT, package_version, pick_device, release_memory, role_of
from auditq.formats.gptqmodel.quantize import saved_source
from auditq.formats.options import BnbOptions

__all__ = ["BitsAndBytesFormat"]

_QUIET_LOGGERS = ("bitsandbytes", "transformers.quantizers", "transformers.integrations.bitsandbytes")


def require_bitsandbytes():
    try:
        import bitsandbytes
    except ImportError as exc:
        raise BackendUnavailable(f"the bnb formats need bitsandbytes ({exc})", install_hint=BNB_INSTALL_HINT) from None
    except Exception as exc:  # noqa: BLE001 - a broken install (e.g. no usable native library) is "unavailable"
        raise BackendUnavailable(f"bitsandbytes failed to import: {first_line(exc)}",
                                 install_hint=BNB_INSTALL_HINT) from None
    return bitsandbytes


def _native_library() -> str | None:
    """The file name of the native library bitsandbytes loaded (libbitsandbytes_cuda130.so, ..._cpu.so)."""
    try:
        from bitsandbytes import cextension

        name = getattr(getattr(cextension.lib, "_lib", None), "_name", None)
    except Exception:  # noqa: BLE001 - a description, never worth a failure
        return None
    return Path(name).name if name else None


def reference_cpu_kernel(model: torch.nn.Module) -> int:
    """Keep every Linear4bit on bitsandbytes' reference path; returns how many it switched.

    On a CPU with AVX512-BF16, bitsandbytes 0.50's ``Linear4bit.forward`` repacks the layer at its
    first inference call: absmax is rounded to bfloat16 and the matmul runs in bfloat16 whatever
    ``bnb_4bit_compute_dtype`` says. That is neither the GPU deployment being audited (float32
    absmax, compute in the checkpoint's dtype) nor stable across CI runners (it depends on the
    CPU's instruction set), so the fused path is turned off and dequantize + matmul is used.
    """
    switched = 0
    for module in model.modules():
        if type(module).__name__ == "Linear4bit" and getattr(module, "support_avx512bf16_for_cpu", False):
            module.support_avx512bf16_for_cpu = False
            switched += 1
    return switched


class BitsAndBytesFormat(Format):
    """``bnb:nf4|fp4|int8[:dq]`` via transformers' BitsAndBytesConfig."""

    engine = "bitsandbytes"
    has_codes = True
    needs_resident = False  # loads its own quantized model: the resident copy is freed first

    def __init__(self, spec: FormatSpec, options: BnbOptions) -> None:
        super().__init__(spec, options)
        self.quant = options.quant
        self.double_quant = options.double_quant
        self._runs: dict[str, dict[str, Any]] = {}

    def _config(self, compute_dtype: torch.dtype):
        from transformers import BitsAndBytesConfig

        if self.quant == "int8":
            return BitsAndBytesConfig(load_in_8bit=True)
        return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=self.quant,
                                  bnb_4bit_compute_dtype=compute_dtype,
                                  bnb_4bit_use_double_quant=self.double_quant)

    @contextmanager
    def apply(self, checkpoint, ctx: FormatContext):
        from auditq.backends.torch_lm import TorchCausalLM

        require_bitsandbytes()
        from transformers import AutoModelForCausalLM

        role = role_of(checkpoint, ctx)
        if ctx.workdir is None:
            raise MeasurementError(f"{self.name} needs a scratch directory (FormatContext.workdir)")
        from auditq.formats.resident import compute_dtype, free_resident

        device = pick_device(ctx)
        dtype = compute_dtype(checkpoint)
        source = saved_source(checkpoint, ctx.workdir)  # reads the weights only if not saved yet
        free_resident(checkpoint)  # one model at a time: the quantized one replaces it (reloaded when needed)
        quiet = {name: logging.getLogger(name).level for name in _QUIET_LOGGERS}
        for name in _QUIET_LOGGERS:
            logging.getLogger(name).setLevel(logging.ERROR)
        model = None
        try:
            try:
                model = AutoModelForCausalLM.from_pretrained(
                    source, quantization_config=self._config(dtype), dtype=dtype, device_map={"": device},
                    use_safetensors=True, local_files_only=True)
                model.eval()
                reference_cpu_kernel(model)
                with torch.inference_mode():  # smoke test: does this install have kernels for this device?
                    ids = torch.tensor([[checkpoint.pad_token_id, checkpoint.pad_token_id]], device=device)
                    model(input_ids=ids)
            except (ImportError, RuntimeError, NotImplementedError, ValueError, AssertionError, TypeError) as exc:
                raise BackendUnavailable(
                    f"bitsandbytes {package_version('bitsandbytes')} cannot run {self.name} on {device}: "
                    f"{first_line(exc)}", install_hint=BNB_INSTALL_HINT) from exc
            self._runs[role] = self._describe(model, device, dtype)
            self._record_codes(model, ctx)
            lm = TorchCausalLM(model, checkpoint.pad_token_id, checkpoint.eos_token_id, batch_size=ctx.batch_size,
                               max_batch_tokens=ctx.max_batch_tokens,
                               description=f"bitsandbytes {self.quant} on {device} ({self.name})")
            try:
                yield lm
            finally:
                lm.model = None
        finally:
            model = None
            release_memory()
            for name, level in quiet.items():
                logging.getLogger(name).setLevel(level)

    def _record_codes(self, model, ctx: FormatContext) -> None:
        """Weight-space evidence (auditq.audit.evidence, auditq.formats.bnb_codes); never costs the row."""
        from auditq.formats.bnb_codes import record_bnb_codes
        from auditq.formats.code_recorder import CodeRecorder

        recorder = CodeRecorder.for_context(ctx, self.name, ctx.role)
        try:
            record_bnb_codes(model, recorder)
        except Exception as exc:  # noqa: BLE001 - supplementary evidence
            if recorder is not None:
                recorder.fail(exc)

    def _describe(self, model, device: str, dtype: torch.dtype) -> dict[str, Any]:
        kinds: dict[str, int] = {}
        full_precision: list[str] = []
        blocksize = None
        for name, module in model.named_modules():
            kind = type(module).__name__
            if kind in ("Linear4bit", "Linear8bitLt"):
                kinds[kind] = kinds.get(kind, 0) + 1
                state = getattr(module.weight, "quant_state", None)
                if state is not None and blocksize is None:
                    blocksize = getattr(state, "blocksize", None)
            elif isinstance(module, torch.nn.Linear):
                full_precision.append(name)
        run: dict[str, Any] = {"device": device, "quantized_layers": kinds, "full_precision_linears": full_precision}
        if self.quant == "int8":
            run.update(compute="LLM.int8 (activations cast to float16)", outlier_threshold=6.0)
        else:
            run.update(compute_dtype=str(dtype).replace("torch.", ""), blocksize=blocksize,
                       kernel="dequantize + matmul (bitsandbytes' AVX512-BF16 CPU repack disabled)"
                       if device == "cpu" else f"bitsandbytes {device.split(':')[0]} kernels")
        library = _native_library()
        if library:
            run["native_library"] = library
        return run

    def details(self) -> dict[str, Any]:
        info: dict[str, Any] = {
            "engine": self.engine,
            "engine_version": package_version("bitsandbytes"),
            "loader": f"transformers {package_version('transformers')} BitsAndBytesConfig",
            "quant_type": self.quant,
            "bits": 8 if self.quant == "int8" else 4,
        }
        if self.quant != "int8":
            info["double_quant"] = self.double_quant
        if self._runs:
            info.update(list(self._runs.values())[-1])
        return info
