"""Token batches for the unlearning loop: encoding, right-padding, and the endless (optionally focused) streams.

The streams draw from one `random.Random` the loop seeds, so a run's batches depend only on its config's seed.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Batch:
    """Right-padded token ids and attention mask."""

    ids: torch.Tensor
    mask: torch.Tensor


def encode_texts(tokenizer, texts: Sequence[str], max_length: int = 256, add_eos: bool = True) -> list[list[int]]:
    """Token ids as the model was trained on them: tokenizer specials (BOS) + text (+ EOS)."""
    eos = tokenizer.eos_token_id if add_eos else None
    out = []
    for text in texts:
        ids = list(tokenizer(text).input_ids)[: max_length - (eos is not None)]
        out.append(ids + ([eos] if eos is not None else []))
    return out


def make_batch(seqs: Sequence[Sequence[int]], pad_id: int, device: torch.device | str = "cpu") -> Batch:
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for row, seq in enumerate(seqs):
        ids[row, : len(seq)] = torch.tensor(list(seq), dtype=torch.long)
        mask[row, : len(seq)] = 1
    return Batch(ids.to(device), mask.to(device))


def batches(seqs: Sequence[Sequence[int]], batch_size: int, pad_id: int, rng: random.Random,
            device: torch.device | str = "cpu") -> Iterator[Batch]:
    """Endless stream of batches: reshuffled every pass over the data."""
    order = list(range(len(seqs)))
    while True:
        rng.shuffle(order)
        for start in range(0, len(order), batch_size):
            yield make_batch([seqs[i] for i in order[start:start + batch_size]], pad_id, device)


def focused_batches(seqs: Sequence[Sequence[int]], batch_size: int, pad_id: int, rng: random.Random,
                    device: torch.device | str = "cpu",
                    focus: Callable[[], Sequence[int] | None] | None = None) -> Iterator[Batch]:
    """`batches` over the subset of `seqs` that `focus()` names, asked again before every batch.

    None (or an empty subset) means every sequence; then the stream is exactly `batches`' (same rng
    calls). A changed subset starts a new shuffled pass over it. Why: the remediation stops ascending
    on records that are already forgotten (auditq.remediate.focus).
    """
    if focus is None:
        yield from batches(seqs, batch_size, pad_id, rng, device)
        return
    everything = tuple(range(len(seqs)))
    current: tuple[int, ...] | None = None
    order: list[int] = []
    pos = 0
    while True:
        chosen = focus()
        chosen = tuple(sorted(set(chosen))) if chosen else everything
        if chosen != current:
            current, order, pos = chosen, list(chosen), len(chosen)
        if pos >= len(order):
            rng.shuffle(order)
            pos = 0
        yield make_batch([seqs[i] for i in order[pos:pos + batch_size]], pad_id, device)
        pos += batch_size
