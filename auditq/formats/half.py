"""Half precision as a deployment form: ``bf16`` and ``fp16``.

A model unlearned (and checked) in float32 is often served in half precision: a server loads the
checkpoint with ``torch_dtype=bfloat16`` / ``float16`` and runs every matmul in that dtype. Rounding the
weights to 8 (bf16) or 11 (fp16) significant bits can undo an update that small (zjunlp/unlearn issue 11:
fp16 vs bf16 alone shifts unlearning results), so each is a row of its own.

What the row does, as ``AutoModelForCausalLM.from_pretrained(..., torch_dtype=<half>)`` does: every
floating-point PARAMETER is cast to the half dtype (round to nearest even; fp16 overflows beyond ±65504
become ±inf and are counted), and the forward pass computes in it (torch supports bf16/fp16 matmul on
CPU). Buffers are left as they are: transformers builds non-persistent buffers such as the rotary
``inv_freq`` in float32 whatever the load dtype, so a cast of them would not be what a server runs.
Log-probabilities are taken in float32 from the half-precision logits (auditq.backends.torch_lm).

Changed elements are counted against the weights it started from, in their dtype (the round trip
half -> original dtype differs). An UNLEARNED checkpoint already in that dtype changes nothing: the row is
then UNKNOWN (MeasurementError), never a measurement that repeats the full-precision row. BASE (or
RETRAIN) unchanged is no such case: a base released in bf16 and unlearned in float32 is common, and its
bf16 row is base itself, the right comparison (its changed_elements say 0).
The weights, dtype and flags come back on exit (auditq.checkpoint.restore.restored_model).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any

import torch

from auditq.backends.torch_lm import TorchCausalLM
from auditq.checkpoint.restore import restored_model
from auditq.formats.base import Format, FormatContext, FormatSpec
from auditq.formats.linear_layers import ChangeCount, count_changed, model_parameter_count

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def cast_parameters(model: torch.nn.Module, dtype: torch.dtype, total: int) -> tuple[ChangeCount, int]:
    """Cast every floating parameter of `model` to `dtype` in place; (what changed, elements that overflowed).

    A change is an element whose value in the original dtype differs after the round trip (NaN counts).
    """
    change, overflow = ChangeCount(total), 0
    with torch.no_grad():
        for name, param in model.named_parameters():
            if not param.is_floating_point():
                continue
            cast = param.data.to(dtype)
            back = cast.to(param.dtype)
            change.add(name, param.numel(), count_changed(param.data, back))
            overflow += int((torch.isfinite(param.data) & ~torch.isfinite(back)).sum())
            param.data = cast
    return change, overflow


class HalfPrecision(Format):
    """``bf16`` / ``fp16``: the checkpoint loaded and computed in half precision."""

    engine = "torch"

    def __init__(self, spec: FormatSpec, options: Any = None) -> None:
        super().__init__(spec, options)
        self.dtype = DTYPES[spec.family]
        self._changes: dict[str, dict[str, Any]] = {}
        self._restore: dict[str, str] = {}

    @contextmanager
    def apply(self, checkpoint, ctx: FormatContext):
        model = checkpoint.model
        role = str(ctx.role or "model")
        with restored_model(checkpoint, model) as restore:
            change, overflow = cast_parameters(model, self.dtype, model_parameter_count(model))
            self._changes[role] = {**change.details(), "overflow_elements": overflow}
            self._restore = dict(restore)
            if role in ("unlearned", "model"):  # the audited model: unchanged means the row repeats fp
                change.require_change(self.name, f"every parameter is already a {self.spec.family} value")
            yield TorchCausalLM(model, checkpoint.pad_token_id, checkpoint.eos_token_id, batch_size=ctx.batch_size,
                                max_batch_tokens=ctx.max_batch_tokens, description=f"torch {self.spec.family}")

    def details(self) -> dict[str, Any]:
        info: dict[str, Any] = {
            "engine": self.engine, "engine_version": torch.__version__,
            "dtype": str(self.dtype).replace("torch.", ""),
            "cast": "every floating parameter, round to nearest even (as from_pretrained(torch_dtype=...)); "
                    "buffers (rotary inv_freq) stay as built",
            "compute": f"forward pass in {self.spec.family}; log-probs in float32 from its logits",
            **self._restore,
        }
        if self._changes:
            info.update({**list(self._changes.values())[-1], "changes": dict(self._changes)})
        return info
