"""Which weights an unlearning run may move: the nn.Linear weights (what weight quantizers touch), per-entry
masks over them, and the Masker that keeps masked-out entries bit-identical through AdamW steps.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch


def linear_weights(model) -> dict[str, torch.nn.Parameter]:
    """Every nn.Linear and Conv1D weight by parameter name (auditq.formats.linear_layers; a tied head too)."""
    from auditq.formats.linear_layers import linear_layers

    return {lw.name: lw.param for lw in linear_layers(model, head="all")}


def linear_weight_mask(model) -> dict[str, torch.Tensor]:
    """A `trainable` mask that lets every nn.Linear weight move and freezes everything else."""
    return {name: torch.ones_like(p, dtype=torch.bool) for name, p in linear_weights(model).items()}


class Masker:
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


def snapshot(params: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Detached copies (e.g. `snapshot(linear_weights(model))` before unlearning)."""
    return {name: p.detach().clone() for name, p in params.items()}
