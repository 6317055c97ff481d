"""SURE's weight saliency: which modules (or output rows) does the forget loss lean on?

At the ORIGINAL weights θ_o, accumulate the gradient of the forget loss over the whole
forget set (the sum of every batch's gradient, computed once) and score each nn.Linear
and Conv1D weight (auditq.formats.linear_layers; a Conv1D's output rows are its stored columns)
by the Frobenius norm of its accumulated gradient:

    s_i = ‖ Σ_batches ∇_{θ_i} L_forget ‖_F        (granularity "module")
    s_{i,r} = ‖ (Σ_batches ∇_{θ_i} L_forget)[r, :] ‖_2   (granularity "row": one score per output row)

The mask is m = 1 where s ≥ γ, γ the p-th percentile of all scores (numpy's linear
interpolation). This is the paper's definition (per module, computed once at θ_o); the
public reference code instead scores every output row of every tensor and recomputes the
scores at every step, and uses percentiles 99, 95 and 90 in three different places.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np
import torch

from auditq.unlearning.unlearn import UnlearnConfig, encode_texts, forget_term, linear_weights, make_batch

GRANULARITIES = ("module", "row")


@dataclass(frozen=True)
class Saliency:
    """Scores per nn.Linear weight: a 0-d tensor (module) or one value per output row (row)."""

    granularity: str
    scores: dict[str, torch.Tensor]
    shapes: dict[str, tuple[int, ...]]
    #: weights stored (in, out) (transformers' Conv1D): their output rows are the stored tensor's columns
    transposed: frozenset[str] = frozenset()

    def values(self) -> np.ndarray:
        """Every score as one flat float64 array (the population the percentile is taken over)."""
        if not self.scores:
            return np.zeros(0)
        return np.concatenate([s.detach().double().reshape(-1).cpu().numpy() for s in self.scores.values()])

    def module_scores(self) -> dict[str, float]:
        """One number per module: its score, or (rows) the norm over all its rows, i.e. its Frobenius norm."""
        return {name: float(s.double().norm()) for name, s in self.scores.items()}


@dataclass(frozen=True)
class SaliencyMask:
    """m_i = s_i ≥ γ, in the {name: bool | bool tensor} form `auditq.unlearning.unlearn.unlearn` takes."""

    granularity: str
    percentile: float
    gamma: float
    trainable: dict[str, torch.Tensor | bool]
    shapes: dict[str, tuple[int, ...]]
    #: one saliency number per module (its Frobenius gradient norm), for printing and the record
    module_scores: dict[str, float] = field(default_factory=dict)
    transposed: frozenset[str] = frozenset()

    def selected_modules(self) -> list[str]:
        """Parameter names with at least one trainable entry, in model order."""
        return [name for name, m in self.trainable.items() if (m if isinstance(m, bool) else bool(m.any()))]

    def selected_rows(self) -> dict[str, int]:
        """Trainable output rows per selected parameter."""
        rows: dict[str, int] = {}
        for name in self.selected_modules():
            m = self.trainable[name]
            if name in self.transposed and not isinstance(m, bool):
                m = m.t()  # output rows of a Conv1D are its stored columns
            out_rows = self.shapes[name][1] if name in self.transposed else self.shapes[name][0]
            rows[name] = out_rows if isinstance(m, bool) else int(m.reshape(m.shape[0], -1).any(-1).sum())
        return rows

    def trainable_count(self) -> int:
        """Number of weight entries that may change."""
        total = 0
        for name, m in self.trainable.items():
            if isinstance(m, bool):
                total += int(np.prod(self.shapes[name])) if m else 0
            else:
                total += int(m.sum())
        return total

    def total_count(self) -> int:
        return int(sum(int(np.prod(shape)) for shape in self.shapes.values()))


def forget_gradients(model, tokenizer, forget_texts: Sequence[str], config: UnlearnConfig) -> dict[str, torch.Tensor]:
    """Σ over forget batches (in order, no shuffling) of ∇ L_forget w.r.t. every nn.Linear weight, at the
    model's current weights. The model's weights and requires_grad flags are left as they were.

    For NPO the reference is the model itself (θ = θ_o), where the NPO gradient equals
    ∇ mean_x log p_θ(x): a sequence-level GA direction.
    """
    if not forget_texts:
        raise ValueError("saliency needs at least one forget text")
    targets = linear_weights(model)
    if not targets:
        raise ValueError("the model has no nn.Linear or Conv1D weights to score")
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
    seqs = encode_texts(tokenizer, forget_texts, config.max_length)
    flags = {name: p.requires_grad for name, p in model.named_parameters()}
    was_training = model.training
    sums = {name: torch.zeros_like(p, dtype=torch.float64) for name, p in targets.items()}
    try:
        for p in model.parameters():
            p.requires_grad_(False)
        for p in targets.values():
            p.requires_grad_(True)
            p.grad = None
        model.eval()
        for start in range(0, len(seqs), config.batch_size):
            batch = make_batch(seqs[start:start + config.batch_size], pad, device)
            loss = forget_term(config, model, model, batch)
            grads = torch.autograd.grad(loss, list(targets.values()), allow_unused=True)
            for (name, _), grad in zip(targets.items(), grads):
                if grad is not None:
                    sums[name] += grad.detach().double()
    finally:
        for name, p in model.named_parameters():
            p.requires_grad_(flags[name])
        model.train(was_training)
    return sums


def saliency_from_gradients(grads: Mapping[str, torch.Tensor], granularity: str = "module",
                            transposed: frozenset[str] = frozenset()) -> Saliency:
    """Norms of accumulated gradients: Frobenius per module, or L2 per output row (dim 0; dim 1 of a
    weight named in `transposed`, i.e. stored (in, out) like transformers' Conv1D)."""
    if granularity not in GRANULARITIES:
        raise ValueError(f"granularity must be one of {GRANULARITIES}, got {granularity!r}")
    scores: dict[str, torch.Tensor] = {}
    for name, g in grads.items():
        g = g.double().t() if name in transposed else g.double()
        scores[name] = g.norm() if granularity == "module" else g.reshape(g.shape[0], -1).norm(dim=1)
    return Saliency(granularity, scores, {name: tuple(g.shape) for name, g in grads.items()}, frozenset(transposed))


def compute_saliency(model, tokenizer, forget_texts: Sequence[str], config: UnlearnConfig,
                     granularity: str = "module") -> Saliency:
    """`forget_gradients` then `saliency_from_gradients`."""
    from auditq.formats.linear_layers import linear_layers

    transposed = frozenset(lw.name for lw in linear_layers(model, head="all") if lw.transposed)
    return saliency_from_gradients(forget_gradients(model, tokenizer, forget_texts, config), granularity, transposed)


def percentile_threshold(values: np.ndarray | Sequence[float], percentile: float) -> float:
    """γ = the p-th percentile of the scores (numpy's default linear interpolation), 0 ≤ p ≤ 100."""
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    if values.size == 0:
        raise ValueError("no saliency scores to threshold")
    if not 0.0 <= percentile <= 100.0:
        raise ValueError(f"percentile must be in [0, 100], got {percentile}")
    return float(np.percentile(values, percentile))


def saliency_mask(saliency: Saliency, percentile: float) -> SaliencyMask:
    """m = s ≥ γ. A module mask is a bool per weight; a row mask is a bool tensor of the weight's shape.

    At least the top-scoring module or row is always selected (s_max ≥ any percentile).
    """
    gamma = percentile_threshold(saliency.values(), percentile)
    trainable: dict[str, torch.Tensor | bool] = {}
    for name, score in saliency.scores.items():
        if saliency.granularity == "module":
            trainable[name] = bool(float(score) >= gamma)
        else:
            rows = (score >= gamma)
            shape = saliency.shapes[name]
            if name in saliency.transposed:  # stored (in, out): an output row is a stored column
                trainable[name] = rows.reshape(1, -1).expand(*shape).clone()
            else:
                trainable[name] = rows.reshape(-1, *([1] * (len(shape) - 1))).expand(*shape).clone()
    return SaliencyMask(saliency.granularity, float(percentile), gamma, trainable, dict(saliency.shapes),
                        saliency.module_scores(), saliency.transposed)
