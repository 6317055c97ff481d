"""Gradient-based unlearning (GA / NPO with GDR / KLR retain terms), masked updates, and the
projection that plants a quantization-fragile unlearning.

Why it lives in auditq: the demo needs unlearned models with known behaviour, and the
remediation (SURE: update only salient weights) needs the same loop with a per-entry
mask. The losses follow Zhang et al. (ICLR 2025) and MUSE:

- GA   forget term  −NLL(forget)
- NPO  forget term  −(2/β)·E[log σ(−β·(log p_θ(x) − log p_ref(x)))], per-sequence log-likelihoods
- GDR  retain term  NLL(retain)
- KLR  retain term  KL(p_ref ‖ p_θ) over the full next-token softmax on retain tokens

`project_into_rtn_cells` keeps every weight inside the int4 round-to-nearest cell of the
ORIGINAL weight (pinning each group's max |w| so the scale Δ cannot move): full-precision
behaviour changes, but `rtn_quantize(w, 4)` gives back exactly the original's codes. This
simulates the paper's large-model regime (tiny unlearning updates that 4-bit rounding
erases) on a 1M-parameter model.
"""

from __future__ import annotations

import copy
import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import torch

from auditq.formats.rtn import from_groups, rtn_scale, to_groups

FORGET_LOSSES = ("ga", "npo")
RETAIN_LOSSES = ("gdr", "klr", "none")


@dataclass(frozen=True)
class UnlearnConfig:
    """Hyper-parameters of one unlearning run (defaults: the paper's GA_GDR at a small lr)."""

    forget_loss: str = "ga"
    retain_loss: str = "gdr"
    forget_weight: float = 1.0
    retain_weight: float = 1.0
    lr: float = 5e-5
    max_steps: int = 100
    batch_size: int = 16
    retain_batch_size: int = 16
    beta: float = 0.1
    weight_decay: float = 0.0
    grad_clip: float | None = None
    max_length: int = 256
    seed: int = 0

    def __post_init__(self) -> None:
        if self.forget_loss not in FORGET_LOSSES:
            raise ValueError(f"forget_loss must be one of {FORGET_LOSSES}, got {self.forget_loss!r}")
        if self.retain_loss not in RETAIN_LOSSES:
            raise ValueError(f"retain_loss must be one of {RETAIN_LOSSES}, got {self.retain_loss!r}")

    @property
    def needs_reference(self) -> bool:
        return self.forget_loss == "npo" or self.retain_loss == "klr"


@dataclass(frozen=True)
class StepLog:
    step: int
    loss: float
    forget_loss: float
    retain_loss: float


@dataclass(frozen=True)
class UnlearnResult:
    steps: int
    stopped_early: bool
    history: tuple[StepLog, ...]
    seconds: float


@dataclass(frozen=True)
class Batch:
    """Right-padded token ids and attention mask."""

    ids: torch.Tensor
    mask: torch.Tensor


# ---------------------------------------------------------------------------- batching

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


# ---------------------------------------------------------------------------- losses

