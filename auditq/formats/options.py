"""Torch-free option parsers, one per format family, and the rules for stacking formats with "+".

Both the validation stage (auditq.validate.inputs: a bad ``-f rtn4:g0`` is refused in well under 2 s, before
torch or a family module is imported) and the Format classes (Format.parse builds the family's class from
the options parsed here) call these parsers, so every rule lives once. Each family registers its parser
next to its class in auditq.formats (OPTIONS). A parser raises OptionError saying what is wrong and what
is expected; auditq.formats.parse_options prefixes the flag or the format string.

This module imports nothing heavier than the suite model (relearn's data sources).
"""

from __future__ import annotations

from dataclasses import dataclass

from auditq.errors import InputError
from auditq.formats.gguf_types import QUANT_TYPES
from auditq.formats.relearn_data import SOURCES
from auditq.formats.spec import QUANTIZED, STACKABLE, FormatSpec  # noqa: F401 - re-exported
from auditq.limits import check_number


class OptionError(InputError):
    """What is wrong with one format's options, without the flag or format prefix."""


# --------------------------------------------------------------------------- option records


@dataclass(frozen=True)
class NoOptions:
    """fp takes no options."""


@dataclass(frozen=True)
class RTNOptions:
    bits: int
    group_size: int | None = None
    include_embeddings: bool = False
    include_head: bool = True


@dataclass(frozen=True)
class GPTQOptions:
    bits: int
    group_size: int | None = None
    desc_act: bool = False
    dequant: bool = False


@dataclass(frozen=True)
class BnbOptions:
    quant: str
    double_quant: bool = False


@dataclass(frozen=True)
class GGUFOptions:
    quant: str


FP8_SCHEMES = ("tensor", "channel", "block")


@dataclass(frozen=True)
class FP8Options:
    """fp8 = vLLM online fp8 (one scale per tensor, fused q/k/v and gate/up share one); fp8:channel =
    llm-compressor FP8_DYNAMIC (one scale per output channel); fp8:blockN = N x N tiles (auditq.formats.fp8)."""

    scheme: str = "tensor"
    block: int | None = None  # the tile size of scheme "block"


@dataclass(frozen=True)
class PruneOptions:
    method: str                   # magnitude | wanda
    sparsity: float | None        # unstructured fraction, or None for N:M
    n: int = 0
    m: int = 0


DEFAULT_STEPS = 30
DEFAULT_BATCH = 8


@dataclass(frozen=True)
class RelearnOptions:
    """A relearning recipe. The fields after `batch` are set only by the named presets (RELEARN_PRESETS);
    their defaults are auditq's own recipe (constant lr, no weight decay, `steps` batches)."""

    source: str
    steps: int = DEFAULT_STEPS
    lr: float | None = None      # None: auto (auditq.formats.relearn.AUTO_LR)
    lora: int | None = None      # LoRA rank, None: full fine-tune
    batch: int = DEFAULT_BATCH
    preset: str | None = None    # the published recipe this is (relearn:lucki, :uds, :deeb)
    epochs: int | None = None    # set: passes over the data (batches of `batch`, the last one partial), not `steps`
    lora_alpha: int | None = None            # None: 2R
    lora_targets: tuple[str, ...] | None = None  # None: every nn.Linear but the head
    weight_decay: float = 0.0
    warmup_ratio: float = 0.0    # warmup steps = ceil(ratio x total steps), as transformers' TrainingArguments
    schedule: str = "constant"   # or "linear": warmup, then linear decay to 0 (get_linear_schedule_with_warmup)
    max_texts: int | None = None  # use the first N training texts only
    max_tokens: int = 512


#: Łucki et al.'s LoRA targets (ethz-spylab/unlearning-vs-safety src/finetuning/finetune.py LORA_TARGET_MODULES)
LLAMA_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
#: relearn:<name>: the published relearning attacks, hyper-parameters as their code sets them (read 2026-12-03;
#: docs/formats-and-attacks.md). "forget_all" = every forget record, scored on the same records (UDS's protocol).
RELEARN_PRESETS: dict[str, RelearnOptions] = {
    # src/finetuning/finetune.py: LoRA r=128 alpha=16 dropout 0 on q/k/v/o/gate/up/down, lr 2e-4, warmup_ratio
    # 0.05 + lr_scheduler_type "linear", weight_decay 0.01, 3 epochs, batch 1, adamw_torch, MAX_SEQ_LEN 1024;
    # the paper: 10 unrelated examples
    "lucki": RelearnOptions("generic", preset="lucki", epochs=3, batch=1, lr=2e-4, lora=128, lora_alpha=16,
                            lora_targets=LLAMA_PROJECTIONS, weight_decay=0.01, warmup_ratio=0.05, schedule="linear",
                            max_texts=10, max_tokens=1024),
    # gnueaj/unlearning-depth-score scripts/meta_eval_robustness.py finetune_on_forget10: full fine-tune, 1 epoch,
    # lr 2e-5, batch 4 x grad_accum 4, warmup 0, weight_decay 0, Trainer's default linear schedule, max_length 512
    "uds": RelearnOptions("forget_all", preset="uds", epochs=1, batch=16, lr=2e-5, schedule="linear", max_tokens=512),
    # arXiv 2410.08827: fine-tune on some forget facts, score the others (auditq's seeded forget half); the
    # paper's per-method hyper-parameters were not read here: auditq's default recipe
    "deeb": RelearnOptions("forget", preset="deeb"),
}


