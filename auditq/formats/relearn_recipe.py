"""The training recipe of a relearning row: batch order, optimizer, lr schedule and LoRA configuration.

auditq's own recipe (relearn:retain|generic|forget) is `steps` batches from seeded permutations, AdamW at a
constant lr, no weight decay. The published presets (auditq.formats.options.RELEARN_PRESETS) set the rest as
their code does through transformers' Trainer: whole epochs (a seeded permutation each, the last batch
partial, as a DataLoader with drop_last=False), AdamW (betas 0.9/0.999, eps 1e-8) with their weight decay,
and `get_linear_schedule_with_warmup` (warmup steps = ceil(warmup_ratio x total), lr 0 at the first step
when there is warmup, linear decay to 0 at the end), re-implemented here so the schedule needs no
transformers import; tests/formats/test_relearn_presets.py compares it with transformers' own function.

LoRA: rank R, alpha (2R unless the preset says), no dropout, on the preset's projections or every
nn.Linear but the head. When a preset's hyper-parameter cannot apply to the model it is adapted and the row
says so (`adaptations`): a rank above a targeted layer's smaller dimension is capped there (the extra rank
adds nothing that layer can express; alpha stays the published value, so the scale alpha/r grows by the
same factor), and projections the architecture does not have (GPT-2's c_attn) fall back to every
nn.Linear but the head.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch

from auditq.formats.options import RelearnOptions


@dataclass
class Recipe:
    """What the fine-tune actually runs, and what it had to adapt for this model (for the row's details)."""

    batches: list[list[int]]
    warmup_steps: int = 0
    adaptations: list[str] = field(default_factory=list)

    @property
    def steps(self) -> int:
        return len(self.batches)


def step_batches(n: int, batch: int, steps: int, seed: int) -> list[list[int]]:
    """auditq's recipe: `steps` index batches, consecutive slices of seeded permutations of range(n)."""
    generator = torch.Generator().manual_seed(seed)
    pool: list[int] = []
    out = []
    for _ in range(steps):
        while len(pool) < min(batch, n):
            pool += torch.randperm(n, generator=generator).tolist()
        out.append(pool[:min(batch, n)])
        pool = pool[min(batch, n):]
    return out


def epoch_batches(n: int, batch: int, epochs: int, seed: int) -> list[list[int]]:
    """The presets' recipe: per epoch one seeded permutation of range(n) in batches of `batch` (last partial)."""
    generator = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(epochs):
        order = torch.randperm(n, generator=generator).tolist()
        out += [order[i:i + batch] for i in range(0, n, batch)]
    return out


def plan(n_texts: int, options: RelearnOptions, seed: int) -> Recipe:
    if options.epochs is None:
        return Recipe(step_batches(n_texts, options.batch, options.steps, seed))
    batches = epoch_batches(n_texts, options.batch, options.epochs, seed)
    return Recipe(batches, math.ceil(len(batches) * options.warmup_ratio))


def linear_factor(step: int, warmup: int, total: int) -> float:
    """transformers' get_linear_schedule_with_warmup lr_lambda: the lr multiplier at optimizer step `step`."""
    if step < warmup:
        return step / max(1, warmup)
    return max(0.0, (total - step) / max(1, total - warmup))


def optimizer_and_schedule(trainable: list[torch.nn.Parameter], options: RelearnOptions, lr: float,
                           recipe: Recipe) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    optimizer = torch.optim.AdamW(trainable, lr=lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=options.weight_decay)
    if options.schedule == "linear":
        factor = lambda step: linear_factor(step, recipe.warmup_steps, recipe.steps)  # noqa: E731
    else:
        factor = lambda step: 1.0  # noqa: E731
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def lora_targets(model: torch.nn.Module, options: RelearnOptions, recipe: Recipe) -> Any:
    """The target_modules for peft: the preset's projections the model has, else "all-linear"."""
    if not options.lora_targets:
        return "all-linear"
    present = sorted({name.rpartition(".")[2] for name, module in model.named_modules()
                      if isinstance(module, torch.nn.Linear)} & set(options.lora_targets))
    missing = sorted(set(options.lora_targets) - set(present))
    if not present:
        recipe.adaptations.append(f"LoRA targets {', '.join(options.lora_targets)} are not in this architecture: "
                                  "every nn.Linear but the head instead")
        return "all-linear"
    if missing:
        recipe.adaptations.append(f"LoRA targets {', '.join(missing)} are not in this architecture")
    return present


def lora_rank(model: torch.nn.Module, targets: Any, rank: int, recipe: Recipe) -> int:
    """`rank`, capped at the smallest dimension of a targeted layer (said in the recipe's adaptations)."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    dims = [min(m.in_features, m.out_features) for name, m in model.named_modules()
            if isinstance(m, torch.nn.Linear) and m is not head
            and (targets == "all-linear" or name.rpartition(".")[2] in targets)]
    cap = min(dims) if dims else rank
    if rank > cap:
        recipe.adaptations.append(f"LoRA rank {rank} exceeds this model's smallest targeted layer dimension "
                                  f"{cap}: rank {cap} used (alpha unchanged)")
        return cap
    return rank


def lora_config(model: torch.nn.Module, options: RelearnOptions, recipe: Recipe):
    """The peft LoraConfig this row trains with (imports peft; the caller turns ImportError into UNKNOWN)."""
    from peft import LoraConfig

    targets = lora_targets(model, options, recipe)
    rank = lora_rank(model, targets, int(options.lora), recipe)
    alpha = options.lora_alpha if options.lora_alpha is not None else 2 * int(options.lora)
    return LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=0.0, target_modules=targets, bias="none")


def describe(options: RelearnOptions) -> dict[str, Any]:
    """The recipe as the row's details state it (before any run)."""
    o = options
    lora = ""
    if o.lora:
        alpha = o.lora_alpha if o.lora_alpha is not None else 2 * o.lora
        where = ", ".join(o.lora_targets) if o.lora_targets else "every nn.Linear but the head"
        lora = f"LoRA r={o.lora} alpha={alpha} dropout 0 on {where} (peft)"
    schedule = "constant lr" if o.schedule == "constant" else \
        f"linear decay to 0 after {o.warmup_ratio:g} warmup" if o.warmup_ratio else "linear decay to 0, no warmup"
    info: dict[str, Any] = {
        "method": lora or "full fine-tune", "batch": o.batch,
        "optimizer": f"AdamW (0.9, 0.999), {schedule}, clip 1.0, weight decay {o.weight_decay:g}",
        "max_tokens": o.max_tokens,
    }
    if o.epochs is not None:
        info["epochs"] = o.epochs
    else:
        info["steps"] = o.steps
    if o.max_texts is not None:
        info["max_texts"] = o.max_texts
    return info


#: relearn:lucki's update budget, the strongest published preset: peak lr and optimizer steps (3 epochs x 10 at batch 1)
LUCKI_LR, LUCKI_STEPS = 2e-4, 30


def strength_note(options: RelearnOptions, lr: float | None, steps: int | None,
                  adaptations: list[str]) -> str | None:
    """The row's note when its settings are weaker than relearn:lucki's (lower peak lr or fewer optimizer
    steps), or when relearn:lucki itself had to be adapted to the model; None otherwise.

    `lr` / `steps` are what the run used (None before a run: the options' values, where they are known).
    """
    if options.preset == "lucki":
        if not adaptations:
            return None
        return ("relearn:lucki adapted to this model (" + "; ".join(adaptations) + "): a PASS here is weaker "
                "evidence than the published recipe")
    lr = lr if lr is not None else options.lr
    steps = steps if steps is not None else (options.steps if options.epochs is None else None)
    reasons = []
    if lr is not None and lr < LUCKI_LR:
        reasons.append(f"peak lr {lr:g} < {LUCKI_LR:g}")
    if steps is not None and steps < LUCKI_STEPS:
        reasons.append(f"{steps} optimizer steps < {LUCKI_STEPS}")
    if not reasons:
        return None
    return (f"weaker settings than relearn:lucki ({'; '.join(reasons)}): a PASS here is weaker evidence than "
            "relearn:lucki")