def _shifted(model, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Next-token log-softmax (B, T-1, V), targets (B, T-1), target mask (B, T-1) as float."""
    logits = model(input_ids=batch.ids, attention_mask=batch.mask).logits[:, :-1].float()
    return torch.log_softmax(logits, dim=-1), batch.ids[:, 1:], batch.mask[:, 1:].float()


def token_nll(model, batch: Batch) -> torch.Tensor:
    """Mean next-token NLL over the batch's real (non-padding) tokens."""
    logp, target, mask = _shifted(model, batch)
    token_logp = logp.gather(-1, target.unsqueeze(-1)).squeeze(-1)
    return -(token_logp * mask).sum() / mask.sum().clamp_min(1)


def sequence_logprobs(model, batch: Batch) -> torch.Tensor:
    """log p(x) of every sequence (sum over its tokens), shape (B,)."""
    logp, target, mask = _shifted(model, batch)
    return (logp.gather(-1, target.unsqueeze(-1)).squeeze(-1) * mask).sum(-1)


def ga_loss(model, batch: Batch) -> torch.Tensor:
    """Gradient ascent: minimise −NLL(forget)."""
    return -token_nll(model, batch)


def npo_loss(model, reference, batch: Batch, beta: float = 0.1) -> torch.Tensor:
    """NPO: −(2/β)·mean log σ(−β·(log p_θ − log p_ref)); bounded below, unlike GA."""
    logp = sequence_logprobs(model, batch)
    with torch.no_grad():
        ref = sequence_logprobs(reference, batch)
    return -(2.0 / beta) * torch.nn.functional.logsigmoid(-beta * (logp - ref)).mean()


def gdr_loss(model, batch: Batch) -> torch.Tensor:
    """Gradient-descent retain term: NLL(retain)."""
    return token_nll(model, batch)


def klr_loss(model, reference, batch: Batch) -> torch.Tensor:
    """KL(p_ref ‖ p_θ) of the full next-token distributions, averaged over retain tokens."""
    logp, _, mask = _shifted(model, batch)
    with torch.no_grad():
        ref_logp, _, _ = _shifted(reference, batch)
    kl = (ref_logp.exp() * (ref_logp - logp)).sum(-1)
    return (kl * mask).sum() / mask.sum().clamp_min(1)


def forget_term(config: UnlearnConfig, model, reference, batch: Batch) -> torch.Tensor:
    if config.forget_loss == "ga":
        return ga_loss(model, batch)
    return npo_loss(model, reference, batch, config.beta)


def retain_term(config: UnlearnConfig, model, reference, batch: Batch) -> torch.Tensor:
    if config.retain_loss == "gdr":
        return gdr_loss(model, batch)
    if config.retain_loss == "klr":
        return klr_loss(model, reference, batch)
    return torch.zeros((), device=batch.ids.device)


# ---------------------------------------------------------------------------- masks

def linear_weights(model) -> dict[str, torch.nn.Parameter]:
    """Every nn.Linear and Conv1D weight by parameter name (auditq.formats.linear_layers; a tied head too)."""
    from auditq.formats.linear_layers import linear_layers

    return {lw.name: lw.param for lw in linear_layers(model, head="all")}


def linear_weight_mask(model) -> dict[str, torch.Tensor]:
    """A `trainable` mask that lets every nn.Linear weight move and freezes everything else."""
    return {name: torch.ones_like(p, dtype=torch.bool) for name, p in linear_weights(model).items()}


class _Masker:
    """Applies a {name: bool mask} to gradients and restores frozen entries bit-exactly."""

    def __init__(self, model, trainable: Mapping[str, torch.Tensor | bool] | None) -> None:
        self.params: list[torch.nn.Parameter] = []
        self.partial: list[tuple[torch.nn.Parameter, torch.Tensor, torch.Tensor]] = []
        self.saved_flags = {name: p.requires_grad for name, p in model.named_parameters()}
        named = dict(model.named_parameters())
        if trainable is None:
            self.params = [p for p in named.values() if p.requires_grad]
            return
        unknown = sorted(set(trainable) - set(named))
        if unknown:
            raise KeyError(f"trainable names are not parameters of the model: {', '.join(unknown[:5])}")
        for name, param in named.items():
            mask = trainable.get(name, False)
            if isinstance(mask, torch.Tensor):
                if mask.shape != param.shape:
                    raise ValueError(f"mask for {name} has shape {tuple(mask.shape)}, expected {tuple(param.shape)}")
                mask = mask.to(device=param.device, dtype=torch.bool)
                if bool(mask.all()):
                    mask = True
                elif not bool(mask.any()):
                    mask = False
            if mask is False:
                param.requires_grad_(False)
                continue
            param.requires_grad_(True)
            self.params.append(param)
            if isinstance(mask, torch.Tensor):
                self.partial.append((param, mask, param.detach().clone()))

    def mask_grads(self) -> None:
        for param, mask, _ in self.partial:
            if param.grad is not None:
                param.grad.mul_(mask)

    def restore_frozen(self) -> None:
        with torch.no_grad():
            for param, mask, frozen in self.partial:
                param.copy_(torch.where(mask, param, frozen))

    def release(self, model) -> None:
        for name, param in model.named_parameters():
            param.requires_grad_(self.saved_flags[name])


# ---------------------------------------------------------------------------- the loop

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

    reference = None
    if config.needs_reference:
        reference = copy.deepcopy(model).eval()
        for p in reference.parameters():
            p.requires_grad_(False)

    masker = _Masker(model, trainable)
    optimizer = torch.optim.AdamW(masker.params, lr=config.lr, weight_decay=config.weight_decay)
    was_training = model.training
    model.train()
    history: list[StepLog] = []
    start = time.perf_counter()
    stopped = False
    focus_now = None
    try:
        for step in range(1, config.max_steps + 1):
            if forget_focus is not None:
                chosen = forget_focus()
                chosen = tuple(sorted(set(chosen))) if chosen else None
                if chosen != focus_now:
                    _reset_momentum(optimizer)  # a new objective: AdamW's running mean is the old one's gradient
                focus_now = chosen
            f_loss = forget_term(config, model, reference, next(forget_stream))
            loss = config.forget_weight * f_loss
            r_loss = torch.zeros(())
            if retain_stream is not None:
                r_loss = retain_term(config, model, reference, next(retain_stream))
                loss = loss + config.retain_weight * r_loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            masker.mask_grads()
            if config.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(masker.params, config.grad_clip)
            optimizer.step()
            if after_step is not None:
                after_step(step, model)
            masker.restore_frozen()
            log = StepLog(step, float(loss.detach()), float(f_loss.detach()), float(r_loss.detach()))
            history.append(log)
            if progress is not None:
                progress(log)
            if should_stop is not None and should_stop(step):
                stopped = step < config.max_steps
                break
    finally:
        masker.release(model)
        model.train(was_training)
        optimizer.zero_grad(set_to_none=True)
    return UnlearnResult(len(history), stopped, tuple(history), time.perf_counter() - start)


def _reset_momentum(optimizer: torch.optim.Optimizer) -> None:
    """Zero AdamW's first moments (the second moments, i.e. the step sizes, are kept)."""
    for state in optimizer.state.values():
        if "exp_avg" in state:
            state["exp_avg"].zero_()


# ---------------------------------------------------------------------------- RTN-cell projection

def rtn_cell_projection(weight: torch.Tensor, original: torch.Tensor, bits: int = 4,
                        group_size: int | None = None, eps: float = 0.01) -> torch.Tensor:
    """`weight` moved into the RTN cells of `original` (same shape), as a new tensor.

    Per group: Δ = max|w_orig| / 2^(bits-1), q = round(w_orig/Δ) (unclamped). The group's
    max-|w| element is pinned to its original value, so Δ cannot change; every other
    element is clamped to [Δ(q−0.5+ε), Δ(q+0.5−ε)] ∩ [−max, max] with ε = eps·Δ. The ±max
    clip matters: an element allowed past max would become the new max and shift Δ.
    An all-zero group stays zero.
    """
    if weight.shape != original.shape or weight.dim() != 2:
        raise ValueError(f"projection needs two 2-D tensors of one shape, got {tuple(weight.shape)} "
                         f"and {tuple(original.shape)}")
    orig, pad = to_groups(original.detach().double(), group_size)
    cur, _ = to_groups(weight.detach().double(), group_size)
    delta = rtn_scale(orig, bits)
    peak = orig.abs().amax(dim=1, keepdim=True)
    safe = torch.where(delta > 0, delta, torch.ones_like(delta))
    q = torch.round(orig / safe)
    lo = torch.maximum(delta * (q - 0.5 + eps), -peak)
    hi = torch.minimum(delta * (q + 0.5 - eps), peak)
    projected = torch.minimum(torch.maximum(cur, lo), hi)
    pin = orig.abs().argmax(dim=1, keepdim=True)
    projected.scatter_(1, pin, orig.gather(1, pin))
    projected = torch.where(delta > 0, projected, orig)
    return from_groups(projected, weight.shape, pad).to(weight.dtype)


@torch.no_grad()
def project_into_rtn_cells(model, originals: Mapping[str, torch.Tensor], bits: int = 4,
                           group_size: int | None = None, eps: float = 0.01) -> None:
    """Project, in place, every nn.Linear weight named in `originals` into its original's RTN cells.

    `group_size=None` groups per output channel (one row of the weight), which is what the
    `rtn4` format quantizes; names in `originals` that are not nn.Linear weights are ignored.
    """
    from auditq.formats.linear_layers import linear_layers

    for lw in linear_layers(model, head="all"):  # groups along the input dim: a Conv1D's stored dim 0
        if lw.name in originals:
            original = originals[lw.name].t() if lw.transposed else originals[lw.name]
            lw.out_in().copy_(rtn_cell_projection(lw.out_in(), original, bits, group_size, eps))


def snapshot(params: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Detached copies (e.g. `snapshot(linear_weights(model))` before unlearning)."""
    return {name: p.detach().clone() for name, p in params.items()}
