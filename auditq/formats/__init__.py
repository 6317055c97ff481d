"""Format registry. Families are imported lazily so optional engines load only when asked for.

Spec grammar: FAMILY[BITS][:OPTION...], e.g. fp, rtn4, rtn4:g128, rtn8:emb, gguf:q4_k_m.

A "format" is any transformation of the full-precision checkpoint into the model a user
would have: a precision (rtn, gptq, bnb, gguf, fp8, bf16, fp16), pruning (prune), or a short fine-tune
(relearn). Transformations combine with "+", applied left to right: ``bnb:nf4+relearn:retain:lora=8``
(auditq.formats.compose).

Every family registers two things: its Format class (imported only when the format is measured) and
its option parser in auditq.formats.options (torch-free). `parse_format` applies every rule of a
format string with the parsers alone, so the validation stage refuses `rtn4:g0` before torch is
imported; `build_format` then builds the family's class from the parsed options.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable

from auditq.errors import InputError
from auditq.formats.base import Format, FormatContext, FormatSpec
from auditq.registry import Registry

FAMILIES: Registry[type[Format]] = Registry("format")
#: one torch-free option parser per family (auditq.formats.options): the validation stage and Format.parse use it
OPTIONS: Registry[Callable[[FormatSpec], Any]] = Registry("format option parser")


def _family(name: str, cls: str, parser: str) -> None:
    FAMILIES.register(name, cls)
    OPTIONS.register(name, f"auditq.formats.options:{parser}")


_family("fp", "auditq.formats.fp:FullPrecision", "parse_fp")
_family("rtn", "auditq.formats.rtn:RoundToNearest", "parse_rtn")
_family("gptq", "auditq.formats.gptq:GPTQFormat", "parse_gptq")
_family("awq", "auditq.formats.awq:AWQFormat", "parse_awq")
_family("bnb", "auditq.formats.bnb:BitsAndBytesFormat", "parse_bnb")
_family("gguf", "auditq.formats.gguf:GGUFFormat", "parse_gguf")
_family("fp8", "auditq.formats.fp8:FP8WeightOnly", "parse_fp8")
_family("prune", "auditq.formats.prune:Pruning", "parse_prune")
_family("relearn", "auditq.formats.relearn:Relearning", "parse_relearn")
_family("bf16", "auditq.formats.half:HalfPrecision", "parse_half")
_family("fp16", "auditq.formats.half:HalfPrecision", "parse_half")

_HEAD = re.compile(r"^([a-z_]+?)(\d*)$")

#: named format lists for -f (docs/presets.md). The paper's TEXT describes symmetric RTN (fp, 8 and 4 bits,
#: auditq's rtnN: per output channel); its public CODE loads "4-bit" as bitsandbytes FP4 (load_in_4bit
#: defaults: blocks of 64, lm_head skipped) and "8-bit" as LLM.int8 (outlier threshold 6.0).
PRESETS: dict[str, tuple[str, ...]] = {
    "paper-text": ("fp", "rtn8", "rtn4"),
    "paper-code": ("fp", "bnb:int8", "bnb:fp4"),
}
#: a name shaped like a preset (words joined by "-"): no format family has a "-", so it is a mistyped preset
_PRESET_LIKE = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)+$")


def expand_presets(names: list[str] | tuple[str, ...], where: str = "--formats") -> tuple[str, ...]:
    """Replace each preset name in a format list by its formats, in order.

    A format a preset brings that is already in the list (named or brought by another preset) is not
    added twice, so `-f fp,paper-code` is fine; two explicit equal names stay, for the validator to refuse.
    A preset-shaped unknown name is refused here with the known presets (InputError, exit 2).
    """
    out: list[str] = []
    from_preset: set[str] = set()
    for raw in names:
        name = raw.strip().lower()
        if name in PRESETS:
            for fmt in PRESETS[name]:
                if fmt not in out:
                    out.append(fmt)
                    from_preset.add(fmt)
        elif _PRESET_LIKE.match(name):
            raise InputError(f"{where}: unknown format preset {raw.strip()!r} (presets: {', '.join(PRESETS)})")
        elif name in from_preset:
            continue
        else:
            out.append(raw)
    return tuple(out)


def parse_spec(raw: str, where: str | None = None) -> FormatSpec:
    """Split "rtn4:g128" into family "rtn", head "rtn4", args ("g128",); `where` prefixes an error (a flag)."""
    text = raw.strip().lower()
    head, *args = text.split(":")
    match = _HEAD.match(head)
    prefix = f"{where}: " if where else ""
    if text in PRESETS:  # a preset that reached a parser that does not expand them (see expand_presets)
        raise InputError(f"{prefix}{raw!r} is a format preset ({', '.join(PRESETS[text])}); list those formats here")
    if not text or not match:
        raise InputError(f"{prefix}cannot parse format {raw!r} (expected e.g. fp, rtn4, rtn4:g128, gguf:q4_0)")
    family = head if head in FAMILIES else match.group(1)  # "fp8" is a family, not fp with 8 bits
    if family not in FAMILIES:
        raise InputError(f"{prefix}unknown format family {family!r} in {raw!r} (known: {', '.join(FAMILIES.names())}; "
                         f"presets: {', '.join(PRESETS)})")
    return FormatSpec(raw=text, family=family, head=head, args=tuple(args))


@dataclass(frozen=True)
class ParsedFormat:
    """A format string checked against every rule, without its family module: spec, options, stacked parts."""

    spec: FormatSpec
    options: Any = None
    parts: tuple["ParsedFormat", ...] = ()


def parse_options(spec: FormatSpec, where: str | None = None) -> Any:
    """The family's options for `spec`; InputError "<where>: <what is wrong>" (where: the flag or format)."""
    from auditq.formats.options import OptionError

    try:
        return OPTIONS.load(spec.family)(spec)
    except OptionError as exc:
        raise InputError(f"{where or f'format {spec.raw!r}'}: {exc}") from None


