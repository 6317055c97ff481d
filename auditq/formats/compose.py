"""Stacked transformations: ``A+B[+C]``, applied left to right, e.g. ``bnb:nf4+relearn:retain:lora=8`` (QLoRA).

The first part may be any format; every later part must be an in-memory torch transformation
(``stackable``: fp8, prune, relearn) and is handed the previous part's torch model through a
view of the checkpoint. The stacking rules are checked with the parsed options, before any family
module is imported (auditq.formats.parse_format, auditq.formats.options.check_stack). Each part undoes itself on exit, innermost first, so the checkpoint's
model is left as it was. A part that narrows the suite (relearn:forget) narrows the stack's row.
"""

from __future__ import annotations

from contextlib import ExitStack, contextmanager
from typing import Any

from auditq.backends.torch_lm import TorchCausalLM
from auditq.errors import InputError, MeasurementError
from auditq.formats.base import Format, FormatContext, FormatSpec


class ModelView:
    """The checkpoint as seen by a stacked part: same tokenizer, config and ids, another model."""

    def __init__(self, checkpoint, model) -> None:
        self._checkpoint = checkpoint
        self.model = model
        #: the checkpoint's files are the truth for this model only if it is the checkpoint's own model
        #: (a stacked part on top of RTN); a bnb/GPTQ model built from it restores by cloning (auditq.checkpoint.restore)
        self.weights_from_files = bool(getattr(checkpoint, "weights_from_files", False)) and \
            model is getattr(checkpoint, "_model", None)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._checkpoint, name)


class Stack(Format):
    engine = "auditq-stack"

    def __init__(self, spec: FormatSpec, parts: list[Format]) -> None:
        super().__init__(spec)
        self.parts = parts

    @property
    def stochastic(self) -> bool:  # type: ignore[override]
        return any(getattr(p, "stochastic", False) for p in self.parts)

    @property
    def needs_resident(self) -> bool:  # type: ignore[override] - the first part decides
        return getattr(self.parts[0], "needs_resident", True)

    @classmethod
    def parse(cls, spec: FormatSpec) -> "Stack":  # built by auditq.formats.build_format
        raise InputError(f"format {spec.raw!r}: build stacks with make_format")

    def suite_view(self, suite, seed: int = 0):
        for part in self.parts:
            suite = part.suite_view(suite, seed)
        return suite

    @contextmanager
    def apply(self, checkpoint, ctx: FormatContext):
        with ExitStack() as stack:
            lm = stack.enter_context(self.parts[0].apply(checkpoint, ctx))
            for part in self.parts[1:]:
                model = getattr(lm, "model", None)
                if not isinstance(lm, TorchCausalLM) or model is None:
                    raise MeasurementError(f"{self.name}: {self.parts[0].name} does not give a torch model to apply "
                                           f"{part.name} to")
                lm = stack.enter_context(part.apply(ModelView(checkpoint, model), ctx))
            yield lm

    def details(self):
        parts = [{"format": p.name, **p.details()} for p in self.parts]
        info = {"engine": " + ".join(d.get("engine", "?") for d in parts), "stack": parts}
        notes = [f"{d['format']}: {d['note']}" for d in parts if d.get("note")]
        if notes:  # a part's caveat (e.g. a relearn recipe weaker than relearn:lucki) is the row's too
            info["note"] = "; ".join(notes)
        return info
