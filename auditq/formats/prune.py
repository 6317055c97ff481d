"""Pruning of nn.Linear weights as the published methods define it (family ``prune``).

- ``prune:magnitude:S``  zero the fraction S of each layer's weights with the smallest |W|
  (per layer, as Wanda's magnitude baseline; Han et al. 2015).
- ``prune:wanda:S``      Wanda (Sun et al., ICLR 2024, arXiv 2306.11695): score |W_ij| * ||X_j||_2,
  X_j the j-th input feature over every calibration token, and zero the floor(S * in_features)
  lowest-scoring weights of EACH OUTPUT ROW. Blocks are pruned in order, and a block's
  activations are collected with the blocks before it already pruned, as locuslab/wanda does.
  Calibration: the suite's calibration text (``--calibration`` overrides), one sequence per line.
- ``prune:N:M``           N:M semi-structured (e.g. ``prune:2:4``): in every group of M consecutive
  input weights of a row, zero the N with the smallest |W|; ``prune:wanda:2:4`` ranks by Wanda's score.

Pruned: every nn.Linear and transformers Conv1D (GPT-2) weight except the output head (Wanda prunes
the decoder layers only), listed by auditq.formats.linear_layers; rows, "input features" and N:M groups
are those of the layer's (out, in) view, so a Conv1D (stored (in, out)) is pruned along its stored
dim 0. Embeddings and norms are never touched. A module holding a 2-D weight that is neither kind is
refused (MeasurementError: an UNKNOWN row naming it); so is a pruning that zeroes no weight that was
not zero already (the row would repeat the unpruned model). Changed counts are in the row's details.
Ties break by position (stable sort), so exactly the requested count goes. The achieved sparsity is measured and reported in the row's details.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch

from auditq.backends.torch_lm import TorchCausalLM
from auditq.checkpoint.restore import model_device, modified_weights
from auditq.errors import MeasurementError
from auditq.formats.base import Format, FormatContext, FormatSpec
from auditq.formats.linear_layers import (ChangeCount, LinearWeight, is_conv1d, layer_details, linear_layers,
                                          model_parameter_count, require_covered)
from auditq.formats.options import PruneOptions

MAX_CALIBRATION_TOKENS = 2048


def prunable_layers(model: torch.nn.Module) -> list[LinearWeight]:
    """Every nn.Linear and Conv1D weight except the output head, in module order."""
    return linear_layers(model, head="none")


def prunable_linears(model: torch.nn.Module) -> dict[str, torch.nn.Module]:
    """module name -> module of `prunable_layers` (nn.Linear or Conv1D)."""
    modules = dict(model.named_modules())
    return {lw.module: modules[lw.module] for lw in prunable_layers(model)}


def _is_layer(module: torch.nn.Module) -> bool:
    return isinstance(module, torch.nn.Linear) or is_conv1d(module)


def prune_mask(metric: torch.Tensor, options: PruneOptions, per_row: bool) -> torch.Tensor:
    """Boolean mask of the weights to zero (True = pruned) for a 2-D score tensor."""
    rows, cols = metric.shape
    if options.sparsity is None:
        if cols % options.m:
            raise MeasurementError(f"{options.n}:{options.m} pruning needs in_features divisible by {options.m}, got {cols}")
        groups = metric.reshape(rows, cols // options.m, options.m)
        order = torch.sort(groups, dim=-1, stable=True).indices[..., :options.n]
        mask = torch.zeros_like(groups, dtype=torch.bool).scatter_(-1, order, True)
        return mask.reshape(rows, cols)
    if per_row:
        count = int(cols * options.sparsity)
        order = torch.sort(metric, dim=-1, stable=True).indices[:, :count]
        return torch.zeros_like(metric, dtype=torch.bool).scatter_(1, order, True)
    count = int(metric.numel() * options.sparsity)
    order = torch.sort(metric.flatten(), stable=True).indices[:count]
    return torch.zeros(metric.numel(), dtype=torch.bool, device=metric.device).scatter_(0, order, True).reshape(rows, cols)


def _blocks(model: torch.nn.Module, linears: dict[str, LinearWeight]) -> list[list[str]]:
    """Linear names grouped by transformer block (the largest ModuleList holding linears), in order."""
    best: tuple[str, torch.nn.ModuleList] | None = None
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.ModuleList) and any(_is_layer(m) for m in module.modules()):
            if best is None or len(module) > len(best[1]):
                best = (name, module)
    if best is None:
        return [list(linears)]
    prefix = best[0] + "." if best[0] else ""
    groups: list[list[str]] = [[] for _ in best[1]]
    rest: list[str] = []
    for name in linears:
        head, _, tail = name[len(prefix):].partition(".") if name.startswith(prefix) else ("", "", "")
        if head.isdigit() and int(head) < len(groups):
            groups[int(head)].append(name)
        else:
            rest.append(name)
    return [g for g in groups if g] + ([rest] if rest else [])


class _Stop(Exception):
    pass


def _calibration_ids(checkpoint, ctx: FormatContext) -> list[torch.Tensor]:
    from auditq.probes.text import encode_sequences

    texts = [t for t in ctx.calibration_texts if t.strip()]
    if not texts:
        raise MeasurementError("wanda pruning needs calibration text (the suite's calibration.txt or --calibration)")
    limit = min(MAX_CALIBRATION_TOKENS, int(getattr(checkpoint.config, "max_position_embeddings", 0) or MAX_CALIBRATION_TOKENS))
    return [torch.tensor([seq[:limit]]) for seq in encode_sequences(checkpoint.tokenizer, texts) if len(seq) >= 1]


def input_norms(model: torch.nn.Module, modules: dict[str, torch.nn.Module], sequences: list[torch.Tensor],
                stop_after: torch.nn.Module | None) -> dict[str, torch.Tensor]:
    """||X_j||_2 over every calibration token, per input feature of each module (float32)."""
    sums = {name: torch.zeros(_in_features(m), dtype=torch.float32, device=m.weight.device) for name, m in modules.items()}

    def hook(name):
        def collect(_module, inputs, _output):
            x = inputs[0].detach().float().reshape(-1, inputs[0].shape[-1])
            sums[name] += x.square().sum(0)
        return collect

    handles = [m.register_forward_hook(hook(name)) for name, m in modules.items()]
    if stop_after is not None:
        def stop(*_):
            raise _Stop
        handles.append(stop_after.register_forward_hook(stop))
    device = model_device(model)
    try:
        with torch.inference_mode():
            for ids in sequences:
                try:
                    model(input_ids=ids.to(device))
                except _Stop:
                    pass
    finally:
        for h in handles:
            h.remove()
    return {name: s.sqrt() for name, s in sums.items()}


def _in_features(module: torch.nn.Module) -> int:
    """Input features of an nn.Linear (weight (out, in)) or a Conv1D (weight (in, out))."""
    return module.weight.shape[0] if is_conv1d(module) else module.weight.shape[1]


class Pruning(Format):
    engine = "auditq-prune"

    def __init__(self, spec: FormatSpec, options: PruneOptions) -> None:
        super().__init__(spec, options)
        self._measured: dict[str, object] = {}
        self._changes: dict[str, dict[str, object]] = {}

    @contextmanager
    def apply(self, checkpoint, ctx: FormatContext):
        model = checkpoint.model
        layers = prunable_layers(model)
        require_covered(model, self.name, layers)
        with modified_weights(checkpoint, {lw.name: lw.param for lw in layers}) as restore:
            change = self._prune(model, {lw.module: lw for lw in layers}, checkpoint, ctx)
            self._changes[str((ctx.extra or {}).get("role") or "model")] = change.details()
            self._measured.update({**change.details(), "changes": dict(self._changes)})
            change.require_change(self.name, "every weight it selects is zero already")
            self._measured.update({**layer_details(layers), **restore})
            yield TorchCausalLM(model, checkpoint.pad_token_id, checkpoint.eos_token_id,
                                batch_size=ctx.batch_size, description=f"torch pruned {self.name}")

    def _prune(self, model, layers: dict[str, LinearWeight], checkpoint, ctx: FormatContext) -> ChangeCount:
        wanda = self.options.method == "wanda"
        sequences = _calibration_ids(checkpoint, ctx) if wanda else []
        zeros = total = 0
        change = ChangeCount(model_parameter_count(model))
        blocks = _blocks(model, layers)
        block_modules = _block_modules(model, blocks)
        modules = dict(model.named_modules())
        for names, block in zip(blocks, block_modules):
            norms = input_norms(model, {n: modules[n] for n in names}, sequences, block) if wanda else {}
            with torch.no_grad():
                for name in names:
                    w = layers[name].out_in()  # (out, in) view: rows and input features alike for Conv1D
                    metric = w.float().abs()
                    if wanda:
                        metric = metric * norms[name].reshape(1, -1)
                    mask = prune_mask(metric, self.options, per_row=wanda)
                    change.add(layers[name].name, w.numel(), int((mask & (w != 0)).sum()))
                    w.masked_fill_(mask, 0)
                    zeros += int((w == 0).sum())
                    total += w.numel()
        self._measured = {"achieved_sparsity": zeros / total, "n_weights": total, "n_layers": len(layers)}
        if wanda:
            self._measured["calibration_sequences"] = len(sequences)
            self._measured["calibration_tokens"] = int(sum(s.numel() for s in sequences))
        return change

    def details(self):
        o = self.options
        pattern = f"{o.n}:{o.m} semi-structured" if o.sparsity is None else \
            (f"unstructured {o.sparsity:g} per output row" if o.method == "wanda" else f"unstructured {o.sparsity:g} per layer")
        info = {"engine": self.engine, "method": o.method,
                "score": "|W|·||X||_2 (calibration activations)" if o.method == "wanda" else "|W|",
                "pattern": pattern, "pruned": "nn.Linear and Conv1D weights except the output head",
                "requested_sparsity": o.sparsity if o.sparsity is not None else o.n / o.m}
        info.update(self._measured)
        return info


def _block_modules(model: torch.nn.Module, blocks: list[list[str]]) -> list[torch.nn.Module | None]:
    """The module to stop the calibration forward after, per block (None: run the whole model)."""
    out: list[torch.nn.Module | None] = []
    modules = dict(model.named_modules())
    for names in blocks:
        common = names[0].split(".")  # the block is the deepest common ancestor of its linears
        for n in names[1:]:
            parts = n.split(".")
            k = 0
            while k < min(len(common), len(parts)) and common[k] == parts[k]:
                k += 1
            common = common[:k]
        module = modules.get(".".join(common)) if common else None
        out.append(None if module is None or _is_layer(module) or module is model else module)
    return out