# --------------------------------------------------------------------------- parsers


def _bits(spec: FormatSpec, family: str, allowed: tuple[int, ...]) -> int:
    digits = spec.head[len(family):]
    if not digits.isdigit() or int(digits) not in allowed:
        contiguous = len(allowed) > 2 and list(allowed) == list(range(allowed[0], allowed[-1] + 1))
        choices = f"{family}{allowed[0]}..{family}{allowed[-1]}" if contiguous else ", ".join(f"{family}{b}" for b in allowed)
        raise OptionError(f"{family} needs a bit width ({choices}; got {spec.head!r})")
    return int(digits)


def _once(arg: str, seen: set[str], family: str) -> None:
    key = "gN" if arg[:1] == "g" and arg[1:].isdigit() else arg
    if key in seen:
        raise OptionError(f"{family} option {arg!r} given twice")
    seen.add(key)


def parse_fp(spec: FormatSpec) -> NoOptions:
    if spec.head != "fp" or spec.args:
        raise OptionError("fp takes no options")
    return NoOptions()


def parse_half(spec: FormatSpec) -> NoOptions:
    """bf16 / fp16 (auditq.formats.half) take no options and no other bit width."""
    if spec.head != spec.family or spec.args:
        raise OptionError(f"{spec.family} takes no options (use bf16 or fp16)")
    return NoOptions()


def parse_rtn(spec: FormatSpec) -> RTNOptions:
    bits = _bits(spec, "rtn", tuple(range(2, 9)))
    group_size, emb, head, seen = None, False, True, set()
    for arg in spec.args:
        _once(arg, seen, "rtn")
        if arg.startswith("g") and arg[1:].isdigit():
            group_size = int(arg[1:])
            if group_size < 1:
                raise OptionError(f"group size {arg[1:]} must be a positive integer, e.g. {spec.head}:g128")
            _in_range("group_size", group_size, "group size")
        elif arg == "emb":
            emb = True
        elif arg == "nohead":
            head = False
        else:
            raise OptionError(f"unknown rtn option {arg!r} (use gN, emb, nohead)")
    return RTNOptions(bits, group_size, emb, head)


GPTQ_BITS = (2, 3, 4, 8)


def _parse_gptq_like(spec: FormatSpec, family: str, allowed_bits: tuple[int, ...], allow_act: bool) -> GPTQOptions:
    bits = _bits(spec, family, allowed_bits)
    group_size, desc_act, dequant, seen = None, False, False, set()
    known = "gN, act, dequant" if allow_act else "gN, dequant"
    for arg in spec.args:
        _once(arg, seen, family)
        if arg.startswith("g") and arg[1:].isdigit():
            group_size = int(arg[1:])
            if group_size < 16 or group_size & (group_size - 1):
                raise OptionError(f"group size must be a power of two >= 16, e.g. {spec.head}:g128 (got {group_size})")
        elif arg == "act" and allow_act:
            desc_act = True
        elif arg == "dequant":
            dequant = True
        else:
            raise OptionError(f"unknown {family} option {arg!r} (use {known})")
    return GPTQOptions(bits, group_size, desc_act, dequant)


def parse_gptq(spec: FormatSpec) -> GPTQOptions:
    return _parse_gptq_like(spec, "gptq", GPTQ_BITS, allow_act=True)


def parse_awq(spec: FormatSpec) -> GPTQOptions:
    return _parse_gptq_like(spec, "awq", (4,), allow_act=False)


BNB_TYPES = ("nf4", "fp4", "int8")


def parse_bnb(spec: FormatSpec) -> BnbOptions:
    known = ", ".join(f"bnb:{q}" for q in BNB_TYPES)
    if spec.head != "bnb" or not spec.args:
        raise OptionError(f"expected one of {known} (optionally :dq for 4-bit)")
    quant, *rest = spec.args
    if quant not in BNB_TYPES:
        raise OptionError(f"unknown bitsandbytes type {quant!r} (known: {known})")
    if rest == ["dq"] and quant != "int8":
        return BnbOptions(quant, True)
    if rest:
        raise OptionError(f"unknown bnb option {':'.join(rest)!r}"
                          + (" (only :dq, for nf4/fp4)" if quant != "int8" else " (int8 takes no options)"))
    return BnbOptions(quant)


def parse_gguf(spec: FormatSpec) -> GGUFOptions:
    known = ", ".join(f"gguf:{q}" for q in QUANT_TYPES)
    if spec.head != "gguf" or len(spec.args) != 1:
        raise OptionError(f"expected gguf:<type>, one of {known}")
    if spec.args[0] not in QUANT_TYPES:
        raise OptionError(f"unknown GGUF type {spec.args[0]!r} (known: {known})")
    return GGUFOptions(spec.args[0])


