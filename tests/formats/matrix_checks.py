"""Independent implementations the conformance matrix checks each format family against.

Written from the published definitions, not imported from auditq: RTN (Zhang et al.: Δ = max|w| / 2^(N-1)
per group along the input dimension, codes clamped to [-2^(N-1), 2^(N-1) - 1]), FP8 E4M3 (vLLM's per-tensor
scale over fused q/k/v and gate/up, llm-compressor's per-channel scale, lm_head untouched), magnitude /
N:M / Wanda pruning (Wanda: per output row, |W| * ||X_j||, blocks pruned in order), and the grid that any
4-bit GPTQ/AWQ/bitsandbytes weight must sit on. Every function returns the weights in (out, in) layout:
a transformers Conv1D (GPT-2) stores (in, out) and is transposed here.
"""

from __future__ import annotations

import torch

E4M3_MAX = 448.0
FUSED = (("q_proj", "k_proj", "v_proj"), ("gate_proj", "up_proj"))


def _is_conv1d(module: torch.nn.Module) -> bool:
    return type(module).__name__ == "Conv1D" and hasattr(module, "nf")


def layer_weights(model: torch.nn.Module, keep_head: bool) -> dict[str, torch.Tensor]:
    """name -> (out, in) weight of every nn.Linear / Conv1D; the head only if `keep_head` and it is untied."""
    head = model.get_output_embeddings()
    tied = head is not None and head.weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()
    out = {}
    for name, module in model.named_modules():
        if not (isinstance(module, torch.nn.Linear) or _is_conv1d(module)):
            continue
        if module is head and (tied or not keep_head):
            continue
        w = module.weight.detach()
        out[name] = (w.t() if _is_conv1d(module) else w).float().clone()
    return out


def rtn(w: torch.Tensor, bits: int, group: int | None) -> torch.Tensor:
    """Codes from the exact quotient w / Δ (float64: a float32 quotient can round a tie the other way);
    Δ and the codes are exact in float32, so the product rounds once either way."""
    rows, cols = w.shape
    size = group or cols
    g = torch.nn.functional.pad(w.double(), (0, (-cols) % size)).reshape(rows, -1, size)
    step = g.abs().amax(-1, keepdim=True) / 2 ** (bits - 1)
    q = torch.clamp(torch.round(g / step), -(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    return (q * step).reshape(rows, -1)[:, :cols].to(w.dtype)


def _e4m3(x: torch.Tensor) -> torch.Tensor:
    return x.clamp(-E4M3_MAX, E4M3_MAX).to(torch.float8_e4m3fn).float()


def fp8(weights: dict[str, torch.Tensor], scheme: str) -> dict[str, torch.Tensor]:
    """vLLM per-tensor (siblings fused under one scale) or llm-compressor per-channel; head excluded by caller."""
    out = {}
    if scheme == "channel":
        for name, w in weights.items():
            s = (w.abs().amax(1, keepdim=True) / E4M3_MAX).clamp(min=torch.finfo(torch.float32).eps)
            out[name] = _e4m3(w / s) * s
        return out
    groups: dict[str, list[str]] = {}
    for name in weights:
        parent, _, leaf = name.rpartition(".")
        key = next((f"{parent}/{'+'.join(f)}" for f in FUSED if leaf in f), name)
        groups.setdefault(key, []).append(name)
    for names in groups.values():
        amax = max(float(weights[n].abs().max()) for n in names)
        s = torch.tensor(amax / E4M3_MAX if amax > 0 else 1.0, dtype=torch.float32)
        for n in names:
            out[n] = _e4m3(weights[n] * (1.0 / s)) * s
    return out


def magnitude_mask(w: torch.Tensor, sparsity: float) -> torch.Tensor:
    """True where pruned: the int(S * numel) smallest |w| of the whole layer."""
    k = int(w.numel() * sparsity)
    threshold = w.abs().flatten().kthvalue(k).values
    return w.abs() <= threshold


def nm_mask(w: torch.Tensor, n: int, m: int) -> torch.Tensor:
    rows, cols = w.shape
    g = w.abs().reshape(rows, cols // m, m)
    kth = g.kthvalue(n, dim=-1, keepdim=True).values
    return (g <= kth).reshape(rows, cols)


def wanda_row_mask(w: torch.Tensor, norms: torch.Tensor, sparsity: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(mask, margin): the floor(S * in) lowest |W| * ||X_j|| per row; margin = distance to the row threshold."""
    metric = w.abs() * norms.reshape(1, -1)
    k = int(w.shape[1] * sparsity)
    kth = metric.kthvalue(k, dim=1, keepdim=True).values
    return metric <= kth, (metric - kth).abs() / kth.clamp(min=1e-30)


def input_norms(model: torch.nn.Module, names: list[str], sequences: list[list[int]]) -> dict[str, torch.Tensor]:
    """||X_j||_2 over all calibration tokens of each named layer's input (own hooks, own forward)."""
    modules = dict(model.named_modules())
    sums: dict[str, torch.Tensor] = {}

    def hook(name):
        def collect(_m, inputs, _o):
            x = inputs[0].detach().float().reshape(-1, inputs[0].shape[-1])
            sums[name] = sums.get(name, 0) + x.square().sum(0)
        return collect

    handles = [modules[n].register_forward_hook(hook(n)) for n in names]
    try:
        with torch.inference_mode():
            for ids in sequences:
                model(input_ids=torch.tensor([ids]))
    finally:
        for h in handles:
            h.remove()
    return {n: s.sqrt() for n, s in sums.items()}


def max_levels_per_group(w: torch.Tensor, group: int, row_step: int = 7) -> int:
    """Most distinct values in one (row, group of `group` input columns): <= 16 for any 4-bit code."""
    g = w.reshape(w.shape[0], -1, group)
    return max(g[r, j].unique().numel() for r in range(0, g.shape[0], row_step) for j in range(g.shape[1]))
