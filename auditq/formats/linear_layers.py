"""A model's linear weights of every kind, and what a transformation changed in them.

Weight transformations (rtn, fp8, prune, the unlearning helpers, SURE's saliency) used to walk
``nn.Linear`` only. GPT-2 and other older transformers families store their layers as
``transformers.pytorch_utils.Conv1D`` (weight stored (in, out), forward ``x @ W + b``) and tie the
head to the embeddings, so on GPT-2 such a walk found nothing and "rtn4" scored the fp model
again. This module is the one place that lists linear weights:

- ``linear_layers(model)``: every ``nn.Linear`` and ``Conv1D`` weight as a ``LinearWeight`` that
  knows its stored layout (``transposed`` for Conv1D) and gives an (out, in) view of it, so
  "per output row" and "groups along the input dimension" mean the same thing for both kinds.
- The head: a head tied to the input embedding is left out by default (quantizing it would also
  quantize the embedding; ``head="all"`` keeps it, ``head="none"`` drops any head).
- ``require_covered(model, fmt_name, layers)``: a module that is neither nn.Linear, Conv1D nor an
  embedding but owns a weight of 2 or more dimensions (e.g. fused MoE experts) is a layer auditq
  would silently skip: refused with one line naming the module type and the format
  (MeasurementError, which the executor turns into an UNKNOWN row). So is a model with no layer.
- ``ChangeCount``: tensors and elements a transformation changed against the weights it started
  from, and the share of the model's parameters it covers; ``require_change`` raises
  MeasurementError when it changed nothing (see auditq.formats.rtn for the rule).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from auditq.errors import MeasurementError

HEAD_CHOICES = ("untied", "all", "none")


def conv1d_class() -> type | None:
    """transformers' Conv1D class, or None when transformers is not importable."""
    try:
        from transformers.pytorch_utils import Conv1D
    except ImportError:  # pragma: no cover - transformers is a dependency of every checkpoint path
        return None
    return Conv1D


def is_conv1d(module: torch.nn.Module) -> bool:
    cls = conv1d_class()
    return cls is not None and isinstance(module, cls)


@dataclass(frozen=True)
class LinearWeight:
    """One linear weight: its parameter name, module name and type, and whether it is stored (in, out)."""

    name: str
    module: str
    kind: str
    param: torch.nn.Parameter
    transposed: bool = False

    def out_in(self) -> torch.Tensor:
        """The weight as (out_features, in_features): a view of the parameter's data (writes go through)."""
        return self.param.data.t() if self.transposed else self.param.data

    @property
    def input_dim(self) -> int:
        """The dimension of the STORED tensor that runs along the layer's input."""
        return 0 if self.transposed else 1

    @property
    def numel(self) -> int:
        return self.param.numel()


def head_module(model: torch.nn.Module) -> torch.nn.Module | None:
    return model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None


def head_is_tied(model: torch.nn.Module) -> bool:
    """True when the output head shares its weight with the input embedding."""
    if not (hasattr(model, "get_input_embeddings") and hasattr(model, "get_output_embeddings")):
        return False
    inp, out = model.get_input_embeddings(), model.get_output_embeddings()
    return inp is not None and out is not None and inp.weight.data_ptr() == out.weight.data_ptr()


def linear_layers(model: torch.nn.Module, head: str = "untied") -> list[LinearWeight]:
    """Every nn.Linear and Conv1D weight, in module order, a shared parameter once (by its first name).

    head: "untied" (the output head unless tied to the input embedding), "all" (tied or not), "none".
    """
    if head not in HEAD_CHOICES:
        raise ValueError(f"head must be one of {HEAD_CHOICES}, got {head!r}")
    out_head = head_module(model)
    tied = head_is_tied(model)
    conv = conv1d_class()
    found: list[LinearWeight] = []
    seen: set[int] = set()
    for name, module in model.named_modules():
        transposed = conv is not None and isinstance(module, conv)
        if not (transposed or isinstance(module, torch.nn.Linear)):
            continue
        if module is out_head and (head == "none" or (head == "untied" and tied)):
            continue
        param = module.weight
        if param is None or id(param) in seen:
            continue
        seen.add(id(param))
        pname = f"{name}.weight" if name else "weight"
        found.append(LinearWeight(pname, name, type(module).__name__, param, transposed))
    return found