def parse_fp8(spec: FormatSpec) -> FP8Options:
    usage = "use fp8 (vLLM, per tensor), fp8:channel (llm-compressor, per output channel) or fp8:blockN, e.g. fp8:block128"
    if spec.head != "fp8":
        raise OptionError(f"fp8 takes no bit width ({usage})")
    if len(spec.args) > 1:
        raise OptionError(f"fp8 takes one option at most, got {':'.join(spec.args)!r} ({usage})")
    arg = spec.args[0] if spec.args else "tensor"
    if arg in ("tensor", "channel"):
        return FP8Options(arg)
    if arg.startswith("block") and arg[5:].isdigit() and int(arg[5:]) > 0:
        return FP8Options("block", int(arg[5:]))
    raise OptionError(f"unknown fp8 option {arg!r} ({usage}, N > 0)")


PRUNE_METHODS = ("magnitude", "wanda")


def _in_range(name: str, value: int, label: str) -> None:
    """A spec's number against its range in auditq.limits.LIMITS (OptionError: the spec prefixes it)."""
    try:
        check_number(name, value, label)
    except InputError as exc:
        raise OptionError(str(exc)) from None


def parse_prune(spec: FormatSpec) -> PruneOptions:
    args = list(spec.args)
    usage = "use prune:magnitude:0.5, prune:wanda:0.5, prune:2:4 or prune:wanda:2:4"
    method = args.pop(0) if args and args[0] in PRUNE_METHODS else "magnitude"
    if spec.head != "prune" or not args or len(args) > 2:
        raise OptionError(usage)
    if len(args) == 2:
        if not all(a.isdigit() for a in args) or not 0 < int(args[0]) < int(args[1]):
            raise OptionError(f"N:M pruning needs integers 0 < N < M (got {':'.join(args)}; {usage})")
        _in_range("prune_m", int(args[1]), "M")
        return PruneOptions(method, None, int(args[0]), int(args[1]))
    try:
        sparsity = float(args[0])
    except ValueError:
        raise OptionError(f"sparsity {args[0]!r} is not a number ({usage})") from None
    if not 0 < sparsity < 1:
        raise OptionError(f"sparsity must be in (0, 1), got {sparsity}")
    return PruneOptions(method, sparsity)


def parse_relearn(spec: FormatSpec) -> RelearnOptions:
    usage = ("use relearn:retain|generic|forget[:steps=N][:lr=X][:lora=R][:batch=B], or a published recipe: "
             + ", ".join(f"relearn:{name}" for name in RELEARN_PRESETS))
    if spec.head == "relearn" and spec.args and spec.args[0] in RELEARN_PRESETS:
        if len(spec.args) > 1:
            raise OptionError(f"relearn:{spec.args[0]} is a published recipe and takes no options "
                              "(vary it with relearn:retain|generic|forget:...)")
        return RELEARN_PRESETS[spec.args[0]]
    if spec.head != "relearn" or not spec.args or spec.args[0] not in SOURCES:
        raise OptionError(usage)
    values: dict[str, float | int] = {}
    for arg in spec.args[1:]:
        key, eq, value = arg.partition("=")
        if not eq or key not in ("steps", "lr", "lora", "batch") or key in values:
            raise OptionError(f"unknown or repeated relearn option {arg!r} ({usage})")
        try:
            number = float(value) if key == "lr" else int(value)
        except ValueError:
            raise OptionError(f"{key}={value!r} is not a number") from None
        if not number > 0 or (key == "lr" and not number < 1):
            raise OptionError(f"{key} must be positive" + (" and below 1" if key == "lr" else "") + f" (got {value})")
        if key != "lr":
            _in_range(f"relearn_{key}", number, key)
        values[key] = number
    return RelearnOptions(spec.args[0], **values)


# --------------------------------------------------------------------------- stacks



def check_stack(parts: list[tuple[FormatSpec, object]]) -> None:
    """The stacking rules over parsed parts [(spec, options), ...], first part first."""
    first = parts[0][0]
    for spec, options in parts[1:]:
        if spec.family not in STACKABLE:
            raise OptionError(f"{spec.raw} cannot be applied on top of another format "
                              "(only fp8, prune and relearn can follow a '+')")
    if first.family not in QUANTIZED:
        return
    for spec, options in parts[1:]:
        if spec.family == "relearn" and not getattr(options, "lora", None):
            if getattr(options, "preset", None):
                raise OptionError(f"relearn:{options.preset} is a full fine-tune and a quantized model can only be "
                                  "relearned with LoRA (list them as separate rows, as UDS measures NF4 and relearning)")
            raise OptionError("a quantized model can only be relearned with LoRA (add :lora=8)")
        if spec.family != "relearn":
            raise OptionError(f"{spec.raw} needs full-precision nn.Linear weights, which {first.raw} does not have")
