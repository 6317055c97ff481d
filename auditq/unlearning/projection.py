"""The projection that plants a quantization-fragile unlearning (the demo's "fragile" model).

`project_into_rtn_cells` keeps every weight inside the int4 round-to-nearest cell of the
ORIGINAL weight (pinning each group's max |w| so the scale Δ cannot move): full-precision
behaviour changes, but `rtn_quantize(w, 4)` gives back exactly the original's codes. This
simulates the paper's large-model regime (tiny unlearning updates that 4-bit rounding
erases) on a 1M-parameter model.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from auditq.formats.linear_layers import linear_layers
from auditq.formats.rtn import from_groups, rtn_scale, to_groups


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
    for lw in linear_layers(model, head="all"):  # groups along the input dim: a Conv1D's stored dim 0
        if lw.name in originals:
            original = originals[lw.name].t() if lw.transposed else originals[lw.name]
            lw.out_in().copy_(rtn_cell_projection(lw.out_in(), original, bits, group_size, eps))
