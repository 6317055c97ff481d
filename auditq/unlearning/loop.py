"""The unlearning loop: AdamW over the trainable entries, forget term + weighted retain term, masked updates.

Why it lives in auditq: the demo needs unlearned models with known behaviour, and the remediation (SURE: update
only salient weights) needs the same loop with a per-entry mask. Every run seeds its own `random.Random` and
torch's generator from config.seed, so a run is repeatable bit for bit on one machine.
"""

from __future__ import annotations

import copy
import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import torch

from auditq.unlearning.batching import Batch, batches, encode_texts, focused_batches
from auditq.unlearning.config import StepLog, UnlearnConfig, UnlearnResult
from auditq.unlearning.losses import forget_term, retain_term
from auditq.unlearning.masks import Masker


@dataclass(frozen=True)
class _Run:
    """What every step of one run works on."""

    config: UnlearnConfig
    model: torch.nn.Module
    reference: torch.nn.Module | None
    forget_stream: Iterator[Batch]
    retain_stream: Iterator[Batch] | None
    optimizer: torch.optim.Optimizer
    masker: Masker


@dataclass(frozen=True)
class _Hooks:
    after_step: Callable[[int, torch.nn.Module], None] | None
    should_stop: Callable[[int], bool] | None
    progress: Callable[[StepLog], None] | None
    forget_focus: Callable[[], Sequence[int] | None] | None


def unlearn(model, tokenizer, forget_texts: Sequence[str], retain_texts: Sequence[str], config: UnlearnConfig,
            trainable: Mapping[str, torch.Tensor | bool] | None = None,
            after_step: Callable[[int, torch.nn.Module], None] | None = None,
            should_stop: Callable[[int], bool] | None = None,
            progress: Callable[[StepLog], None] | None = None,
            forget_focus: Callable[[], Sequence[int] | None] | None = None) -> UnlearnResult:
    """Unlearn `forget_texts` in place with AdamW; returns the step history.

    trainable:  None trains every parameter that requires grad; otherwise {name: bool
                tensor or bool}: only True entries may change (their gradients are zeroed
                and they are restored after every step, so they stay bit-identical);
                parameters not named are frozen.
    after_step: called as after_step(step, model) after each optimizer step (e.g. a
                projection); masked-out entries are restored after it.
    should_stop: called with the number of completed steps; True ends the run.
    progress:   called with each step's StepLog.
    forget_focus: called before every forget batch; the indices into `forget_texts` to draw from
                (None: all of them, the default stream; see `focused_batches`). When the selection
                changes, AdamW's first moments are zeroed: otherwise ~10 more steps follow the old
                selection's gradient (β1 = 0.9).
    A frozen copy of the model is made as the reference when NPO or KLR needs one.
    """
    if not forget_texts:
        raise ValueError("unlearn needs at least one forget text")
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
    rng = random.Random(config.seed)
    torch.manual_seed(config.seed)
    forget_stream = focused_batches(encode_texts(tokenizer, forget_texts, config.max_length), config.batch_size, pad,
                                    rng, device, forget_focus)
    use_retain = config.retain_loss != "none" and config.retain_weight != 0 and len(retain_texts) > 0
    retain_stream = (batches(encode_texts(tokenizer, retain_texts, config.max_length), config.retain_batch_size,
                             pad, rng, device) if use_retain else None)
    reference = _frozen_copy(model) if config.needs_reference else None
    masker = Masker(model, trainable)
    optimizer = torch.optim.AdamW(masker.params, lr=config.lr, weight_decay=config.weight_decay)
    run = _Run(config, model, reference, forget_stream, retain_stream, optimizer, masker)
    was_training = model.training
    model.train()
    history: list[StepLog] = []
    start = time.perf_counter()
    try:
        stopped = _steps(run, _Hooks(after_step, should_stop, progress, forget_focus), history)
    finally:
        masker.release(model)
        model.train(was_training)
        optimizer.zero_grad(set_to_none=True)
    return UnlearnResult(len(history), stopped, tuple(history), time.perf_counter() - start)


def _frozen_copy(model: torch.nn.Module) -> torch.nn.Module:
    """The reference model of NPO / KLR: a copy in eval mode that no gradient reaches."""
    reference = copy.deepcopy(model).eval()
    for p in reference.parameters():
        p.requires_grad_(False)
    return reference


def _steps(run: _Run, hooks: _Hooks, history: list[StepLog]) -> bool:
    """Up to max_steps optimizer steps, each StepLog appended to `history`; True when should_stop ended the
    run before max_steps."""
    focus_now = None
    for step in range(1, run.config.max_steps + 1):
        if hooks.forget_focus is not None:
            chosen = hooks.forget_focus()
            chosen = tuple(sorted(set(chosen))) if chosen else None
            if chosen != focus_now:
                _reset_momentum(run.optimizer)  # a new objective: AdamW's running mean is the old one's gradient
            focus_now = chosen
        log = _step(run, step, hooks.after_step)
        history.append(log)
        if hooks.progress is not None:
            hooks.progress(log)
        if hooks.should_stop is not None and hooks.should_stop(step):
            return step < run.config.max_steps
    return False


def _step(run: _Run, step: int, after_step: Callable[[int, torch.nn.Module], None] | None) -> StepLog:
    """One optimizer step on the next forget (and retain) batch; masked-out entries restored after it."""
    config, model = run.config, run.model
    f_loss = forget_term(config, model, run.reference, next(run.forget_stream))
    loss = config.forget_weight * f_loss
    r_loss = torch.zeros(())
    if run.retain_stream is not None:
        r_loss = retain_term(config, model, run.reference, next(run.retain_stream))
        loss = loss + config.retain_weight * r_loss
    run.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    run.masker.mask_grads()
    if config.grad_clip is not None:
        torch.nn.utils.clip_grad_norm_(run.masker.params, config.grad_clip)
    run.optimizer.step()
    if after_step is not None:
        after_step(step, model)
    run.masker.restore_frozen()
    return StepLog(step, float(loss.detach()), float(f_loss.detach()), float(r_loss.detach()))


def _reset_momentum(optimizer: torch.optim.Optimizer) -> None:
    """Zero AdamW's first moments (the second moments, i.e. the step sizes, are kept)."""
    for state in optimizer.state.values():
        if "exp_avg" in state:
            state["exp_avg"].zero_()
