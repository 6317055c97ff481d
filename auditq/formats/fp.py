"""Full precision: the checkpoint as loaded (the reference row for recovery)."""

from __future__ import annotations

from contextlib import contextmanager

from auditq.backends.torch_lm import TorchCausalLM
from auditq.formats.base import Format, FormatContext


class FullPrecision(Format):
    engine = "torch"

    @contextmanager
    def apply(self, checkpoint, ctx: FormatContext):
        dtype = str(next(checkpoint.model.parameters()).dtype).replace("torch.", "")
        yield TorchCausalLM(checkpoint.model, checkpoint.pad_token_id, checkpoint.eos_token_id,
                            batch_size=ctx.batch_size, max_batch_tokens=ctx.max_batch_tokens, description=f"torch {dtype}")

    def details(self):
        import torch

        return {"engine": "torch", "engine_version": torch.__version__}
