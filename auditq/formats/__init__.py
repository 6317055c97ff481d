"""Format registry. Families are imported lazily so optional engines load only when asked for.

Spec grammar: FAMILY[BITS][:OPTION...], e.g. fp, rtn4, rtn4:g128, rtn8:emb, gguf:q4_k_m.

A "format" is any transformation of the full-precision checkpoint into the model a user
would have: a precision (rtn, gptq, bnb, gguf, fp8), pruning (prune), or a short fine-tune
(relearn). Transformations combine with "+", applied left to right: ``bnb:nf4+relearn:retain:lora=8``
(auditq.formats.compose).
"""

from __future__ import annotations

import re

from auditq.errors import InputError
from auditq.formats.base import Format, FormatContext, FormatSpec
from auditq.registry import Registry

FAMILIES: Registry[type[Format]] = Registry("format")
FAMILIES.register("fp", "auditq.formats.fp:FullPrecision")
FAMILIES.register("rtn", "auditq.formats.rtn:RoundToNearest")
FAMILIES.register("gptq", "auditq.formats.gptq:GPTQFormat")
FAMILIES.register("awq", "auditq.formats.awq:AWQFormat")
FAMILIES.register("bnb", "auditq.formats.bnb:BitsAndBytesFormat")
FAMILIES.register("gguf", "auditq.formats.gguf:GGUFFormat")
FAMILIES.register("fp8", "auditq.formats.fp8:FP8WeightOnly")
FAMILIES.register("prune", "auditq.formats.prune:Pruning")
FAMILIES.register("relearn", "auditq.formats.relearn:Relearning")

_HEAD = re.compile(r"^([a-z_]+?)(\d*)$")


def parse_spec(raw: str) -> FormatSpec:
    """Split "rtn4:g128" into family "rtn", head "rtn4", args ("g128",)."""
    text = raw.strip().lower()
    head, *args = text.split(":")
    match = _HEAD.match(head)
    if not text or not match:
        raise InputError(f"cannot parse format {raw!r} (expected e.g. fp, rtn4, rtn4:g128, gguf:q4_0)")
    family = head if head in FAMILIES else match.group(1)  # "fp8" is a family, not fp with 8 bits
    if family not in FAMILIES:
        raise InputError(f"unknown format family {family!r} in {raw!r} (known: {', '.join(FAMILIES.names())})")
    return FormatSpec(raw=text, family=family, head=head, args=tuple(args))


def make_format(raw: str) -> Format:
    """Parse and validate one format string into a Format instance ("A+B" stacks B on A)."""
    if "+" in raw:
        from auditq.formats.compose import make_stack

        return make_stack(raw, make_format)
    spec = parse_spec(raw)
    cls = FAMILIES.load(spec.family)
    return cls.parse(spec)


def make_formats(raws: list[str]) -> list[Format]:
    formats = [make_format(r) for r in raws]
    names = [f.name for f in formats]
    if len(set(names)) != len(names):
        raise InputError(f"format listed twice: {', '.join(sorted({n for n in names if names.count(n) > 1}))}")
    if "fp" not in names:
        formats.insert(0, make_format("fp"))
    return formats


__all__ = ["FAMILIES", "Format", "FormatContext", "FormatSpec", "make_format", "make_formats", "parse_spec"]