def parse_format(raw: str, where: str | None = None) -> ParsedFormat:
    """Every rule make_format applies, importing no family module (no torch): run by the validation stage.

    `where` prefixes the one-line error, e.g. "--formats rtn4:g0"; default "format 'rtn4:g0'".
    """
    if "+" not in raw:
        spec = parse_spec(raw, where)
        return ParsedFormat(spec, parse_options(spec, where))
    from auditq.formats.options import OptionError, check_stack

    where = where or f"format {raw!r}"
    names = [p.strip() for p in raw.strip().lower().split("+")]
    if len(names) < 2 or not all(names):
        raise InputError(f"{where}: cannot parse a stack (stack formats as A+B, e.g. bnb:nf4+relearn:retain:lora=8)")
    parts = tuple(parse_format(n, f"{where}: {n}") for n in names)
    try:
        check_stack([(p.spec, p.options) for p in parts])
    except OptionError as exc:
        raise InputError(f"{where}: {exc}") from None
    return ParsedFormat(FormatSpec(raw="+".join(names), family="stack", head="stack", args=()), parts=parts)


def build_format(parsed: ParsedFormat) -> Format:
    """The Format for a parsed spec: the family's class built from its parsed options."""
    if parsed.parts:
        from auditq.formats.compose import Stack

        return Stack(parsed.spec, [build_format(p) for p in parsed.parts])
    return FAMILIES.load(parsed.spec.family)(parsed.spec, parsed.options)


def make_format(raw: str) -> Format:
    """Parse and validate one format string into a Format instance ("A+B" stacks B on A)."""
    return build_format(parse_format(raw))


def make_formats(raws: list[str]) -> list[Format]:
    formats = [make_format(r) for r in raws]
    names = [f.name for f in formats]
    if len(set(names)) != len(names):
        raise InputError(f"format listed twice: {', '.join(sorted({n for n in names if names.count(n) > 1}))}")
    if "fp" not in names:
        formats.insert(0, make_format("fp"))
    return formats


__all__ = ["FAMILIES", "OPTIONS", "PRESETS", "Format", "FormatContext", "FormatSpec", "ParsedFormat", "build_format",
           "expand_presets", "make_format", "make_formats", "parse_format", "parse_options", "parse_spec"]