def uncovered_weight_modules(model: torch.nn.Module) -> list[tuple[str, str]]:
    """(module name, type) of modules owning a parameter of >= 2 dimensions that is neither linear nor embedding."""
    conv = conv1d_class()
    known: tuple[type, ...] = (torch.nn.Linear, torch.nn.Embedding) + ((conv,) if conv is not None else ())
    out = []
    for name, module in model.named_modules():
        if isinstance(module, known):
            continue
        if any(p is not None and p.dim() >= 2 for p in module.parameters(recurse=False)):
            out.append((name, type(module).__name__))
    return out


def require_covered(model: torch.nn.Module, fmt_name: str, layers: list[LinearWeight]) -> None:
    """MeasurementError (one line) when the format would skip weights it claims to cover, or covers none."""
    uncovered = uncovered_weight_modules(model)
    if uncovered:
        name, kind = uncovered[0]
        more = f" and {len(uncovered) - 1} more" if len(uncovered) > 1 else ""
        raise MeasurementError(f"{fmt_name} cannot transform {kind} ({name or 'the model'}{more}): auditq transforms "
                               "nn.Linear and Conv1D weights only, so this model's deployed form is not measured")
    if not layers:
        raise MeasurementError(f"{fmt_name} covers no weights of this model (no nn.Linear or Conv1D layer "
                               f"of {type(model).__name__} is in its scope)")


def model_parameter_count(model: torch.nn.Module) -> int:
    """Elements of every parameter, a tied parameter once."""
    return sum(p.numel() for p in model.parameters())


@dataclass
class ChangeCount:
    """What a transformation changed against the weights it started from (one role's model)."""

    total_parameters: int
    covered_tensors: int = 0
    covered_elements: int = 0
    changed_tensors: int = 0
    changed_elements: int = 0
    names: list[str] = field(default_factory=list)

    def add(self, name: str, numel: int, changed: int) -> None:
        self.covered_tensors += 1
        self.covered_elements += int(numel)
        self.changed_elements += int(changed)
        self.changed_tensors += int(changed > 0)
        self.names.append(name)

    def details(self) -> dict[str, Any]:
        share = self.covered_elements / self.total_parameters if self.total_parameters else 0.0
        return {"covered_tensors": self.covered_tensors, "covered_elements": self.covered_elements,
                "covered_parameters_share": round(share, 6), "changed_tensors": self.changed_tensors,
                "changed_elements": self.changed_elements}

    def require_change(self, fmt_name: str, why_none: str = "") -> None:
        """MeasurementError when nothing changed: the row would repeat the weights it started from."""
        if self.covered_tensors == 0:
            raise MeasurementError(f"{fmt_name} covers no weights of this model")
        if self.changed_elements == 0:
            raise MeasurementError(f"{fmt_name} changed no weights of this model ({self.covered_tensors} tensors "
                                   f"covered{', ' + why_none if why_none else ''}): the row would repeat the "
                                   "untransformed model, which is not a measurement of this format")


def count_changed(before: torch.Tensor, after: torch.Tensor) -> int:
    """Elements that differ (NaN never equals anything, so a NaN counts as changed)."""
    return int((before != after).sum())


def layer_details(layers: list[LinearWeight]) -> dict[str, Any]:
    """Which kinds of layers were covered, for a row's details (e.g. {"Conv1D": 8, "Linear": 0})."""
    kinds: dict[str, int] = {}
    for layer in layers:
        kinds[layer.kind] = kinds.get(layer.kind, 0) + 1
    return {"layer_types": kinds}
