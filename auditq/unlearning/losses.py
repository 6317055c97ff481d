"""The unlearning objectives (Zhang et al., ICLR 2025; MUSE):

- GA   forget term  −NLL(forget)
- NPO  forget term  −(2/β)·E[log σ(−β·(log p_θ(x) − log p_ref(x)))], per-sequence log-likelihoods
- GDR  retain term  NLL(retain)
- KLR  retain term  KL(p_ref ‖ p_θ) over the full next-token softmax on retain tokens
"""

from __future__ import annotations

import torch

from auditq.unlearning.batching import Batch
from auditq.unlearning.config import UnlearnConfig


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
