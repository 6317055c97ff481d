"""Calibration texts and group sizes for GPTQModel, checked from shapes and tokenizer before engine work."""

from __future__ import annotations

import math

import torch

from auditq.errors import MeasurementError

DEFAULT_GROUP_SIZE = 128
#: gptqmodel drops calibration texts shorter than this many tokens (its own default)
CALIBRATION_MIN_TOKENS = 10


def quantizable_linears(model: torch.nn.Module) -> dict[str, torch.nn.Linear]:
    """The nn.Linear layers GPTQModel quantizes by default: everything but the output head."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    return {name: m for name, m in model.named_modules() if isinstance(m, torch.nn.Linear) and m is not head}


def default_group_size(model: torch.nn.Module, preferred: int = DEFAULT_GROUP_SIZE) -> int:
    """128, or the largest power of two below it that divides every quantized input width."""
    widths = [m.in_features for m in quantizable_linears(model).values()]
    if not widths:
        raise MeasurementError("the model has no nn.Linear layers to quantize")
    common = math.gcd(*widths)
    size = preferred
    while size > 1 and common % size:
        size //= 2
    if size < 16:
        raise MeasurementError(f"no usable group size: the linear input widths {sorted(set(widths))} "
                               f"share no power-of-two divisor of at least 16")
    return size


def check_group_size(model: torch.nn.Module, group_size: int, spec: str) -> None:
    bad = sorted({m.in_features for m in quantizable_linears(model).values() if m.in_features % group_size})
    if bad:
        raise MeasurementError(f"{spec}: group size {group_size} does not divide the linear input widths {bad}")


def calibration_stats(texts: tuple[str, ...] | list[str], tokenizer) -> tuple[int, int]:
    """(texts GPTQModel will keep, their tokens) under its minimum-length rule."""
    kept, tokens = 0, 0
    for text in texts:
        n = len(tokenizer(text)["input_ids"])
        if n >= CALIBRATION_MIN_TOKENS:
            kept += 1
            tokens += n
    return kept, tokens


def require_calibration(ctx, tokenizer, spec: str) -> tuple[list[str], dict[str, int]]:
    texts = [t for t in (ctx.calibration_texts or ()) if t and t.strip()]
    if not texts:
        raise MeasurementError(f"{spec} needs calibration texts (the suite's calibration file or retain split), "
                               "none were given")
    kept, tokens = calibration_stats(texts, tokenizer)
    if kept == 0:
        raise MeasurementError(f"{spec}: every calibration text is shorter than {CALIBRATION_MIN_TOKENS} tokens, "
                               "which GPTQModel drops")
    return texts, {"calibration_texts": len(texts), "calibration_texts_used": kept, "calibration_tokens": tokens}
