"""Group sequences into forward passes by a token budget, longest first, and put results back in order.

Sorting by length keeps padding a small fraction of the work; a token budget (rows × padded
width) instead of a fixed row count keeps one forward pass the same size whatever the
text lengths, which is what bounds activation memory on a real model.
"""

from __future__ import annotations

from typing import Callable, Sequence, TypeVar

T = TypeVar("T")

#: default padded-token budget of one forward pass (rows × width)
DEFAULT_MAX_BATCH_TOKENS = 4096


def plan_batches(lengths: Sequence[int], max_rows: int, max_tokens: int | None = None) -> list[list[int]]:
    """Indices of each batch: longest first, at most `max_rows` rows and `max_tokens` padded tokens.

    A single sequence longer than the budget still gets a batch of its own (it must be measured).
    """
    if max_rows < 1:
        raise ValueError("max_rows must be >= 1")
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    batches: list[list[int]] = []
    current: list[int] = []
    for index in order:
        width = lengths[current[0]] if current else lengths[index]  # the first (longest) row sets the width
        fits_rows = len(current) < max_rows
        fits_tokens = max_tokens is None or (len(current) + 1) * max(width, 1) <= max_tokens
        if current and not (fits_rows and fits_tokens):
            batches.append(current)
            current = []
        current.append(index)
    if current:
        batches.append(current)
    return batches


def run_batched(items: Sequence[Sequence[int]], max_rows: int, max_tokens: int | None,
                run: Callable[[list[Sequence[int]]], list[T]], lengths: Sequence[int] | None = None) -> list[T]:
    """Call `run` on each planned batch and return its per-item outputs in input order.

    `lengths`: the width each item takes in a batch (default: its own length).
    """
    out: list[T | None] = [None] * len(items)
    for batch in plan_batches(list(lengths) if lengths is not None else [len(s) for s in items],
                              max_rows, max_tokens):
        results = run([items[i] for i in batch])
        for index, result in zip(batch, results):
            out[index] = result
    return out  # type: ignore[return-value]
