"""Durability over seeds (`--seeds N`): a stochastic format repeated under other seeds, one row per seed.

DurableUn (arXiv 2605.02196) counts a method as passing only if it passes under every seed (3/3). A format
whose result depends on the seed (`Format.stochastic`: relearning's data order and LoRA initialisation,
GPTQ/AWQ's seeded calibration pass, a stack holding one) is measured under seeds s, s+1, ..., s+N-1 (s =
--seed): the first row keeps its own name (so `--seeds 1` is today's audit, cache included), each other is a
`Seeded` row named ``<format>@seed=<k>``. Deterministic formats (fp, rtn, fp8, gguf, bnb, prune, bf16/fp16)
run once. The seed is in each row's name, hence in its result-cache key (auditq.cache.store keys on the
format name), and in its details. The gate already takes the worst verdict over every row; auditq.audit.
durability adds each group's per-seed verdicts and pass rate ("2/3") to the rows' details and note.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import replace
from typing import Any

from auditq.formats.base import Format, FormatContext, FormatSpec

SEED_MARK = "@seed="


def base_name(name: str) -> str:
    """The format a row repeats ("relearn:lucki@seed=2" -> "relearn:lucki")."""
    return name.split(SEED_MARK, 1)[0]


class Seeded(Format):
    """A fresh copy of `inner` applied with FormatContext.seed = `seed` (and its suite view under that seed).

    A copy, not `inner` itself: a format keeps what its runs measured (loss curves, the forget half it scored)
    for its row's details, and each seed's row must report its own.
    """

    has_codes = False  # the inner format would record its codes under its own name, over the first row's

    def __init__(self, inner: Format, seed: int) -> None:
        from auditq.formats import make_format

        inner = make_format(inner.name)
        spec = inner.spec
        super().__init__(FormatSpec(raw=f"{inner.name}{SEED_MARK}{seed}", family=spec.family, head=spec.head,
                                    args=spec.args), inner.options)
        self.inner, self.seed = inner, seed
        self.engine = inner.engine

    @property
    def needs_resident(self) -> bool:  # type: ignore[override]
        return getattr(self.inner, "needs_resident", True)

    @property
    def stackable(self) -> bool:
        return False

    @property
    def stochastic(self) -> bool:
        return True

    def suite_view(self, suite, seed: int = 0):
        return self.inner.suite_view(suite, self.seed)

    @contextmanager
    def apply(self, checkpoint, ctx: FormatContext):
        with self.inner.apply(checkpoint, replace(ctx, seed=self.seed, weight_evidence=False)) as lm:
            yield lm

    def details(self) -> dict[str, Any]:
        return {**self.inner.details(), "seed": self.seed, "repeats": self.inner.name}


def with_seeds(formats: list[Format], seeds: int, seed: int) -> list[Format]:
    """`formats` with every stochastic one followed by its repeats under seeds seed+1 .. seed+seeds-1."""
    out: list[Format] = []
    for fmt in formats:
        out.append(fmt)
        if getattr(fmt, "stochastic", False):
            out += [Seeded(fmt, seed + k) for k in range(1, seeds)]
    return out
